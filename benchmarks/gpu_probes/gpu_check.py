"""GPU check 1: the static step (CUDA graphs) against eager on the GPU, solo timings, MPS concurrency.

python benchmarks/gpu_probes/gpu_check.py PHASE OUTDIR [--device cuda] [--tiny]
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import torch

from amixup.engine import train
from amixup.recipes import make_config

phase, outdir = sys.argv[1], sys.argv[2]
device = "cuda" if "--cpu" not in sys.argv else "cpu"
tiny = "--tiny" in sys.argv
os.makedirs(outdir, exist_ok=True)


def cfg(method="am_mixup", epochs=6, seed=0, **kw):
    extra = dict(train_subset=600, test_subset=300) if tiny else {}
    return make_config("cifar_lt", "paper", dataset="cifar10_lt", imb_factor=100, method=method, epochs=epochs,
                       milestones=(160, 180), warmup_epochs=1 if tiny else 5, seed=seed, device=device, experiment="gpucheck",
                       **extra, **kw)


def summary(rec, wall):
    h = rec["history"]
    steps = [b["seconds"] - a["seconds"] for a, b in zip(h, h[1:])]
    steps.sort()
    return {"step": rec["environment"]["step"], "wall": round(wall, 2), "first_epoch": round(h[0]["seconds"], 3),
            "median_epoch": round(steps[len(steps) // 2], 4) if steps else None,
            "train_loss": [round(e["train_loss"], 5) for e in h], "train_acc": [e["train_acc_mixed"] for e in h],
            "test_all": [e.get("test_all") for e in h], "lambda": rec["lambda_trajectory"],
            "final": rec["metrics"]["last"]["acc_all"]}


def timed(config):
    t = time.perf_counter()
    rec = train(config, tempfile.mkdtemp(), progress=False)
    return summary(rec, time.perf_counter() - t)


out = {"phase": phase, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
       "torch": torch.__version__}
try:
    if phase == "correct":
        epochs = 2 if tiny else 6
        for method in ("am_mixup", "manifold_mixup", "mixup", "ce"):
            for mode in ("eager", "static"):
                out[f"{method}/{mode}"] = timed(cfg(method, epochs=epochs, step_mode=mode))
                print(method, mode, out[f"{method}/{mode}"], flush=True)
        out["row1/static"] = timed(cfg("am_mixup", epochs=epochs, step_mode="static", rate="am", one_sided=False,
                                       last_layer=False))
        print("row1", out["row1/static"], flush=True)
    elif phase == "solo":
        epochs = 3 if tiny else int(os.environ.get("SOLO_EPOCHS", "20"))
        variants = {
            "static": dict(step_mode="static"),
            "static_eval2048_ckpt_end": dict(step_mode="static", eval_batch_size=2048, checkpoint_every=1000),
            "static_bf16": dict(step_mode="static", precision="bf16"),
            "static_manifold": dict(step_mode="static"),
        }
        for name, kw in variants.items():
            method = "manifold_mixup" if "manifold" in name else "am_mixup"
            out[name] = timed(cfg(method, epochs=epochs, **kw))
            print(name, {k: v for k, v in out[name].items() if k not in ("train_loss", "train_acc", "lambda")},
                  flush=True)
    elif phase == "mps":
        k = int(os.environ.get("MPS_K", "8"))
        epochs = 3 if tiny else int(os.environ.get("MPS_EPOCHS", "10"))
        procs = []
        t = time.perf_counter()
        for seed in range(k):
            c = cfg("am_mixup", epochs=epochs, seed=seed, step_mode=os.environ.get("MPS_MODE", "static"))
            code = (f"import json,sys; from amixup.config import RunConfig; from amixup.engine import train; "
                    f"r=train(RunConfig.from_dict({c.to_dict()!r}), {tempfile.mkdtemp()!r}, progress=False); "
                    f"print(json.dumps(r['history'][-1]))")
            procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}))
        results = [p.communicate() for p in procs]
        wall = time.perf_counter() - t
        out.update(k=k, epochs=epochs, wall=round(wall, 2), epochs_per_s=round(k * epochs / wall, 3),
                   returncodes=[p.returncode for p in procs], errors=[e[-800:] for _, e in results if e.strip()][:2],
                   last=[r[0][-300:] for r in results][:3])
        print(json.dumps(out), flush=True)
except Exception:
    out["error"] = traceback.format_exc()
    print(out["error"], flush=True)
with open(os.path.join(outdir, f"{phase}.json"), "w") as f:
    json.dump(out, f, indent=1)
