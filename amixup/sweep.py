"""Sweeps: a grid of configurations x seeds, each run a record, run by N concurrent processes.

Finished runs (their record exists) are skipped on restart and a killed run resumes from its
checkpoint, because every run goes through :func:`amixup.engine.train`. Several runs share a
machine as separate processes, one per GPU of ``devices`` in turn (or several per GPU), each
with ``cpu_count / workers`` threads. On a SLURM cluster :func:`submit_slurm` sends the same
runs as a submitit job array.

Several runs per GPU with CUDA MPS. A ResNet32 step on a batch of 128 leaves most of a GPU idle,
so a GPU is shared by several worker processes. Without MPS the GPU time-slices between their
contexts; under NVIDIA's Multi-Process Service (MPS) the kernels of all processes run side by
side through one server. ``run_sweep(..., mps=...)`` (command line ``--mps``) decides:

* ``"auto"`` (default): MPS when the workers are processes on CUDA devices and more than one run
  of the sweep may be on the same GPU at once;
* ``"on"``: MPS for the worker processes whatever their devices (an error if it cannot start);
* ``"off"``: never.

When MPS is used the sweep finds the control daemon's folders in ``CUDA_MPS_PIPE_DIRECTORY`` and
``CUDA_MPS_LOG_DIRECTORY`` if they are set (else NVIDIA's default ``/tmp/nvidia-mps`` when a
daemon already answers there, else new folders under a temporary directory); if no daemon answers
there it starts one (``nvidia-cuda-mps-control -d`` with those variables), checks that it answers
(``echo get_server_list | nvidia-cuda-mps-control`` exits 0), gives both variables to every worker,
and at the end, also after a failed run or Ctrl-C, stops it (``echo quit | nvidia-cuda-mps-control``)
if, and only if, the sweep started it. A daemon that was already running is used and left running.
Where the binary is missing or the daemon does not come up, ``"auto"`` warns once
(:class:`MPSWarning`) and runs the workers without MPS; ``"on"`` raises ``RuntimeError``.
MPS changes how the processes share the GPU, not what they compute: each worker is still an
independent ``amixup.engine.train`` with its own seed, data order, lambda schedule and record.

``workers="auto"`` (command line ``--workers auto``, the default) means ``per_gpu`` workers per GPU
(``--workers-per-gpu``, default :data:`WORKERS_PER_GPU`) with MPS when the runs go to CUDA devices,
and one worker (training in this process) on a CPU.

Command line::

    python -m amixup.sweep --recipe cifar_lt --profile paper --set dataset=cifar10_lt \\
        --grid method=ce,mixup,manifold_mixup,am_mixup --grid imb_factor=100,50,10 --seeds 0,1,2 --workers 2

    # every visible GPU, 8 runs per GPU under MPS
    python -m amixup.sweep --recipe cifar_lt --profile paper --set dataset=cifar10_lt \\
        --grid method=ce,mixup,manifold_mixup,am_mixup --seeds 0,1,2,3,4 --workers auto --workers-per-gpu 8
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch

from . import data
from . import progress as progress_bars
from .config import RunConfig, number_argument, parse_assignments
from .engine import epochs_done, record_path, resolve_device, train
from .records import REPO_ROOT, CorruptFileError, read_record
from .recipes import RECIPES, PROFILES, make_config


def expand_grid(recipe: str, profile: str, grid: dict[str, list], seeds=(0,), **fixed) -> list[RunConfig]:
    """One validated config per combination of ``grid`` values and seed (seeds vary fastest)."""
    keys = list(grid)
    configs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in seeds:
            configs.append(make_config(recipe, profile, seed=seed, **fixed, **dict(zip(keys, values))))
    check_distinct(configs)
    return configs


def check_distinct(configs) -> None:
    """``ValueError`` where configs share a run id (two processes would train one run), naming the run id
    and the fields that differ but do not enter it."""
    by_id = {}
    for c in configs:
        by_id.setdefault(c.run_id(), []).append(c.to_dict())
    clashes = []
    for run_id, dicts in by_id.items():
        if len(dicts) > 1:
            differ = [k for k in dicts[0] if any(d[k] != dicts[0][k] for d in dicts)]
            clashes.append(f"{len(dicts)} configs have run id {run_id} (" + (
                f"they differ only in {', '.join(differ)}, which the run id leaves out: give one value" if differ
                else "identical: a seed or grid value given twice?") + ")")
    if clashes:
        raise ValueError("the runs of a sweep must have distinct run ids, but " + "; ".join(clashes))


def pending(configs, results_dir) -> list[RunConfig]:
    """The configs whose record does not exist yet."""
    return [c for c in configs if not record_path(c, results_dir).exists()]


def _worker_command(group: list[RunConfig], results_dir: Path, threads: int) -> list[str]:
    """The command of a worker process training ``group`` (a list of one run)."""
    return [sys.executable, "-m", "amixup.sweep", "--worker", json.dumps([c.to_dict() for c in group]),
            "--results-dir", str(results_dir), "--threads", str(threads)]


#: A worker writes ``EPOCH_LINE <run id> <epoch>`` to its standard output after each epoch (the sweep's bar).
EPOCH_LINE = "amixup-sweep-epoch"


def _train_group(group: list[RunConfig], results_dir, progress: bool = False, on_epoch=None) -> None:
    """Each run of ``group`` with :func:`~amixup.engine.train`; ``on_epoch(run_id, epoch)`` after each epoch."""
    for config in group:
        train(config, results_dir, progress=progress,
              on_epoch_end=(lambda epoch, _, c=config: on_epoch(c.run_id(), epoch)) if on_epoch else None)


class _EpochBar:
    """The sweep's progress: epochs trained of all its runs' epochs (finished runs and checkpoints count as
    trained), with runs done / total in the description, so the time left moves within long runs too.
    Thread-safe: the threads that wait on worker processes report through it."""

    def __init__(self, configs, results_dir: Path, todo, enabled: bool):
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._total_runs, self._runs_done = len(configs), len(configs) - len(todo)
        self._done = {}  # run id: epochs trained
        if enabled:  # (reads the epoch counter of each unfinished run's checkpoint)
            for c in configs:
                try:
                    self._done[c.run_id()] = epochs_done(c, results_dir)
                except CorruptFileError:  # its run says so when it starts
                    self._done[c.run_id()] = 0
        self._bar = tqdm(total=sum(c.epochs for c in configs), initial=sum(self._done.values()), unit="epoch",
                         desc=self._description(), disable=not enabled, file=progress_bars.stream())

    def _description(self) -> str:
        return f"sweep: {self._runs_done}/{self._total_runs} runs"

    def epoch(self, run_id: str, epoch: int) -> None:
        """``run_id`` has trained ``epoch`` epochs."""
        with self._lock:
            self._advance(run_id, epoch)

    def runs_done(self, group) -> None:
        with self._lock:
            self._runs_done += len(group)
            self._bar.set_description(self._description(), refresh=False)
            for c in group:
                self._advance(c.run_id(), c.epochs)

    def _advance(self, run_id: str, epoch: int) -> None:
        if run_id in self._done:
            self._bar.update(max(0, epoch - self._done[run_id]))
            self._done[run_id] = max(epoch, self._done[run_id])

    def close(self) -> None:
        self._bar.close()


class _Workers:
    """The sweep's worker processes. Once :meth:`stop` is called none starts (a run a thread took in the instant
    of a Ctrl-C stays unstarted) and those running are terminated (their runs resume from their checkpoints)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = set()
        self._stopping = False

    def run(self, command: list[str], env: dict, on_epoch) -> tuple[int | None, str]:
        """Run a worker process to its end: its exit code (None: not started, the sweep is stopping) and
        standard error; ``on_epoch(run_id, epoch)`` for each epoch it reports (:data:`EPOCH_LINE`)."""
        errors = tempfile.TemporaryFile("w+")  # a file: a full stderr pipe would block the worker
        with self._lock:
            if self._stopping:
                errors.close()
                return None, ""
            try:
                proc = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=errors)
            except BaseException:
                errors.close()
                raise
            self._running.add(proc)
        with errors, proc:
            try:
                for line in proc.stdout:
                    fields = line.split()
                    if len(fields) == 3 and fields[0] == EPOCH_LINE and fields[2].isdigit():
                        with contextlib.suppress(Exception):  # the bar's trouble must not stop reading the worker
                            on_epoch(fields[1], int(fields[2]))
                proc.wait()
            finally:
                with self._lock:
                    self._running.discard(proc)
            errors.seek(0)
            return proc.returncode, errors.read()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for proc in self._running:
                proc.terminate()


# --------------------------------------------------------------------------- workers per GPU, CUDA MPS

#: Worker processes per GPU for ``workers="auto"``. Measured on one H200 with the static (CUDA-graph)
#: step under MPS: graph replays of 1, 4 and 8 processes gave 187, 297 and 377 ResNet32 steps/s in total
#: (results/benchmarks/gpu_probes_nvidia-h200/micro), 8 concurrent Table 3 runs 1.84 epochs/s, and 16 no
#: gain (results/benchmarks/gpu_throughput_nvidia-h200.json).
WORKERS_PER_GPU = 8

MPS_MODES = ("auto", "on", "off")
MPS_CONTROL = "nvidia-cuda-mps-control"
#: where an MPS control daemon started without CUDA_MPS_PIPE_DIRECTORY listens (NVIDIA's default)
MPS_DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"
MPS_DEFAULT_LOG_DIRECTORY = "/var/log/nvidia-mps"
_MPS_COMMAND_TIMEOUT = 10.0  # seconds for one control command
_MPS_START_TIMEOUT = 10.0    # seconds for a started daemon to answer


class MPSWarning(UserWarning):
    """CUDA MPS was wanted (``mps="auto"``) but cannot be used; the workers share the GPU without it."""


class _MPSUnavailable(Exception):
    pass


def _gpu_of(device: str) -> str | None:
    """The CUDA device ("cuda:N") a run on ``device`` uses, None for a CPU (or Apple "mps") device."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else None
    if device == "cuda":
        return "cuda:0"
    return device if device.startswith("cuda:") else None


def _resolve_workers(workers, configs, devices, per_gpu: int):
    """``(workers, devices)`` with ``workers="auto"`` resolved: ``per_gpu`` per GPU the runs use (the
    GPUs of ``devices``; without ``devices``, every visible GPU for runs on "auto"/"cuda"), else 1."""
    if workers != "auto":
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1 or 'auto', got {workers!r}")
        return workers, devices
    if isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1:
        raise ValueError(f"per_gpu must be an integer >= 1, got {per_gpu!r}")
    if not devices and configs and all(c.device in ("auto", "cuda") for c in configs) and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    used = devices if devices else [c.device for c in configs]
    gpus = {g for g in map(_gpu_of, used) if g}
    return (per_gpu * len(gpus) if gpus else 1), devices


def _device_slots(devices: list[str], workers: int) -> list[str]:
    """One entry per run that may be active on a device at once: ``devices`` in turn, ``workers`` entries
    (each device at least once)."""
    return [devices[i % len(devices)] for i in range(max(workers, len(devices)))]


def _wants_mps(mode: str, worker_devices: list[str]) -> bool:
    """Whether worker processes on ``worker_devices`` (their device slots, else one entry per run) run under MPS."""
    if mode == "off":
        return False
    if mode == "on":
        return True
    gpus = [g for g in map(_gpu_of, worker_devices) if g]
    return len(gpus) > len(set(gpus))  # some GPU gets more than one run


def _mps_control(env: dict, command: str | None = None, *args: str) -> subprocess.CompletedProcess:
    """Run ``nvidia-cuda-mps-control`` with ``command`` on its standard input (client mode) or ``args``."""
    if command is None:  # "-d" forks the daemon: it must not hold pipes this call would wait on
        with tempfile.TemporaryFile("w+") as err:
            done = subprocess.run([MPS_CONTROL, *args], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, text=True, timeout=_MPS_COMMAND_TIMEOUT)
            err.seek(0)
            done.stderr = err.read()
        return done
    return subprocess.run([MPS_CONTROL, *args], env=env, input=command + "\n", capture_output=True, text=True,
                          timeout=_MPS_COMMAND_TIMEOUT)


def _mps_answers(env: dict) -> bool:
    try:
        return _mps_control(env, "get_server_list").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_mps() -> tuple[dict, bool, str | None]:
    """``(variables, started, temporary folder)``: a control daemon answering at ``variables``."""
    if shutil.which(MPS_CONTROL) is None:
        raise _MPSUnavailable(f"{MPS_CONTROL} is not on PATH")
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
    log = os.environ.get("CUDA_MPS_LOG_DIRECTORY")
    if pipe is None and Path(MPS_DEFAULT_PIPE_DIRECTORY).is_dir():  # a daemon started with NVIDIA's defaults?
        default = {"CUDA_MPS_PIPE_DIRECTORY": MPS_DEFAULT_PIPE_DIRECTORY,
                   "CUDA_MPS_LOG_DIRECTORY": log or MPS_DEFAULT_LOG_DIRECTORY}
        if _mps_answers({**os.environ, **default}):
            return default, False, None
    if pipe is not None and _mps_answers({**os.environ, "CUDA_MPS_PIPE_DIRECTORY": pipe,
                                          **({"CUDA_MPS_LOG_DIRECTORY": log} if log else {})}):
        return {"CUDA_MPS_PIPE_DIRECTORY": pipe, "CUDA_MPS_LOG_DIRECTORY": log or MPS_DEFAULT_LOG_DIRECTORY}, False, None
    tmp = tempfile.mkdtemp(prefix="amixup-mps-") if pipe is None or log is None else None
    variables = {"CUDA_MPS_PIPE_DIRECTORY": pipe or os.path.join(tmp, "pipe"),
                 "CUDA_MPS_LOG_DIRECTORY": log or os.path.join(tmp, "log")}
    env = {**os.environ, **variables}
    running = False
    try:
        for folder in variables.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            done = _mps_control(env, None, "-d")
        except (OSError, subprocess.TimeoutExpired) as err:
            raise _MPSUnavailable(f"'{MPS_CONTROL} -d' failed: {err}") from None
        if done.returncode != 0:
            raise _MPSUnavailable(f"'{MPS_CONTROL} -d' exited {done.returncode}: {done.stderr.strip()[-500:]}")
        running = True
        deadline = time.monotonic() + _MPS_START_TIMEOUT
        while not _mps_answers(env):
            if time.monotonic() > deadline:
                raise _MPSUnavailable(f"the control daemon did not answer 'get_server_list' within "
                                      f"{_MPS_START_TIMEOUT:.0f} s (its log: {variables['CUDA_MPS_LOG_DIRECTORY']})")
            time.sleep(0.1)
    except BaseException:  # Ctrl-C too: a daemon we started is stopped before its folders go
        if running:
            _stop_mps(variables, quiet=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return variables, True, tmp


def _stop_mps(variables: dict, quiet: bool = False) -> None:
    try:
        done = _mps_control({**os.environ, **variables}, "quit")
        problem = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as err:
        problem = str(err)
    if problem and not quiet:
        warnings.warn(f"could not stop the CUDA MPS control daemon at {variables['CUDA_MPS_PIPE_DIRECTORY']} "
                      f"('echo quit | {MPS_CONTROL}': {problem})", MPSWarning, stacklevel=3)


@contextlib.contextmanager
def cuda_mps(required: bool = False, *, stacklevel: int = 3):
    """Context with a CUDA MPS control daemon answering; yields the variables to give its client processes.

    A daemon that already answers (at ``CUDA_MPS_PIPE_DIRECTORY`` if set, else at NVIDIA's default
    folder) is used and left running; otherwise one is started with ``nvidia-cuda-mps-control -d``
    (folders from ``CUDA_MPS_PIPE_DIRECTORY`` / ``CUDA_MPS_LOG_DIRECTORY``, else under a new
    temporary directory), checked with ``get_server_list``, and stopped with ``quit`` on exit, on
    errors too. Where MPS cannot be used: ``RuntimeError`` if ``required``, else one
    :class:`MPSWarning` and ``{}`` (the clients run without MPS); ``stacklevel`` is the warning's
    (3: the ``with`` statement's line).
    """
    try:
        variables, started, tmp = _start_mps()
    except _MPSUnavailable as err:
        if required:
            raise RuntimeError(f"mps='on' but CUDA MPS cannot be used: {err}") from None
        warnings.warn(f"CUDA MPS cannot be used ({err}); the worker processes share the GPU without it",
                      MPSWarning, stacklevel=stacklevel)
        yield {}
        return
    if started:
        print(f"sweep: started the CUDA MPS control daemon (CUDA_MPS_PIPE_DIRECTORY="
              f"{variables['CUDA_MPS_PIPE_DIRECTORY']})", file=sys.stderr)
    try:
        yield dict(variables)
    finally:
        if started:
            _stop_mps(variables)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- sweeps

def run_sweep(configs, results_dir, *, workers="auto", devices=None, progress: bool = True, mps: str = "auto",
              per_gpu: int = WORKERS_PER_GPU) -> list[dict]:
    """Train every config not finished yet and return all records, in the order of ``configs``.

    ``workers=1`` trains in this process; more start one process per run, at most ``workers`` at
    a time. With ``devices`` (e.g. ``["cuda:0", "cuda:1"]``; default: the config's own device) a run
    takes a free device slot until it ends; the slots are ``devices`` in turn, ``workers`` of them (at
    least one per device), so a GPU never has more runs at once than its share, however long each run
    takes (with one worker, the runs take the devices in turn). ``workers="auto"``: ``per_gpu`` processes
    per GPU where the runs go to CUDA devices (without ``devices``, runs on "auto" or "cuda" are spread
    over every visible GPU), 1 on a CPU.
    ``mps``: run the worker processes under CUDA MPS, "auto" where several runs may share a GPU at once,
    "on" always (an error if it cannot start), "off" never (see the module's docstring). Progress shows the epochs
    trained of all
    the runs' epochs, runs done / total and the time left. Configs that share a run id are a ``ValueError``
    (:func:`check_distinct`).
    """
    configs = list(configs)
    check_distinct(configs)
    if mps not in MPS_MODES:
        raise ValueError(f"mps must be one of {list(MPS_MODES)}, got {mps!r}")
    workers, devices = _resolve_workers(workers, configs, devices, per_gpu)
    if mps == "on" and workers == 1:
        raise ValueError("mps='on' puts worker processes under CUDA MPS, but with workers=1 the runs train "
                         "in this process: use workers > 1 (or mps='auto')")
    results_dir = Path(results_dir)
    todo = pending(configs, results_dir)
    bar = _EpochBar(configs, results_dir, todo, progress_bars.enabled(progress))
    groups = [[c] for c in todo]
    slots = _device_slots(devices, min(workers, len(groups))) if devices else []
    free = queue.Queue()
    for device in slots:
        free.put(device)

    @contextlib.contextmanager
    def on_free_device(group):
        """``group`` on a free device slot, held until the ``with`` ends (as it is without ``devices``)."""
        if not devices:
            yield group
            return
        device = free.get()
        try:
            yield [RunConfig.from_dict({**c.to_dict(), "device": device}) for c in group]
        finally:
            free.put(device)

    if workers == 1:
        for group in groups:
            with on_free_device(group) as group:
                _train_group(group, results_dir, progress, bar.epoch)
            bar.runs_done(group)
    elif todo:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // workers)  # the cores this process may use (a SLURM or cgroup share)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        plugins = data.plugin_modules(c.dataset for c in todo)  # registered datasets reach the workers
        env["AMIXUP_PLUGINS"] = ",".join(filter(None, [os.environ.get("AMIXUP_PLUGINS"), *plugins]))
        worker_devices = slots or [g[0].device for g in groups]

        processes = _Workers()  # stopped if the sweep is interrupted (their checkpoints stay)

        def launch(group):
            with on_free_device(group) as group:
                returncode, stderr = processes.run(_worker_command(group, results_dir, threads), env, bar.epoch)
            if returncode not in (0, None):
                what = f"run {group[0].run_id()}"
                log = results_dir / "logs" / f"{group[0].run_id()}.log"  # the worker's whole stderr
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(stderr)
                raise RuntimeError(f"{what} failed (exit {returncode}; its output: {log}):\n{stderr[-2000:]}")
            return group

        failures = []
        with contextlib.ExitStack() as stack:
            if _wants_mps(mps, worker_devices):  # stopped on leaving, after every worker has ended
                env.update(stack.enter_context(cuda_mps(required=mps == "on", stacklevel=5)))  # run_sweep's caller
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
            futures = {pool.submit(launch, g): g for g in groups}
            try:
                for future in as_completed(futures):
                    try:
                        future.result()
                    except RuntimeError as err:
                        failures.append((len(futures[future]), str(err)))
                        continue
                    bar.runs_done(futures[future])
            except BaseException:  # e.g. KeyboardInterrupt, SIGTERM: start no further run, stop the running ones
                for future in futures:
                    future.cancel()
                processes.stop()
                raise
        if failures:
            bar.close()
            failed = sum(n for n, _ in failures)
            others = "".join(f"\n{message.splitlines()[0]}" for _, message in failures[1:])
            raise RuntimeError(f"{failed} of {len(todo)} runs failed; the others are recorded.\n" + failures[0][1]
                               + others)
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

    check_distinct(configs)
    todo = pending(configs, results_dir)
    if not todo:
        return []
    plugins = data.plugin_modules(c.dataset for c in todo)  # registered datasets reach the jobs, as the workers
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**slurm_parameters)
    with executor.batch():
        jobs = [executor.submit(_slurm_job, plugins, g, str(results_dir)) for g in todo]
    return jobs


def _slurm_job(plugins: list[str], config: RunConfig, results_dir: str):
    """One SLURM job: import the modules that register the run's dataset, then train the run (its record)."""
    import importlib

    for module in plugins:
        importlib.import_module(module)
    return train(config, results_dir, progress=False)


_positive_int = number_argument(int, 1)


def _workers(text: str):
    return "auto" if text == "auto" else _positive_int(text)


def _seed_list(text: str) -> list[int]:
    """An argparse ``type``: comma-separated integers."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1,2, got {text!r}") from None


def _device_list(text: str) -> list[str]:
    """An argparse ``type``: comma-separated torch devices (whether CUDA is there is checked later)."""
    devices = text.split(",")
    try:
        for device in devices:
            torch.device(device)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated devices, e.g. cpu or cuda:0,cuda:1, "
                                         f"got {text!r} ({err})") from None
    return devices


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amixup.sweep", description="Run a grid of configurations x seeds.")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="motivation")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                        help="a config field and its values, e.g. --grid method=ce,am_mixup")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed config field")
    parser.add_argument("--seeds", type=_seed_list, default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--experiment", default="sweep")
    parser.add_argument("--results-dir", default="results/runs",
                        help="where records and checkpoints go (default: results/runs)")
    parser.add_argument("--workers", type=_workers, default="auto",
                        help="runs at a time, each in its own process (1: in this process); auto (default): "
                             "--workers-per-gpu per GPU with CUDA MPS where the runs go to GPUs, 1 on a CPU")
    parser.add_argument("--workers-per-gpu", type=_positive_int, default=WORKERS_PER_GPU, metavar="N",
                        help=f"worker processes per GPU for --workers auto (default: {WORKERS_PER_GPU})")
    parser.add_argument("--devices", type=_device_list, default=None,
                        help="comma-separated devices, each with its share of the workers (also with one worker)")
    parser.add_argument("--mps", choices=MPS_MODES, default="auto",
                        help="CUDA MPS for the worker processes: auto (default: when several runs share a GPU), "
                             "on (always; an error if the daemon cannot start), off")
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
        _train_group([RunConfig.from_dict(c) for c in json.loads(args.worker)], args.results_dir,
                     on_epoch=lambda run_id, epoch: print(EPOCH_LINE, run_id, epoch, flush=True))
        return 0

    try:
        grid = parse_assignments(args.grid, "--grid", split=True)
        fixed, slurm = parse_assignments(args.set), parse_assignments(args.slurm, "--slurm")
    except ValueError as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # kill, timeout, a scheduler: workers and MPS stopped too
    try:
        configs = expand_grid(args.recipe, args.profile, grid,
                              seeds=args.seeds, experiment=args.experiment,
                              **fixed)
        if not args.slurm:  # runs here: e.g. cuda without CUDA is a command-line error (not so for SLURM)
            for device in (args.devices or sorted({c.device for c in configs})):
                resolve_device(device)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    if args.slurm:
        if args.devices:
            parser.error("--devices places runs on this machine's devices; with --slurm each job gets the GPUs "
                         "SLURM gives it: ask for them with --slurm gpus_per_node=N")
        local = [flag for flag, value, default in (("--workers", args.workers, "auto"), ("--mps", args.mps, "auto"),
                 ("--workers-per-gpu", args.workers_per_gpu, WORKERS_PER_GPU)) if value != default]
        if local:
            parser.error(f"{', '.join(local)} shape the runs on this machine; with --slurm each run is a "
                         "SLURM job: ask for its resources with --slurm PARAM=VALUE")
        slurm.setdefault("cluster", "slurm")  # not submitit's silent fallback to local processes
        todo = len(pending(configs, args.results_dir))
        try:
            jobs = submit_slurm(configs, args.results_dir, folder=args.slurm_folder, **slurm)
        except RuntimeError as err:  # submitit: no SLURM here
            parser.error(f"--slurm: {err} (--slurm cluster=local runs the jobs as local processes)")
        print(f"submitted {todo} runs as {len(jobs)} jobs ({len(configs) - todo} already finished): "
              + ", ".join(str(job.job_id) for job in jobs))
        return 0
    workers = _resolve_workers(args.workers, configs, args.devices, args.workers_per_gpu)[0]
    if args.mps == "on" and workers == 1:
        parser.error("--mps on puts worker processes under CUDA MPS, but with one worker the runs train in "
                     "this process: use --workers N (N > 1)")
    try:
        records = run_sweep(configs, args.results_dir, workers=args.workers, devices=args.devices, mps=args.mps,
                            per_gpu=args.workers_per_gpu)
    except ValueError as err:  # a parameter found wrong once the data is read (the message names it)
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except (RuntimeError, CorruptFileError, data.DataNotFoundError, data.DataCorruptError) as err:
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    for rec in records:
        print(rec["run_id"], f"acc_all={rec['metrics']['last']['acc_all']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
