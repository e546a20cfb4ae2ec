"""List-file datasets (ImageNet-LT, Places-LT): ``<relative/path.jpg> <label>`` per line.

Images are decoded once, resized (shorter side) to ``size`` and center-cropped to
``size`` x ``size`` (default 256), and kept as uint8 [N, 3, size, size] like the other
datasets; the usual 224-pixel crops (random-resized for training, center for testing) are
left to the batched pipeline on the device. The decoded tensors are cached in
``amixup.data.cache_dir()``. The full ImageNet-LT train list (115,846 images) at 256x256
takes 115,846 * 3 * 256 * 256 bytes = 22.8 GB (21.2 GiB) of memory and cache.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path, PurePosixPath

import torch

from .cache import _read_cache, _write_cache, cache_dir
from .imagefolder import _decode_file
from .images import _CACHE_FORMAT, SPLITS, DataCorruptError, DataNotFoundError, ImageData, _check_choice

#: name -> (environment variable with the image root, list-file prefix)
LIST_DATASETS = {
    "imagenet_lt": ("AMIXUP_IMAGENET_LT_ROOT", "ImageNet_LT"),
    "places_lt": ("AMIXUP_PLACES_LT_ROOT", "Places_LT"),
}
#: name -> number of classes (the labels of its list files lie below it)
LIST_CLASSES = {"imagenet_lt": 1000, "places_lt": 365}
_FORMAT = "<relative path> <label>"


def _parse(path: Path) -> list[tuple[int, str, int]]:
    """(line number, relative path, label) for every non-blank line of a list file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            where = f"{path} line {number}"
            fields = text.split()
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '{_FORMAT}', got {text!r}")
            rel, label = fields
            try:
                label = int(label)
            except ValueError:
                label = -1
            if label < 0:
                raise ValueError(f"{where}: label must be a non-negative integer, got {text!r}")
            if PurePosixPath(rel).is_absolute() or os.path.isabs(rel) or ".." in PurePosixPath(rel).parts:
                raise ValueError(f"{where}: path must be relative to the image root without '..', got {text!r}")
            out.append((number, rel, label))
    return out


def parse_list_file(path) -> list[tuple[str, int]]:
    """(relative path, label) pairs of a list file; blank lines skipped, bad lines raise ValueError."""
    return [(rel, label) for _, rel, label in _parse(Path(path))]


def _cache_path(list_file: Path, root: Path, size: int) -> Path:
    """Name from the list file's name, a hash of its content and the image root, and the size."""
    h = hashlib.sha1(list_file.read_bytes())
    h.update(str(root.resolve()).encode())
    return cache_dir() / f"{list_file.stem}-{h.hexdigest()[:12]}-{size}px.pt"


def _decode_all(list_file: Path, root: Path, entries, size: int) -> torch.Tensor:
    from torchvision.io import ImageReadMode
    from torchvision.transforms.v2.functional import center_crop, resize

    for number, rel, _ in entries:  # fail before a long decode, not after it
        if not (root / rel).is_file():
            raise FileNotFoundError(f"{list_file} line {number}: image {root / rel} not found")
    images = torch.empty((len(entries), 3, size, size), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 emits a DeprecationWarning on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, (number, rel, _) in enumerate(entries):
            path = root / rel
            try:
                img = _decode_file(path, ImageReadMode.RGB)
            except RuntimeError as exc:
                raise DataCorruptError(f"{list_file} line {number}: cannot decode image {path}: {exc}") from exc
            images[i] = center_crop(resize(img, [size], antialias=True), [size, size])
    return images


def load_image_list(list_file, image_root, *, size: int = 256, classes: list[str] | None = None,
                    cache: bool = True) -> ImageData:
    """Images of a list file as uint8 [N, 3, size, size] (shorter side resized to ``size``,
    then center-cropped), labels from the list.

    ``classes`` names the labels (default: "0" .. str(max label)). With ``cache`` the decoded
    tensors are read from / written to ``cache_dir()``, keyed by the list file's name and
    content, the image root and ``size``.
    """
    list_file, root = Path(list_file), Path(image_root)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    entries = _parse(list_file)
    if not entries:
        raise ValueError(f"list file {list_file} has no entries")
    top = max(entries, key=lambda e: e[2])
    if classes is None:
        classes = [str(c) for c in range(top[2] + 1)]
    elif top[2] >= len(classes):
        raise ValueError(f"{list_file} line {top[0]}: label {top[2]} >= the {len(classes)} classes given")
    source = f"list file {list_file.name} under {root}"
    path = _cache_path(list_file, root, size) if cache else None
    if path is not None and path.is_file():
        payload = _read_cache(path)
        return ImageData(payload["images"], payload["labels"], list(classes), f"cache {path.name} of {source}")
    images = _decode_all(list_file, root, entries, size)
    labels = torch.tensor([label for _, _, label in entries], dtype=torch.int64)
    if path is not None:
        _write_cache(path, {"format": _CACHE_FORMAT, "images": images, "labels": labels, "source": source})
    return ImageData(images, labels, list(classes), source)


def load_list_dataset(name: str, split: str) -> ImageData:
    """A registered list-file dataset (see LIST_DATASETS) from its environment variable's image root;
    list files ``<prefix>_<split>.txt`` are looked for in the root, then its parent."""
    _check_choice("name", name, LIST_DATASETS)
    _check_choice("split", split, SPLITS)
    var, prefix = LIST_DATASETS[name]
    names = f"{prefix}_train.txt and {prefix}_test.txt"
    value = os.environ.get(var)
    if not value:
        raise DataNotFoundError(f"dataset {name!r}: set {var} to the image root; the list files {names} "
                                  "are looked for in it and in its parent")
    root = Path(value).expanduser()
    candidates = [root / f"{prefix}_{split}.txt", root.parent / f"{prefix}_{split}.txt"]
    found = next((p for p in candidates if p.is_file()), None)
    if not root.is_dir() or found is None:
        looked = ", ".join(str(p) for p in candidates)
        raise DataNotFoundError(f"dataset {name!r}: {var}={value} must be a folder of images with the list "
                                  f"files {names} in it or its parent; looked for {looked}")
    classes = [str(c) for c in range(LIST_CLASSES[name])]
    return load_image_list(found, root, classes=classes)

