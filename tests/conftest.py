"""Shared fixtures: offline data for the engine and notebook tests.

Tests use the real offline copies in ``../shared/datasets`` when they are present and
small generated data in the canonical CIFAR-10 file format otherwise; none needs the
internet. The real JPEG archive is decoded once per test session into a session cache.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def has_real_data() -> bool:
    return (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file() and (SHARED_DATA / "mnist").is_dir()


def write_generated_cifar10(folder: Path, train_per_class: int = 250, test_per_class: int = 20) -> None:
    """Canonical ``cifar-10-batches-py`` files with class-dependent random images."""
    from amixup.data import CIFAR10_CLASSES

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(per_class):
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        base = (labels[:, None] * 25).astype(np.int64)  # a class-dependent mean makes the task learnable
        data = np.clip(base + rng.integers(-40, 40, size=(len(labels), 3072)), 0, 255).astype(np.uint8)
        return data, labels.tolist()

    parts = [batch(train_per_class // 5) for _ in range(5)]
    for i, (data, labels) in enumerate(parts, 1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    data, labels = batch(test_per_class)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)


@pytest.fixture(scope="session")
def data_env(tmp_path_factory) -> dict:
    """Environment variables pointing amixup at offline data and a per-session cache.

    Returns the variables (also set in ``os.environ`` for the session) plus ``kind``:
    ``"real"`` or ``"generated"``.
    """
    cache = tmp_path_factory.mktemp("amixup-cache")
    if has_real_data():
        env = {"AMIXUP_DATA_PATH": str(SHARED_DATA), "AMIXUP_CACHE_DIR": str(cache)}
        kind = "real"
    else:
        root = tmp_path_factory.mktemp("generated-data")
        write_generated_cifar10(root / "cifar-10-batches-py")
        env = {"AMIXUP_DATA_PATH": str(root), "AMIXUP_CACHE_DIR": str(cache)}
        kind = "generated"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {**env, "kind": kind}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
