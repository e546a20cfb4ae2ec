"""The static (CUDA-graph-ready) training step against the eager engine, on the CPU.

On a CPU ``step_mode="static"`` runs the very code a CUDA graph captures, eagerly. It must give the
eager engine's record for the same seed: the same draws (pairings, lambdas, layers), the same
accuracies, lambda trajectory and test metrics, and losses equal up to float rounding (lambda and
the lr are tensors there, so two products replace the eager path's fused multiply-adds).
"""

import math

import pytest
import torch

from amixup.engine import train
from amixup.mixing import MixPolicy, resolve_spec
from amixup.models import build_model
from amixup.recipes import ABLATION_ROWS, make_config
from amixup.static_step import StaticStep

from test_engine import comparable

#: 500 images in batches of 128: three full batches and a last one of 116 (run eagerly).
SMOKE = dict(train_subset=500, test_subset=200, device="cpu", experiment="test")


def smoke(method="ce", **kw):
    return make_config("motivation", "smoke", method=method, **{**SMOKE, **kw})


def _accuracy_slack(record, flips: int) -> dict:
    """How far each accuracy of a record may move when ``flips`` predictions flip: a fraction of the training
    images, percent points of the test images overall and of each class group."""
    counts, groups = record["data"]["test_counts"], record["data"]["groups"]
    slack = {"train": flips / sum(record["data"]["train_counts"]), "all": 100 * flips / sum(counts)}
    for name, classes in groups.items():
        slack[name] = 100 * flips / max(1, sum(counts[c] for c in classes))
    return slack


def assert_same_record(eager, static, rel=1e-4, feature_atol=1e-3, metric_rel=1e-3, feature_rtol=1e-5, flips=2):
    """The same run through two step paths that round apart (two products where the eager path fuses a
    multiply-add; grouped against dense convolutions): not equal by construction, so losses agree to ``rel`` and
    every accuracy (and lambda, which follows the training accuracy, Eq. 6) up to ``flips`` predictions whose logit
    margin lies below the rounding. On an AMX Xeon none flips in these runs; other CPU kernels (CI's second pass,
    ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2) flipped one sample in 500 (docs/testing.md)."""
    a, b = comparable(eager), comparable(static)
    assert a["run_id"] == b["run_id"]
    slack = _accuracy_slack(a, flips)
    beta = a["config"]["beta"]
    for ha, hb in zip(a.pop("history"), b.pop("history")):
        la, lb = ha.pop("train_loss"), hb.pop("train_loss")
        assert math.isclose(la, lb, rel_tol=rel), (la, lb)
        assert ha.keys() == hb.keys() and ha["lr"] == hb["lr"] and ha["epoch"] == hb["epoch"]
        for key in ("train_acc_clean", "train_acc_mixed"):
            assert (ha[key] is None) == (hb[key] is None) and abs((ha[key] or 0) - (hb[key] or 0)) <= slack["train"]
        assert (ha["lambda"] is None) == (hb["lambda"] is None)
        assert abs((ha["lambda"] or 0) - (hb["lambda"] or 0)) <= beta * slack["train"] + 1e-12
        for key in (k for k in ha if k.startswith("test_")):
            assert abs(ha[key] - hb[key]) <= slack[key.removeprefix("test_")] + 1e-9, key
    a["config"].pop("step_mode"), b["config"].pop("step_mode")
    a.pop("lambda_trajectory"), b.pop("lambda_trajectory")  # the history's lambdas, compared above
    for key in ("alignment", "uniformity", "uniformity_k1"):
        va, vb = a["metrics"].pop(key, None), b["metrics"].pop(key, None)
        assert va == pytest.approx(vb, rel=metric_rel, abs=1e-5)
    for which in ("last", "best"):
        ma, mb = a["metrics"].pop(which), b["metrics"].pop(which)
        assert ma.keys() == mb.keys()
        for key in ma:
            tol = 0 if key == "epoch" else slack[key.removeprefix("acc_")] + 1e-9
            if which == "best" and ma["epoch"] != mb["epoch"]:
                tol = max(tol, slack["all"])  # near-equal epochs may swap as the best one
            assert abs(ma[key] - mb[key]) <= tol, (which, key)
    pa, pb = a["metrics"].pop("per_class_acc"), b["metrics"].pop("per_class_acc")
    counts = a["data"]["test_counts"]
    assert len(pa) == len(pb) and all(abs(x - y) <= 100 * flips / max(1, n) + 1e-9 for x, y, n in zip(pa, pb, counts))
    features = (a.pop("features", None), b.pop("features", None))
    assert a == b
    if features[0] is not None:
        assert torch.allclose(torch.tensor(features[0]["test"]), torch.tensor(features[1]["test"]), atol=feature_atol,
                              rtol=feature_rtol)


def assert_close_history(reference, fused):
    """Histories of the same run through differently fused kernels (torch.compile): they round differently, so a
    near-tied prediction may flip; losses agree to 1e-3, accuracies and lambda to a sample or two of 500."""
    assert len(reference["history"]) == len(fused["history"])
    for he, hc in zip(reference["history"], fused["history"]):
        assert hc["train_loss"] == pytest.approx(he["train_loss"], rel=1e-3)
        for key in ("train_acc_clean", "train_acc_mixed", "lambda"):
            assert hc[key] == pytest.approx(he[key], abs=0.005), key
        assert hc["test_all"] == pytest.approx(he["test_all"], abs=1.0)


CASES = {
    "ce": dict(method="ce"),
    "mixup": dict(method="mixup"),
    "manifold_mixup": dict(method="manifold_mixup"),
    "am_mixup": dict(method="am_mixup", beta=1.5, epochs=3),  # lambda falls below 0.5: labels flip
    "fixed_0.3": dict(method="am_mixup", rate="fixed", fixed_lambda=0.3),  # one-sided label of the partner
    # lambda a hair below 0.5 (0.5 in float32): Eq. 5 labels the partner, decided in float64 as the eager path
    "fixed_below_half": dict(method="am_mixup", rate="fixed", fixed_lambda=0.5 - 1e-8),
    "row1_clean_forward": dict(method="am_mixup", **ABLATION_ROWS[1]),  # drawn layer, extra clean forward
    "bf16": dict(method="am_mixup", precision="bf16"),
}


@pytest.mark.kernels
@pytest.mark.parametrize("case", list(CASES))
def test_static_step_gives_the_eager_record(case, data_env, tmp_path):
    eager = train(smoke(step_mode="eager", **CASES[case]), tmp_path / "eager", progress=False)
    static = train(smoke(step_mode="static", **CASES[case]), tmp_path / "static", progress=False)
    assert eager["environment"]["step"] == "eager" and static["environment"]["step"] == "static_eager"
    bf16 = case == "bf16"  # bf16 rounding: one ulp of a feature is 1/128 of its size
    assert_same_record(eager, static, rel=1e-2 if bf16 else 1e-4, feature_atol=2e-2 if bf16 else 1e-3)
    if case == "am_mixup":
        assert min(static["lambda_trajectory"]) < 0.5  # the flip branch was trained


def test_auto_is_eager_on_a_cpu(data_env, tmp_path):
    rec = train(smoke("am_mixup"), tmp_path, progress=False)
    assert rec["config"]["step_mode"] == "auto" and rec["environment"]["step"] == "eager"


def test_the_static_step_trains_through_the_engines_step_and_policy():
    """One step, written once: the static step's step is a TrainStep over the same policy, and its epoch draws
    are the policy's batch draws in the eager engine's order."""
    from amixup.step import TrainStep

    spec = resolve_spec("manifold_mixup")
    model = build_model("cnn_vis2d", 4, 3, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    policy = MixPolicy(spec, eligible_layers=model.manifold_layers, last_layer_index=model.last_layer, seed=5,
                       pairing_seed=7)
    step = StaticStep(model, policy, optimizer, batch_size=4, sample_shape=(3, 32, 32), device="cpu",
                      precision="fp32")
    assert isinstance(step.step, TrainStep) and step.step.policy is policy and step.step.update == step._sgd_update
    twin = MixPolicy(spec, eligible_layers=model.manifold_layers, last_layer_index=model.last_layer, seed=5,
                     pairing_seed=7)
    batches = [(torch.randn(n, 3, 32, 32), torch.randint(0, 4, (n,))) for n in (4, 4, 3)]
    step.run_epoch(batches, [4, 4, 3], lr=0.1)
    for n in (4, 4, 3):
        twin.draw_batch(n)
    assert policy.rng.bit_generator.state == twin.rng.bit_generator.state  # lambdas and layers: the same draws
    assert torch.equal(policy.pairing.get_state(), twin.pairing.get_state())  # pairings too
    assert step.sums.n_seen == 11


def test_the_sgd_update_is_torch_sgd():
    torch.manual_seed(0)
    model = build_model("cnn_vis2d", 4, 3, 32)
    twin = build_model("cnn_vis2d", 4, 3, 32)
    twin.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    ref = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    step = StaticStep(model, MixPolicy(resolve_spec("ce")), opt, batch_size=8, sample_shape=(3, 32, 32),
                      device="cpu", precision="fp32")
    step.lr.fill_(0.05)
    for _ in range(3):  # the first step creates the momentum buffers, the next ones use them
        grads = [torch.randn_like(p) for p in model.parameters()]
        for p, q, g in zip(model.parameters(), twin.parameters(), grads):
            p.grad, q.grad = g.clone(), g.clone()
        step._sgd_update()
        ref.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)  # p - lr * buf: two roundings, not one fma
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"], rtol=1e-6, atol=1e-7)


def test_static_mode_where_it_cannot_apply_is_a_clear_error(data_env, tmp_path):
    with pytest.raises(ValueError, match="step_mode='static' needs optimizer='sgd'"):
        smoke("am_mixup", step_mode="static", optimizer="adamw", lr=1e-3)  # before any data is loaded
    auto = train(smoke("am_mixup", optimizer="adamw", lr=1e-3), tmp_path, progress=False)
    assert auto["environment"]["step"] == "eager"


@pytest.mark.parametrize("mode", ["eager", "static"])
def test_checkpoints_every_k_epochs_and_a_kill_between_them_resumes_to_the_same_record(mode, data_env, tmp_path):
    config = smoke("am_mixup", epochs=5, step_mode=mode, checkpoint_every=2)
    reference = train(config, tmp_path / "ref", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / f"{config.run_id()}.pt"
    saved = []

    def kill_after_epoch_3(epoch, entry):
        saved.append(torch.load(ckpt, weights_only=True)["epoch"] if ckpt.exists() else None)
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_epoch_end=kill_after_epoch_3)
    assert saved == [None, 2, 2]  # every 2 epochs: epoch 3 was trained but not saved
    epochs_run = []
    resumed = train(config, tmp_path / "run", progress=False, on_epoch_end=lambda e, _: epochs_run.append(e))
    assert epochs_run == [3, 4, 5]  # epoch 3 again, from the epoch-2 checkpoint
    assert torch.load(ckpt, weights_only=True)["epoch"] == 5  # the last epoch is always saved
    assert comparable(resumed) == comparable(reference)


def test_every_mixing_layer_warms_up_eagerly_before_its_graph_is_captured():
    """A layer first seen after the warm-up of others still runs eagerly first (lazy initialisation stays
    outside the capture)."""
    from amixup.static_step import WARMUP_STEPS

    model = build_model("cnn_vis2d", 4, 3, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = StaticStep(model, MixPolicy(resolve_spec("manifold_mixup")), optimizer, batch_size=4,
                      sample_shape=(3, 32, 32), device="cpu", precision="fp32")
    for p in model.parameters():  # momentum buffers exist: only the per-layer count decides
        optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    step.warmup_steps[0] = WARMUP_STEPS
    assert not step.warming_up(0) and step.warming_up(1) and step.warming_up(2)
    step.warmup_steps[2] = WARMUP_STEPS - 1
    assert step.warming_up(2)
    del optimizer.state[next(model.parameters())]["momentum_buffer"]
    assert step.warming_up(0)  # no capture before SGD's buffers exist
