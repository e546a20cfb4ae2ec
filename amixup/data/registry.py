"""The dataset registry: DATASETS (built-in datasets and their coarse, class-subset and long-tailed
variants), normalization, build_dataset, register_dataset, ``imagefolder:``/``torchvision:`` names and
the AMIXUP_PLUGINS modules."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .builtin import load_cifar10, load_cifar100, load_mnist
from .imagefolder import imagefolder_loader
from .imagelist import LIST_CLASSES, load_list_dataset
from .images import CIFAR100_COARSE_CLASSES, CIFAR100_COARSE_OF_FINE, SPLITS, ImageData, _check_choice
from .tinyimagenet import load_tiny_imagenet
from .torchvision_sources import torchvision_loader


# Per-channel (mean, std) in [0, 1] pixel units.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "imagenet_lt": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet statistics
    "places_lt": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet statistics, as usual for Places
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),  # Tiny-ImageNet training set
}



def _list_loader(name: str) -> Callable[..., ImageData]:
    """Loader of a list-file dataset (see amixup.data.imagelist); ``download`` does not apply."""
    def load(split: str, *, download: bool = False) -> ImageData:
        return load_list_dataset(name, split)
    return load


_LOADERS = {"cifar10": load_cifar10, "cifar100": load_cifar100, "mnist": load_mnist,
            "imagenet_lt": _list_loader("imagenet_lt"), "places_lt": _list_loader("places_lt")}



def _tiny_imagenet(split: str, *, download: bool = False) -> ImageData:
    """Tiny-ImageNet from tiny-imagenet-200/ or its zip (see amixup.data.tinyimagenet)."""
    return load_tiny_imagenet(split, download=download)


_LOADERS["tiny_imagenet"] = _tiny_imagenet



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



#: How a long tail picks which images of a class it keeps (``RunConfig.longtail_selection``).
LONGTAIL_SELECTIONS = {
    "randperm": "the first n of torch.randperm per class, one generator seeded with the seed (ours)",
    "ldam_drw": "the first n of each class's indices after numpy's legacy np.random.seed(seed) + shuffle, "
                "class by class (LDAM-DRW's IMBALANCECIFAR10; its images where the copy keeps canonical order)",
}


def longtail_subset(data: ImageData, imb_factor: float, seed: int = 0, selection: str = "randperm") -> ImageData:
    """Keep longtail_counts(n_max, C, imb_factor)[c] seeded-random images of class c, in original order, where
    n_max is :func:`longtail_head` of the class counts (the class size of a balanced dataset); ``selection``
    (:data:`LONGTAIL_SELECTIONS`) says which random draw picks them."""
    _check_choice("longtail_selection", selection, LONGTAIL_SELECTIONS)
    have = data.counts()
    want = longtail_counts(longtail_head(have, imb_factor), data.num_classes, imb_factor)
    gen = torch.Generator().manual_seed(seed)
    legacy = None
    if selection == "ldam_drw":
        import numpy as np

        legacy = np.random.RandomState(seed)  # the global state np.random.seed(seed) sets
    keep = []
    for c, (n_have, n_want) in enumerate(zip(have, want)):
        idx = torch.nonzero(data.labels == c).flatten()
        if legacy is None:
            keep.append(idx[torch.randperm(n_have, generator=gen)[:n_want]])
        else:
            order = idx.numpy().copy()
            legacy.shuffle(order)
            keep.append(torch.from_numpy(order[:n_want]))
    return data.subset(torch.sort(torch.cat(keep)).values)



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
    # Long-tailed as listed (no imb_factor); images under AMIXUP_<NAME>_ROOT, see amixup.data.imagelist.
    "imagenet_lt": DatasetSpec("imagenet_lt", LIST_CLASSES["imagenet_lt"], "ImageNet-LT list files (115.8k train images, 5-1280 "
                               "per class; 50k test), images stored 256x256"),
    "places_lt": DatasetSpec("places_lt", LIST_CLASSES["places_lt"], "Places-LT list files (5-4980 train images per class), "
                             "images stored 256x256"),
    "tiny_imagenet": DatasetSpec("tiny_imagenet", 200, "Tiny-ImageNet, 200 classes, 64x64, 100k train / "
                                 "10k val (the test set); see amixup.data.tinyimagenet"),
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
                  longtail_selection: str = "randperm", download: bool = False) -> ImageData:
    """A registry dataset (see DATASETS); long-tailed variants subsample only the train split (which images:
    ``subsample_seed`` and ``longtail_selection``, see :func:`longtail_subset`)."""
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
        data = longtail_subset(data, imb_factor, seed=subsample_seed, selection=longtail_selection)
    return data


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

