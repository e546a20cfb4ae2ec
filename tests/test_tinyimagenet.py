"""The Tiny-ImageNet reader on a generated miniature in the standard tiny-imagenet-200/ layout."""

import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from amixup import data as D
from amixup.data.tinyimagenet import load_tiny_imagenet

WNIDS = ["n01443537", "n01629819", "n02124075"]
TRAIN_PER_CLASS = 3


def _jpeg(value: int, gray: bool = False) -> bytes:
    from torchvision.io import encode_jpeg

    img = torch.full((1 if gray else 3, 64, 64), value, dtype=torch.uint8)
    img[:, :32] = 255 - value  # not flat, so the image is a real picture
    return bytes(encode_jpeg(img, quality=95).numpy())


def make_miniature(root: Path) -> Path:
    """tiny-imagenet-200/ with 3 classes x 3 training images, 4 annotated val images (one grayscale)."""
    top = root / "tiny-imagenet-200"
    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for c, wnid in enumerate(WNIDS):
        folder = top / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # present in the real layout, not read
        for i in range(TRAIN_PER_CLASS):
            (folder / f"{wnid}_{i}.JPEG").write_bytes(_jpeg(40 * c + 10 * i))
    labels = [2, 0, 1, 0]
    lines = []
    for i, c in enumerate(labels):
        (top / "val" / "images" / f"val_{i}.JPEG").write_bytes(_jpeg(60 * c, gray=i == 3))
        lines.append(f"val_{i}.JPEG\t{WNIDS[c]}\t0\t1\t62\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return top


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    top = make_miniature(data_dir)
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(data_dir))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    return top


def test_reads_the_standard_folder_and_caches_uint8(tiny, tmp_path):
    train = load_tiny_imagenet("train")
    test = load_tiny_imagenet("test")
    assert train.images.dtype == torch.uint8 and train.images.shape == (9, 3, 64, 64)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and train.classes == WNIDS
    assert test.images.shape == (4, 3, 64, 64) and test.labels.tolist() == [2, 0, 1, 0]
    assert train.source == "tiny-imagenet-200 folder " + str(tiny)
    assert test.source.startswith("cache tiny_imagenet.pt of tiny-imagenet-200 folder")
    # grayscale JPEGs become 3 equal channels; pixel values survive JPEG closely
    assert torch.equal(test.images[3, 0], test.images[3, 1])
    assert abs(int(train.images[4, 0, 40, 0]) - 50) <= 3 and abs(int(train.images[4, 0, 10, 0]) - 205) <= 3
    # the cache answers without the images
    shutil.rmtree(tiny)
    again = load_tiny_imagenet("train")
    assert torch.equal(again.images, train.images) and again.source.startswith("cache tiny_imagenet.pt")


def test_registry_dataset_and_normalization(tiny):
    test = D.build_dataset("tiny_imagenet", "test")
    assert test.classes == WNIDS and len(test) == 4
    assert D.DATASETS["tiny_imagenet"].num_classes == 200 and D.base_of("tiny_imagenet") == "tiny_imagenet"
    assert len(D.NORMALIZATION["tiny_imagenet"][0]) == 3
    with pytest.raises(ValueError, match="imb_factor applies only"):
        D.build_dataset("tiny_imagenet", "train", imb_factor=10)


def test_reads_the_zip_without_extracting(tiny, tmp_path):
    folder = load_tiny_imagenet("train", sources=("imagefolder",))
    archive = tiny.parent / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tiny.rglob("*")):
            zf.write(p, p.relative_to(tiny.parent).as_posix())
    shutil.rmtree(tiny)
    zipped = load_tiny_imagenet("train", sources=("imagefolder",))
    assert zipped.source == "archive tiny-imagenet-200.zip"
    assert torch.equal(zipped.images, folder.images) and torch.equal(zipped.labels, folder.labels)
    assert load_tiny_imagenet("test", sources=("imagefolder",)).labels.tolist() == [2, 0, 1, 0]


def test_malformed_annotation_line_is_rejected_with_its_line_number(tiny):
    ann = tiny / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    lines[2] = "val_2.JPEG n01629819 0 1"  # two box fields missing
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt line 3: expected '<file> <wnid> <x0> <y0> <x1> <y1>'"):
        load_tiny_imagenet("test")
    lines[2] = "val_2.JPEG\tn99999999\t0\t1\t62\t63"  # a class that wnids.txt does not list
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 3: class id 'n99999999' is not in wnids.txt"):
        load_tiny_imagenet("test")
    lines[2] = "../../x.JPEG\tn01629819\t0\t1\t62\t63"
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 3: file must be a plain name"):
        load_tiny_imagenet("test")
    assert not (D.cache_dir() / "tiny_imagenet.pt").exists()  # nothing half-written


def test_bad_wnids_line(tiny):
    (tiny / "wnids.txt").write_text("n01443537\nn01629819 n02124075\n")
    with pytest.raises(ValueError, match=r"wnids.txt line 2: expected one class id"):
        load_tiny_imagenet("train")


def test_missing_image_is_an_error_naming_it(tiny):
    (tiny / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(D.DataCorruptError, match=r"line 2: image .*val/images/val_1.JPEG not found"):
        load_tiny_imagenet("test")
    shutil.rmtree(tiny / "train" / WNIDS[1])
    with pytest.raises(D.DataCorruptError, match=rf"no training images in train/{WNIDS[1]}/images/"):
        load_tiny_imagenet("train")


def test_corrupt_image_is_an_error_naming_it(tiny):
    bad = tiny / "train" / WNIDS[2] / "images" / f"{WNIDS[2]}_1.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(D.DataCorruptError, match=rf"cannot decode image .*{WNIDS[2]}_1.JPEG"):
        load_tiny_imagenet("train")
    assert not (D.cache_dir() / "tiny_imagenet.pt").exists()


def test_wrong_image_size_is_an_error_naming_it(tiny):
    from torchvision.io import encode_jpeg

    small = tiny / "val" / "images" / "val_0.JPEG"
    small.write_bytes(bytes(encode_jpeg(torch.zeros(3, 32, 32, dtype=torch.uint8)).numpy()))
    with pytest.raises(D.DataCorruptError, match=r"val_0.JPEG is \(32, 32\), expected 64x64"):
        load_tiny_imagenet("test")


def test_corrupt_zip(tmp_path, monkeypatch):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(D.DataCorruptError, match="tiny-imagenet-200.zip is corrupt"):
        load_tiny_imagenet("train")


def test_not_found_names_the_places_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(D.DataNotFoundError) as err:
        D.build_dataset("tiny_imagenet", "test")
    text = str(err.value)
    assert text.startswith("dataset 'tiny_imagenet' not found. Places looked")
    assert str(tmp_path / "empty" / "tiny-imagenet-200") in text and "tiny-imagenet-200.zip" in text
    with pytest.raises(ValueError, match="sources entry must be one of"):
        load_tiny_imagenet("train", sources=("download",))


@pytest.mark.parametrize("model, method", [("vgg11", "manifold_mixup"), ("densenet_bc", "am_mixup")])
def test_table8_recipe_trains_on_the_miniature(tiny, tmp_path, model, method):
    """End to end at 64x64: the Tiny-ImageNet recipe (crop 64 with padding 4, flip), the 64-pixel
    networks, the step / multistep schedules and a record."""
    from amixup.engine import train
    from amixup.recipes import benchmark_recipe, make_config

    config = make_config(benchmark_recipe("tiny_imagenet", model), "smoke", model=model, method=method,
                         batch_size=4, test_subset=None, device="cpu", experiment="table8")
    record = train(config, tmp_path / "results", progress=False)
    assert record["config"]["dataset"] == "tiny_imagenet" and len(record["history"]) == config.epochs == 2
    assert record["data"]["source"].startswith("tiny-imagenet-200 folder")
    assert 0 <= record["metrics"]["last"]["acc_all"] <= 100
    assert [h["lr"] for h in record["history"]] == pytest.approx(
        [0.1, 0.09] if model == "vgg11" else [0.1, 0.01])


def test_cli_prepares_it(tiny, capsys):
    from amixup.__main__ import main

    assert main(["prepare", "tiny_imagenet"]) == 0
    assert "tiny_imagenet: 9 training images from tiny-imagenet-200 folder" in capsys.readouterr().out
    assert (D.cache_dir() / "tiny_imagenet.pt").is_file()
