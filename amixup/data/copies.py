"""The copies of the data-copy study: the label of a copy ("original", or "q<quality>" for the CIFAR-10 JPEG copy
encoded once more at that quality) and the data source a record of a run on it must name, so a record's own
``config.extra.data_copy`` and ``data.source`` say whether it read the copy it is labelled with."""

from __future__ import annotations

import re

from .imagefolder import COPY_MARKER

ARCHIVE = "cifar10-jpeg.tar.gz"
ORIGINAL_SOURCE = f"imagefolder archive {ARCHIVE} (lossy JPEG re-encoding)"


class DataCopyError(RuntimeError):
    """A run would read (or a record was trained on) another copy than its label says."""


def data_copy_label(copy: str = "original", quality: int = 75) -> str:
    """``extra.data_copy`` of a data-copy run: "original" (the copy as it is) or "q<quality>" (re-encoded
    once more at that JPEG quality); ``copy`` is "original", "reencoded" (at ``quality``) or "q<N>"."""
    if copy == "original":
        return "original"
    if copy == "reencoded":
        label = f"q{quality}"
    elif isinstance(copy, str) and copy[:1] == "q" and copy[1:].isdigit():
        label = copy
    else:
        raise ValueError(f"copy must be 'original', 'reencoded' or 'q<quality>' (e.g. 'q75'), got {copy!r}")
    if not 1 <= int(label[1:]) <= 100:
        raise ValueError(f"the JPEG quality of copy {copy!r} must lie in 1..100")
    return label


def expected_source(label: str) -> str:
    """The data source (without a "cache ... of" prefix) of a run on the copy ``label``."""
    if label == "original":
        return ORIGINAL_SOURCE
    quality = int(data_copy_label(label)[1:])
    return (f"imagefolder archive {ARCHIVE} (lossy JPEG re-encoding; "
            f"JPEG-encoded once more at quality {quality} ({COPY_MARKER}))")


def check_source(label: str, source: str, what: str = "the data") -> None:
    """Raise :class:`DataCopyError` unless ``source`` (a record's data.source) is the copy ``label``."""
    read = re.sub(r"^cache \S+ of ", "", source)
    want = expected_source(label)
    if read != want:
        raise DataCopyError(f"{what} of copy {label!r} came from {read!r}, expected {want!r}. Give each copy its "
                            f"own folder (the original archive, or the one re-encoded by `python -m amixup.jpegquality "
                            f"reencode`) and its own cache folder: a cache built from the other copy is read first.")


DISTANCES_FILE = "distances.json"  # under results/data_copy/: how far each re-encoded copy lies from the original


def read_distances(path) -> dict[str, dict]:
    """The measured distances of the re-encoded copies from the copy as it is (copy label -> the numbers of
    ``amixup.data_copy.pixel_difference``, PSNR included), as ``python -m amixup.data_copy --compare ... --save-as
    LABEL`` keeps them; {} where the file is not there."""
    import json
    from pathlib import Path

    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}
