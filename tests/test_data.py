"""Tests for amixup.data: sources, caching, corruption handling, long tail and registry."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from amixup import data as D

# torchvision 0.29 deprecates its image codecs (used here to write test images) in favour of torchcodec
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


# --------------------------------------------------------------------------- helpers

@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated data folder (AMIXUP_DATA_PATH), cache folder and an empty repo data/ folder."""
    data_dir, cache = tmp_path / "datasets", tmp_path / "cache"
    data_dir.mkdir()
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(data_dir))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(cache))
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")
    return data_dir, cache


def pixel_value(split: str, label: int, i: int) -> int:
    """Distinct fill value of generated image i of a class."""
    return (label * 20 + i * 3 + (0 if split == "train" else 1)) % 256


def write_imagefolder(root: Path, classes, per_class: int, fmt: str = "png", size: int = 32, channels: int = 3):
    """ImageFolder tree root/{train,test}/<class>/NNNN.<fmt> of constant-colour images (written in reverse order)."""
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in reversed(range(per_class)):
                img = torch.full((channels, size, size), pixel_value(split, label, i), dtype=torch.uint8)
                blob = encode_png(img) if fmt == "png" else encode_jpeg(img, quality=95)
                (folder / f"{i:04d}.{fmt}").write_bytes(blob.numpy().tobytes())


def pack(src: Path, archive: Path, prefix: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("train", "test"):
            tf.add(src / name, arcname=prefix + name)
    return archive


def write_cifar10_pickles(folder: Path, per_batch: int = 10) -> dict:
    """Canonical cifar-10-batches-py with random data; returns {file: (data, labels)}."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        arr = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        with open(folder / fname, "wb") as f:
            pickle.dump({"batch_label": fname, "labels": labels, "data": arr, "filenames": []}, f)
        made[fname] = (arr, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": D.CIFAR10_CLASSES, "num_cases_per_batch": per_batch}, f)
    return made


def write_cifar100_pickles(folder: Path, n: int = 200, coarse_map=None) -> dict:
    folder.mkdir(parents=True)
    coarse_map = D.CIFAR100_COARSE_OF_FINE if coarse_map is None else coarse_map
    rng = np.random.default_rng(1)
    made = {}
    for split in ("train", "test"):
        arr = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [i % 100 for i in range(n)]
        with open(folder / split, "wb") as f:
            pickle.dump({"data": arr, "fine_labels": fine, "coarse_labels": [coarse_map[x] for x in fine]}, f)
        made[split] = (arr, fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": D.CIFAR100_CLASSES, "coarse_label_names": D.CIFAR100_COARSE_CLASSES}, f)
    return made


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    made = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            blob = idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
        made[prefix] = (images, labels)
    return made


def synthetic(counts, size: int = 4) -> D.ImageData:
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    images = torch.arange(len(labels), dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images.view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()
    return D.ImageData(images, labels, [f"c{i}" for i in range(len(counts))], "synthetic")


# --------------------------------------------------------------------------- long tail

def test_longtail_counts_examples():
    assert D.longtail_counts(5000, 4, 200) == [5000, 854, 146, 25]
    assert sum(D.longtail_counts(5000, 10, 100)) == 12406
    assert D.longtail_counts(5000, 10, 100)[-1] == 50
    assert D.longtail_counts(500, 100, 1) == [500] * 100


@pytest.mark.parametrize("args,param", [((10, 3, 0.5), "imb_factor"), ((0, 3, 2), "n_max"),
                                        ((10, 0, 2), "num_classes")])
def test_longtail_counts_invalid(args, param):
    with pytest.raises(ValueError, match=param):
        D.longtail_counts(*args)


def test_longtail_subset_counts_and_determinism():
    data = synthetic([50, 50, 50, 50])
    lt = D.longtail_subset(data, 10, seed=3)
    assert lt.counts() == D.longtail_counts(50, 4, 10) == [50, 23, 10, 5]
    again = D.longtail_subset(data, 10, seed=3)
    other = D.longtail_subset(data, 10, seed=4)
    assert torch.equal(lt.images, again.images) and torch.equal(lt.labels, again.labels)
    assert not torch.equal(lt.images, other.images)
    assert other.counts() == lt.counts()
    # kept images are original rows, in original order (image value = original index here)
    kept = lt.images[:, 0, 0, 0].to(torch.int64)
    assert torch.all(kept[1:] > kept[:-1])
    assert torch.equal(data.labels[kept], lt.labels)
    assert lt.classes == data.classes and lt.source == data.source


def test_ldam_drw_selection_keeps_the_images_ldam_drws_code_keeps():
    """LDAM-DRW's IMBALANCECIFAR10.gen_imbalanced_data, written the way it draws: np.random.seed(0) once, then for
    each class in order np.where, np.random.shuffle, the first n kept. Ours uses a RandomState of its own."""
    data = synthetic([50, 50, 50, 50])
    want = D.longtail_counts(50, 4, 10)
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        expected = []
        for c, n in enumerate(want):
            idx = np.where(data.labels.numpy() == c)[0]
            np.random.shuffle(idx)
            expected += idx[:n].tolist()
        np.random.seed(123)  # the global state is not what ours reads
        lt = D.longtail_subset(data, 10, seed=0, selection="ldam_drw")
    finally:
        np.random.set_state(saved)
    kept = lt.images[:, 0, 0, 0].to(torch.int64).tolist()  # image value = original index
    assert kept == sorted(expected) and lt.counts() == want
    assert kept != D.longtail_subset(data, 10, seed=0).images[:, 0, 0, 0].to(torch.int64).tolist()
    with pytest.raises(ValueError, match="longtail_selection must be one of"):
        D.longtail_subset(data, 10, selection="numpy")


def test_longtail_head_balanced_is_the_class_size():
    assert D.longtail_head([5000] * 10, 100) == 5000
    assert D.longtail_head([500] * 100, 10) == 500
    assert D.longtail_head([7], 3) == 7


def test_longtail_head_unbalanced_base():
    # SVHN's training counts: class 1 is the largest, but class 0 heads the profile and has 4,948 images
    svhn = [4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659]
    assert D.longtail_head(svhn, 100) == 4948
    # by hand: imb 2 over 3 classes asks n, int(n / sqrt 2), int(n / 2); one image in class 1 allows n = 2 at most
    assert D.longtail_head([10, 1, 1], 2) == 2
    lt = D.longtail_subset(synthetic([10, 1, 1]), 2)
    assert lt.counts() == [2, 1, 1]
    lt = D.longtail_subset(synthetic([5, 40, 30, 20]), 4)  # a base whose head class is its smallest
    assert lt.counts() == D.longtail_counts(5, 4, 4) == [5, 3, 1, 1]
    with pytest.raises(ValueError, match="imb_factor=2 fits class counts"):
        D.longtail_head([0, 5], 2)


def test_longtail_head_is_the_largest_that_fits():
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        classes = int(torch.randint(2, 12, (), generator=gen))
        counts = torch.randint(1, 300, (classes,), generator=gen).tolist()
        imb = [1, 2, 3.7, 10, 100][int(torch.randint(0, 5, (), generator=gen))]
        n = D.longtail_head(counts, imb)
        assert all(w <= h for w, h in zip(D.longtail_counts(n, classes, imb), counts))
        assert not all(w <= h for w, h in zip(D.longtail_counts(n + 1, classes, imb), counts))


def test_imagedata_subset_relabel_counts():
    data = synthetic([3, 2, 1])
    assert len(data) == 6 and data.num_classes == 3 and data.counts() == [3, 2, 1]
    coarse = data.relabel([0, 1, 1], ["a", "bc"])
    assert coarse.counts() == [3, 3] and coarse.classes == ["a", "bc"]
    assert torch.equal(coarse.labels == 0, data.labels == 0)
    part = data.subset(data.labels == 1)
    assert part.counts() == [0, 2, 0] and part.images.is_contiguous()
    with pytest.raises(ValueError, match="mapping"):
        data.relabel([0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="mapping"):
        data.relabel([0, 1, 2], ["a", "b"])


# --------------------------------------------------------------------------- paths and argument checks

def test_search_paths_and_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")
    monkeypatch.setenv("AMIXUP_DATA_PATH", f"{tmp_path}/a::{tmp_path}/b:")
    assert D.search_paths() == [tmp_path / "a", tmp_path / "b", tmp_path / "repo_data"]
    monkeypatch.delenv("AMIXUP_DATA_PATH")
    assert D.search_paths() == [tmp_path / "repo_data"]
    monkeypatch.delenv("AMIXUP_CACHE_DIR", raising=False)
    assert D.cache_dir() == tmp_path / "repo_data" / "cache" and D.cache_dir().is_dir()
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "c"))
    assert D.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_argument_validation(env):
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        D.load_cifar10("val")
    with pytest.raises(ValueError, match="sources"):
        D.load_mnist("train", sources=("cache", "internet"))
    with pytest.raises(ValueError, match="name must be one of .*mini_cifar"):
        D.build_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="imb_factor"):
        D.build_dataset("cifar10_lt", "train")
    with pytest.raises(ValueError, match="imb_factor"):
        D.build_dataset("cifar10", "train", imb_factor=10)
    with pytest.raises(ValueError, match="imb_factor"):
        D.build_dataset("cifar100_lt", "train", imb_factor=0.5)
    with pytest.raises(ValueError, match="name"):
        D.base_of("nope")


def test_not_found_message(env):
    data_dir, cache = env
    with pytest.raises(D.DataNotFoundError) as info:
        D.load_cifar10("train")
    msg = str(info.value)
    assert "cifar10" in msg and "AMIXUP_DATA_PATH" in msg and "download=True" in msg
    assert str(data_dir / "cifar10-jpeg.tar.gz") in msg and str(data_dir / "cifar-10-batches-py") in msg
    assert str(cache / "cifar10.pt") in msg and str(D.cache.REPO_DATA_DIR) in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(D.DataNotFoundError, match="mnist"):
        D.load_mnist("test", sources=("torchvision_files",))


def test_registry_and_constants():
    assert set(D.DATASETS) >= {"cifar10", "cifar100", "mnist", "mini_cifar", "mini_cifar_coarse", "mini_cifar_lt",
                               "cifar10_lt", "cifar100_lt", "cifar10_coarse", "cifar100_coarse", "mnist_coarse"}
    for name, spec in D.DATASETS.items():
        assert D.base_of(name) in D.NORMALIZATION and spec.description
    assert D.base_of("mini_cifar_lt") == "cifar10" and D.base_of("cifar100_coarse") == "cifar100"
    assert D.DATASETS["cifar100_coarse"].num_classes == 20
    assert D.NORMALIZATION["mnist"] == ((0.1307,), (0.3081,))
    assert all(len(m) == len(s) == 3 for m, s in (D.NORMALIZATION["cifar10"], D.NORMALIZATION["cifar100"]))


def test_cifar100_coarse_map_invariants():
    fine_to_coarse = D.CIFAR100_COARSE_OF_FINE
    assert len(fine_to_coarse) == 100 and len(D.CIFAR100_COARSE_CLASSES) == 20
    assert D.CIFAR100_CLASSES == sorted(D.CIFAR100_CLASSES) and len(set(D.CIFAR100_CLASSES)) == 100
    assert np.bincount(fine_to_coarse, minlength=20).tolist() == [5] * 20
    named = {f: D.CIFAR100_COARSE_CLASSES[c] for f, c in zip(D.CIFAR100_CLASSES, fine_to_coarse)}
    assert named["apple"] == "fruit_and_vegetables" and named["whale"] == "aquatic_mammals"
    assert named["tractor"] == "vehicles_2" and named["bicycle"] == "vehicles_1" and named["worm"] == (
        "non-insect_invertebrates")
    assert {f for f, c in named.items() if c == "trees"} == {"maple_tree", "oak_tree", "palm_tree", "pine_tree",
                                                               "willow_tree"}


# --------------------------------------------------------------------------- imagefolder source

def test_imagefolder_archive_loads_then_cache(env, tmp_path):
    data_dir, cache = env
    write_imagefolder(tmp_path / "src", D.CIFAR10_CLASSES, per_class=2)
    archive = pack(tmp_path / "src", data_dir / "cifar10.tar.gz")
    train = D.load_cifar10("train")
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert train.classes == D.CIFAR10_CLASSES and train.source.startswith("imagefolder archive cifar10.tar.gz")
    # files sorted by name within a class (they were written in reverse order)
    assert [int(train.images[k, 0, 0, 0]) for k in range(4)] == [pixel_value("train", 0, 0), pixel_value(
        "train", 0, 1), pixel_value("train", 1, 0), pixel_value("train", 1, 1)]
    assert (cache / "cifar10.pt").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10.pt"]  # temp folder removed
    archive.unlink()
    test = D.load_cifar10("test")
    assert test.source.startswith("cache cifar10.pt") and len(test) == 20
    assert int(test.images[19, 2, 31, 31]) == pixel_value("test", 9, 1)
    again = D.load_cifar10("train")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)


def test_imagefolder_jpeg_folder_with_top_level_dir(env, tmp_path):
    data_dir, _ = env
    write_imagefolder(data_dir / "cifar10-jpeg" / "inner", D.CIFAR10_CLASSES, per_class=1, fmt="jpg")
    test = D.load_cifar10("test", sources=("imagefolder",))
    assert test.images.shape == (10, 3, 32, 32) and test.labels.tolist() == list(range(10))
    assert (test.images[3].float() - pixel_value("test", 3, 0)).abs().max() <= 3  # lossy JPEG
    assert test.source == "imagefolder folder cifar10-jpeg"


def test_imagefolder_wrong_classes(env, tmp_path):
    data_dir, cache = env
    write_imagefolder(tmp_path / "src", ["cat", "dog"], per_class=1)
    pack(tmp_path / "src", data_dir / "cifar10-jpeg.tar.gz")
    with pytest.raises(D.DataCorruptError, match="class folders"):
        D.load_cifar10("train")
    assert list(cache.iterdir()) == []


def test_truncated_archive(env, tmp_path):
    data_dir, cache = env
    write_imagefolder(tmp_path / "src", D.CIFAR10_CLASSES, per_class=3)
    archive = pack(tmp_path / "src", tmp_path / "full.tar.gz")
    blob = archive.read_bytes()
    (data_dir / "cifar10-jpeg.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(D.DataCorruptError, match="cifar10-jpeg.tar.gz"):
        D.load_cifar10("train")
    assert list(cache.iterdir()) == []


def test_malicious_archive(env, tmp_path):
    data_dir, cache = env
    write_imagefolder(tmp_path / "src", D.CIFAR10_CLASSES, per_class=1)
    archive = pack(tmp_path / "src", data_dir / "cifar10.tar.gz")
    with tarfile.open(archive, "w:gz") as tf:  # rewrite with an escaping member first
        payload = b"owned"
        info = tarfile.TarInfo("../evil")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
        tf.add(tmp_path / "src" / "train", arcname="train")
        tf.add(tmp_path / "src" / "test", arcname="test")
    with pytest.raises(D.DataCorruptError, match="cifar10.tar.gz"):
        D.load_cifar10("train")
    assert not (cache.parent / "evil").exists() and not (data_dir / "evil").exists()
    assert list(cache.iterdir()) == []


def test_corrupt_cache_is_reported(env):
    _, cache = env
    cache.mkdir()
    (cache / "mnist.pt").write_bytes(b"not a torch file")
    with pytest.raises(D.DataCorruptError, match="mnist.pt"):
        D.load_mnist("train")


# --------------------------------------------------------------------------- canonical torchvision files

def test_cifar10_pickles_nested(env):
    data_dir, cache = env
    made = write_cifar10_pickles(data_dir / "torchvision_root" / "cifar-10-batches-py")
    arr, _ = made["data_batch_2"]
    arr[3, 1 * 1024 + 2 * 32 + 5] = 77  # image 3 of batch 2, green channel, row 2, column 5
    with open(data_dir / "torchvision_root" / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"labels": made["data_batch_2"][1], "data": arr}, f)
    train = D.load_cifar10("train", sources=("torchvision_files",))
    assert train.images.shape == (50, 3, 32, 32) and train.images.is_contiguous()
    assert int(train.images[10 + 3, 1, 2, 5]) == 77
    assert int(train.images[10 + 3, 1, 2, 6]) == int(arr[3, 1024 + 2 * 32 + 6])
    expected = np.concatenate([made[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(train.images.numpy(), expected)
    assert train.labels.tolist() == [i % 10 for i in range(10)] * 5
    assert train.source == "torchvision files cifar-10-batches-py"
    test = D.load_cifar10("test")
    assert test.source.startswith("cache") and np.array_equal(test.images.numpy().reshape(10, -1),
                                                              made["test_batch"][0])
    assert (cache / "cifar10.pt").is_file()


def test_cifar10_pickle_bad_shape(env):
    data_dir, _ = env
    folder = data_dir / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"labels": [0, 1], "data": np.zeros((2, 100), dtype=np.uint8)}, f)
    with pytest.raises(D.DataCorruptError, match="test_batch"):
        D.load_cifar10("test")


def test_cifar100_pickles_and_coarse(env):
    data_dir, _ = env
    made = write_cifar100_pickles(data_dir / "cifar-100-python")
    train = D.load_cifar100("train")
    assert train.images.shape == (200, 3, 32, 32) and train.num_classes == 100
    assert train.labels.tolist() == made["train"][1]
    assert np.array_equal(train.images.numpy().reshape(200, -1), made["train"][0])
    coarse = D.build_dataset("cifar100_coarse", "test")
    assert coarse.classes == D.CIFAR100_COARSE_CLASSES
    assert coarse.labels.tolist() == [D.CIFAR100_COARSE_OF_FINE[f] for f in made["test"][1]]
    lt = D.build_dataset("cifar100_lt", "train", imb_factor=2)
    assert lt.counts() == D.longtail_counts(2, 100, 2)
    assert D.build_dataset("cifar100_lt", "test", imb_factor=2).counts() == [2] * 100


def test_cifar100_inconsistent_coarse_labels(env):
    data_dir, _ = env
    write_cifar100_pickles(data_dir / "cifar-100-python", coarse_map=[0] * 100)
    with pytest.raises(D.DataCorruptError, match="coarse"):
        D.load_cifar100("train")


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    blob = idx_bytes(arr, 2051)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    assert np.array_equal(D.read_idx(path, 2051), arr)
    with pytest.raises(D.DataCorruptError, match="magic"):
        D.read_idx(path, 2049)
    bad = tmp_path / "short"
    bad.write_bytes(blob[:-1])
    with pytest.raises(D.DataCorruptError, match="short"):
        D.read_idx(bad, 2051)


def test_read_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8), 2051))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(D.DataCorruptError, match="cut.gz"):
        D.read_idx(path, 2051)


@pytest.mark.parametrize("layout,gz", [("mnist", True), ("MNIST/raw", False), ("", True)])
def test_mnist_layouts(env, layout, gz):
    data_dir, _ = env
    made = write_mnist(data_dir / layout if layout else data_dir, gz=gz)
    train = D.load_mnist("train")
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), made["train"][0])
    assert train.labels.tolist() == made["train"][1].tolist() and train.labels.dtype == torch.int64
    test = D.load_mnist("test")
    assert len(test) == 6 and test.source.startswith("cache")
    coarse = D.build_dataset("mnist_coarse", "train")
    assert coarse.labels.tolist() == [int(v >= 5) for v in made["train"][1]]


def test_mnist_label_image_mismatch(env):
    data_dir, _ = env
    write_mnist(data_dir / "mnist")
    (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(5, dtype=np.uint8), 2049)))
    with pytest.raises(D.DataCorruptError, match="6 images but 5 labels"):
        D.load_mnist("train")


# --------------------------------------------------------------------------- registry on generated CIFAR-10

def test_build_mini_cifar_variants(env):
    data_dir, _ = env
    write_cifar10_pickles(data_dir / "cifar-10-batches-py", per_batch=40)  # 20 train / 4 test images per class
    mini = D.build_dataset("mini_cifar", "train")
    assert mini.classes == ["airplane", "automobile", "bird", "cat"] and mini.counts() == [20] * 4
    coarse = D.build_dataset("mini_cifar_coarse", "test")
    assert coarse.classes == ["vehicles", "animals"] and coarse.counts() == [8, 8]
    lt = D.build_dataset("mini_cifar_lt", "train")
    assert lt.counts() == D.longtail_counts(20, 4, 200) == [20, 3, 0, 0]
    assert D.build_dataset("mini_cifar_lt", "test").counts() == [4] * 4
    lt10 = D.build_dataset("cifar10_lt", "train", imb_factor=4, subsample_seed=1)
    assert lt10.counts() == D.longtail_counts(20, 10, 4)
    assert D.build_dataset("cifar10_lt", "test", imb_factor=4).counts() == [4] * 10
    c10 = D.build_dataset("cifar10_coarse", "train")
    full = D.build_dataset("cifar10", "train")
    vehicles = {0, 1, 8, 9}
    assert c10.labels.tolist() == [0 if y in vehicles else 1 for y in full.labels.tolist()]


# --------------------------------------------------------------------------- real offline data

@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    if not (REAL_DATA / "cifar10-jpeg.tar.gz").is_file() or not (REAL_DATA / "mnist").is_dir():
        pytest.skip(f"real offline datasets not found at {REAL_DATA}")
    return tmp_path_factory.mktemp("real_cache")  # shared, so the JPEG archive is decoded once


@pytest.fixture
def real_env(real_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(REAL_DATA))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(real_cache))
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")


def test_real_cifar10(real_env):
    train = D.load_cifar10("train")
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.counts() == [5000] * 10 and train.classes == D.CIFAR10_CLASSES
    assert "cifar10-jpeg.tar.gz" in train.source
    mean = train.images[::10].float().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(D.NORMALIZATION["cifar10"][0]), atol=0.03)


def test_real_mini_cifar(real_env):
    assert D.build_dataset("mini_cifar_lt", "train").counts() == [5000, 854, 146, 25]
    test = D.build_dataset("mini_cifar", "test")
    assert len(test) == 4000 and test.counts() == [1000] * 4
    assert D.build_dataset("mini_cifar_lt", "test").counts() == [1000] * 4


def test_real_mnist(real_env):
    train = D.load_mnist("train")
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.counts() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    with gzip.open(REAL_DATA / "mnist" / "train-labels-idx1-ubyte.gz") as f:
        raw_labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    with gzip.open(REAL_DATA / "mnist" / "train-images-idx3-ubyte.gz") as f:
        raw_images = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    assert int(train.labels.sum()) == int(raw_labels.astype(np.int64).sum())
    assert int(train.images.to(torch.int64).sum()) == int(raw_images.astype(np.int64).sum())
    assert len(D.load_mnist("test")) == 10000
