"""CIFAR-10 and CIFAR-100 from their canonical (torchvision) python pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .cache import _split_dict
from .images import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_COARSE_OF_FINE, SPLITS, DataCorruptError


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataCorruptError(f"cannot read pickle {path}: {exc}") from exc
    # Python-2 pickles may have bytes keys; normalise to str.
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}



def _cifar_arrays(path: Path, label_key: str, d: dict | None = None) -> tuple[np.ndarray, list[int]]:
    d = _unpickle(path) if d is None else d
    try:
        data, labels = np.asarray(d["data"], dtype=np.uint8), list(d[label_key])
    except KeyError as exc:
        raise DataCorruptError(f"{path} lacks key {exc}") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise DataCorruptError(f"{path}: data shape {data.shape} does not match {len(labels)} labels x 3072")
    return data, labels



def _cifar_split(arrays: list[tuple[np.ndarray, list[int]]]) -> dict:
    data = np.concatenate([a for a, _ in arrays]).reshape(-1, 3, 32, 32)
    labels = [lab for _, labs in arrays for lab in labs]
    return _split_dict(torch.from_numpy(data.copy()), torch.tensor(labels, dtype=torch.int64))



def _check_names(path: Path, names, expected: list[str]) -> None:
    if list(names) != expected:
        raise DataCorruptError(f"{path}: class names {list(names)[:5]}... differ from the canonical list")



def _read_cifar10_files(folder: Path) -> dict:
    _check_names(folder / "batches.meta", _unpickle(folder / "batches.meta").get("label_names", []),
                 CIFAR10_CLASSES)
    train = [_cifar_arrays(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    return {"train": _cifar_split(train), "test": _cifar_split([_cifar_arrays(folder / "test_batch", "labels")])}



def _read_cifar100_files(folder: Path) -> dict:
    meta = _unpickle(folder / "meta")
    _check_names(folder / "meta", meta.get("fine_label_names", []), CIFAR100_CLASSES)
    out = {}
    for split in SPLITS:
        d = _unpickle(folder / split)
        data, fine = _cifar_arrays(folder / split, "fine_labels", d)
        coarse = d.get("coarse_labels")
        if coarse is not None and [CIFAR100_COARSE_OF_FINE[f] for f in fine] != list(coarse):
            raise DataCorruptError(f"{folder / split}: coarse_labels disagree with CIFAR100_COARSE_OF_FINE")
        out[split] = _cifar_split([(data, fine)])
    return out

