"""JPEG quality from quantisation tables, and re-encoding an ImageFolder copy at a quality."""

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amixup import jpegquality
from amixup.jpegquality import copy_quality, image_quality, reencode
from amixup.tables import data_note

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(quality, mode="RGB", seed=0, size=32, subsampling=None):
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    buf = io.BytesIO()
    options = {"quality": quality} | ({} if subsampling is None else {"subsampling": subsampling})
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "JPEG", **options)
    return buf.getvalue()


@pytest.mark.parametrize("quality", [30, 75, 90, 95])
def test_quality_of_a_jpeg_encoded_at_a_known_quality_is_read_back_exactly(quality):
    info = image_quality(io.BytesIO(_jpeg(quality)))
    assert info == {"quality": quality, "exact": True, "subsampling": "4:2:0"}


def test_grayscale_and_444_jpegs():
    assert image_quality(io.BytesIO(_jpeg(60, mode="L")))["quality"] == 60
    assert image_quality(io.BytesIO(_jpeg(90, subsampling=0)))["subsampling"] == "4:4:4"


def test_non_standard_tables_give_the_nearest_quality_not_exact():
    tables = {k: [min(255, v + 1) for v in t] for k, t in jpegquality._reference_tables("RGB")[80].items()}
    quality, exact = jpegquality.table_quality(tables)
    assert abs(quality - 80) <= 2 and not exact


def _tiny_copy(root: Path, quality=95):
    """A 2-class ImageFolder tree (train/ and test/) of 32x32 JPEGs, and a README that is not an image."""
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i:04d}.jpg").write_bytes(_jpeg(quality, seed=i + 10 * len(c)))
    (root / "README.txt").write_text("tiny copy\n")
    return root


def _archive(folder: Path, path: Path):
    with tarfile.open(path, "w:gz") as tf:
        for p in sorted(folder.rglob("*")):
            tf.add(p, arcname=f"copy/{p.relative_to(folder).as_posix()}", recursive=False)
    return path


def test_reencode_archive_keeps_names_and_layout_and_sets_the_quality(tmp_path):
    src = _archive(_tiny_copy(tmp_path / "tree"), tmp_path / "tiny-jpeg.tar.gz")
    assert copy_quality(src)["quality"] == 95
    stats = reencode(src, tmp_path / "tiny-q50.tar.gz", 50)
    assert stats["jpegs"] == 10 and stats["other_files"] == 1 and stats["bytes_out"] < stats["bytes_in"]
    info = copy_quality(tmp_path / "tiny-q50.tar.gz")
    assert info["quality"] == 50 and info["exact"] == info["sampled"] == 10 and info["subsampling"] == "4:2:0"
    assert copy_quality(src, sample=100, stride=3)["sampled"] == 4  # files 1, 4, 7, 10 of 10
    with tarfile.open(src) as a, tarfile.open(tmp_path / "tiny-q50.tar.gz") as b:
        assert sorted([m.name for m in a if m.isfile()] + ["amixup-copy.json"]) == sorted(m.name for m in b)
        marker = json.load(b.extractfile("amixup-copy.json"))
        assert marker["reencoded_at_quality"] == [50] and marker["from"] == "tiny-jpeg.tar.gz"
        assert marker["from_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        img = Image.open(b.extractfile("copy/train/cat/0001.jpg"))
        assert img.size == (32, 32) and img.mode == "RGB"
    # reproducible bytes, and no overwriting
    reencode(src, tmp_path / "again.tar.gz", 50)
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "tiny-q50.tar.gz").read_bytes()
    with pytest.raises(FileExistsError):
        reencode(src, tmp_path / "again.tar.gz", 50)
    with pytest.raises(ValueError, match="quality"):
        reencode(src, tmp_path / "bad.tar.gz", 0)


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_reencoded_archive_is_read_by_the_data_loader(tmp_path, monkeypatch):
    from amixup.data import load_cifar10

    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for k, c in enumerate(CIFAR10):
            (tree / split / c).mkdir(parents=True)
            (tree / split / c / "0000.jpg").write_bytes(_jpeg(95, seed=k))
    src = _archive(tree, tmp_path / "src.tar.gz")
    (tmp_path / "copy").mkdir()
    reencode(src, tmp_path / "copy" / "cifar10-jpeg.tar.gz", 40)
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "copy"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    train = load_cifar10("train", sources=("imagefolder",))
    assert tuple(train.images.shape) == (10, 3, 32, 32) and train.labels.tolist() == list(range(10))
    # the copy's marker names the extra encoding step, so records on the two copies differ in data source
    assert train.source == ("imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding; "
                            "JPEG-encoded once more at quality 40 (amixup-copy.json))")
    assert load_cifar10("test").source == "cache cifar10.pt of " + train.source
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache-src"))
    (tmp_path / "src.tar.gz").rename(tmp_path / "cifar10-jpeg.tar.gz")
    assert load_cifar10("train").source == "imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"
    # re-encoding a re-encoded copy carries the earlier steps on
    stats = reencode(tmp_path / "copy" / "cifar10-jpeg.tar.gz", tmp_path / "twice", 30)
    assert stats["marker"]["reencoded_at_quality"] == [40, 30] and stats["other_files"] == 0
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "twice"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache-twice"))
    (tmp_path / "twice").rename(tmp_path / "twice-cifar10")
    (tmp_path / "twice").mkdir()
    (tmp_path / "twice-cifar10").rename(tmp_path / "twice" / "cifar10")
    assert load_cifar10("train").source == ("imagefolder folder cifar10 (JPEG-encoded 2 more times, at quality "
                                            "40 then 30 (amixup-copy.json))")


def test_reencode_folder_to_folder(tmp_path):
    src = _tiny_copy(tmp_path / "tree", quality=90)
    reencode(src, tmp_path / "q60", 60)
    assert (tmp_path / "q60" / "README.txt").read_text() == "tiny copy\n"
    assert copy_quality(tmp_path / "q60")["quality"] == 60
    assert not list(tmp_path.glob("*.partial"))


def test_data_note_prints_the_measured_quality_of_the_copy_it_finds(tmp_path, monkeypatch):
    _archive(_tiny_copy(tmp_path / "tree", quality=85), tmp_path / "cifar10-jpeg.tar.gz")
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path))
    record = {"data": {"source": "imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"}}
    assert "cifar10-jpeg.tar.gz: quality about 85, chroma 4:2:0, standard libjpeg tables" in data_note([record])
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "nowhere"))
    assert "not measured (the copy is not here)" in data_note([record])


def test_nbval_sanitiser_removes_the_quality_line_so_older_notebook_outputs_still_compare():
    from nbval.plugin import get_sanitize_patterns

    text = "data: x\nThese images ...\nJPEG quality from the quantisation tables of a.tar.gz: quality about 75\n"
    for regex, replace in get_sanitize_patterns((ROOT / "notebooks" / "nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    assert text == "data: x\nThese images ...\n"
