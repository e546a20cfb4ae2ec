"""Sweeps: a grid of configurations x seeds, each run a record, run by N concurrent processes.

Finished runs (their record exists) are skipped on restart and a killed run resumes from its
checkpoint, because every run goes through :func:`amixup.engine.train`. Several runs share a
machine as separate processes, one per GPU of ``devices`` in turn (or several per GPU), each
with ``cpu_count / workers`` threads. On a SLURM cluster :func:`submit_slurm` sends the same
runs as a submitit job array.

Command line::

    python -m amixup.sweep --recipe cifar_lt --profile paper --set dataset=cifar10_lt \\
        --grid method=ce,mixup,manifold_mixup,am_mixup --grid imb_factor=100,50,10 --seeds 0,1,2 --workers 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import data
from . import progress as progress_bars
from .config import RunConfig, parse_value
from .engine import record_path, resolve_device, train
from .records import REPO_ROOT, read_record
from .recipes import RECIPES, PROFILES, make_config


def expand_grid(recipe: str, profile: str, grid: dict[str, list], seeds=(0,), **fixed) -> list[RunConfig]:
    """One validated config per combination of ``grid`` values and seed (seeds vary fastest)."""
    keys = list(grid)
    configs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in seeds:
            configs.append(make_config(recipe, profile, seed=seed, **fixed, **dict(zip(keys, values))))
    return configs


def pending(configs, results_dir) -> list[RunConfig]:
    """The configs whose record does not exist yet."""
    return [c for c in configs if not record_path(c, results_dir).exists()]


def _worker_command(config: RunConfig, results_dir: Path, threads: int) -> list[str]:
    return [sys.executable, "-m", "amixup.sweep", "--worker", json.dumps(config.to_dict()),
            "--results-dir", str(results_dir), "--threads", str(threads)]


def run_sweep(configs, results_dir, *, workers: int = 1, devices=None, progress: bool = True) -> list[dict]:
    """Train every config not finished yet and return all records, in the order of ``configs``.

    ``workers=1`` trains in this process; more start one process per run, at most ``workers`` at
    a time, the i-th on ``devices[i % len(devices)]`` (e.g. ``["cuda:0", "cuda:1"]``; default: the
    config's own device). Progress shows runs done / total and the time left.
    """
    from tqdm import tqdm

    configs = list(configs)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    results_dir = Path(results_dir)
    todo = pending(configs, results_dir)
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="sweep", unit="run",
               disable=not progress_bars.enabled(progress), file=progress_bars.stream())
    if workers == 1:
        for config in todo:
            train(config, results_dir, progress=progress)
            bar.update(1)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        plugins = data.plugin_modules(c.dataset for c in todo)  # registered datasets reach the workers
        env["AMIXUP_PLUGINS"] = ",".join(filter(None, [os.environ.get("AMIXUP_PLUGINS"), *plugins]))

        def launch(i, config):
            if devices:
                config = RunConfig.from_dict({**config.to_dict(), "device": devices[i % len(devices)]})
            done = subprocess.run(_worker_command(config, results_dir, threads), env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"run {config.run_id()} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            return config

        failures = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(launch, i, c) for i, c in enumerate(todo)]
            for future in as_completed(futures):
                try:
                    future.result()
                except RuntimeError as err:
                    failures.append(str(err))
                bar.update(1)
        if failures:
            bar.close()
            raise RuntimeError(f"{len(failures)} of {len(todo)} runs failed; the others are recorded.\n" + failures[0])
    bar.close()
    return [read_record(record_path(c, results_dir)) for c in configs]


def submit_slurm(configs, results_dir, *, folder="slurm_logs", cluster: str | None = None, **slurm_parameters):
    """Submit the pending runs as a SLURM job array with submitit; returns the submitit jobs.

    ``slurm_parameters`` go to ``AutoExecutor.update_parameters`` (e.g. ``slurm_partition="gpu",
    gpus_per_node=1, timeout_min=600``). ``cluster`` is submitit's: None picks SLURM where it is
    installed, ``"local"`` runs the jobs as local processes, ``"debug"`` in this process.
    Resubmitting the same grid skips finished runs and resumes interrupted ones from their checkpoints.
    """
    import submitit

    todo = pending(configs, results_dir)
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**slurm_parameters)
    with executor.batch():
        jobs = [executor.submit(train, c, str(results_dir), progress=False) for c in todo]
    return jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amixup.sweep", description="Run a grid of configurations x seeds.")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="motivation")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                        help="a config field and its values, e.g. --grid method=ce,am_mixup")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed config field")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--experiment", default="sweep")
    parser.add_argument("--results-dir", default="results/runs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--devices", default=None, help="comma-separated devices the workers take in turn")
    parser.add_argument("--slurm", action="append", default=[], metavar="PARAM=VALUE",
                        help="submit to SLURM with submitit instead of running here, e.g. --slurm "
                             "slurm_partition=gpu --slurm gpus_per_node=1 --slurm timeout_min=720")
    parser.add_argument("--slurm-folder", default="slurm_logs", help="submitit's log folder")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one run, as JSON (used by run_sweep)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        train(RunConfig.from_dict(json.loads(args.worker)), args.results_dir, progress=False)
        return 0

    def pairs(items, split_values):
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"expected FIELD=VALUE, got {item!r}")
            out[key] = [parse_value(v) for v in value.split(",")] if split_values else parse_value(value)
        return out

    try:
        configs = expand_grid(args.recipe, args.profile, pairs(args.grid, True),
                              seeds=[int(s) for s in args.seeds.split(",")], experiment=args.experiment,
                              **pairs(args.set, False))
        if not args.slurm:  # runs here: e.g. cuda without CUDA is a command-line error (not so for SLURM)
            for device in (args.devices.split(",") if args.devices else sorted({c.device for c in configs})):
                resolve_device(device)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    if args.slurm:
        jobs = submit_slurm(configs, args.results_dir, folder=args.slurm_folder, **pairs(args.slurm, False))
        print(f"submitted {len(jobs)} runs ({len(configs) - len(jobs)} already finished): "
              + ", ".join(str(job.job_id) for job in jobs))
        return 0
    devices = args.devices.split(",") if args.devices else None
    records = run_sweep(configs, args.results_dir, workers=args.workers, devices=devices)
    for rec in records:
        print(rec["run_id"], f"acc_all={rec['metrics']['last']['acc_all']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
