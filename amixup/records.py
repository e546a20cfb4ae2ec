"""Run records: one JSON file per run, written atomically, read back into tables."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class CorruptFileError(RuntimeError):
    """A record or checkpoint that cannot be read; the message names the file and what to do."""


class RunBusyError(RuntimeError):
    """A run that another process is training (it holds the run's lock file)."""


class ResultsWriteError(OSError):
    """A file of a results folder that could not be written (a full disk, a read-only or forbidden folder); the
    message is one line naming the path, the cause and what was kept."""

    def __str__(self) -> str:
        return str(self.strerror)


#: What to do about an ``OSError`` of a results folder, by errno (the rest: the system's own words).
_WRITE_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there or pass another --results-dir / results_dir",
    errno.EDQUOT: "the disk quota is used up: free space there or pass another --results-dir / results_dir",
    errno.EACCES: "the folder is not writable: fix its permissions or pass another --results-dir / results_dir",
    errno.EPERM: "the folder is not writable: fix its permissions or pass another --results-dir / results_dir",
    errno.EROFS: "the file system is read-only: pass another --results-dir / results_dir",
}


def results_write_error(path, err: OSError, kept: str) -> ResultsWriteError:
    """The one-line :class:`ResultsWriteError` for ``err`` met while writing ``path``."""
    cause = err.strerror or str(err) or type(err).__name__
    advice = _WRITE_ADVICE.get(err.errno, "")
    return ResultsWriteError(err.errno, f"cannot write {path}: {cause}{' (' + advice + ')' if advice else ''}; "
                             f"kept: {kept}")


@contextlib.contextmanager
def run_lock(path, run_id: str):
    """Hold the lock file ``path`` of run ``run_id`` for the ``with`` block, so that no second process trains the
    same run into the same checkpoint and record (a resubmitted job, a second sweep): that one gets a
    :class:`RunBusyError`. The operating system releases the lock when its holder ends, however it ends. Where
    ``fcntl`` is missing (not POSIX) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as err:  # before any training: nothing of the run is touched
        raise results_write_error(path, err, "every file of the run as it was (nothing trained)") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"run {run_id} is being trained by another process (it holds {path}); wait for its "
                               "record, or stop that process (its checkpoint lets the run resume)") from None
        yield


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``; the file gets the
    permissions an ordinary new file would (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    kept = f"the previous {path.name}, unchanged" if path.exists() else f"no {path.name} (nothing half-written)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise results_write_error(path, err, kept) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a machine that goes down leaves the old file or the new
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise results_write_error(path, err, kept) from None
        raise


def write_record(record: dict, path, overwrite: bool = False) -> Path:
    """Save ``record`` as JSON at ``path``; refuse to replace an existing record unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"record {path} exists; pass overwrite=True to replace it")
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_record(path) -> dict:
    """A record; ``CorruptFileError`` naming the file when it is not valid JSON (e.g. truncated)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"record {path} is corrupt or truncated ({exc}); delete it to run again, "
                               "or pass overwrite=True (--overwrite) to replace it") from exc


def load_records(results_dir, experiment: str | None = None) -> list[dict]:
    """All records under ``results_dir`` (recursively), optionally of one experiment."""
    records = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        try:
            rec = read_record(path)
        except CorruptFileError as err:
            warnings.warn(str(err), stacklevel=2)
            continue
        if not isinstance(rec, dict) or "config" not in rec or "metrics" not in rec:
            continue
        if experiment is None or rec["config"].get("experiment") == experiment:
            records.append(rec)
    return records


def git_commit() -> dict:
    """The repository's commit and whether the tree had uncommitted changes. A copy of the tree
    without ``.git`` (e.g. sent to a remote GPU machine) reports ``AMIXUP_COMMIT`` when it is set."""
    told = os.environ.get("AMIXUP_COMMIT")
    unknown = {"commit": told, "dirty": None, "from": "AMIXUP_COMMIT"} if told else {"commit": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return unknown
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "amixup")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return unknown


_LOADED_CODE: dict | None = None


def code_provenance() -> dict:
    """The commit of the code this process loaded (read once, at first use after import), so a
    long-running process keeps reporting the code it runs even if the checkout moves on."""
    global _LOADED_CODE
    if _LOADED_CODE is None:
        _LOADED_CODE = git_commit()
    return dict(_LOADED_CODE)


def environment(device) -> dict:
    """Package versions and the device a run used."""
    import torch
    import torchvision

    from ._version import __version__

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "amixup": __version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info
