"""The built-in datasets CIFAR-10, CIFAR-100 and MNIST: sources tried in order (see ``DEFAULT_SOURCES``:
cache, ImageFolder copies, canonical torchvision files, download), both splits cached once any succeeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import cache
from .cache import cache_and_split, cache_dir, cached_split, not_found, search_paths
from .cifar import _read_cifar10_files, _read_cifar100_files
from .images import CIFAR10_CLASSES, CIFAR100_CLASSES, DEFAULT_SOURCES, MNIST_CLASSES, SPLITS, ImageData, _check_choice
from .imagefolder import _source_imagefolder
from .mnist import _has_mnist_files, _read_mnist_files


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



def _load(name: str, split: str, sources, download: bool) -> ImageData:
    _check_choice("split", split, SPLITS)
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    for s in sources:
        _check_choice("sources entry", s, DEFAULT_SOURCES)
    info = _BASES[name]
    tried: list[str] = []
    for src in sources:
        if src == "cache":
            data = cached_split(name, split, tried)
            if data is not None:
                return data
            continue
        if src == "download" and not download:
            tried.append("download (skipped: download=False)")
            continue
        found = _SOURCES[src](info, tried)
        if found is not None:
            splits, source = found
            return cache_and_split(name, split, source, {"classes": list(info.classes), **splits})
    raise not_found(name, sources, tried, f"set AMIXUP_DATA_PATH to a folder holding {_hint(name)}, put it under "
                                          f"{cache.REPO_DATA_DIR}/, or pass download=True with internet access.")



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

