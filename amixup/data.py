"""Datasets for AM-mixup: offline loading of CIFAR-10/100 and MNIST, long-tail and coarse variants,
and the list-file datasets ImageNet-LT and Places-LT (see amixup.imagelist).

Everything is kept as uint8 CPU tensors ([N, C, H, W]); normalisation and device moves happen elsewhere.
Loaders try a list of sources in order (see ``DEFAULT_SOURCES``) and cache both splits of a dataset in
``cache_dir()/<dataset>.pt`` once any source succeeds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_SOURCES = ("cache", "imagefolder", "torchvision_files", "download")
SPLITS = ("test", "train")
_CACHE_FORMAT = 1

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
MNIST_CLASSES = [str(d) for d in range(10)]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]
CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]
# CIFAR100_COARSE_OF_FINE[fine_label] = coarse_label (fine labels in alphabetical order, as in the dataset).
CIFAR100_COARSE_OF_FINE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]

# Per-channel (mean, std) in [0, 1] pixel units.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "imagenet_lt": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet statistics
    "places_lt": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet statistics, as usual for Places
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),  # Tiny-ImageNet training set
}


class DataNotFoundError(FileNotFoundError):
    """No source could provide the dataset."""


class WeightsNotFoundError(DataNotFoundError, ValueError):
    """Pretrained weights that ``finetune_from`` names are not here and cannot be downloaded: a run that cannot
    start on this machine, skipped like one without its data (and a ``ValueError`` naming ``finetune_from``)."""


class DataCorruptError(RuntimeError):
    """A dataset file or archive is corrupt, truncated or unsafe."""


@dataclass
class ImageData:
    """Images (uint8 [N, C, H, W]) with int64 labels, class names and a provenance string."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> list[int]:
        """Number of images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, index) -> "ImageData":
        """Rows selected by an index tensor/list or boolean mask."""
        index = torch.as_tensor(index)
        return ImageData(self.images[index].contiguous(), self.labels[index].clone(),
                         list(self.classes), self.source)

    def relabel(self, mapping: list[int], classes: list[str]) -> "ImageData":
        """Map label i to mapping[i] (e.g. fine -> coarse); ``classes`` names the new labels."""
        if len(mapping) != self.num_classes:
            raise ValueError(f"mapping must have {self.num_classes} entries, got {len(mapping)}")
        if any(not 0 <= m < len(classes) for m in mapping):
            raise ValueError(f"mapping values must be in [0, {len(classes) - 1}], got {mapping}")
        table = torch.tensor(mapping, dtype=torch.int64)
        return ImageData(self.images, table[self.labels], list(classes), self.source)


# --------------------------------------------------------------------------- locations

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


def _check_choice(param: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{param} must be one of {sorted(allowed)}, got {value!r}")


# --------------------------------------------------------------------------- cache

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


# --------------------------------------------------------------------------- imagefolder

def _decode_file(path: Path, mode) -> torch.Tensor:
    from torchvision.io import decode_image

    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    return decode_image(data, mode=mode)


def _read_imagefolder_split(root: Path, classes: list[str], mode) -> dict:
    """Decode root/<class>/* (files sorted by name) into one split."""
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))  # as _folder_classes
    if found != classes:
        raise DataCorruptError(f"class folders in {root} are {found}, expected {classes}")
    images, labels = [], []
    with warnings.catch_warnings():  # torchvision 0.29 emits a DeprecationWarning on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        for label, name in enumerate(classes):
            files = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith("."))
            for f in files:
                try:
                    images.append(_decode_file(f, mode))
                except RuntimeError as exc:
                    raise DataCorruptError(f"cannot decode image {f}: {exc}") from exc
            labels += [label] * len(files)
    if not images:
        raise DataCorruptError(f"no images found under {root}")
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise DataCorruptError(f"images under {root} have different shapes: {sorted(shapes)[:5]}")
    return _split_dict(torch.stack(images), torch.tensor(labels, dtype=torch.int64))


def _find_split_root(root: Path) -> Path | None:
    """root itself or its single sub-folder, whichever holds train/ and test/."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    subdirs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if len(subdirs) == 1 and (subdirs[0] / "train").is_dir() and (subdirs[0] / "test").is_dir():
        return subdirs[0]
    return None


def _read_imagefolder(root: Path, classes: list[str], mode) -> dict:
    split_root = _find_split_root(root)
    if split_root is None:
        raise DataCorruptError(f"{root} has no train/ and test/ folders in ImageFolder layout")
    return {s: _read_imagefolder_split(split_root / s, classes, mode) for s in SPLITS}


@contextlib.contextmanager
def _extracted(archive: Path):
    """A tar(.gz) archive extracted safely (tarfile's ``data`` filter) into a temporary folder inside
    cache_dir(), removed afterwards; a corrupt, truncated or unsafe archive raises DataCorruptError."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir()))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataCorruptError(f"archive {archive} is corrupt, truncated or unsafe: {exc}") from exc
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_imagefolder_archive(archive: Path, classes: list[str], mode) -> tuple[dict, str]:
    """Extract into a temporary folder, decode, and remove the folder; also the copy's re-encoding note."""
    with _extracted(archive) as tmp:
        return _read_imagefolder(tmp, classes, mode), reencoding_note(tmp)


#: A file at the top of an ImageFolder copy (archive or folder) that amixup.jpegquality.reencode wrote:
#: the JPEG qualities the copy was encoded at once more, in order. It travels inside the archive, so a
#: run's data source tells the copy it read from the copy it was made from (same file name).
COPY_MARKER = "amixup-copy.json"


def reencoding_note(root: Path) -> str:
    """"JPEG-encoded once more at quality Q (amixup-copy.json)" for a copy carrying COPY_MARKER
    (at its top or beside its train/ and test/), "" for any other copy."""
    split_root = _find_split_root(root)
    for marker in dict.fromkeys([root / COPY_MARKER] + ([split_root / COPY_MARKER] if split_root else [])):
        if marker.is_file():
            try:
                qualities = [int(q) for q in json.loads(marker.read_text())["reencoded_at_quality"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise DataCorruptError(f"{marker} is not a valid copy marker ({exc})") from exc
            if len(qualities) == 1:
                return f"JPEG-encoded once more at quality {qualities[0]} ({COPY_MARKER})"
            return (f"JPEG-encoded {len(qualities)} more times, at quality "
                    f"{' then '.join(map(str, qualities))} ({COPY_MARKER})")
    return ""


def _described(kind: str, path: Path, note: str) -> str:
    tags = (["lossy JPEG re-encoding"] if kind == "archive" and "jpeg" in path.name else []) + ([note] if note else [])
    return f"imagefolder {kind} {path.name}" + (f" ({'; '.join(tags)})" if tags else "")


def _source_imagefolder(info: "_Base", tried: list[str]) -> tuple[dict, str] | None:
    name = info.name
    for base in search_paths():
        for folder in (base / f"{name}-jpeg", base / name):
            tried.append(f"{folder}/ (ImageFolder)")
            if _find_split_root(folder) is not None:
                return (_read_imagefolder(folder, info.classes, info.mode),
                        _described("folder", folder, reencoding_note(folder)))
        for archive in (base / f"{name}-jpeg.tar.gz", base / f"{name}.tar.gz", base / f"{name}-jpeg.tar"):
            tried.append(str(archive))
            if archive.is_file():
                splits, note = _read_imagefolder_archive(archive, info.classes, info.mode)
                return splits, _described("archive", archive, note)
    return None


# --------------------------------------------------------------------------- canonical torchvision files

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


def _canonical_candidates(name: str, base: Path) -> list[Path]:
    if name == "mnist":
        return [base / "mnist", base / "MNIST" / "raw", base]
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    nested = sorted(p / folder for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return [base / folder] + nested


def _canonical_present(name: str, folder: Path) -> bool:
    if name == "mnist":
        return _has_mnist_files(folder)
    return folder.is_dir()


def _read_canonical(info: "_Base", bases: list[Path], tried: list[str]) -> tuple[dict, Path] | None:
    for base in bases:
        for folder in _canonical_candidates(info.name, base):
            tried.append(f"{folder}/ (torchvision files)")
            if _canonical_present(info.name, folder):
                return info.read_canonical(folder), folder
    return None


def _source_torchvision_files(info: "_Base", tried: list[str]) -> tuple[dict, str] | None:
    found = _read_canonical(info, search_paths(), tried)
    return None if found is None else (found[0], f"torchvision files {found[1].name}")


def _source_download(info: "_Base", tried: list[str]) -> tuple[dict, str] | None:
    import torchvision.datasets as tvd

    root = cache_dir() / "downloads"
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST}[info.name]
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as exc:  # offline, refused, interrupted: listed with the other places tried
        tried.append(f"download into {root} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        return None
    found = _read_canonical(info, [root], tried)
    return None if found is None else (found[0], f"torchvision download into {root.name}/{found[1].name}")


# --------------------------------------------------------------------------- loaders

@dataclass(frozen=True)
class _Base:
    name: str
    classes: list[str]
    mode_name: str  # torchvision ImageReadMode member
    read_canonical: Callable[[Path], dict]

    @property
    def mode(self):
        from torchvision.io import ImageReadMode

        return getattr(ImageReadMode, self.mode_name)


_BASES = {
    "cifar10": _Base("cifar10", CIFAR10_CLASSES, "RGB", _read_cifar10_files),
    "cifar100": _Base("cifar100", CIFAR100_CLASSES, "RGB", _read_cifar100_files),
    "mnist": _Base("mnist", MNIST_CLASSES, "GRAY", _read_mnist_files),
}
_SOURCES = {"imagefolder": _source_imagefolder, "torchvision_files": _source_torchvision_files,
            "download": _source_download}


def _from_payload(payload: dict, split: str, source: str) -> ImageData:
    part = payload[split]
    return ImageData(part["images"], part["labels"], list(payload["classes"]), source)


def _load(name: str, split: str, sources, download: bool) -> ImageData:
    _check_choice("split", split, SPLITS)
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    for s in sources:
        _check_choice("sources entry", s, DEFAULT_SOURCES)
    info = _BASES[name]
    tried: list[str] = []
    for src in sources:
        if src == "cache":
            path = cache_dir() / f"{name}.pt"
            if path.is_file():
                payload = _read_cache(path)
                return _from_payload(payload, split, f"cache {path.name} of {payload['source']}")
            tried.append(f"{path} (cache)")
            continue
        if src == "download" and not download:
            tried.append("download (skipped: download=False)")
            continue
        found = _SOURCES[src](info, tried)
        if found is None:
            continue
        splits, source = found
        payload = {"format": _CACHE_FORMAT, "name": name, "classes": list(info.classes), "source": source, **splits}
        _write_cache(cache_dir() / f"{name}.pt", payload)
        return _from_payload(payload, split, source)
    looked = "\n  ".join(tried) or "(no sources given)"
    raise DataNotFoundError(
        f"dataset {name!r} not found. Places looked (sources {list(sources)}):\n  {looked}\n"
        f"To provide it: set AMIXUP_DATA_PATH to a folder holding {_hint(name)}, put it under "
        f"{REPO_DATA_DIR}/, or pass download=True with internet access."
    )


def _hint(name: str) -> str:
    return {
        "cifar10": "cifar10-jpeg.tar.gz (ImageFolder train/ and test/) or cifar-10-batches-py/",
        "cifar100": "cifar100-jpeg.tar.gz (ImageFolder train/ and test/) or cifar-100-python/",
        "mnist": "mnist/ with the four IDX files (train-images-idx3-ubyte.gz, ...)",
    }[name]


def load_cifar10(split: str, *, sources=DEFAULT_SOURCES, download: bool = False) -> ImageData:
    """CIFAR-10 split, uint8 [N, 3, 32, 32], canonical class order."""
    return _load("cifar10", split, sources, download)


def load_cifar100(split: str, *, sources=DEFAULT_SOURCES, download: bool = False) -> ImageData:
    """CIFAR-100 split with fine labels (see CIFAR100_COARSE_OF_FINE for superclasses)."""
    return _load("cifar100", split, sources, download)


def load_mnist(split: str, *, sources=DEFAULT_SOURCES, download: bool = False) -> ImageData:
    """MNIST split, uint8 [N, 1, 28, 28]."""
    return _load("mnist", split, sources, download)


def _list_loader(name: str) -> Callable[..., ImageData]:
    """Loader of a list-file dataset (see amixup.imagelist); ``download`` does not apply."""
    def load(split: str, *, download: bool = False) -> ImageData:
        from .imagelist import load_list_dataset

        return load_list_dataset(name, split)
    return load


_LOADERS = {"cifar10": load_cifar10, "cifar100": load_cifar100, "mnist": load_mnist,
            "imagenet_lt": _list_loader("imagenet_lt"), "places_lt": _list_loader("places_lt")}


def _tiny_imagenet(split: str, *, download: bool = False) -> ImageData:
    """Tiny-ImageNet from tiny-imagenet-200/ or its zip (see amixup.tinyimagenet)."""
    from .tinyimagenet import load_tiny_imagenet

    return load_tiny_imagenet(split, download=download)


_LOADERS["tiny_imagenet"] = _tiny_imagenet


# --------------------------------------------------------------------------- long tail

def longtail_counts(n_max: int, num_classes: int, imb_factor: float) -> list[int]:
    """Exponential profile n_max * imb^(-i/(C-1)) (LDAM-DRW); imb_factor = n_max / n_min."""
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not imb_factor >= 1:
        raise ValueError(f"imb_factor must be >= 1, got {imb_factor}")
    if num_classes == 1:
        return [int(n_max)]
    return [int(n_max * imb_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


def longtail_head(counts, imb_factor: float) -> int:
    """The largest head count n_max for which every class c has the ``longtail_counts(n_max, C, imb_factor)[c]``
    images its place in the profile asks: the class size for a balanced dataset (CIFAR: 5000); for an unbalanced
    one (e.g. SVHN) at most class 0's count, lower where a later class is too small for its place."""
    counts = [int(n) for n in counts]
    if not counts:
        raise ValueError("a long tail needs at least one class")
    num_classes = len(counts)

    def fits(n):
        return all(w <= h for w, h in zip(longtail_counts(n, num_classes, imb_factor), counts))

    ratios = [imb_factor ** (-i / max(num_classes - 1, 1)) for i in range(num_classes)]
    n = min(counts[0], *(math.ceil((h + 1) / r) for h, r in zip(counts, ratios)))  # int(n * r) <= h iff n * r < h + 1
    while n >= 1 and not fits(n):  # float rounding at the bound
        n -= 1
    if n < 1:
        raise ValueError(f"no long tail with imb_factor={imb_factor} fits class counts {counts}")
    return n


def longtail_subset(data: ImageData, imb_factor: float, seed: int = 0) -> ImageData:
    """Keep longtail_counts(n_max, C, imb_factor)[c] seeded-random images of class c, in original order, where
    n_max is :func:`longtail_head` of the class counts (the class size of a balanced dataset)."""
    have = data.counts()
    want = longtail_counts(longtail_head(have, imb_factor), data.num_classes, imb_factor)
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c, (n_have, n_want) in enumerate(zip(have, want)):
        idx = torch.nonzero(data.labels == c).flatten()
        keep.append(idx[torch.randperm(n_have, generator=gen)[:n_want]])
    return data.subset(torch.sort(torch.cat(keep)).values)


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSpec:
    """One entry of DATASETS: base dataset plus class selection, coarse relabelling and long tail."""

    base: str
    num_classes: int | None  # None: as many as the loader's class names (registered datasets)
    description: str = ""
    keep_classes: tuple[int, ...] | None = None
    coarse: tuple[tuple[int, ...], tuple[str, ...]] | None = None  # (mapping, coarse class names)
    longtail: bool = False
    default_imb: float | None = None


_MINI = (0, 1, 2, 3)  # airplane, automobile, bird, cat
_VEH_ANI = ("vehicles", "animals")

DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", 10, "CIFAR-10, 10 classes, 50k/10k"),
    "cifar100": DatasetSpec("cifar100", 100, "CIFAR-100, 100 fine classes, 50k/10k"),
    "mnist": DatasetSpec("mnist", 10, "MNIST digits, 60k/10k"),
    "mini_cifar": DatasetSpec("cifar10", 4, "CIFAR-10 airplane/automobile/bird/cat, 20k/4k", _MINI),
    "mini_cifar_coarse": DatasetSpec("cifar10", 2, "mini_cifar as vehicles=0 (airplane, automobile) "
                                     "vs animals=1 (bird, cat)", _MINI, ((0, 0, 1, 1), _VEH_ANI)),
    "mini_cifar_lt": DatasetSpec("cifar10", 4, "mini_cifar with long-tailed train (default imb 200: "
                                 "5000/854/146/25), balanced test", _MINI, longtail=True, default_imb=200.0),
    "cifar10_lt": DatasetSpec("cifar10", 10, "CIFAR-10 with long-tailed train (imb_factor required), "
                              "balanced test", longtail=True),
    "cifar100_lt": DatasetSpec("cifar100", 100, "CIFAR-100 with long-tailed train (imb_factor required), "
                               "balanced test", longtail=True),
    "cifar10_coarse": DatasetSpec("cifar10", 2, "CIFAR-10 as vehicles=0 (airplane, automobile, ship, truck) "
                                  "vs animals=1 (the other six)", coarse=((0, 0, 1, 1, 1, 1, 1, 1, 0, 0), _VEH_ANI)),
    "cifar100_coarse": DatasetSpec("cifar100", 20, "CIFAR-100 relabelled to its 20 superclasses",
                                   coarse=(tuple(CIFAR100_COARSE_OF_FINE), tuple(CIFAR100_COARSE_CLASSES))),
    "mnist_coarse": DatasetSpec("mnist", 2, "MNIST as digits 0-4 = 0 vs 5-9 = 1",
                                coarse=((0,) * 5 + (1,) * 5, ("0-4", "5-9"))),
    # Long-tailed as listed (no imb_factor); images under AMIXUP_<NAME>_ROOT, see amixup.imagelist.
    "imagenet_lt": DatasetSpec("imagenet_lt", 1000, "ImageNet-LT list files (115.8k train images, 5-1280 "
                               "per class; 50k test), images stored 256x256"),
    "places_lt": DatasetSpec("places_lt", 365, "Places-LT list files (5-4980 train images per class), "
                             "images stored 256x256"),
    "tiny_imagenet": DatasetSpec("tiny_imagenet", 200, "Tiny-ImageNet, 200 classes, 64x64, 100k train / "
                                 "10k val (the test set); see amixup.tinyimagenet"),
}


def base_of(name: str) -> str:
    """Underlying dataset (e.g. "cifar10", "mnist", "imagenet_lt", or a registered one's name) of a registry name."""
    return dataset_spec(name).base


def _keep_classes(data: ImageData, keep: tuple[int, ...]) -> ImageData:
    """Only the listed classes, relabelled 0..len(keep)-1 in the given order."""
    table = torch.full((data.num_classes,), -1, dtype=torch.int64)
    table[list(keep)] = torch.arange(len(keep))
    part = data.subset(torch.nonzero(table[data.labels] >= 0).flatten())
    return ImageData(part.images, table[part.labels], [data.classes[k] for k in keep], data.source)


def build_dataset(name: str, split: str, *, imb_factor: float | None = None, subsample_seed: int = 0,
                  download: bool = False) -> ImageData:
    """A registry dataset (see DATASETS); long-tailed variants subsample only the train split."""
    spec = dataset_spec(name)
    _check_choice("split", split, SPLITS)
    if spec.longtail:
        imb_factor = spec.default_imb if imb_factor is None else imb_factor
        if imb_factor is None:
            raise ValueError(f"imb_factor is required for {name!r} (a number >= 1)")
        if not imb_factor >= 1:
            raise ValueError(f"imb_factor must be >= 1, got {imb_factor}")
    elif imb_factor is not None:
        lt = sorted(k for k, v in DATASETS.items() if v.longtail)
        raise ValueError(f"imb_factor applies only to {lt}, not {name!r}")
    data = _LOADERS[spec.base](split, download=download)
    if spec.keep_classes is not None:
        data = _keep_classes(data, spec.keep_classes)
    if spec.coarse is not None:
        data = data.relabel(list(spec.coarse[0]), list(spec.coarse[1]))
    if spec.longtail and split == "train":
        data = longtail_subset(data, imb_factor, seed=subsample_seed)
    return data


# --------------------------------------------------------------------------- your own datasets

_BUILTIN = frozenset(DATASETS)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
PATH_PREFIXES = ("imagefolder:", "torchvision:")


def register_dataset(name: str, loader, *, description: str = "", normalization=None, keep_classes=None,
                     coarse=None, longtail: bool = False, default_imb: float | None = None,
                     replace: bool = False) -> DatasetSpec:
    """Add ``name`` to DATASETS, usable wherever a built-in dataset is (configs, engine, sweeps, notebooks).

    ``loader(split) -> ImageData`` for split "train" / "test" (uint8 [N, C, H, W] images, int64 labels
    in [0, len(classes))); or the name of a dataset registered before, to add a variant of it.
    ``normalization``: per-channel ((mean, ...), (std, ...)) in [0, 1] units; default computed from the
    training images. Variants, as for the built-in datasets: ``keep_classes`` (class indices kept,
    relabelled 0..k-1 in that order), ``coarse`` ((mapping, coarse class names)), ``longtail`` (the
    training split subsampled to ``imb_factor``, default ``default_imb``; the test split kept).

    Example::

        data.register_dataset("blobs", load_blobs)
        data.register_dataset("blobs_lt", "blobs", longtail=True, default_imb=10)
    """
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
        raise ValueError(f"name must be lowercase letters, digits and '_', got {name!r}")
    if name in _BUILTIN:
        raise ValueError(f"name {name!r} is a built-in dataset; pick another name")
    if name in DATASETS and not replace:
        raise ValueError(f"name {name!r} is already registered ({DATASETS[name].description or 'no description'}); "
                         "pick another name or pass replace=True")
    return _register(name, loader, description=description, normalization=normalization,
                     keep_classes=keep_classes, coarse=coarse, longtail=longtail, default_imb=default_imb)


def _register(name, loader, *, description="", normalization=None, keep_classes=None, coarse=None,
              longtail=False, default_imb=None) -> DatasetSpec:
    if isinstance(loader, str):
        base = dataset_spec(loader).base
        if normalization is not None:
            raise ValueError(f"normalization belongs to the base dataset {base!r}; register it there")
    elif callable(loader):
        base = name
    else:
        raise TypeError(f"loader must be a function loader(split) -> ImageData or a registered dataset name, "
                        f"got {loader!r}")
    if keep_classes is not None:
        keep_classes = tuple(keep_classes)
        if not keep_classes or any(not isinstance(k, int) or k < 0 for k in keep_classes) \
                or len(set(keep_classes)) != len(keep_classes):
            raise ValueError(f"keep_classes must be distinct class indices >= 0, got {keep_classes!r}")
    if coarse is not None:
        try:
            mapping, names = (tuple(int(m) for m in coarse[0]), tuple(str(n) for n in coarse[1]))
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"coarse must be (mapping, coarse class names), got {coarse!r}") from exc
        if any(not 0 <= m < len(names) for m in mapping):
            raise ValueError(f"coarse mapping values must lie in [0, {len(names) - 1}], got {list(mapping)}")
        coarse = (mapping, names)
    if not isinstance(longtail, bool):
        raise TypeError(f"longtail must be True or False, got {longtail!r}")
    if default_imb is not None and (not longtail or not default_imb >= 1):
        raise ValueError(f"default_imb must be a number >= 1 and needs longtail=True, got {default_imb!r}")
    if normalization is not None:
        normalization = _check_normalization(name, normalization)
    num_classes = len(coarse[1]) if coarse else len(keep_classes) if keep_classes else (
        DATASETS[loader].num_classes if isinstance(loader, str) else None)
    spec = DatasetSpec(base, num_classes, description or f"registered dataset {name}", keep_classes, coarse,
                       longtail, default_imb)
    if callable(loader):
        _LOADERS[name] = _checked_loader(name, loader)
        _MODULES[name] = getattr(loader, "__module__", None) if name == base and ":" not in name else None
        NORMALIZATION.pop(name, None)
        if normalization is not None:
            NORMALIZATION[name] = normalization
    DATASETS[name] = spec
    return spec


#: registered dataset -> the module defining its loader (imported by worker processes, see plugin_modules)
_MODULES: dict[str, str | None] = {}


def plugin_modules(names) -> list[str]:
    """Modules another process must import (AMIXUP_PLUGINS) to see the registered datasets ``names``;
    ``ValueError`` for a loader defined where no process can import it (a script's or notebook's __main__)."""
    out = []
    for name in names:
        module = _MODULES.get(base_of(name))
        if module in ("__main__", "builtins") or (module or "").startswith("__"):
            raise ValueError(f"dataset {name!r} was registered with a loader defined in {module}, which worker "
                             "processes cannot import: define it in a module and name that module in "
                             "AMIXUP_PLUGINS, or run with workers=1")
        if module and module not in out:
            out.append(module)
    return out


def _check_normalization(name, value) -> tuple:
    try:
        mean, std = (tuple(float(v) for v in value[0]), tuple(float(v) for v in value[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"normalization of {name!r} must be ((mean, ...), (std, ...)), got {value!r}") from exc
    if len(mean) != len(std) or not mean or any(not s > 0 for s in std):
        raise ValueError(f"normalization of {name!r} needs one mean and one std > 0 per channel, got {value!r}")
    return mean, std


def _checked_loader(name: str, loader) -> Callable[..., ImageData]:
    """``loader`` with its output checked, so a malformed dataset fails with the problem named."""
    def load(split: str, *, download: bool = False) -> ImageData:
        data = loader(split)
        where = f"loader of dataset {name!r} ({getattr(loader, '__name__', loader)!r}) for split {split!r}"
        if not isinstance(data, ImageData):
            raise TypeError(f"{where} must return amixup.data.ImageData, got {type(data).__name__}")
        images, labels = data.images, data.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{where}: images must be a uint8 tensor [N, C, H, W], got {got}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(f"{where}: labels must be a 1-D integer tensor, got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
        if len(labels) != len(images) or len(images) == 0:
            raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels (need as many, at least one)")
        if not data.classes or not 0 <= int(labels.min()) <= int(labels.max()) < len(data.classes):
            raise ValueError(f"{where}: labels must lie in [0, {len(data.classes)}) (one class name each), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return ImageData(images, labels.to(torch.int64), [str(c) for c in data.classes], data.source or name)
    return load


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of a registry dataset; for a registered one without it, computed once
    from its full training images."""
    base = base_of(name)
    if base not in NORMALIZATION:
        images = _LOADERS[base]("train").images
        pixels = images.transpose(0, 1).reshape(images.shape[1], -1)
        mean = torch.stack([p.double().mean() for p in pixels]) / 255
        std = torch.stack([p.double().std() for p in pixels]) / 255
        NORMALIZATION[base] = (tuple(round(v, 6) for v in mean.tolist()),
                               tuple(round(max(v, 1e-3), 6) for v in std.tolist()))
    return NORMALIZATION[base]


def dataset_spec(name: str) -> DatasetSpec:
    """The DATASETS entry of ``name``; ``imagefolder:<path>`` and ``torchvision:<Class>[:<root>]`` names
    are registered on first use, and the modules in AMIXUP_PLUGINS are imported before giving up."""
    if isinstance(name, str) and name not in DATASETS and name.startswith(PATH_PREFIXES):
        kind, _, rest = name.partition(":")
        loader = imagefolder_loader(rest) if kind == "imagefolder" else torchvision_loader(*_split_tv(rest))
        _register(name, loader, description=f"{kind} dataset {rest}")
    if isinstance(name, str) and name not in DATASETS:
        _import_plugins(name)
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, 'imagefolder:<path>', "
                         f"'torchvision:<Class>[:<root>]' or a name added by register_dataset, got {name!r} "
                         "(a dataset registered in a script is unknown to another process such as the command "
                         "line: put the register_dataset call in a module and name it in AMIXUP_PLUGINS=module)")
    return DATASETS[name]


def _import_plugins(name=None) -> None:
    """Import the modules named in AMIXUP_PLUGINS (comma-separated); one that fails is a ValueError
    naming it and the variable, not the import's traceback."""
    import importlib

    for module in filter(None, (m.strip() for m in os.environ.get("AMIXUP_PLUGINS", "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - ImportError, or whatever the plugin's own code raises
            raise ValueError(f"{name!r} not found: AMIXUP_PLUGINS names module {module!r}, which failed to import "
                             f"({type(err).__name__}: {err}); check the name and that its folder is on "
                             "PYTHONPATH") from err


def _split_tv(rest: str) -> tuple[str, str | None]:
    cls, _, root = rest.partition(":")
    return cls, root or None


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


def _folder_classes(split_root: Path) -> list[str]:
    classes = sorted(p.name for p in (split_root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataCorruptError(f"{split_root / 'train'} has no class folders (train/<class>/*)")
    return classes


def _read_any_imagefolder(root: Path) -> dict:
    """Both splits of an ImageFolder tree, classes from train/'s sub-folders, grayscale if the first image is."""
    from torchvision.io import ImageReadMode

    split_root = _find_split_root(root)
    if split_root is None:
        raise DataCorruptError(f"{root} has no train/ and test/ folders in ImageFolder layout "
                               "(train/<class>/*, test/<class>/*)")
    classes = _folder_classes(split_root)
    first = next((f for f in sorted((split_root / "train" / classes[0]).iterdir())
                  if f.is_file() and not f.name.startswith(".")), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        gray = first is not None and _decode_file(first, ImageReadMode.UNCHANGED).shape[0] == 1
    mode = ImageReadMode.GRAY if gray else ImageReadMode.RGB
    return {"classes": classes, **{s: _read_imagefolder_split(split_root / s, classes, mode) for s in SPLITS}}


def imagefolder_loader(path) -> Callable[[str], ImageData]:
    """Loader (for register_dataset) of an ImageFolder tree or .tar(.gz) archive ``train/<class>/*``,
    ``test/<class>/*``; all images of one size; decoded once and cached in cache_dir()."""
    root = Path(path).expanduser()

    def load(split: str) -> ImageData:
        _check_choice("split", split, SPLITS)
        if not root.exists():
            raise DataNotFoundError(f"ImageFolder dataset {root} not found: give a folder or .tar(.gz) archive "
                                    "holding train/<class>/* and test/<class>/*")

        def build():
            if root.is_dir():
                return {**_read_any_imagefolder(root), "source": f"imagefolder folder {root}"}
            with _extracted(root) as tmp:
                return {**_read_any_imagefolder(tmp), "source": f"imagefolder archive {root}"}

        payload = _cached(f"imagefolder-{root.name}-{_stat_key(root)}", build)
        return _from_payload(payload, split, payload["source"])
    return load


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
