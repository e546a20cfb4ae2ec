"""``torchvision:<Class>[:<root>]`` datasets: a torchvision dataset class over files a user already has."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cache import _cached, _from_payload, _split_dict, search_paths
from .images import SPLITS, DataNotFoundError, ImageData, _check_choice


def torchvision_loader(class_name: str, root=None) -> Callable[[str], ImageData]:
    """Loader (for register_dataset) of a torchvision dataset class (e.g. "SVHN", "FashionMNIST") over the
    files a user already has (never downloads): ``root`` given, or else looked for as <folder>/<name>,
    <folder>/<name lowercased> and <folder> in search_paths(). Decoded once and cached."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"torchvision:{class_name}: torchvision.datasets has no dataset class {class_name!r}")

    def roots() -> list[Path]:
        if root is not None:
            return [Path(root).expanduser()]
        return [p for base in search_paths() for p in (base / class_name, base / class_name.lower(), base)]

    def make(r: Path, split: str):
        import inspect

        params = inspect.signature(cls).parameters
        kw = {"train": split == "train"} if "train" in params else {"split": split} if "split" in params else {}
        return cls(root=str(r), download=False, **kw) if "download" in params else cls(root=str(r), **kw)

    def build():
        errors = []
        for r in roots():
            try:
                parts = {s: make(r, s) for s in SPLITS}
            except (RuntimeError, OSError, ValueError) as exc:
                errors.append(f"{r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
            out = {s: _torchvision_arrays(ds) for s, ds in parts.items()}
            classes = list(getattr(parts["train"], "classes", []) or [])
            n = int(max(out["train"]["labels"].max(), out["test"]["labels"].max())) + 1
            classes = [str(c) for c in classes] if len(classes) >= n else [str(c) for c in range(n)]
            return {"classes": classes, "source": f"torchvision {class_name} files in {r}", **out}
        raise DataNotFoundError(f"torchvision dataset {class_name} not found (no download is tried); looked in:\n  "
                                + "\n  ".join(errors) + f"\nPut its files in one of these folders or name one: "
                                f"'torchvision:{class_name}:/path/to/root'")

    def load(split: str) -> ImageData:
        _check_choice("split", split, SPLITS)
        key = "-".join(str(p.resolve()) for p in roots())
        import hashlib

        payload = _cached(f"torchvision-{class_name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}", build)
        return _from_payload(payload, split, payload["source"])
    return load



def _torchvision_arrays(ds) -> dict:
    """uint8 [N, C, H, W] images and int64 labels of a torchvision dataset (array fast path, else item by item)."""
    raw = getattr(ds, "data", None)
    labels = next((getattr(ds, k) for k in ("targets", "labels") if getattr(ds, k, None) is not None), None)
    if raw is not None and labels is not None and hasattr(raw, "shape") and len(raw) == len(labels):
        images = torch.as_tensor(np.asarray(raw))
        if images.dtype == torch.uint8 and images.ndim in (3, 4):
            if images.ndim == 3:
                images = images.unsqueeze(1)
            elif images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
                images = images.permute(0, 3, 1, 2)
            return _split_dict(images.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64))
    from torchvision.transforms.functional import pil_to_tensor

    items = [ds[i] for i in range(len(ds))]
    return _split_dict(torch.stack([pil_to_tensor(x) for x, _ in items]),
                       torch.tensor([int(y) for _, y in items], dtype=torch.int64))

