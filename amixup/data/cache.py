"""Where datasets are looked for (AMIXUP_DATA_PATH, then the repository's data/ folder) and the cache of
decoded datasets (AMIXUP_CACHE_DIR): atomic writes, checked reads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .images import _CACHE_FORMAT, DataCorruptError, DataNotFoundError, ImageData


REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"



def search_paths() -> list[Path]:
    """Folders searched for offline copies: AMIXUP_DATA_PATH entries, then the repo's data/ folder."""
    env = os.environ.get("AMIXUP_DATA_PATH", "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p] + [REPO_DATA_DIR]



def cache_dir() -> Path:
    """AMIXUP_CACHE_DIR if set, else <repo>/data/cache; created on demand."""
    env = os.environ.get("AMIXUP_CACHE_DIR")
    path = Path(env).expanduser() if env else REPO_DATA_DIR / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path



def _split_dict(images: torch.Tensor, labels: torch.Tensor) -> dict:
    return {"images": images.contiguous(), "labels": labels.to(torch.int64)}



def _write_cache(path: Path, payload: dict) -> None:
    """torch.save to a temp file in the same folder, then atomically rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; the cache is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)



def _read_cache(path: Path) -> dict:
    try:
        payload = torch.load(path, weights_only=True)
        if payload.get("format") != _CACHE_FORMAT:
            raise ValueError(f"unknown cache format {payload.get('format')!r}")
        return payload
    except Exception as exc:  # any unreadable cache is reported, never silently used
        raise DataCorruptError(f"cache file {path} is unreadable ({exc}); delete it to rebuild") from exc



def _from_payload(payload: dict, split: str, source: str) -> ImageData:
    part = payload[split]
    return ImageData(part["images"], part["labels"], list(payload["classes"]), source)



def _stat_key(root: Path) -> str:
    """A cache key changing with the files under ``root`` (paths, sizes, modification times)."""
    import hashlib

    h = hashlib.sha1(str(root.resolve()).encode())
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]



def _cached(stem: str, build: Callable[[], dict]) -> dict:
    path = cache_dir() / f"{stem}.pt"
    if path.is_file():
        return _read_cache(path)
    payload = {"format": _CACHE_FORMAT, **build()}
    _write_cache(path, payload)
    return payload


def cached_split(name: str, split: str, tried: list[str]) -> ImageData | None:
    """``split`` of dataset ``name`` from its cache ``cache_dir()/<name>.pt``; None (and the place noted in
    ``tried``) where there is none."""
    path = cache_dir() / f"{name}.pt"
    if not path.is_file():
        tried.append(f"{path} (cache)")
        return None
    payload = _read_cache(path)
    return _from_payload(payload, split, f"cache {path.name} of {payload['source']}")


def cache_and_split(name: str, split: str, source: str, found: dict) -> ImageData:
    """Cache both splits a source ``found`` ({"classes", "train", "test"}) as ``name``; return ``split``."""
    payload = {"format": _CACHE_FORMAT, "name": name, "source": source, **found}
    _write_cache(cache_dir() / f"{name}.pt", payload)
    return _from_payload(payload, split, source)


def not_found(name: str, sources, tried: list[str], provide: str) -> DataNotFoundError:
    """The error of a dataset no source had: every place looked, then how to provide it."""
    looked = "\n  ".join(tried) or "(no sources given)"
    return DataNotFoundError(f"dataset {name!r} not found. Places looked (sources {list(sources)}):\n  {looked}\n"
                             f"To provide it: {provide}")
