"""Packed runs (amixup.packing): K runs in one network give each run the record it gets alone.

The packed network is the K networks side by side along the channels, so its forward, gradients and
SGD update are the runs' own: exactly in float64, up to the order of float sums in float32. Training
K = 2 packed runs must give each the record it gets alone (same draws, accuracies, lambda trajectory
and test metrics; losses to float rounding), resume from its own checkpoints, and interchange
checkpoints with runs trained alone.
"""

import math
import shutil

import pytest
import torch
import torch.nn as nn

from amixup.augment import GPU_CHUNK_BYTES, TensorLoader
from amixup.config import RunConfig
from amixup.engine import train, train_packed
from amixup.mixing import MixPolicy, mixup, resolve_spec
from amixup.models import build_model
from amixup.packing import (PackedLinear, PackedStep, check_packable, checkpoint_states, cross_entropy_per_run, mix_packed,
                            pack_batches, pack_groups, pack_inputs, pack_models, pack_optimizer_state, pack_state,
                            unpack_optimizer_state, unpack_state)
from amixup.recipes import ABLATION_ROWS, make_config

from test_engine import comparable
from test_static_step import assert_close_history, assert_same_record

SMOKE = dict(train_subset=500, test_subset=200, device="cpu", experiment="test")


def smoke(method="ce", seed=0, **kw):
    return make_config("motivation", "smoke", method=method, seed=seed, **{**SMOKE, **kw})


def _models(name, packs, dtype=None):
    models = []
    for seed in range(packs):
        torch.manual_seed(seed)
        models.append(build_model(name, 10, 3, 32).to(dtype or torch.get_default_dtype()))
    return models


@pytest.mark.parametrize("name", ["resnet32", "vgg11", "cnn_vis2d"])
def test_the_packed_network_is_the_runs_side_by_side_exactly_in_float64(name):
    models = _models(name, 3, torch.float64)
    packed = pack_models(models)
    xs = [torch.randn(6, 3, 32, 32, dtype=torch.float64) for _ in models]
    ys = torch.randint(0, 10, (3, 6))
    logits = packed(pack_inputs(xs))
    cross_entropy_per_run(logits, ys).sum().backward()
    alone = [m(x) for m, x in zip(models, xs)]
    for m, out, y in zip(models, alone, ys):
        torch.nn.functional.cross_entropy(out, y).backward()
    torch.testing.assert_close(logits, torch.cat(alone, 1), rtol=1e-12, atol=1e-12)
    grads = unpack_state({n: p.grad for n, p in packed.named_parameters()}, 3)
    buffers = unpack_state(packed.state_dict(), 3)  # BatchNorm running statistics of each run's own batch
    for m, g, b in zip(models, grads, buffers):
        for n, p in m.named_parameters():
            torch.testing.assert_close(g[n], p.grad, rtol=1e-10, atol=1e-12)
        for n, v in m.state_dict().items():
            torch.testing.assert_close(b[n], v, rtol=1e-12, atol=1e-12)


def test_the_packed_network_keeps_the_runs_layout_and_device():
    models = [m.to(memory_format=torch.channels_last) for m in _models("resnet32", 2)]
    packed = pack_models(models)
    conv = packed.stages[0][0].weight
    assert conv.shape == (32, 3, 3, 3) and conv.is_contiguous(memory_format=torch.channels_last)
    assert not pack_models(_models("resnet32", 2)).stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_pack_and_unpack_are_inverse():
    models = _models("resnet32", 2)
    states = unpack_state(pack_models(models).state_dict(), 2)
    for m, s in zip(models, states):
        assert s.keys() == m.state_dict().keys()
        assert all(torch.equal(s[k], v) for k, v in m.state_dict().items())
    opt = [{"state": {0: {"momentum_buffer": torch.randn(4, 3)}, 1: {"momentum_buffer": torch.randn(2)}},
            "param_groups": [{"lr": 0.1, "params": [0, 1]}]} for _ in range(3)]
    back = unpack_optimizer_state(pack_optimizer_state(opt), 3)
    for a, b in zip(opt, back):
        assert a["param_groups"] == b["param_groups"]
        assert all(torch.equal(a["state"][i]["momentum_buffer"], b["state"][i]["momentum_buffer"]) for i in (0, 1))
    assert pack_state([{"w": torch.ones(2)}, {"w": torch.zeros(2)}])["w"].tolist() == [1, 1, 0, 0]


def test_checkpoint_states_are_each_runs_own_state_on_the_host_in_its_own_memory():
    """What a packed run's checkpoint holds: its own model (the runs' layout kept) and momentum, on the host, each
    tensor owning exactly its memory (torch.save writes a view's whole storage: K times the run's size)."""
    models = [m.to(memory_format=torch.channels_last) for m in _models("resnet32", 3)]
    packed = pack_models(models)
    opt = torch.optim.SGD(packed.parameters(), lr=0.1, momentum=0.9)
    for p in packed.parameters():
        opt.state[p]["momentum_buffer"] = torch.randn_like(p)
    model_states, optimizer_states = checkpoint_states(packed, opt, 3)
    expected = unpack_optimizer_state(opt.state_dict(), 3)
    for m, state, opt_state, want in zip(models, model_states, optimizer_states, expected):
        assert state.keys() == m.state_dict().keys()
        for k, v in m.state_dict().items():
            assert torch.equal(state[k], v) and state[k].stride() == v.stride() and state[k].device.type == "cpu"
        assert opt_state["param_groups"] == want["param_groups"]
        for i, values in want["state"].items():
            assert torch.equal(opt_state["state"][i]["momentum_buffer"], values["momentum_buffer"])
        tensors = list(state.values()) + [v["momentum_buffer"] for v in opt_state["state"].values()]
        assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in tensors)


def _loaders(packs, **kw):
    images = torch.randint(0, 256, (21, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(21) % 5
    common = dict(device="cpu", mean=(125.0, 120.0, 110.0), std=(60.0, 61.0, 62.0), train=True, **kw)
    return [TensorLoader(images, labels, 8, generator=torch.Generator().manual_seed(10 + k), **common)
            for k in range(packs)]


@pytest.mark.parametrize("chunk", ["per_batch", "two_batches", "gpu"])
@pytest.mark.parametrize("augmentation", [dict(crop_padding=4, flip=True), dict(crop_padding=2),
                                          dict(augmentation="resized_crop_flip", crop_size=8, flip=True),
                                          dict(augmentation="resized_crop_flip", crop_size=8, flip=True,
                                               color_jitter=0.4), {}])
def test_packed_batches_are_the_loaders_own_batches_augmented_together(augmentation, chunk):
    """pack_batches gives each run exactly the batch (order, crop, flip, normalisation) its own loader gives
    batch by batch, the last smaller batch included, whether it augments the pack's batches one at a time or
    several together, and leaves every generator where the run alone leaves it."""
    alone = _loaders(3, chunk_bytes=0, **augmentation)
    chunk_bytes = {"per_batch": 0, "two_batches": 2 * 3 * 8 * alone[0].image_bytes(), "gpu": GPU_CHUNK_BYTES}[chunk]
    packed = _loaders(3, chunk_bytes=chunk_bytes, **augmentation)
    for _ in range(2):  # two epochs: the generators go on from where the first left them
        expected = list(zip(*alone))
        got = list(pack_batches(packed))
        assert [y.shape for _, y in got] == [(3, 8), (3, 8), (3, 5)]
        for (x, y), batches in zip(got, expected):
            assert torch.equal(x, pack_inputs([bx for bx, _ in batches]))
            assert torch.equal(y, torch.stack([by for _, by in batches]))
            assert x.is_contiguous(memory_format=torch.channels_last)
    for a, p in zip(alone, packed):
        assert torch.equal(a.generator.get_state(), p.generator.get_state())


def test_pack_batches_refuses_loaders_that_differ():
    first, second = _loaders(2, crop_padding=4)
    second.flip = True
    with pytest.raises(ValueError, match="same tensors with the same settings"):
        next(pack_batches([first, second]))
    other = TensorLoader(first.images.clone(), first.labels, 8, device="cpu", mean=(125.0, 120.0, 110.0),
                         std=(60.0, 61.0, 62.0), train=True, crop_padding=4, generator=torch.Generator())
    with pytest.raises(ValueError, match="same tensors"):
        next(pack_batches([first, other]))


def test_mix_packed_is_eq4_per_run_with_its_own_pairing_and_lambda():
    h = [torch.arange(12.0).view(3, 2, 2) + 100 * k for k in range(2)]  # run k: 3 samples, 2 channels, 2 wide
    perm = torch.tensor([[1, 2, 0], [2, 0, 1]])
    lam = torch.tensor([0.75, 0.25])
    mixed = mix_packed(pack_inputs(h), perm, lam, 1 - lam).unflatten(1, (2, 2))
    for k in range(2):
        expected = mixup(h[k], torch.zeros(3), float(lam[k]), perm[k])[0]
        torch.testing.assert_close(mixed[:, k], expected)
    # by hand: run 1, sample 0 = 0.25 * h1[0] + 0.75 * h1[2]
    assert mixed[0, 1, 0, 0].item() == pytest.approx(0.25 * 100 + 0.75 * 108)
    identity = mix_packed(pack_inputs(h), perm, torch.ones(2), torch.zeros(2))
    assert torch.equal(identity, pack_inputs(h))  # weights (1, 0): the runs that did not draw this layer


def test_cross_entropy_per_run_is_each_runs_mean():
    logits = torch.randn(5, 2 * 4)
    y = torch.randint(0, 4, (2, 5))
    per_run = cross_entropy_per_run(logits, y)
    for k in range(2):
        assert per_run[k].item() == pytest.approx(torch.nn.functional.cross_entropy(logits[:, 4 * k:4 * k + 4], y[k]).item())


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_a_packed_step_trains_each_run_as_alone(float64_default):
    """One step of the packed ResNet32 (mixing, one-sided labels, momentum SGD) moves each run's weights as
    its own step does. In float64: in float32 a ResNet32 on 8 random images amplifies the rounding of a
    different summation order to 1e-3 of a gradient; the rounding of lambda to float32 is what is left."""
    models = _models("resnet32", 2)
    twins = _models("resnet32", 2)
    packed = pack_models(models)
    opt = torch.optim.SGD(packed.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    policies = [MixPolicy(resolve_spec("am_mixup"), last_layer_index=packed.last_layer, seed=s) for s in range(2)]
    step = PackedStep(packed, policies, opt, batch_size=8, sample_shape=(3, 32, 32), device="cpu",
                      precision="fp32", need_clean=True)
    xs = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    ys = [torch.randint(0, 10, (8,)) for _ in range(2)]
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    batches = [(pack_inputs(xs), torch.stack(ys))]
    loss_sum, correct, clean, n_seen, n_clean = step.run_epoch(batches, [8], [0.7, 0.3], 0.1, gens)
    assert n_seen == 8 and n_clean == [8, 8]
    for k, twin in enumerate(twins):
        opt_k = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        lam = [0.7, 0.3][k]
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(k))  # run k's pairing, drawn alone
        logits, _ = twin.forward_mixed(xs[k], twin.last_layer, lambda h: mixup(h, ys[k], lam, perm)[0])
        target = ys[k] if lam >= 0.5 else ys[k][perm]
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        opt_k.step()
        assert loss_sum[k].item() == pytest.approx(loss.item() * 8, rel=1e-6)
        assert correct[k].item() == (logits.argmax(1) == target).sum().item()
        after = unpack_state(packed.state_dict(), 2)[k]
        for name, value in twin.state_dict().items():
            torch.testing.assert_close(after[name], value, rtol=1e-6, atol=1e-8)


CASES = {
    "ce": dict(method="ce"),
    "mixup": dict(method="mixup"),
    "manifold_mixup": dict(method="manifold_mixup"),  # the runs draw different layers
    "am_mixup": dict(method="am_mixup", beta=1.5, epochs=3),  # lambda falls below 0.5 at its own pace per run
    "fixed_0.3": dict(method="am_mixup", rate="fixed", fixed_lambda=0.3),
    # lambda a hair below 0.5 (0.5 in float32): Eq. 5 labels the partner, decided in float64 as the eager path
    "fixed_below_half": dict(method="am_mixup", rate="fixed", fixed_lambda=0.5 - 1e-8),
    "row1_clean_forward": dict(method="am_mixup", **ABLATION_ROWS[1]),
    "bf16": dict(method="am_mixup", precision="bf16"),  # the throughput option (bf16 autocast)
}


@pytest.mark.kernels
@pytest.mark.parametrize("case", list(CASES))
def test_two_packed_runs_get_the_records_they_get_alone(case, data_env, tmp_path):
    configs = [smoke(seed=seed, **CASES[case]) for seed in (0, 1)]
    if case == "am_mixup":
        configs[1] = smoke(seed=1, **{**CASES[case], "beta": 0.5})  # packed runs may differ in beta
    packed = train_packed(configs, tmp_path / "packed", progress=False)
    for config, rec in zip(configs, packed):
        alone = train(config, tmp_path / "alone", progress=False)
        assert rec["environment"]["step"] == "packed_static_eager" and rec["environment"]["packs"] == 2
        if case == "bf16":  # bf16 features, as alone: grouped convolutions round apart by an ulp or two (1/128-1/64)
            assert_same_record(alone, rec, rel=1e-2, feature_atol=2e-2, feature_rtol=2 ** -6, metric_rel=1e-2)
        else:
            assert_same_record(alone, rec, feature_atol=1e-2)  # 2-D features of size ~5: 1e-4 of float rounding
    if case == "am_mixup":
        assert packed[0]["lambda_trajectory"] != packed[1]["lambda_trajectory"]
        assert min(packed[0]["lambda_trajectory"]) < 0.5


def test_a_compiled_pack_trains_each_run_as_alone(data_env, tmp_path):
    configs = [smoke("am_mixup", seed=seed, beta=1.5, epochs=3, compile_step=True) for seed in (0, 1)]
    packed = train_packed(configs, tmp_path / "packed", progress=False)
    for config, rec in zip(configs, packed):
        assert rec["environment"]["step"] == "packed_static_eager_compiled"
        alone = train(RunConfig.from_dict({**config.to_dict(), "compile_step": False, "step_mode": "eager"}),
                      tmp_path / "alone", progress=False)
        assert_close_history(alone, rec)
    assert min(packed[1]["lambda_trajectory"]) < 0.5


def test_a_killed_pack_resumes_to_the_same_records_and_a_run_can_go_on_alone(data_env, tmp_path):
    configs = [smoke("am_mixup", seed=seed, epochs=5, checkpoint_every=2) for seed in (0, 1)]
    reference = train_packed(configs, tmp_path / "ref", progress=False)
    seen = []

    def kill_after_epoch_3(run, epoch, entry):
        seen.append((run, epoch))
        if epoch == 3 and run == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_packed(configs, tmp_path / "run", progress=False, on_epoch_end=kill_after_epoch_3)
    assert seen[-2:] == [(0, 3), (1, 3)]
    shutil.copytree(tmp_path / "run", tmp_path / "alone")
    epochs = []
    resumed = train_packed(configs, tmp_path / "run", progress=False,
                           on_epoch_end=lambda run, epoch, entry: epochs.append((run, epoch)))
    assert epochs == [(0, 3), (1, 3), (0, 4), (1, 4), (0, 5), (1, 5)]  # from the epoch-2 checkpoints
    assert [comparable(r) for r in resumed] == [comparable(r) for r in reference]
    # a run of the killed pack goes on alone from its packed checkpoint
    epochs = []
    alone = train(configs[0], tmp_path / "alone", progress=False, on_epoch_end=lambda e, _: epochs.append(e))
    assert epochs == [3, 4, 5]
    assert_same_record(reference[0], alone, feature_atol=1e-2)


def test_runs_at_different_epochs_train_in_turn_and_finished_runs_are_read(data_env, tmp_path):
    configs = [smoke("mixup", seed=seed, epochs=3) for seed in (0, 1, 2)]
    first = train(configs[2], tmp_path, progress=False)
    partial = smoke("mixup", seed=1, epochs=3)

    def stop_at_1(epoch, entry):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(partial, tmp_path, progress=False, on_epoch_end=stop_at_1)
    epochs = []
    records = train_packed(configs, tmp_path, progress=False, on_epoch_end=lambda r, e, _: epochs.append((r, e)))
    assert epochs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]  # run 0 from the start, run 1 from its epoch 1
    assert comparable(records[2]) == comparable(first)  # read, not retrained
    assert [r["run_id"] for r in records] == [c.run_id() for c in configs]


def test_what_cannot_be_packed_is_a_clear_error():
    with pytest.raises(ValueError, match=r"differ only in .*these differ: \['method'\]"):
        check_packable([smoke("ce"), smoke("mixup", seed=1)])
    with pytest.raises(ValueError, match="distinct"):
        check_packable([smoke("ce"), smoke("ce")])
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        check_packable([smoke("ce", optimizer="adamw", lr=1e-3)])
    with pytest.raises(ValueError, match="module .* is a _DenseLayer"):
        check_packable([smoke("ce", model="densenet_bc")])
    with pytest.raises(ValueError, match="is a _PatchEmbedding"):
        check_packable([smoke("ce", model="vit")])


def test_pack_groups_packs_runs_that_differ_in_seed_or_beta_only():
    configs = [smoke("am_mixup", seed=s, beta=b) for b in (0.34, 1.0) for s in range(3)]
    configs += [smoke("ce", seed=s) for s in range(2)] + [smoke("ce", model="vit")]
    groups = pack_groups(configs, 4)
    assert [[(c.method, c.seed, c.beta) for c in g] for g in groups] == [
        [("am_mixup", 0, 0.34), ("am_mixup", 1, 0.34), ("am_mixup", 2, 0.34), ("am_mixup", 0, 1.0)],
        [("am_mixup", 1, 1.0), ("am_mixup", 2, 1.0)],
        [("ce", 0, 0.34), ("ce", 1, 0.34)],
        [("ce", 0, 0.34)],  # the ViT cannot be packed: alone
    ]
    assert groups[-1][0].model == "vit"
    assert [len(g) for g in pack_groups(configs, 1)] == [1] * len(configs)
    with pytest.raises(ValueError, match="pack must be an integer >= 1"):
        pack_groups(configs, 0)
    assert isinstance(configs[0], RunConfig) and math.isclose(configs[3].beta, 1.0)


def test_run_configs_packs_the_unfinished_runs_and_skips_those_without_data(data_env, tmp_path):
    from amixup.experiments import run_configs

    configs = [smoke("am_mixup", seed=seed) for seed in range(3)]
    missing = [make_config("cifar_lt", "smoke", dataset="cifar100_lt", imb_factor=100, method="ce", seed=s, device="cpu")
               for s in (0, 1)]
    records = run_configs(configs + missing, tmp_path, progress=False, pack=2)
    assert [r["run_id"] for r in records] == [c.run_id() for c in configs]  # cifar100_lt: no data here, skipped
    assert [r["environment"].get("packs") for r in records] == [2, 2, None]  # the third trained alone
    assert run_configs(configs, tmp_path, progress=False, pack=2) == records  # read back, nothing retrained


def test_a_packed_linear_layer_under_bf16_autocast_is_the_runs_linear_layers():
    """The bias goes into the product as nn.Linear's addmm does: in bf16 under autocast, the same bits (before,
    a float32 bias added after the product made every packed head float32, more precise than the runs alone)."""
    torch.manual_seed(0)
    alone = [nn.Linear(16, 4) for _ in range(3)]
    packed = PackedLinear(3, 16, 4)
    with torch.no_grad():
        packed.weight.copy_(torch.cat([lin.weight for lin in alone]))
        packed.bias.copy_(torch.cat([lin.bias for lin in alone]))
    x = torch.randn(8, 48)
    for precision in ("fp32", "bf16"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            expected = torch.cat([lin(x[:, 16 * k:16 * (k + 1)]) for k, lin in enumerate(alone)], 1)
            got = packed(x)
        assert got.dtype == expected.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        assert torch.equal(got, expected)


def test_bf16_mix_packed_mixes_each_run_as_mixup_alone():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(16, 2 * 8, 3, 3, generator=g).bfloat16()  # two runs of 8 channels
    perm = torch.stack([torch.randperm(16, generator=g) for _ in range(2)])
    lams = [0.6, 0.27]
    mixed = mix_packed(h, perm, torch.tensor(lams), torch.tensor([1 - lam for lam in lams]))
    for k, lam in enumerate(lams):
        run = h[:, 8 * k:8 * (k + 1)]
        assert torch.equal(mixed[:, 8 * k:8 * (k + 1)], mixup(run, torch.zeros(16, dtype=torch.long), lam, perm[k])[0])
