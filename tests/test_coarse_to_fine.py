"""Table 6 building blocks: the ViT encoder, the periodic cosine schedule, the coarse-to-fine recipes and
the stage-2 head trained on features encoded once."""

from __future__ import annotations

import math

import pytest
import torch

from amixup import data as D
from amixup.checkpoints import checkpoint_path
from amixup.engine import encode, learning_rate, train
from amixup.experiments import table6_configs
from amixup.models import FastDropout, build_model
from amixup.recipes import make_config

VIT_PARAMETERS = {(1, 28, 10): 937_610, (3, 32, 10): 943_626}  # printed in docs/experiments.md


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_vit_shapes_parameters_and_split(channels, size):
    torch.manual_seed(0)
    model = build_model("vit", 10, channels, size).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        z = model.features(x)
        assert z.shape == (3, 128) and model.feature_dim == 128 and model(x).shape == (3, 10)
        tokens = model.stages[0](x)
    assert tokens.shape == (3, (size // 4) ** 2 + 1, 128)  # class token + 4x4 patches
    assert len(model.stages) == 8 and model.last_layer == 8  # patch embedding + 7 blocks (the last with the readout)
    assert sum(p.numel() for p in model.parameters()) == VIT_PARAMETERS[(channels, size, 10)]
    blocks = [m for m in model.modules() if type(m).__name__ == "_TransformerBlock"]
    assert len(blocks) == 7 and blocks[0].attention.heads == 8 and blocks[0].mlp[0].out_features == 256


def test_vit_rejects_a_size_that_is_not_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        build_model("vit", 10, 3, 30)


@pytest.mark.parametrize("layer", [0, 1, 8])
def test_vit_mixes_at_the_input_and_the_last_layer(layer):
    torch.manual_seed(0)
    model = build_model("vit", 4, 1, 28).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        same, clean = model.forward_mixed(x, layer, lambda h: h)
        assert torch.allclose(same, model(x), atol=1e-5)
        assert (clean is not None) == (layer == model.last_layer)
        shapes = []
        swapped, _ = model.forward_mixed(x, layer, lambda h: shapes.append(h.shape) or h.flip(0))
    assert shapes[0] == {0: (4, 1, 28, 28), 1: (4, 50, 128), 8: (4, 128)}[layer]
    if layer == model.last_layer:  # swapping features swaps the logits
        assert torch.allclose(swapped, same.flip(0), atol=1e-5)
    else:
        assert not torch.allclose(swapped, same)


def test_fast_dropout_keeps_1_minus_p_and_rescales():
    torch.manual_seed(0)
    drop = FastDropout(0.05)
    x = torch.ones(400_000)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.95, abs=0.002)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.95))
    assert torch.equal(drop.eval()(x), x)
    assert drop.threshold == round(0.05 * 65536) - 32768
    with pytest.raises(ValueError, match="dropout must lie in"):
        FastDropout(1.0)


def test_periodic_cosine_matches_torch_cosine_annealing_lr():
    config = make_config("coarse_to_fine", "paper", dataset="mnist_coarse")
    assert (config.epochs, config.cosine_t_max, config.lr) == (600, 100, 3e-4)
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(config.epochs):
        assert learning_rate(config, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()
    assert learning_rate(config, 100) == pytest.approx(0, abs=1e-15)  # zero after T_max ...
    assert learning_rate(config, 200) == pytest.approx(3e-4)          # ... back up after 2 T_max
    assert learning_rate(config, 150) == pytest.approx(1.5e-4)


def test_cosine_without_t_max_anneals_once_over_the_run():
    config = make_config("motivation_finetune", "paper", dataset="mini_cifar", finetune_from="x")
    assert config.cosine_t_max is None
    assert [learning_rate(config, e) for e in (0, 15)] == pytest.approx([1e-3, 0.5e-3])


def test_shortened_profiles_scale_the_cosine_period():
    assert make_config("coarse_to_fine", "paper", dataset="mnist_coarse", epochs=60).cosine_t_max == 10
    quick = make_config("coarse_to_fine", "quick", dataset="mnist_coarse")
    assert (quick.epochs, quick.cosine_t_max) == (2, 2)  # the recipe's own quick profile
    assert make_config("coarse_to_fine", "quick", dataset="mnist_coarse", cosine_t_max=7).cosine_t_max == 7
    with pytest.raises(ValueError, match="cosine_t_max must be None or >= 1"):
        make_config("coarse_to_fine", "paper", dataset="mnist_coarse", cosine_t_max=0)


def test_table6_pairs_link_stage_2_to_stage_1():
    pairs = table6_configs("paper", seeds=(0, 1))
    assert len(pairs) == 3 * 3 * 2  # datasets x methods x seeds
    for coarse, fine in pairs:
        assert coarse.model == fine.model == "vit" and fine.finetune_from == coarse.run_id()
        assert fine.dataset == {"mnist_coarse": "mnist", "cifar10_coarse": "cifar10",
                                "cifar100_coarse": "cifar100"}[coarse.dataset]
        assert fine.method == "ce" and fine.freeze_encoder and fine.extra["pretrain_method"] == coarse.method
        assert (coarse.optimizer, coarse.lr, coarse.weight_decay, coarse.batch_size) == ("adamw", 3e-4, 0.0, 128)
        assert (fine.optimizer, fine.lr, fine.epochs, fine.cosine_t_max) == ("adamw", 1e-3, 100, 100)
        assert (fine.crop_padding, fine.flip) == (0, False)
        augmented = coarse.dataset != "mnist_coarse"
        assert (coarse.crop_padding, coarse.flip) == ((4, True) if augmented else (0, False))
    assert {c.beta for c, _ in pairs} == {0.34} and {c.alpha for c, _ in pairs} == {1.0}
    assert D.DATASETS["mnist_coarse"].coarse[0] == (0,) * 5 + (1,) * 5
    (coarse, fine), = table6_configs("paper", methods=("am_mixup",), datasets=("mnist_coarse",), beta=0.5)
    assert coarse.beta == fine.beta == 0.5  # the transfer record (and its table row) carries the pre-training's beta


def _digits(split: str) -> D.ImageData:
    """Ten classes of 28x28 grayscale class-dependent noise."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(10).repeat(30 if split == "train" else 4)
    images = (labels[:, None, None, None] * 20 + torch.randint(0, 60, (len(labels), 1, 28, 28), generator=gen))
    return D.ImageData(images.clamp(0, 255).to(torch.uint8), labels, [str(i) for i in range(10)], "generated")


@pytest.fixture
def digits(monkeypatch):
    saved = (dict(D.DATASETS), dict(D._LOADERS), dict(D.NORMALIZATION), dict(D._MODULES))
    D.register_dataset("test_digits", _digits)
    yield "test_digits"
    for live, old in zip((D.DATASETS, D._LOADERS, D.NORMALIZATION, D._MODULES), saved):
        live.clear()
        live.update(old)


def test_stage_2_on_stored_features_equals_the_image_path(digits, tmp_path, monkeypatch):
    from amixup import engine

    encoded = []
    monkeypatch.setattr(engine, "encode", lambda *a, **k: encoded.append(1) or encode(*a, **k))
    torch.manual_seed(3)
    encoder = tmp_path / "encoder.pt"
    torch.save({"model": build_model("vit", 2, 1, 28).state_dict()}, encoder)
    heads, records = {}, {}
    for cached in (True, False):
        config = make_config("coarse_to_fine_transfer", "paper", dataset=digits, epochs=4, cosine_t_max=4,
                             batch_size=64, finetune_from=str(encoder), device="cpu", experiment="t",
                             cache_frozen_features=cached)
        records[cached] = train(config, tmp_path, progress=False)
        assert len(encoded) == (2 if cached else 0)  # train and test images encoded once each
        encoded.clear()
        state = torch.load(checkpoint_path(tmp_path, config.run_id()), weights_only=True)["model"]
        heads[cached] = state["head.weight"], state["head.bias"]
        encoder_after = {k: v for k, v in state.items() if k.startswith("stages.")}
        assert all(torch.equal(v, torch.load(encoder, weights_only=True)["model"][k])
                   for k, v in encoder_after.items())  # the encoder stays frozen
    # the same batches in the same order; only the encoder's batch size differs (512 vs 64 images),
    # which may change float rounding in the last bits
    for a, b in zip(heads[True], heads[False]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    fast, plain = records[True], records[False]
    assert fast["run_id"] != plain["run_id"]  # the path is part of the config when not the default
    assert [h["train_loss"] for h in fast["history"]] == pytest.approx([h["train_loss"] for h in plain["history"]],
                                                                       rel=1e-5)
    assert fast["metrics"]["last"]["acc_all"] == plain["metrics"]["last"]["acc_all"]
    assert fast["metrics"]["alignment"] == pytest.approx(plain["metrics"]["alignment"], rel=1e-4)
    assert fast["history"][-1]["lr"] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 3 / 4)))


def test_stage_2_with_augmentation_trains_on_images(digits, tmp_path, monkeypatch):
    from amixup import engine

    calls = []
    monkeypatch.setattr(engine, "encode", lambda *a, **k: calls.append(1))
    torch.save({"model": build_model("vit", 2, 1, 28).state_dict()}, tmp_path / "enc.pt")
    config = make_config("coarse_to_fine_transfer", "smoke", dataset=digits, finetune_from=str(tmp_path / "enc.pt"),
                         device="cpu", experiment="t", flip=True, epochs=1)
    train(config, tmp_path, progress=False)
    assert calls == []  # augmented batches cannot be stored: the encoder runs every step


def test_docs_print_the_vit_parameter_counts():
    from amixup.records import REPO_ROOT

    readme = (REPO_ROOT / "docs" / "experiments.md").read_text()
    assert all(f"{count:,}" in readme for count in VIT_PARAMETERS.values())
