"""Datasets for AM-mixup: offline loading of CIFAR-10/100 and MNIST, long-tail and coarse variants,
and the list-file datasets ImageNet-LT and Places-LT (see amixup.data.imagelist).

Everything is kept as uint8 CPU tensors ([N, C, H, W]); normalisation and device moves happen elsewhere.
Loaders try a list of sources in order (see ``DEFAULT_SOURCES``) and cache both splits of a dataset in
``cache_dir()/<dataset>.pt`` once any source succeeds.

Modules, each importing only those above it: ``images`` (ImageData, errors, constants), ``cache`` (search path
and cache folder), one per source (``cifar``, ``mnist``, ``imagefolder``, ``imagelist``, ``tinyimagenet``,
``torchvision_sources``), ``builtin`` (the loaders of CIFAR-10/100 and MNIST) and ``registry`` (DATASETS,
build_dataset, register_dataset). Everything is re-exported here: ``from amixup import data; data.X``. State
that tests replace lives in one module: patch ``amixup.data.cache.REPO_DATA_DIR``; the registry's dicts
(DATASETS, NORMALIZATION, _LOADERS, _MODULES) are the same objects here and in ``registry``.
"""

from __future__ import annotations

from . import cache
from .builtin import load_cifar10, load_cifar100, load_mnist
from .cache import _from_payload, _read_cache, _write_cache, cache_dir, search_paths
from .imagefolder import COPY_MARKER, _decode_file, imagefolder_loader, reencoding_note
from .images import (_CACHE_FORMAT, CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_COARSE_CLASSES,
                     CIFAR100_COARSE_OF_FINE, DEFAULT_SOURCES, MNIST_CLASSES, SPLITS, DataCorruptError,
                     DataNotFoundError, ImageData, WeightsNotFoundError, _check_choice)
from .mnist import read_idx
from .registry import (_LOADERS, _MODULES, DATASETS, LONGTAIL_SELECTIONS, NORMALIZATION, PATH_PREFIXES, DatasetSpec,
                       base_of, build_dataset, dataset_spec, longtail_counts, longtail_head, longtail_subset,
                       normalization, plugin_modules, register_dataset)
from .torchvision_sources import torchvision_loader


def __getattr__(name):
    if name == "REPO_DATA_DIR":  # read where search_paths() and cache_dir() read it (tests patch it there)
        return cache.REPO_DATA_DIR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
