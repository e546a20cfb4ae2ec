"""torchrun on the CPU (gloo): two processes train like one process over the same global batches."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from amixup.engine import record_path, train
from amixup.recipes import make_config
from amixup.records import read_record

ROOT = Path(__file__).resolve().parents[1]


def torchrun(results_dir, overrides: dict, nproc: int = 2):
    method = overrides.pop("method")
    sets = [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v!r}")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "amixup", "train", "--recipe", "motivation", "--profile", "smoke", "--method", method,
           "--experiment", "ddp", "--results-dir", str(results_dir), *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def params(results_dir, config):
    ckpt = Path(results_dir) / "checkpoints" / f"{config.run_id()}.pt"
    return torch.load(ckpt, weights_only=True)["model"]


def test_one_ddp_step_equals_the_single_process_step_on_the_global_batch(data_env, tmp_path):
    # 128 training images and a global batch of 128: exactly one step; no augmentation, so both
    # sides see identical pixels; BatchNorm statistics come from the whole global batch.
    overrides = dict(train_subset=128, test_subset=64, epochs=1, batch_size=128, crop_padding=0, flip=False)
    config = make_config("motivation", "smoke", method="ce", experiment="ddp", **overrides)
    train(config, tmp_path / "single", progress=False)
    torchrun(tmp_path / "ddp", {"method": "ce", **{k: v for k, v in overrides.items()}})
    rec = read_record(record_path(config, tmp_path / "ddp"))
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo", "ranks_in_sync": True}
    single, multi = params(tmp_path / "single", config), params(tmp_path / "ddp", config)
    assert single.keys() == multi.keys()
    for key in single:
        assert torch.allclose(single[key].double(), multi[key].double(), rtol=1e-4, atol=1e-5), key


def test_ddp_ranks_stay_identical_over_several_mixed_steps(data_env, tmp_path):
    overrides = dict(train_subset=256, test_subset=64, epochs=2, batch_size=64)
    torchrun(tmp_path, {"method": "am_mixup", **overrides})
    config = make_config("motivation", "smoke", method="am_mixup", experiment="ddp", **overrides)
    rec = read_record(record_path(config, tmp_path))
    assert rec["distributed"]["ranks_in_sync"] is True
    assert rec["lambda_trajectory"][0] == 1.0 and rec["lambda_trajectory"][1] < 1.0
    assert len(rec["history"]) == 2 and rec["history"][-1]["test_all"] is not None
