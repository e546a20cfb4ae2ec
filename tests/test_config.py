import json
from pathlib import Path

import pytest

from amixup.config import RunConfig
from amixup.engine import learning_rate
from amixup.recipes import ABLATION_ROWS, PROFILES, RECIPES, make_config


def test_recipes_hold_the_papers_hyperparameters():
    m = make_config("motivation")
    assert (m.model, m.epochs, m.lr, m.momentum, m.weight_decay, m.milestones, m.gamma, m.alpha) == \
        ("cnn_vis2d", 100, 0.1, 0.9, 5e-4, (30, 60, 80), 0.2, 1.0)
    c = make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100)
    assert (c.model, c.epochs, c.batch_size, c.weight_decay, c.warmup_epochs, c.milestones, c.gamma, c.beta) == \
        ("resnet32", 200, 128, 2e-4, 5, (160, 180), 0.1, 0.34)
    assert c.split_convention == "index" and m.split_convention == "counts"
    assert set(PROFILES) == {"smoke", "quick", "paper"} and set(RECIPES) >= {"motivation", "cifar_lt"}


def test_motivation_lr_schedule():
    m = make_config("motivation")
    lrs = [learning_rate(m, e) for e in (0, 29, 30, 59, 60, 80, 99)]
    assert lrs == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.004, 0.0008, 0.0008])


def test_cifar_lt_warmup_and_steps():
    c = make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100)
    lrs = [learning_rate(c, e) for e in (0, 1, 4, 5, 159, 160, 179, 180, 199)]
    assert lrs == pytest.approx([0.02, 0.04, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_ldam_drw_control_recipe_is_cifar_lt_with_ldam_drws_decay_normalisation_and_images():
    c = make_config("ldam_drw_erm", dataset="cifar10_lt", imb_factor=100)
    lrs = [learning_rate(c, e) for e in (0, 4, 5, 159, 160, 179, 180, 199)]
    # LDAM-DRW's adjust_learning_rate (1-based epoch): lr * epoch / 5 up to 5, x0.01 above 160, x0.0001 above 180
    assert lrs == pytest.approx([0.02, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-5, 1e-5])
    assert c.method == "ce" and c.precision == "fp32" and c.longtail_selection == "ldam_drw"
    assert c.normalization == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
    lt = make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100)
    same = {k for k, v in c.to_dict().items() if v == lt.to_dict()[k]}
    assert set(c.to_dict()) - same == {"gamma", "normalization", "longtail_selection"}
    c.normalization["std"][0] = 1.0  # a config never shares its dict with the recipe
    assert RECIPES["ldam_drw_erm"]["normalization"]["std"][0] == 0.2023


@pytest.mark.parametrize("value,match", [
    ({"mean": [0.5, 0.5, 0.5]}, "normalization must be"),
    ({"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}, "every std > 0"),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}, "as many means as stds"),
    ({"mean": [0.5], "std": [0.2]}, "1 channel"),
    ({"mean": ["a", 0.5, 0.5], "std": [0.2, 0.2, 0.2]}, "finite numbers"),
])
def test_bad_normalization_is_refused_naming_the_parameter(value, match):
    with pytest.raises(ValueError, match=match):
        make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100, normalization=value)


def test_longtail_selection_is_checked_and_applies_to_long_tails_only():
    with pytest.raises(ValueError, match="longtail_selection must be one of"):
        make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100, longtail_selection="numpy")
    with pytest.raises(ValueError, match="long-tailed datasets only"):
        make_config("benchmark_cifar10", longtail_selection="ldam_drw")


def test_cosine_schedule():
    c = RunConfig(lr_schedule="cosine", epochs=10, lr=0.2)
    assert learning_rate(c, 0) == pytest.approx(0.2) and learning_rate(c, 5) == pytest.approx(0.1)


def test_short_profiles_scale_milestones():
    q = make_config("motivation", "quick")
    assert q.epochs == PROFILES["quick"]["epochs"] and q.milestones == (4, 7, 10)
    s = make_config("cifar_lt", "smoke", dataset="cifar10_lt", imb_factor=10)
    assert s.epochs == 2 and s.warmup_epochs == 1 and max(s.milestones) <= s.epochs


def test_all_table7_rows_are_configurations():
    for row, switches in ABLATION_ROWS.items():
        c = make_config("cifar_lt", "smoke", dataset="cifar100_lt", imb_factor=100, method="am_mixup", **switches)
        assert c.rate == switches["rate"]


@pytest.mark.parametrize("override, message", [
    (dict(method="cutmix"), r"method must be one of \['am_mixup', 'ce', 'manifold_mixup', 'mixup'\], got 'cutmix'"),
    (dict(beta=-0.1), "beta must be >= 0, got -0.1"),
    (dict(imb_factor=0.5, dataset="mini_cifar_lt"), "imb_factor must be >= 1"),
    (dict(dataset="imagenet"), "dataset must be one of"),
    (dict(model="vgg99"), "model must be one of"),
    (dict(rate="sometimes"), "rate must be one of"),
    (dict(train_acc_source="test"), r"train_acc_source must be one of \['clean', 'mixed'\]"),
    (dict(split_convention="quantile"), "split_convention must be one of"),
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(device="tpu"), "device must be one of"),
    (dict(imb_factor=10, dataset="mini_cifar"), "long-tailed datasets"),
    (dict(imb_factor=10, dataset="imagenet_lt"), "long-tailed datasets"),
    (dict(dataset="cifar10_lt"), "imb_factor is required"),
    (dict(augmentation="autoaugment"), r"augmentation must be one of \['crop_flip', 'resized_crop_flip'\]"),
    (dict(crop_size=0), "crop_size must be >= 1"),
    (dict(warmup_epochs=3, epochs=3), r"warmup_epochs must lie in \[0, epochs=3\), got 3"),
    # each of these passed validate() and then failed at the first batch or in the optimizer, or gave wrong numbers
    (dict(crop_padding=-1), r"crop_padding must be >= 0 .*got -1"),
    (dict(color_jitter=-0.4), r"color_jitter must be >= 0 .*got -0.4"),
    (dict(momentum=-1.0), r"momentum must lie in \[0, 1\), got -1.0"),
    (dict(momentum=1.5), r"momentum must lie in \[0, 1\), got 1.5"),
    (dict(weight_decay=-5.0), "weight_decay must be >= 0, got -5.0"),
    (dict(step_size=-1), r"step_size must be >= 0 epochs \(0: unused\), got -1"),
    (dict(seed=-3), r"seed must lie in \[0, 2\*\*63\), got -3"),
    (dict(subsample_seed=-1), r"subsample_seed must lie in \[0, 2\*\*63\), got -1"),
    (dict(lr=float("inf")), "lr must be a finite number, got inf"),
    (dict(alpha=float("nan")), "alpha must be a finite number, got nan"),
    (dict(imb_factor=float("inf")), "imb_factor must be a finite number, got inf"),
    (dict(device="cuda:x"), r"device must be one of \['auto', 'cpu', 'cuda', 'cuda:N', 'mps'\].*got 'cuda:x'"),
    (dict(device="cuda:-1"), r"device must be one of .*got 'cuda:-1'"),
    (dict(device="cuda:"), r"device must be one of .*got 'cuda:'"),
    (dict(many_threshold=5, few_threshold=20),
     r"0 <= few_threshold < many_threshold .*few_threshold=20, many_threshold=5"),
    (dict(many_threshold=20, few_threshold=20),
     r"few_threshold < many_threshold .*few_threshold=20, many_threshold=20"),
    (dict(few_threshold=-1), r"0 <= few_threshold < many_threshold .*few_threshold=-1"),
    (dict(split_convention="index"), r"split_convention='index' .*10 or 100 classes, but 'mini_cifar_lt' has 4; "
                                     r"use split_convention='counts'"),
    (dict(split_convention="index", dataset="cifar100_coarse"), r"split_convention='index' .*'cifar100_coarse' has 20"),
])
def test_bad_parameters_fail_with_a_clear_error(override, message):
    with pytest.raises(ValueError, match=message):
        make_config("motivation", **override)


def test_edge_values_that_are_fine_still_validate():
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps"):  # need not exist on this machine
        assert make_config("motivation", device=device).device == device
    c = make_config("motivation", momentum=0.0, weight_decay=0.0, crop_padding=0, seed=0, few_threshold=0,
                    many_threshold=1)
    assert (c.momentum, c.weight_decay, c.crop_padding, c.few_threshold) == (0.0, 0.0, 0, 0)
    assert make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100).split_convention == "index"
    assert make_config("cifar_lt", dataset="cifar100_lt", imb_factor=100).split_convention == "index"
    assert make_config("motivation", split_convention="index", dataset="cifar10").dataset == "cifar10"


def test_unknown_recipe_profile_and_field():
    with pytest.raises(ValueError, match=r"profile must be one of \['paper', 'quick', 'smoke'\]"):
        make_config("motivation", "fast")
    with pytest.raises(ValueError, match="recipe must be one of"):
        make_config("imagenet")
    with pytest.raises(ValueError, match="unknown config field"):
        RunConfig.from_dict({"betta": 0.3})


def test_run_id_is_stable_and_config_sensitive():
    a = make_config("motivation", "smoke", method="am_mixup")
    b = make_config("motivation", "smoke", method="am_mixup")
    assert a.run_id() == b.run_id()
    assert make_config("motivation", "smoke", method="am_mixup", beta=0.5).run_id() != a.run_id()
    assert make_config("motivation", "smoke", method="am_mixup", device="cpu").run_id() == a.run_id()
    assert RunConfig.from_dict(a.to_dict()) == a


def test_a_whole_number_names_one_experiment_as_int_or_float_and_every_committed_record_keeps_its_run_id():
    lt = dict(dataset="cifar10_lt", imb_factor=100)
    a = make_config("cifar_lt", "paper", beta=1.0, lr=0.1, **lt)
    assert make_config("cifar_lt", "paper", beta=1, **lt).run_id() == a.run_id()  # --set beta=1
    assert make_config("cifar_lt", "paper", beta=1.0, **{**lt, "imb_factor": 100.0}).run_id() == a.run_id()
    assert make_config("cifar_lt", "paper", beta=1.0, lr=1, **lt).run_id() != a.run_id()  # (other values differ)
    assert make_config("cifar_lt", "paper", beta=1, color_jitter=0, **lt).run_id() == a.run_id()  # its default
    with pytest.raises(ValueError, match=r"beta must be a number, got True \(bool\)"):
        make_config("cifar_lt", "paper", beta=True, **lt)
    records = [json.loads(p.read_text()) for p in Path(__file__).parents[1].glob("results/**/*.json")]
    records = [r for r in records if isinstance(r, dict) and "config" in r and "run_id" in r]
    assert len(records) >= 80
    for record in records:  # the ids of the committed records did not change
        assert RunConfig.from_dict(record["config"]).run_id() == record["run_id"], record["run_id"]


def test_list_file_datasets_need_no_imbalance_factor():
    c = make_config("motivation", dataset="imagenet_lt", model="resnet50")
    assert c.imb_factor is None and c.dataset == "imagenet_lt"


def test_large_scale_lt_recipes_follow_the_paper_and_its_cited_setup():
    i = make_config("imagenet_lt")
    assert (i.dataset, i.model, i.lr_schedule, i.weight_decay, i.momentum, i.alpha, i.beta) == \
        ("imagenet_lt", "resnet50", "cosine", 5e-4, 0.9, 0.2, 0.34)
    assert (i.epochs, i.batch_size, i.lr, i.augmentation, i.crop_size) == (180, 256, 0.1, "resized_crop_flip", 224)
    assert i.color_jitter == 0.4 and make_config("places_lt").color_jitter == 0.4  # MiSLAS's ColorJitter(0.4, 0.4, 0.4)
    assert make_config("cifar_lt", dataset="cifar10_lt", imb_factor=100).color_jitter == 0.0
    assert (i.split_convention, i.many_threshold, i.few_threshold) == ("counts", 100, 20)
    p = make_config("places_lt")
    assert (p.dataset, p.model, p.epochs, p.beta, p.alpha) == ("places_lt", "resnet152_places", 90, 0.1, 0.2)
    assert (p.frozen_stages, p.finetune_from) == (1, "torchvision:IMAGENET1K_V1")  # MiSLAS: frozen ImageNet trunk
    from amixup.experiments import table4_configs, table5_configs
    betas = {(c.model, c.method): c.beta for c in table4_configs("paper")}
    assert betas[("resnet50", "am_mixup")] == 0.34 and betas[("resnet101", "am_mixup")] == 0.5
    assert betas[("resnet152", "am_mixup")] == 0.2 and len(betas) == 12
    assert {c.experiment for c in table5_configs("smoke")} == {"table5"}
    assert make_config("imagenet_lt", model="resnet101").beta == 0.5  # the recipe follows the network
    assert make_config("imagenet_lt", model="resnet101", beta=0.3).beta == 0.3
    assert make_config("places_lt").beta == 0.1 and make_config("cifar_lt", dataset="cifar10_lt", imb_factor=10).beta == 0.34


def test_new_fields_at_their_defaults_keep_earlier_run_ids():
    a = make_config("motivation", "paper", method="ce", experiment="table2")
    # the id the committed Table 2 records carry (written before augmentation/crop_size existed)
    assert a.run_id() == "table2-mini_cifar_lt-cnn_vis2d-ce-s0-80b2735b"
    b = make_config("motivation", "paper", method="ce", experiment="table2", augmentation="resized_crop_flip")
    assert b.run_id() != a.run_id()
    assert make_config("motivation", "paper", method="ce", experiment="table2", color_jitter=0.4).run_id() != a.run_id()
    assert make_config("motivation", "paper", method="ce", experiment="table2",
                       normalization={"mean": [0.5] * 3, "std": [0.25] * 3}).run_id() != a.run_id()
    assert make_config("motivation", "paper", method="ce", experiment="table2",
                       longtail_selection="ldam_drw").run_id() != a.run_id()


def test_one_epoch_profiles_keep_warmup_below_the_epoch_count():
    c = make_config("cifar_lt", "paper", dataset="cifar10_lt", imb_factor=100, epochs=1)
    assert c.warmup_epochs == 0


# --------------------------------------------------------------------------- Table 8 recipes and schedules

def test_step_schedule_at_its_boundary_epochs():
    c = RunConfig(lr_schedule="step", step_size=30, gamma=0.5, lr=0.05, epochs=300, milestones=())
    lrs = [learning_rate(c, e) for e in (0, 29, 30, 59, 60, 89, 90, 269, 270, 299)]
    assert lrs == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625, 0.05 / 2 ** 8,
                                 0.05 / 2 ** 9, 0.05 / 2 ** 9])
    with pytest.raises(ValueError, match="step_size must be >= 1 with lr_schedule='step', got 0"):
        RunConfig(lr_schedule="step", epochs=10).validate()


def test_step_size_keeps_earlier_run_ids():
    a = make_config("motivation", "paper", method="ce", experiment="table2")
    assert a.step_size == 0 and a.run_id() == "table2-mini_cifar_lt-cnn_vis2d-ce-s0-80b2735b"
    assert make_config("motivation", "paper", method="ce", experiment="table2", step_size=5).run_id() != a.run_id()


@pytest.mark.parametrize("network", ["vgg11", "resnet50_cifar", "densenet_bc"])
def test_table8_schedules_at_their_boundary_epochs(network):
    from amixup.recipes import benchmark_recipe

    def lrs(dataset, epochs):
        c = make_config(benchmark_recipe(dataset, network), dataset=dataset, model=network)
        assert c.model == network and c.beta == 0.67 and c.momentum == 0.9 and c.warmup_epochs == 0
        return c, [learning_rate(c, e) for e in epochs]

    # CIFAR-10: lr 0.05, halved every 30 epochs, 300 epochs (batch 128, weight decay 5e-4: cited setup)
    c, got = lrs("cifar10", (0, 29, 30, 59, 60, 299))
    assert (c.epochs, c.batch_size, c.weight_decay, c.lr_schedule, c.step_size) == (300, 128, 5e-4, "step", 30)
    assert got == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125, 0.05 * 0.5 ** 9])
    # CIFAR-100: lr 0.1, divided by 5 at 60, 120, 160, 200 epochs
    c, got = lrs("cifar100", (0, 59, 60, 119, 120, 159, 160, 199))
    assert (c.epochs, c.batch_size, c.weight_decay, c.milestones, c.gamma) == (200, 128, 5e-4, (60, 120, 160), 0.2)
    assert got == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008])
    c, got = lrs("tiny_imagenet", (0, 19, 20, 39, 40, 149, 150, 224, 225, 299))
    assert (c.crop_padding, c.flip, c.augmentation, c.weight_decay) == (4, True, "crop_flip", 0.0)
    if network == "densenet_bc":  # batch 64, 300 epochs, lr 0.1 / 10 at 150 and 225
        assert (c.epochs, c.batch_size, c.milestones, c.step_size) == (300, 64, (150, 225), 0)
        assert got == pytest.approx([0.1] * 6 + [0.01, 0.01, 0.001, 0.001])
    else:  # batch 256, 200 epochs, lr 0.1 x 0.9 every 20 epochs
        assert (c.epochs, c.batch_size, c.lr_schedule, c.step_size, c.gamma) == (200, 256, "step", 20, 0.9)
        assert got[:5] == pytest.approx([0.1, 0.1, 0.09, 0.09, 0.081])
        assert learning_rate(c, 199) == pytest.approx(0.1 * 0.9 ** 9)


def test_short_profiles_scale_the_step_size():
    from amixup.recipes import benchmark_recipe

    q = make_config("benchmark_cifar10", "quick")  # 12 of 300 epochs: halved every round(30 * 12 / 300) = 1
    assert q.epochs == 12 and q.step_size == 1 and learning_rate(q, 1) == pytest.approx(0.025)
    c = make_config("benchmark_cifar10", epochs=60)  # halved at 6, 12, ...
    assert c.step_size == 6 and learning_rate(c, 5) == 0.05 and learning_rate(c, 6) == pytest.approx(0.025)
    t = make_config("benchmark_tiny_imagenet", epochs=50)
    assert t.step_size == 5 and learning_rate(t, 10) == pytest.approx(0.081)
    assert make_config("benchmark_cifar10", epochs=60, step_size=7).step_size == 7  # an explicit value stays
    s = make_config(benchmark_recipe("tiny_imagenet", "densenet_bc"), "smoke", model="densenet_bc")
    assert s.epochs == 2 and s.milestones == (1, 2) and s.step_size == 0
    with pytest.raises(ValueError, match="network must be one of"):
        benchmark_recipe("cifar10", "resnet50")
    with pytest.raises(ValueError, match="dataset must be one of"):
        benchmark_recipe("cifar10_lt", "vgg11")


def test_table8_configs_cover_datasets_networks_methods_seeds():
    from amixup.experiments import table8_configs

    runs = table8_configs("smoke", seeds=(0, 1))
    assert len(runs) == 3 * 3 * 4 * 2 and {c.experiment for c in runs} == {"table8"}
    assert {(c.dataset, c.model) for c in runs} == {(d, n) for d in ("cifar10", "cifar100", "tiny_imagenet")
                                                     for n in ("vgg11", "resnet50_cifar", "densenet_bc")}
    assert {c.beta for c in runs} == {0.67} and len({c.run_id() for c in runs}) == len(runs)
    assert all(c.epochs == 2 and c.train_subset == 512 for c in runs)
    dense = [c for c in runs if c.dataset == "tiny_imagenet" and c.model == "densenet_bc"]
    assert {c.batch_size for c in dense} == {64}
    one = table8_configs("paper", methods=["am_mixup"], datasets=["cifar10"], networks=["vgg11"], beta=0.5,
                         precision="bf16")
    assert [(c.method, c.beta, c.precision, c.epochs, c.step_size) for c in one] == [("am_mixup", 0.5, "bf16", 300, 30)]


def test_command_line_numbers_and_assignments_are_checked():
    import argparse

    from amixup.config import number_argument, parse_assignments

    positive, non_negative, seconds = number_argument(int, 1), number_argument(int, 0), number_argument(float, 0, True)
    assert positive("3") == 3 and non_negative("0") == 0 and seconds("0.5") == 0.5
    for parse, text, message in [(positive, "0", "must be >= 1, got 0"), (positive, "x", "expected an integer, got 'x'"),
                                 (non_negative, "-1", "must be >= 0, got -1"), (seconds, "0", "must be > 0, got 0.0"),
                                 (seconds, "soon", "expected a number, got 'soon'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
    assert parse_assignments(["lr=0.1", "flip=False", "dataset=cifar10", "milestones=[1, 2]"]) == {
        "lr": 0.1, "flip": False, "dataset": "cifar10", "milestones": [1, 2]}
    with pytest.raises(ValueError, match="--set expects FIELD=VALUE, got 'lr'"):
        parse_assignments(["lr"])


def test_paper_seeds_are_the_seed_counts_of_the_paper_tables():
    import pandas as pd

    from amixup.recipes import PAPER_SEEDS
    from amixup.report import COMMITTED_PAPER

    paper = pd.read_csv(COMMITTED_PAPER)
    counts = paper["notes"].fillna("").str.extract(r"(\d+) seeds", expand=False).astype(float)
    stated = {f"table{t}": int(n) for t, n in paper.assign(n=counts).dropna(subset=["n"]).groupby("table")["n"].max().items()}
    assert PAPER_SEEDS == stated


def test_a_record_of_the_removed_compile_step_reads_with_its_run_id_and_a_compiled_one_is_refused():
    """compile_step left RunConfig (it had no GPU figure); committed records hold compile_step=False."""
    config = RunConfig(experiment="x", dataset="mini_cifar", model="cnn_vis2d", method="ce")
    old = {**config.to_dict(), "compile_step": False}
    assert RunConfig.from_dict(old) == config and RunConfig.from_dict(old).run_id() == config.run_id()
    with pytest.raises(ValueError, match="compile_step was removed"):
        RunConfig.from_dict({**config.to_dict(), "compile_step": True})
