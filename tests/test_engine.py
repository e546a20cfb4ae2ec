"""End-to-end runs of the engine on a few hundred images (real offline data when present)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from amixup import engine
from amixup.checkpoints import checkpoint_path
from amixup.engine import train
from amixup.experiments import missing_report
from amixup.recipes import ABLATION_ROWS, make_config
from amixup.records import read_record, write_record

SMOKE = dict(train_subset=400, test_subset=200)


def smoke(method="ce", **kw):
    return make_config("motivation", "smoke", method=method, experiment="test", **{**SMOKE, **kw})


def comparable(record):
    """A record without wall-clock fields."""
    rec = json.loads(json.dumps(record))
    for key in ("seconds", "environment", "git"):
        rec.pop(key)
    rec["data"].pop("source")  # "archive ..." on the first decode, "cache ... of archive ..." after
    for h in rec["history"]:
        h.pop("seconds")
    return rec


def crash_after(n):
    """An ``on_epoch_end`` that interrupts the run after epoch ``n`` (its checkpoint saved)."""
    def crash(epoch, entry):
        if epoch == n:
            raise KeyboardInterrupt
    return crash


@pytest.mark.parametrize("method", ["ce", "mixup", "manifold_mixup", "am_mixup"])
def test_smoke_run_of_each_method_writes_a_full_record(method, data_env, tmp_path):
    config = smoke(method)
    rec = train(config, tmp_path, progress=False)
    path = tmp_path / "test" / f"{config.run_id()}.json"
    assert read_record(path) == json.loads(json.dumps(rec))
    assert rec["config"]["method"] == method and rec["seed"] == 0
    assert len(rec["history"]) == config.epochs == 2
    m = rec["metrics"]
    assert set(m["last"]) == {"acc_all", "acc_many", "acc_median", "acc_few"}
    assert set(m["best"]) == {"epoch", "acc_all", "acc_many", "acc_median", "acc_few"}
    assert 0 <= m["last"]["acc_all"] <= 100 and m["alignment"] > 0 and m["uniformity"] > 0
    assert rec["data"]["full_train_counts"] == ([5000, 854, 146, 25] if data_env["kind"] == "real" else [250, 42, 7, 1])
    assert rec["data"]["groups"] == {"many": [0], "median": [1], "few": [2, 3]}
    assert len(rec["features"]["test"]) == len(rec["features"]["labels"]) == sum(rec["data"]["test_counts"])
    assert len(rec["features"]["test"][0]) == 2 and len(rec["features"]["head_weight"]) == 4
    assert rec["environment"]["device"] == "cpu" and rec["environment"]["torch"] == torch.__version__
    assert "commit" in rec["git"] and rec["seconds"] > 0
    if method == "am_mixup":
        assert rec["lambda_trajectory"][0] == 1.0  # starts unmixed
        acc = rec["history"][0]["train_acc_clean"]
        assert rec["lambda_trajectory"][1] == pytest.approx(torch.tensor(-0.34 * acc).exp().item())
    else:
        assert rec["lambda_trajectory"] == [None, None]


@pytest.mark.parametrize("row", sorted(ABLATION_ROWS))
def test_every_table7_row_trains(row, data_env, tmp_path):
    config = smoke("am_mixup", epochs=2, **ABLATION_ROWS[row])
    rec = train(config, tmp_path, progress=False)
    assert rec["config"]["rate"] == ABLATION_ROWS[row]["rate"]
    if ABLATION_ROWS[row]["rate"] == "am":  # clean accuracy drives Eq. 6 whatever the mixing layer
        assert rec["history"][0]["train_acc_clean"] is not None
        assert rec["lambda_trajectory"][0] == 1.0 and rec["lambda_trajectory"][1] < 1.0


def test_the_ldam_drw_control_trains_with_its_normalisation_and_its_images(data_env, tmp_path, monkeypatch):
    from amixup import experiments
    from amixup.recipes import LDAM_DRW_NORMALIZATION

    config = experiments.ldam_drw_control_configs("smoke", device="cpu", epochs=1, **SMOKE)[0]
    seen = []
    loader = engine.TensorLoader

    def spy(*args, **kwargs):
        seen.append((kwargs["train"], kwargs["mean"], kwargs["std"]))
        return loader(*args, **kwargs)

    monkeypatch.setattr(engine, "TensorLoader", spy)
    rec = train(config, tmp_path, progress=False)
    assert {(t, tuple(m), tuple(s)) for t, m, s in seen} == {
        (t, tuple(LDAM_DRW_NORMALIZATION["mean"]), tuple(LDAM_DRW_NORMALIZATION["std"])) for t in (True, False)}
    assert rec["config"]["experiment"] == "ldam_drw_control" and rec["config"]["longtail_selection"] == "ldam_drw"
    full = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] if data_env["kind"] == "real" else None
    assert full is None or rec["data"]["full_train_counts"] == full
    ours = engine.load_data(make_config("cifar_lt", "smoke", dataset="cifar10_lt", imb_factor=100, **SMOKE))[0]
    theirs = engine.load_data(config)[0]
    assert theirs.counts() == ours.counts() and not torch.equal(theirs.images, ours.images)


def test_same_seed_same_record_other_seed_differs(data_env, tmp_path):
    a = train(smoke("am_mixup"), tmp_path / "a", progress=False)
    b = train(smoke("am_mixup"), tmp_path / "b", progress=False)
    assert comparable(a) == comparable(b)
    c = train(smoke("am_mixup", seed=1), tmp_path / "c", progress=False)
    assert c["metrics"]["alignment"] != a["metrics"]["alignment"]


def test_existing_record_is_returned_not_retrained(data_env, tmp_path, monkeypatch):
    config = smoke("ce", epochs=1)
    first = train(config, tmp_path, progress=False)
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("a finished run was retrained"))
    assert train(config, tmp_path, progress=False) == json.loads(json.dumps(first))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_record(first, engine.record_path(config, tmp_path))


@pytest.mark.kernels  # exact: the same operations in the same order on the same kernels
def test_interrupted_run_resumes_to_the_same_record(data_env, tmp_path):
    config = smoke("am_mixup", epochs=3)
    reference = train(config, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_epoch_end=crash_after(2))
    assert not engine.record_path(config, tmp_path / "run").exists()
    report = missing_report([config], tmp_path / "run")
    assert report["status"].tolist() == ["running or interrupted: 2 of 3 epochs done (resumes from its checkpoint)"]
    epochs_run = []
    resumed = train(config, tmp_path / "run", progress=False, on_epoch_end=lambda e, _: epochs_run.append(e))
    assert epochs_run == [3]
    assert comparable(resumed) == comparable(reference)
    assert missing_report([config], tmp_path / "run").empty


@pytest.mark.kernels  # exact: the same operations in the same order on the same kernels
def test_interrupted_vit_run_resumes_to_the_same_record(data_env, tmp_path):
    # the ViT's dropout draws from torch's global RNG: the checkpoint keeps its state
    config = make_config("coarse_to_fine", "smoke", dataset="cifar10_coarse", method="ce", experiment="test",
                         train_subset=128, test_subset=64)
    reference = train(config, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_epoch_end=crash_after(1))
    resumed = train(config, tmp_path / "run", progress=False)
    assert comparable(resumed) == comparable(reference)


def test_a_checkpoint_without_rng_or_world_size_still_resumes(data_env, tmp_path):
    config = smoke("mixup", epochs=2)
    reference = train(config, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_epoch_end=crash_after(1))
    ckpt = checkpoint_path(tmp_path / "run", config.run_id())
    state = torch.load(ckpt, weights_only=True)
    assert state["world_size"] == 1 and len(state["torch_rng"]) == 1
    del state["world_size"], state["torch_rng"]  # as written before they were kept
    torch.save(state, ckpt)
    assert comparable(train(config, tmp_path / "run", progress=False)) == comparable(reference)


def test_finetune_from_needs_a_finished_run_and_says_so_before_training(data_env, tmp_path, monkeypatch):
    coarse = make_config("motivation", "smoke", dataset="mini_cifar_coarse", method="ce", experiment="test",
                         **SMOKE)
    with pytest.raises(KeyboardInterrupt):
        train(coarse, tmp_path, progress=False, on_epoch_end=crash_after(1))
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("training started"))

    def fine(source, **kw):
        return make_config("motivation_finetune", "smoke", dataset="mini_cifar", experiment="test",
                           finetune_from=source, **SMOKE, **kw)

    unfinished = rf"finetune_from='{coarse.run_id()}': that run is not finished .* at epoch 1 "
    with pytest.raises(ValueError, match=unfinished):
        train(fine(coarse.run_id()), tmp_path, progress=False)
    with pytest.raises(ValueError, match="finetune_from='test-nothing': there is no such file and no checkpoint"):
        train(fine("test-nothing"), tmp_path, progress=False)


def test_missing_report_names_runs_whose_data_is_not_here(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    config = make_config("cifar_lt", "smoke", dataset="cifar100_lt", imb_factor=100, experiment="test")
    report = missing_report([config, config], tmp_path)
    assert report["run_id"].tolist() == [config.run_id()] * 2 and (report["epochs_done"] == 0).all()
    assert report["status"].iloc[0] == "data not found: dataset 'cifar100' not found"
    assert missing_report([config], tmp_path, check_data=False)["status"].tolist() == ["not started"]


@pytest.mark.kernels  # exact: the same operations in the same order on the same kernels
def test_killed_process_resumes_from_its_checkpoint(data_env, tmp_path):
    config = smoke("mixup", epochs=4)
    reference = train(config, tmp_path / "ref", progress=False)
    script = textwrap.dedent(f"""
        import time
        from amixup.config import RunConfig
        from amixup.engine import train
        config = RunConfig.from_dict({config.to_dict()!r})
        train(config, {str(tmp_path / 'run')!r}, progress=False,
              on_epoch_end=lambda e, _: print('epoch', e, flush=True) or (e == 2 and time.sleep(600)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy(), cwd=Path(__file__).resolve().parents[1])
    try:
        for line in proc.stdout:
            if line.strip() == "epoch 2":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    ckpt = tmp_path / "run" / "checkpoints" / f"{config.run_id()}.pt"
    assert ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = train(config, tmp_path / "run", progress=False)
    assert comparable(resumed) == comparable(reference)


def test_bad_parameters_fail_before_any_data_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("training started"))
    bad = smoke("ce")
    bad.beta = -1.0
    with pytest.raises(ValueError, match="beta must be >= 0"):
        train(bad, tmp_path, progress=False)
    bad = smoke("ce")
    bad.method = "mixupp"
    with pytest.raises(ValueError, match="method must be one of"):
        train(bad, tmp_path, progress=False)


def test_coarse_to_fine_reuses_a_frozen_encoder(data_env, tmp_path):
    coarse = make_config("motivation", "smoke", dataset="mini_cifar_coarse", method="am_mixup",
                         experiment="test", **SMOKE)
    rec_coarse = train(coarse, tmp_path, progress=False)
    assert len(rec_coarse["features"]["head_weight"]) == 2
    fine = make_config("motivation", "smoke", dataset="mini_cifar", method="ce", experiment="test",
                       finetune_from=coarse.run_id(), freeze_encoder=True, **SMOKE)
    rec_fine = train(fine, tmp_path, progress=False)
    assert len(rec_fine["features"]["head_weight"]) == 4
    assert rec_fine["finetuned_from"].endswith(f"{coarse.run_id()}.pt")
    # frozen encoder: weights and BatchNorm statistics are those of the coarse run, the head is new
    ckpt = tmp_path / "checkpoints"
    before = torch.load(ckpt / f"{coarse.run_id()}.pt", weights_only=True)["model"]
    after = torch.load(ckpt / f"{fine.run_id()}.pt", weights_only=True)["model"]
    stages = [k for k in before if k.startswith("stages.")]
    assert stages and all(torch.equal(before[k], after[k]) for k in stages)
    assert before["head.weight"].shape == (2, 2) and after["head.weight"].shape == (4, 2)


def test_bf16_precision_trains_and_is_recorded(data_env, tmp_path):
    fp32 = smoke("am_mixup", epochs=1)
    bf16 = smoke("am_mixup", epochs=1, precision="bf16")
    assert bf16.run_id() != fp32.run_id()
    rec = train(bf16, tmp_path, progress=False)
    assert rec["config"]["precision"] == "bf16" and 0 <= rec["metrics"]["last"]["acc_all"] <= 100
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\]"):
        smoke("ce", precision="fp16")


def test_a_tree_without_git_reports_the_commit_it_was_told(tmp_path, monkeypatch):
    from amixup import records

    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)  # no .git here
    monkeypatch.delenv("AMIXUP_COMMIT", raising=False)
    assert records.git_commit() == {"commit": None, "dirty": None}
    monkeypatch.setenv("AMIXUP_COMMIT", "0123abc")
    assert records.git_commit() == {"commit": "0123abc", "dirty": None, "from": "AMIXUP_COMMIT"}
