"""ImageFolder copies (``train/<class>/*``, ``test/<class>/*``) as folders and tar(.gz) archives: the
``imagefolder`` source of the built-in datasets and ``imagefolder:<path>`` datasets."""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Callable

import torch

from .cache import _cached, _from_payload, _split_dict, _stat_key, cache_dir, search_paths
from .images import SPLITS, DataCorruptError, DataNotFoundError, ImageData, _check_choice


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

