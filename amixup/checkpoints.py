"""Where a run's files live and how it resumes: record and checkpoint paths, the run lock, saving and restoring
a run's whole training state (model, optimizer, the policy's draws and AM schedule, augmentation generators,
history), and the agreement distributed processes need about which of those files exist."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from . import distributed as ddp
from .config import RunConfig
from .records import CorruptFileError, atomic_write_bytes

DEFAULT_RESULTS_DIR = Path("results") / "runs"


def record_path(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR) -> Path:
    """The record of ``config``'s run: ``<results_dir>/<experiment>/<run id>.json``."""
    return Path(results_dir) / config.experiment / f"{config.run_id()}.json"


def checkpoint_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{run_id}.pt"


def lock_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{run_id}.lock"


def run_record_path(results_dir: Path, run_id: str) -> Path | None:
    """The record of ``run_id`` in ``results_dir`` (its folder, the experiment, starts the id), None if none."""
    paths = (Path(results_dir) / run_id[:i] / f"{run_id}.json" for i, char in enumerate(run_id) if char == "-")
    return next((path for path in paths if path.is_file()), None)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (the previous checkpoint stays until the new one is whole)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location, **kwargs) -> dict:
    """A checkpoint; ``CorruptFileError`` naming the file and what to do when it cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
    except Exception as exc:  # truncated zip, full disk, not a checkpoint: torch raises many kinds
        raise CorruptFileError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "it may be truncated (e.g. a disk that filled up). Delete it to restart this run from its first "
            "epoch, or pass overwrite=True (--overwrite) to start over") from exc


def epochs_done(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR) -> int:
    """The epochs a run has trained: all of them if it has a record, else its checkpoint's epoch (0 if none);
    ``CorruptFileError`` for an unreadable checkpoint. Only the epoch counter is read (mmap), not the weights."""
    results_dir = Path(results_dir)
    if record_path(config, results_dir).exists():
        return config.epochs
    path = checkpoint_path(results_dir, config.run_id())
    return int(load_checkpoint(path, "cpu", mmap=True)["epoch"]) if path.exists() else 0


def _torch_rng_state(device: torch.device) -> dict:
    """torch's global RNG state (what dropout draws from): the CPU one, and that of ``device`` on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_torch_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def save_run(run, path: Path, epochs: int) -> None:
    """Checkpoint ``run`` (an :class:`amixup.engine.Run`) after ``epochs`` epochs. Every process calls it (the
    gathers are collective); rank 0 writes the file."""
    policy = run.policy
    state = {
        "epoch": epochs, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "am": policy.scheduler.state_dict(), "policy": policy.state_dict(), "host_gen": policy.pairing.get_state(),
        "device_gen": run.device_gen.get_state().cpu(), "history": run.history, "seconds": run.seconds,
        "world_size": run.world,
    }
    state["torch_rng"] = ddp.gather_objects(_torch_rng_state(run.device))  # per process, in rank order
    if run.world > 1:  # per process: a rank's pairings draw its share's size (uneven in a last batch)
        state["rank_host_gens"] = ddp.gather_objects(policy.pairing.get_state())
        state["rank_gens"] = ddp.gather_objects(run.device_gen.get_state().cpu())
        state["shuffle_gen"] = run.shuffle_gen.get_state().cpu()
    if run.rank == 0:
        save_checkpoint(path, state)


def restore_run(run, path: Path) -> None:
    """Load the checkpoint at ``path`` into ``run``; a ``ValueError`` if it was written by another number of
    processes (each one's data order and augmentation go on from it)."""
    state = load_checkpoint(path, run.device)
    written = state.get("world_size", len(state.get("rank_gens", [None])))  # older checkpoints: from their generators
    if written != run.world:
        raise ValueError(f"checkpoint {path} was written by {written} process(es) and cannot resume in {run.world}: "
                         f"resume it with {written} (torchrun --nproc_per_node={written}; 1: without torchrun), or "
                         "start over with overwrite=True (--overwrite) or a fresh results dir")
    rank = run.rank
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.policy.scheduler.load_state_dict(state["am"])
    run.policy.load_state_dict(state["policy"])
    run.policy.pairing.set_state(state["rank_host_gens"][rank] if "rank_host_gens" in state else state["host_gen"])
    run.device_gen.set_state(state["device_gen"].cpu() if "rank_gens" not in state else state["rank_gens"][rank].cpu())
    if run.shuffle_gen is not None:
        run.shuffle_gen.set_state(state["shuffle_gen"].cpu())
    if "torch_rng" in state:  # older checkpoints lack it (they resume as before)
        _set_torch_rng_state(state["torch_rng"][rank], run.device)
    run.history, run.start_epoch, run.seconds = state["history"], state["epoch"], state["seconds"]


def record_everywhere(out_path: Path, ckpt_path: Path) -> bool:
    """Whether every process of a distributed run sees the run's record (one answer, the same on every process).
    They must see one results folder: a ``ValueError`` on every process where some see the record or checkpoint
    and others do not (a folder on each machine's own disk), where they would resume from different epochs or
    wait for each other forever."""
    seen = ddp.gather_objects((out_path.exists(), ckpt_path.exists()))
    if all(record for record, _ in seen):  # finished: nothing to resume
        return True
    for i, (what, path) in enumerate((("record", out_path), ("checkpoint", ckpt_path))):
        found = [s[i] for s in seen]
        if any(found) and not all(found):
            ranks = lambda want: [r for r, f in enumerate(found) if f == want]  # noqa: E731
            raise ValueError(f"the run's {what} {path.name} is in the results folder of rank(s) {ranks(True)} but not "
                             f"of {ranks(False)} (this process's: {path.parent.parent}): the "
                             "processes of a distributed run must share one results folder (--results-dir on a file "
                             "system every machine mounts), or resume from the same copy of it")
    return False
