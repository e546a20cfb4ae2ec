"""MNIST from its canonical IDX files (optionally gzipped)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .cache import _split_dict
from .images import DataCorruptError


_IDX_MAGIC = {"labels": 2049, "images": 2051}



def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an (optionally gzipped) IDX file of unsigned bytes, checking magic number and size."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataCorruptError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
        raise DataCorruptError(f"IDX file {path}: bad magic number {found}, expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataCorruptError(f"IDX file {path} is truncated (header)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise DataCorruptError(f"IDX file {path}: {len(raw) - header} data bytes, expected {int(np.prod(dims))} "
                               f"for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)



def _mnist_file(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None



def _read_mnist_files(folder: Path) -> dict:
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_mnist_file(folder, f"{prefix}-images-idx3-ubyte"), _IDX_MAGIC["images"])
        labels = read_idx(_mnist_file(folder, f"{prefix}-labels-idx1-ubyte"), _IDX_MAGIC["labels"])
        if len(images) != len(labels):
            raise DataCorruptError(f"MNIST {split} in {folder}: {len(images)} images but {len(labels)} labels")
        out[split] = _split_dict(torch.from_numpy(images.copy()).unsqueeze(1),
                                 torch.from_numpy(labels.astype(np.int64)))
    return out



def _has_mnist_files(folder: Path) -> bool:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all(_mnist_file(folder, s) is not None for s in stems)

