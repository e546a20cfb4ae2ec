"""Throughput of the paper's Table 3 recipe on one device: solo eager, solo static, concurrent runs.

Trains ResNet32 on CIFAR-10-LT (imbalance 100) with AM-mixup, the recipe of
``amixup.recipes.make_config("cifar_lt", "paper", ...)``, for a few epochs in several phases, and
projects each phase to the paper's 200-epoch run:

* ``eager``          one run, ``step_mode="eager"`` (one Python step per batch: the plain engine path);
* ``static``         one run, ``step_mode="static"`` (the fixed-shape step, a CUDA graph on a GPU);
* ``static_bf16``    the same in bf16 autocast (``--bf16``);
* ``concurrent_K``   K static runs at once (seeds seed..seed+K-1) through ``amixup.sweep.run_sweep(...,
                     workers=K, devices=[device], mps="auto")``: K processes on the device, under CUDA MPS on a GPU
                     (``--concurrent 4,8,12``; ``--mps off`` for the same without MPS);
* ``static_ckpt_end`` / ``static_eval2048``  the static run with ``checkpoint_every=epochs`` (one checkpoint, at
                     the end) / with ``eval_batch_size=2048`` (``--variants``).

Only ``epochs`` of the recipe is changed: the lr schedule stays the paper's (milestones 160/180 and a 5-epoch
warm-up are passed explicitly, so they are not rescaled to the short run; with 5 epochs or fewer the warm-up is
cut to epochs - 1, as validation requires, and the JSON says the schedule is not the paper's).

Each phase runs in its own process, with its own time limit (``--phase-timeout``) inside a global ``--deadline``,
and trains into its own temporary results folder (never ``results/``): a phase that crashes or runs out of time is
recorded as ``failed`` / ``timeout`` (with the end of its stderr) and the others still run. The JSON is rewritten
after every phase. Per phase (see ``FORMULAS`` for the exact definitions): the process's wall seconds, the first
epoch's seconds (it includes graph capture), the steady seconds per epoch (median of the differences of
``record["history"][i]["seconds"]`` after the first epoch), the measured cost of one checkpoint, the projected
200-epoch time, runs per hour, the ratios to the eager phase, the test accuracy reached and, for phases with the
eager phase's seed, the difference of the first epoch's train_loss to the eager one (a sanity check; equal only up
to floating-point on a GPU).

Example (GPU; see benchmarks/README.md)::

    python benchmarks/gpu_throughput.py --device cuda --eager-epochs 15 --epochs 40 --concurrent 4,8,12 \\
        --concurrent-epochs 20 --bf16 --variants --deadline 900

    # CPU smoke test (CI): a few hundred images, 2 epochs, K = 2
    python benchmarks/gpu_throughput.py --device cpu --tiny --out /tmp/gpu_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from a checkout: import the checkout's amixup
    sys.path.insert(0, str(ROOT))

from amixup.config import number_argument  # noqa: E402  (light: no torch)
from amixup.records import git_commit  # noqa: E402  (light: no torch)

#: Table 3's run: ResNet32 (the cifar_lt recipe), CIFAR-10-LT at imbalance factor 100, AM-mixup.
RECIPE = dict(recipe="cifar_lt", profile="paper", dataset="cifar10_lt", imb_factor=100, method="am_mixup")
FULL_EPOCHS = 200  # the paper's run, which every phase is projected to
#: issue 9's targets
TARGET_RUN_SECONDS = 30.0      # one 200-epoch run on one H100 / H200
TARGET_RUNS_PER_HOUR = 240.0   # on one GPU (Table 3's 480 runs in <= 2 GPU-hours)
TINY = dict(train_subset=256, test_subset=100, epochs=2, concurrent="2")
EXPERIMENT = "gpu-throughput"

FORMULAS = {
    "steady_epoch_s": "median over epochs i >= 2 of history[i].seconds - history[i-1].seconds (training + "
                      "evaluation of one epoch, without the checkpoint); concurrent: median over the K runs",
    "first_epoch_s": "history[1].seconds (includes graph capture / compilation and warm-up)",
    "checkpoint_s": "cost of one checkpoint write: median over epochs i >= 2 that saved a checkpoint of (wall time "
                    "between the end of epoch i-1 and of epoch i) - (its history seconds), minus the same median "
                    "over epochs that saved none (0 if every epoch saved one); solo phases only (null: not measured)",
    "projected_200_s": "first_epoch_s + 199 * steady_epoch_s + ceil(200 / checkpoint_every) * checkpoint_s "
                       "(checkpoint term 0 where checkpoint_s is null); process start, data loading and the final "
                       "record are not in it (see fixed_s)",
    "fixed_s": "solo: wall_s minus the time of its epochs (history[1].seconds + the wall time of epochs 2..E, "
               "checkpoints included): process start, imports, data, model, final record; concurrent: sweep wall "
               "minus the longest run's last history seconds (includes start-up, checkpoints and records)",
    "runs_per_hour": "solo: 3600 / projected_200_s; concurrent: runs_per_hour_measured",
    "runs_per_hour_measured": "concurrent: (K * epochs / sweep wall seconds) * 3600 / 200, everything included "
                              "(start-up and first epochs weigh more in a short benchmark than in a 200-epoch run); "
                              "solo: (epochs / wall_s) * 3600 / 200",
    "runs_per_hour_projected": "K * 3600 / median over runs of projected_200_s",
    "speedup_vs_eager": "eager phase's steady_epoch_s / this phase's steady_epoch_s (per run)",
    "projected_speedup_vs_eager": "eager projected_200_s / this phase's projected_200_s",
    "throughput_vs_eager": "runs_per_hour / the eager phase's runs_per_hour",
    "first_loss_abs_diff_vs_eager": "|history[1].train_loss - eager history[1].train_loss| (same seed and data order)",
}


# --------------------------------------------------------------------------- arguments

_positive_int = number_argument(int, 1)
_positive_float = number_argument(float, 0, strict=True)


def _k_list(text: str) -> list[int]:
    if text.strip() in ("", "none", "0"):
        return []
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every K must be >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gpu_throughput.py",
        description="Seconds per epoch, projected 200-epoch time and runs per hour of the Table 3 recipe "
                    "(ResNet32, CIFAR-10-LT imbalance 100, AM-mixup): solo eager, solo static, K concurrent runs. "
                    "Data is found through AMIXUP_DATA_PATH like every amixup run.")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs of the static phases (default: 20; 2 with --tiny)")
    parser.add_argument("--eager-epochs", type=_positive_int, default=None,
                        help="epochs of the eager phase (default: --epochs)")
    parser.add_argument("--concurrent-epochs", type=_positive_int, default=None,
                        help="epochs of each run of the concurrent phases (default: --epochs)")
    parser.add_argument("--concurrent", type=_k_list, default=None, metavar="K1,K2",
                        help="numbers of concurrent static runs, one phase each (default: 4,8,12; 2 with --tiny; "
                             "'none': no concurrent phase)")
    parser.add_argument("--mps", choices=["auto", "on", "off"], default="auto",
                        help="CUDA MPS for the concurrent phases, as amixup.sweep's mps (default: auto, i.e. on a GPU)")
    parser.add_argument("--bf16", action="store_true", help="also a solo static phase in bf16 autocast")
    parser.add_argument("--variants", action="store_true",
                        help="also the solo static phase with checkpoint_every=epochs and with eval_batch_size=2048")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager phase (no ratios then)")
    parser.add_argument("--only", default=None, metavar="NAME,NAME",
                        help="run only these of the planned phases (e.g. static,concurrent_8); "
                             "an unknown name is an error that lists the planned ones")
    parser.add_argument("--tiny", action="store_true",
                        help=f"a smoke test: {TINY['train_subset']} training and {TINY['test_subset']} test images, "
                             f"{TINY['epochs']} epochs, K = {TINY['concurrent']} (numbers meaningless)")
    parser.add_argument("--train-subset", type=_positive_int, default=None, metavar="N",
                        help="about N training images (stratified) instead of all 12,406")
    parser.add_argument("--test-subset", type=_positive_int, default=None, metavar="N",
                        help="about N test images instead of all 10,000")
    parser.add_argument("--seed", type=int, default=0, help="seed of the solo runs and of the first concurrent run")
    parser.add_argument("--phase-timeout", type=_positive_float, default=600.0,
                        help="seconds one phase may take, its process start included (default: 600)")
    parser.add_argument("--deadline", type=_positive_float, default=3600.0,
                        help="seconds for the whole benchmark; a phase gets at most what is left (default: 3600)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: results/benchmarks/gpu_throughput_<device-slug>.json)")
    parser.add_argument("--commit", default=None,
                        help="the commit to write into the JSON where the checkout has no .git (default: git's)")
    parser.add_argument("--run-phase", default=None, help=argparse.SUPPRESS)  # internal: one phase, as JSON
    return parser


# --------------------------------------------------------------------------- configs

def schedule(epochs: int) -> dict:
    """The paper's lr schedule for a run of ``epochs``: milestones and warm-up passed explicitly (not rescaled)."""
    from amixup.recipes import CIFAR_LT

    warmup = CIFAR_LT["warmup_epochs"]
    return {"milestones": tuple(CIFAR_LT["milestones"]), "warmup_epochs": min(warmup, max(0, epochs - 1))}


def make_run_config(phase: dict, seed: int):
    from amixup.recipes import make_config

    fields = dict(RECIPE)
    recipe, profile = fields.pop("recipe"), fields.pop("profile")
    return make_config(recipe, profile, **fields, epochs=phase["epochs"], **schedule(phase["epochs"]),
                       train_subset=phase["train_subset"], test_subset=phase["test_subset"], seed=seed,
                       device=phase["device"], experiment=EXPERIMENT, **phase["overrides"])


def plan_phases(args, device: str, epochs: int, eager_epochs: int, concurrent_epochs: int, ks: list[int]):
    common = dict(device=device, train_subset=args.train_subset, test_subset=args.test_subset, seed=args.seed)
    static = {"step_mode": "static"}
    phases = []
    if not args.no_eager:
        phases.append(dict(common, name="eager", kind="solo", epochs=eager_epochs, overrides={"step_mode": "eager"}))
    phases.append(dict(common, name="static", kind="solo", epochs=epochs, overrides=static))
    for k in ks:
        phases.append(dict(common, name=f"concurrent_{k}", kind="concurrent", k=k, epochs=concurrent_epochs,
                           overrides=static, mps=args.mps))
    if args.bf16:
        phases.append(dict(common, name="static_bf16", kind="solo", epochs=epochs,
                           overrides={**static, "precision": "bf16"}))
    if args.variants:
        phases.append(dict(common, name="static_ckpt_end", kind="solo", epochs=epochs,
                           overrides={**static, "checkpoint_every": epochs}))
        phases.append(dict(common, name="static_eval2048", kind="solo", epochs=epochs,
                           overrides={**static, "eval_batch_size": 2048}))
    return phases


def select_phases(phases: list[dict], only: str | None) -> list[dict]:
    """The planned phases named in ``only`` (comma-separated; None: all), in the planned order."""
    if only is None:
        return phases
    names = [n.strip() for n in only.split(",") if n.strip()]
    planned = [p["name"] for p in phases]
    unknown = [n for n in names if n not in planned]
    if unknown or not names:
        raise ValueError(f"--only: {', '.join(unknown) or repr(only)} not among the planned phases {planned}")
    return [p for p in phases if p["name"] in names]


# --------------------------------------------------------------------------- one phase (child process)

def _run_summary(record: dict, epoch_wall: list[float] | None = None) -> dict:
    return {
        "seed": record["config"]["seed"],
        "history": [{k: h.get(k) for k in ("epoch", "seconds", "train_loss", "lambda", "test_all")}
                    for h in record["history"]],
        "epoch_wall": epoch_wall,
        "record_seconds": record["seconds"],
        "test_acc": record["metrics"]["last"]["acc_all"],
        "config": {k: record["config"][k] for k in ("step_mode", "precision", "checkpoint_every", "eval_batch_size",
                                                     "epochs", "milestones", "warmup_epochs", "device")},
        "environment": record.get("environment"),
    }


def run_phase(phase: dict, out: Path) -> None:
    """Train one phase into ``phase["results_dir"]`` and write its raw measurements to ``out``.

    Solo phases also append one line per run and epoch to
    ``phase["progress"]``, so a phase killed by its time limit still leaves its finished epochs behind.
    """
    import torch

    from amixup import engine, sweep

    device = engine.resolve_device(phase["device"])
    results_dir = Path(phase["results_dir"])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    progress = Path(phase["progress"])

    def progress_line(run: int, epoch: int, entry: dict) -> None:
        with progress.open("a") as f:
            f.write(json.dumps({"run": run, "epoch": epoch, "seconds": entry["seconds"],
                                "train_loss": entry["train_loss"], "wall": time.perf_counter() - start}) + "\n")

    if phase["kind"] == "solo":
        config = make_run_config(phase, phase["seed"])
        stamps = [time.perf_counter()]

        def on_epoch_end(epoch, entry):
            stamps.append(time.perf_counter())
            progress_line(0, epoch, entry)

        record = engine.train(config, results_dir, overwrite=True, progress=False, on_epoch_end=on_epoch_end)
        sync()
        train_wall = time.perf_counter() - start
        runs = [_run_summary(record, [b - a for a, b in zip(stamps, stamps[1:])])]
        result = {"train_wall_s": train_wall, "runs": runs}
    else:
        configs = [make_run_config(phase, phase["seed"] + i) for i in range(phase["k"])]
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sweep.MPSWarning)
            workers = phase["k"]
            records = sweep.run_sweep(configs, results_dir, workers=workers, devices=[phase["device"]],
                                      mps=phase["mps"], progress=False)
        sweep_wall = time.perf_counter() - start
        mps_problems = [str(w.message) for w in caught if issubclass(w.category, sweep.MPSWarning)]
        wants = workers > 1 and sweep._wants_mps(phase["mps"], [phase["device"]] * workers)
        result = {"sweep_wall_s": sweep_wall, "runs": [_run_summary(r) for r in records],
                  "mps": bool(wants and not mps_problems), "mps_warnings": mps_problems}
    out.write_text(json.dumps(result) + "\n")


# --------------------------------------------------------------------------- summaries (parent)

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _steady(seconds: list[float]) -> float | None:
    diffs = [b - a for a, b in zip(seconds, seconds[1:])]
    return _median(diffs)


def _checkpoint_cost(seconds: list[float], epoch_wall: list[float] | None, checkpoint_every: int) -> float | None:
    if not epoch_wall or len(seconds) < 2 or len(epoch_wall) != len(seconds):
        return None
    epochs = len(seconds)
    saved, unsaved = [], []
    for i in range(1, epochs):  # epoch i + 1; the first is left out (capture)
        overhead = epoch_wall[i] - (seconds[i] - seconds[i - 1])
        with_checkpoint = (i + 1) % checkpoint_every == 0 or i + 1 == epochs
        (saved if with_checkpoint else unsaved).append(overhead)
    if not saved:
        return None
    return max(0.0, _median(saved) - (_median(unsaved) if unsaved else 0.0))


def _projected(first: float | None, steady: float | None, checkpoint: float | None, checkpoint_every: int):
    if first is None:
        return None
    steady = first if steady is None else steady
    n_checkpoints = math.ceil(FULL_EPOCHS / checkpoint_every)
    return first + (FULL_EPOCHS - 1) * steady + n_checkpoints * (checkpoint or 0.0)


def summarise_run(run: dict) -> dict:
    seconds = [h["seconds"] for h in run["history"]]
    checkpoint_every = run.get("config", {}).get("checkpoint_every", 1) or 1
    first = seconds[0] if seconds else None
    steady = _steady(seconds)
    checkpoint = _checkpoint_cost(seconds, run.get("epoch_wall"), checkpoint_every)
    return {"seed": run.get("seed"), "epochs_done": len(seconds), "first_epoch_s": first, "steady_epoch_s": steady,
            "checkpoint_s": checkpoint, "projected_200_s": _projected(first, steady, checkpoint, checkpoint_every),
            "first_train_loss": run["history"][0]["train_loss"] if run["history"] else None,
            "test_acc": run.get("test_acc"), "step": (run.get("environment") or {}).get("step")}


def summarise(phase: dict, raw: dict | None, wall: float) -> dict:
    """The figures of one phase from the raw measurements of its process (``raw`` None: none came back)."""
    out = {"wall_s": wall}
    if not raw or not raw.get("runs"):
        return out
    runs = [summarise_run(r) for r in raw["runs"]]
    first = runs[0]
    if phase["kind"] == "solo":
        walls, seconds = raw["runs"][0].get("epoch_wall") or [], [h["seconds"] for h in raw["runs"][0]["history"]]
        # the first epoch's wall time also holds the set-up before it: count its history seconds instead
        epoch_span = seconds[0] + sum(walls[1:]) if walls and seconds else None
        out.update({k: first[k] for k in ("epochs_done", "first_epoch_s", "steady_epoch_s", "checkpoint_s",
                                          "projected_200_s", "first_train_loss", "test_acc")})
        out["fixed_s"] = wall - epoch_span if epoch_span is not None and "train_wall_s" in raw else None
        out["train_wall_s"] = raw.get("train_wall_s")
        out["runs_per_hour"] = 3600.0 / first["projected_200_s"] if first["projected_200_s"] else None
        if first["epochs_done"] and "train_wall_s" in raw:
            out["runs_per_hour_measured"] = first["epochs_done"] / wall * 3600.0 / FULL_EPOCHS
    else:
        k = len(runs)
        total_epochs = sum(r["epochs_done"] for r in runs)
        sweep_wall = raw["sweep_wall_s"]
        projected = _median(r["projected_200_s"] for r in runs)
        longest = max((r["history"][-1]["seconds"] for r in raw["runs"] if r["history"]), default=None)
        out.update({
            "k": k, "sweep_wall_s": sweep_wall, "epochs_done": total_epochs,
            "first_epoch_s": _median(r["first_epoch_s"] for r in runs),
            "steady_epoch_s": _median(r["steady_epoch_s"] for r in runs),
            "checkpoint_s": None,
            "projected_200_s": projected,
            "fixed_s": sweep_wall - longest if longest is not None else None,
            "epochs_per_s": total_epochs / sweep_wall,
            "runs_per_hour_measured": total_epochs / sweep_wall * 3600.0 / FULL_EPOCHS,
            "runs_per_hour_projected": k * 3600.0 / projected if projected else None,
            "first_train_loss": first["first_train_loss"],
            "test_acc": _mean([r["test_acc"] for r in runs]),
            "test_acc_runs": [r["test_acc"] for r in runs],
            "mps": raw.get("mps"), "mps_warnings": raw.get("mps_warnings", []),
        })
        out["runs_per_hour"] = out["runs_per_hour_measured"]
        out["runs"] = runs
    out["config"] = raw["runs"][0].get("config")
    return out


def _progress_runs(progress: Path) -> dict | None:
    """The raw measurements of a solo phase stopped early, from its progress lines (one per run and epoch)."""
    if not progress.exists():
        return None
    lines = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    if not lines:
        return None
    runs = []
    for run in sorted({line.get("run", 0) for line in lines}):
        mine = [line for line in lines if line.get("run", 0) == run]
        walls = [line["wall"] for line in mine]
        runs.append({"history": [{"epoch": line["epoch"], "seconds": line["seconds"],
                                  "train_loss": line["train_loss"]} for line in mine],
                     "epoch_wall": [b - a for a, b in zip([0.0] + walls, walls)], "test_acc": None})
    return {"runs": runs, "partial": True, "sweep_wall_s": max(line["wall"] for line in lines)}


def add_comparisons(phases: dict) -> None:
    eager = phases.get("eager")
    if not eager or eager.get("status") != "ok":
        return
    for name, ph in phases.items():
        if name == "eager" or not ph.get("steady_epoch_s"):
            continue
        if eager.get("steady_epoch_s"):
            ph["speedup_vs_eager"] = eager["steady_epoch_s"] / ph["steady_epoch_s"]
        if eager.get("projected_200_s") and ph.get("projected_200_s"):
            ph["projected_speedup_vs_eager"] = eager["projected_200_s"] / ph["projected_200_s"]
        if eager.get("runs_per_hour") and ph.get("runs_per_hour"):
            ph["throughput_vs_eager"] = ph["runs_per_hour"] / eager["runs_per_hour"]
        if eager.get("first_train_loss") is not None and ph.get("first_train_loss") is not None:
            ph["first_loss_abs_diff_vs_eager"] = abs(ph["first_train_loss"] - eager["first_train_loss"])


def targets(phases: dict) -> dict:
    def best(key, better, names):
        candidates = [(n, phases[n][key]) for n in names if phases[n].get("status") == "ok" and phases[n].get(key)]
        return better(candidates, key=lambda c: c[1]) if candidates else (None, None)

    fp32 = [n for n, p in phases.items() if "precision" not in p["overrides"]]
    default_static = phases.get("static", {})
    run_s = default_static.get("projected_200_s") if default_static.get("status") == "ok" else None
    best_run_phase, best_run_s = best("projected_200_s", min, list(phases))
    rph_phase, rph = best("runs_per_hour", max, fp32)
    return {
        "run_200_epochs_s": {
            "target_max": TARGET_RUN_SECONDS, "phase": "static", "value": run_s,
            "met": None if run_s is None else run_s <= TARGET_RUN_SECONDS,
            "best_phase": best_run_phase, "best_value": best_run_s,
            "note": "projected_200_s of one fp32 run with the engine's defaults; best over all phases beside it",
        },
        "runs_per_hour": {
            "target_min": TARGET_RUNS_PER_HOUR, "phase": rph_phase, "value": rph,
            "met": None if rph is None else rph >= TARGET_RUNS_PER_HOUR,
            "note": "the most runs_per_hour of an fp32 phase (concurrent phases: measured, start-up included)",
        },
    }


# --------------------------------------------------------------------------- running phases

def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if text else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGINT to the phase's process group (the sweep stops its MPS daemon on KeyboardInterrupt), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop_leftover_mps(env: dict) -> None:
    """Stop an MPS daemon a killed concurrent phase may have left at its own pipe folder."""
    from amixup import sweep

    if "CUDA_MPS_PIPE_DIRECTORY" in env and shutil.which(sweep.MPS_CONTROL) and sweep._mps_answers(env):
        sweep._stop_mps(env, quiet=True)


def execute(phase: dict, timeout: float, workdir: Path) -> dict:
    """Run ``phase`` in its own process group with ``timeout`` seconds; its status and figures."""
    from amixup import sweep

    results_dir = workdir / phase["name"]
    results_dir.mkdir(parents=True)
    raw_path, progress = workdir / f"{phase['name']}.raw.json", workdir / f"{phase['name']}.progress.jsonl"
    spec = dict(phase, results_dir=str(results_dir), progress=str(progress))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if (phase["kind"] == "concurrent" and phase["device"].startswith("cuda") and "CUDA_MPS_PIPE_DIRECTORY" not in env
            and not Path(sweep.MPS_DEFAULT_PIPE_DIRECTORY).exists()):
        # the phase's own MPS folders (short paths: a socket lives there), so a killed phase's daemon can be stopped
        mps_root = Path(tempfile.mkdtemp(prefix="gt-mps-"))
        env["CUDA_MPS_PIPE_DIRECTORY"], env["CUDA_MPS_LOG_DIRECTORY"] = str(mps_root / "p"), str(mps_root / "l")
    else:
        mps_root = None
    command = [sys.executable, str(Path(__file__).resolve()), "--run-phase", json.dumps(spec),
               "--out", str(raw_path)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        status = "timeout"
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if mps_root is not None:
            _stop_leftover_mps(env)
            shutil.rmtree(mps_root, ignore_errors=True)
    wall = time.perf_counter() - start
    raw = json.loads(raw_path.read_text()) if status == "ok" and raw_path.exists() else None
    if status == "ok" and raw is None:
        status = "failed"
    if raw is None and (phase["kind"] == "solo"):
        raw = _progress_runs(progress)  # the epochs it finished
    result = {"name": phase["name"], "kind": phase["kind"], "status": status, "epochs": phase["epochs"],
              "overrides": phase["overrides"], "timeout_s": round(timeout, 1)}
    if phase["kind"] == "concurrent":
        result["k"], result["mps_mode"] = phase["k"], phase["mps"]
        result["processes"] = phase["k"]
    if status != "ok":
        result["exit_code"] = proc.returncode
        result["stderr_tail"] = _tail(stderr)
        result["partial"] = bool(raw)
    result.update(summarise(phase, raw, wall))
    return result


# --------------------------------------------------------------------------- output

def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _fmt(value, digits=2, suffix=""):
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _fmt_e(value):
    return "-" if value is None else f"{value:.1e}"


def format_table(result: dict) -> str:
    rows = [("phase", "status", "epochs", "wall s", "1st epoch s", "s/epoch", "ckpt s", "200-ep s", "runs/h",
             "x eager", "acc %", "|dloss1|")]
    for ph in result["phases"].values():
        ratio = ph.get("throughput_vs_eager") if ph["kind"] == "concurrent" else ph.get("projected_speedup_vs_eager")
        epochs = f"{ph.get('k', 1)}x{ph['epochs']}" if ph["kind"] == "concurrent" else str(ph["epochs"])
        rows.append((ph["name"], ph["status"], epochs, _fmt(ph.get("wall_s"), 1), _fmt(ph.get("first_epoch_s")),
                     _fmt(ph.get("steady_epoch_s"), 3), _fmt(ph.get("checkpoint_s"), 3),
                     _fmt(ph.get("projected_200_s"), 1), _fmt(ph.get("runs_per_hour"), 1), _fmt(ratio, 2, "x"),
                     _fmt(ph.get("test_acc"), 2), _fmt_e(ph.get("first_loss_abs_diff_vs_eager"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = result["targets"]
    run, rph = t["run_200_epochs_s"], t["runs_per_hour"]
    lines.append(f"target: one 200-epoch run <= {run['target_max']:.0f} s: {_fmt(run['value'], 1)} s "
                 f"({'met' if run['met'] else 'not met' if run['met'] is not None else 'not measured'}; "
                 f"phase static)")
    lines.append(f"target: >= {rph['target_min']:.0f} runs per hour: {_fmt(rph['value'], 1)} "
                 f"({'met' if rph['met'] else 'not met' if rph['met'] is not None else 'not measured'}; "
                 f"phase {rph['phase'] or '-'})")
    lines.append("x eager: projected 200-epoch time of the eager phase / the phase's (concurrent: runs per hour / "
                 "the eager phase's); |dloss1|: first epoch's train_loss vs the eager phase")
    return "\n".join(lines)


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------- main

def main(argv=None) -> dict | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_phase is not None:  # a phase's own process
        run_phase(json.loads(args.run_phase), args.out)
        return None
    began = time.perf_counter()
    if args.tiny:
        args.train_subset = args.train_subset or TINY["train_subset"]
        args.test_subset = args.test_subset or TINY["test_subset"]
    epochs = args.epochs or (TINY["epochs"] if args.tiny else 20)
    eager_epochs = args.eager_epochs or epochs
    concurrent_epochs = args.concurrent_epochs or epochs
    ks = args.concurrent if args.concurrent is not None else _k_list(TINY["concurrent"] if args.tiny else "4,8,12")
    args.epochs, args.eager_epochs, args.concurrent_epochs, args.concurrent = epochs, eager_epochs, concurrent_epochs, ks

    import torch

    from amixup import engine

    try:
        device = engine.resolve_device(args.device)
        probe = select_phases(plan_phases(args, str(device), epochs, eager_epochs, concurrent_epochs, ks), args.only)
        configs = {p["name"]: make_run_config(p, args.seed) for p in probe}  # validates every phase's config
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    name = device_name(device)
    out = args.out or ROOT / "results" / "benchmarks" / f"gpu_throughput_{slug(name)}.json"
    paper_schedule = all(c.warmup_epochs == 5 for c in configs.values())
    any_config = next(iter(configs.values()))

    t0 = time.perf_counter()
    train_data, test_data, _ = engine.load_data(any_config)  # untimed: decode and cache the images once
    prepare_s = time.perf_counter() - t0
    n_train, n_test = len(train_data), len(test_data)
    del train_data, test_data
    commit = {"commit": args.commit, "dirty": None} if args.commit else git_commit()
    result = {
        "benchmark": "gpu_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "device_name": name,
        "torch": torch.__version__, "python": platform.python_version(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "commit": commit.get("commit"), "dirty": commit.get("dirty"),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run_phase"},
        "recipe": {**RECIPE, "model": any_config.model, "batch_size": any_config.batch_size,
                   "milestones": list(any_config.milestones), "warmup_epochs_full": 5,
                   "paper_lr_schedule": paper_schedule,
                   "note": "only epochs changed; milestones/warm-up passed explicitly" + (
                       "" if paper_schedule else "; warm-up cut to epochs - 1 (a run of <= 5 epochs)")},
        "train_images": n_train, "test_images": n_test, "prepare_s": prepare_s,
        "full_epochs": FULL_EPOCHS, "formulas": FORMULAS,
        "targets": None, "phases": {},
    }
    print(f"device {device} ({name}), torch {torch.__version__}, {n_train} training and {n_test} "
          f"test images, phases: {', '.join(p['name'] for p in probe)}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    try:
        for phase in probe:
            left = args.deadline - (time.perf_counter() - began)
            if left < 5:
                result["phases"][phase["name"]] = {"name": phase["name"], "kind": phase["kind"], "status": "skipped",
                                                   "epochs": phase["epochs"], "overrides": phase["overrides"],
                                                   "reason": "deadline reached"}
                continue
            print(f"phase {phase['name']} ...", flush=True)
            ph = execute(phase, min(args.phase_timeout, left), workdir)
            result["phases"][phase["name"]] = ph
            print(f"phase {phase['name']}: {ph['status']}, wall {ph['wall_s']:.1f} s, "
                  f"steady {_fmt(ph.get('steady_epoch_s'), 3)} s/epoch", flush=True)
            add_comparisons(result["phases"])
            result["targets"] = targets(result["phases"])
            write_json(out, result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    add_comparisons(result["phases"])
    result["targets"] = targets(result["phases"])
    result["total_s"] = time.perf_counter() - began
    write_json(out, result)
    print(format_table(result))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
