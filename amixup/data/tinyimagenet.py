"""Tiny-ImageNet (200 classes, 64x64 RGB; 100k training and 10k validation images) from its standard
folder or zip, cached as uint8 like the other datasets.

Layout (``tiny-imagenet-200/`` or ``tiny-imagenet-200.zip`` holding it)::

    wnids.txt                          one class id (WordNet id) per line; the class order
    train/<wnid>/images/*.JPEG         500 images per class
    val/images/*.JPEG                  10,000 images
    val/val_annotations.txt            <file> <wnid> <x0> <y0> <x1> <y1> per line (tab-separated)

The labelled ``val`` split is the test set (the ``test`` folder has no labels and is not read).
Folders and archives are looked for in the entries of ``AMIXUP_DATA_PATH``, then ``data/`` (as for
the other datasets); a zip is read member by member, never extracted. A malformed ``wnids.txt`` or
annotation line is rejected with its line number, a missing or undecodable image is an error naming
it, and nothing is cached unless both splits decode. Grayscale images are converted to RGB.
"""

from __future__ import annotations

import re
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import torch

from . import cache as _cache
from .cache import cache_and_split, cached_split, not_found, search_paths
from .images import SPLITS, DataCorruptError, ImageData, _check_choice

NAME = "tiny_imagenet"
FOLDER = "tiny-imagenet-200"
ARCHIVE = f"{FOLDER}.zip"
SIZE = 64
SOURCES = ("cache", "imagefolder")  # there is no torchvision copy or download of Tiny-ImageNet
_WNID = re.compile(r"^[A-Za-z0-9_-]+$")
_ANNOTATION = "<file> <wnid> <x0> <y0> <x1> <y1>"


class _Folder:
    """Files of an unpacked tiny-imagenet-200/ folder, by path relative to it."""

    def __init__(self, root: Path):
        self.root, self.where = root, str(root)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def files(self, rel_dir: str) -> list[str] | None:
        """Names of the (non-hidden) files in a sub-folder, sorted; None if it does not exist."""
        folder = self.root / rel_dir
        if not folder.is_dir():
            return None
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class _Zip:
    """Members of tiny-imagenet-200.zip under the folder that holds wnids.txt, by path relative to it."""

    def __init__(self, path: Path):
        self.where = str(path)
        try:
            self.zf = zipfile.ZipFile(path)
            names = [i.filename for i in self.zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataCorruptError(f"archive {path} is corrupt or truncated: {exc}") from exc
        roots = sorted((n[: -len("wnids.txt")] for n in names if n.rsplit("/", 1)[-1] == "wnids.txt"), key=len)
        if not roots:
            raise DataCorruptError(f"archive {path} holds no wnids.txt (expected {FOLDER}/wnids.txt)")
        self.prefix = roots[0]
        self.names = {n[len(self.prefix):] for n in names if n.startswith(self.prefix)}

    def exists(self, rel: str) -> bool:
        return rel in self.names

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(self.prefix + rel)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataCorruptError(f"archive {self.where}: cannot read {self.prefix + rel}: {exc}") from exc

    def files(self, rel_dir: str) -> list[str] | None:
        head = rel_dir.rstrip("/") + "/"
        inside = [n[len(head):] for n in self.names if n.startswith(head)]
        if not inside:
            return None
        return sorted(n for n in inside if "/" not in n and not n.startswith("."))


def _lines(tree, rel: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file of the tree."""
    if not tree.exists(rel):
        raise DataCorruptError(f"{tree.where}: {rel} not found")
    text = tree.read(rel).decode("utf-8", errors="strict")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_wnids(tree) -> list[str]:
    wnids: list[str] = []
    for number, text in _lines(tree, "wnids.txt"):
        if not _WNID.match(text):
            raise ValueError(f"{tree.where}/wnids.txt line {number}: expected one class id, got {text!r}")
        if text in wnids:
            raise ValueError(f"{tree.where}/wnids.txt line {number}: class id {text!r} listed twice")
        wnids.append(text)
    if not wnids:
        raise DataCorruptError(f"{tree.where}/wnids.txt lists no classes")
    return wnids


def parse_annotations(tree, wnids: list[str]) -> list[tuple[int, str, int]]:
    """(line number, file name, label) of every line of val/val_annotations.txt; malformed lines raise
    ``ValueError`` with their line number."""
    where = f"{tree.where}/val/val_annotations.txt"
    index = {w: i for i, w in enumerate(wnids)}
    out, seen = [], set()
    for number, text in _lines(tree, "val/val_annotations.txt"):
        fields = text.split()
        bad = f"{where} line {number}: expected '{_ANNOTATION}', got {text!r}"
        if len(fields) != 6:
            raise ValueError(bad)
        name, wnid, *box = fields
        if not all(re.fullmatch(r"-?\d+", b) for b in box):
            raise ValueError(bad)
        if "/" in name or "\\" in name or name in (".", "..") or PurePosixPath(name).name != name:
            raise ValueError(f"{where} line {number}: file must be a plain name in val/images, got {name!r}")
        if wnid not in index:
            raise ValueError(f"{where} line {number}: class id {wnid!r} is not in wnids.txt")
        if name in seen:
            raise ValueError(f"{where} line {number}: image {name!r} annotated twice")
        seen.add(name)
        out.append((number, name, index[wnid]))
    if not out:
        raise DataCorruptError(f"{where} has no annotations")
    return out


def _decode(tree, entries: list[tuple[str, int]]) -> dict:
    """Decode (relative path, label) pairs into one uint8 [N, 3, 64, 64] split."""
    from torchvision.io import ImageReadMode, decode_image

    images = torch.empty((len(entries), 3, SIZE, SIZE), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 emits a DeprecationWarning on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, (rel, _) in enumerate(entries):
            raw = torch.frombuffer(bytearray(tree.read(rel)), dtype=torch.uint8)
            try:
                img = decode_image(raw, mode=ImageReadMode.RGB)
            except RuntimeError as exc:
                raise DataCorruptError(f"cannot decode image {tree.where}/{rel}: {exc}") from exc
            if tuple(img.shape) != (3, SIZE, SIZE):
                raise DataCorruptError(f"image {tree.where}/{rel} is {tuple(img.shape[1:])}, expected {SIZE}x{SIZE}")
            images[i] = img
    labels = torch.tensor([label for _, label in entries], dtype=torch.int64)
    return {"images": images, "labels": labels}


def read_tiny_imagenet(tree) -> dict:
    """Both splits of a Tiny-ImageNet tree (``_Folder`` or ``_Zip``): {"classes", "train", "test"}."""
    wnids = parse_wnids(tree)
    train = []
    for label, wnid in enumerate(wnids):
        rel_dir = f"train/{wnid}/images"
        names = tree.files(rel_dir)
        if not names:
            raise DataCorruptError(f"{tree.where}: no training images in {rel_dir}/ (class {wnid} of wnids.txt)")
        train += [(f"{rel_dir}/{n}", label) for n in names]
    test = []
    for number, name, label in parse_annotations(tree, wnids):  # every image is checked before decoding
        rel = f"val/images/{name}"
        if not tree.exists(rel):
            raise DataCorruptError(f"{tree.where}/val/val_annotations.txt line {number}: "
                                     f"image {tree.where}/{rel} not found")
        test.append((rel, label))
    return {"classes": wnids, "train": _decode(tree, train), "test": _decode(tree, test)}


def _candidates(base: Path) -> list[tuple[Path, str]]:
    return [(base / FOLDER, "folder"), (base, "folder"), (base / ARCHIVE, "zip")]


def load_tiny_imagenet(split: str, *, sources=SOURCES, download: bool = False) -> ImageData:
    """Tiny-ImageNet ``split`` ("train", or "test" = the labelled val images), uint8 [N, 3, 64, 64],
    classes in wnids.txt order. Sources: the prepared cache, then ``tiny-imagenet-200/`` or
    ``tiny-imagenet-200.zip`` in the search paths; there is no download (``download`` is accepted for
    the common loader signature and ignored)."""
    _check_choice("split", split, SPLITS)
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    for s in sources:
        _check_choice("sources entry", s, SOURCES)
    tried: list[str] = []
    for src in sources:
        if src == "cache":
            data = cached_split(NAME, split, tried)
            if data is not None:
                return data
            continue
        for base in search_paths():
            for path, kind in _candidates(base):
                if kind == "folder":
                    tried.append(f"{path}/ ({FOLDER} folder with wnids.txt)")
                    if not (path / "wnids.txt").is_file():
                        continue
                    tree, source = _Folder(path), f"{FOLDER} folder {path}"
                else:
                    tried.append(str(path))
                    if not path.is_file():
                        continue
                    tree, source = _Zip(path), f"archive {path.name}"
                return cache_and_split(NAME, split, source, read_tiny_imagenet(tree))
    raise not_found(NAME, sources, tried, f"set AMIXUP_DATA_PATH to a folder holding {FOLDER}/ (wnids.txt, train/, "
                                          f"val/) or {ARCHIVE}, or put it under {_cache.REPO_DATA_DIR}/; there is no "
                                          "automatic download.")
