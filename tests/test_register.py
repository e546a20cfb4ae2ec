"""Your own data: register_dataset, ImageFolder path datasets and torchvision classes, on generated data."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from torchvision.io import encode_png

from amixup import data as D
from amixup.__main__ import main as cli
from amixup.engine import train
from amixup.recipes import make_config
from amixup.sweep import expand_grid, run_sweep

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An own cache and data folder; the registry restored afterwards."""
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "datasets"))
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")
    saved = (dict(D.DATASETS), dict(D._LOADERS), dict(D.NORMALIZATION), dict(D._MODULES))
    yield
    for live, old in zip((D.DATASETS, D._LOADERS, D.NORMALIZATION, D._MODULES), saved):
        live.clear()
        live.update(old)


def blobs(split: str, channels: int = 1, size: int = 28, per_class=(60, 60, 60, 60)) -> D.ImageData:
    """Four classes of class-coloured noise, uint8 [N, channels, size, size]."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    counts = per_class if split == "train" else (10,) * len(per_class)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    noise = torch.randint(-30, 30, (len(labels), channels, size, size), generator=gen)
    images = (labels.view(-1, 1, 1, 1) * 60 + 20 + noise).clamp(0, 255).to(torch.uint8)
    return D.ImageData(images, labels, ["a", "b", "c", "d"], f"blobs {split}")


def test_register_build_normalise_and_long_tailed_variant():
    D.register_dataset("blobs", blobs, description="four blobs")
    D.register_dataset("blobs_lt", "blobs", longtail=True, default_imb=10)
    train_set = D.build_dataset("blobs", "train")
    assert train_set.images.shape == (240, 1, 28, 28) and train_set.counts() == [60] * 4
    assert D.base_of("blobs_lt") == "blobs"
    mean, std = D.normalization("blobs_lt")
    pixels = train_set.images.double() / 255
    assert mean[0] == pytest.approx(pixels.mean().item(), abs=1e-5)
    assert std[0] == pytest.approx(pixels.std().item(), abs=1e-5)
    assert D.build_dataset("blobs_lt", "train").counts() == D.longtail_counts(60, 4, 10) == [60, 27, 12, 6]
    assert D.build_dataset("blobs_lt", "train", imb_factor=2).counts() == D.longtail_counts(60, 4, 2)
    assert D.build_dataset("blobs_lt", "test").counts() == [10] * 4  # test split stays balanced
    with pytest.raises(ValueError, match="imb_factor applies only"):
        D.build_dataset("blobs", "train", imb_factor=10)
    D.register_dataset("blobs_pair", "blobs", keep_classes=(3, 0), coarse=((0, 0), ("zero",)))
    pair = D.build_dataset("blobs_pair", "test")
    assert pair.classes == ["zero"] and pair.counts() == [20]
    D.register_dataset("blobs_fixed", lambda s: blobs(s), normalization=((0.5,), (0.25,)))
    assert D.normalization("blobs_fixed") == ((0.5,), (0.25,))


def test_registered_dataset_in_configs_engine_sweep_and_splits(tmp_path):
    D.register_dataset("blobs_rgb", lambda split: blobs(split, channels=3, size=64))
    D.register_dataset("blobs_rgb_lt", "blobs_rgb", longtail=True)
    config = make_config("motivation", "smoke", dataset="blobs_rgb_lt", imb_factor=10, method="am_mixup",
                         experiment="own", epochs=1, many_threshold=50, few_threshold=10)
    record = train(config, tmp_path, progress=False)
    assert record["data"]["full_train_counts"] == [60, 27, 12, 6]
    assert record["data"]["groups"] == {"many": [0], "median": [1, 2], "few": [3]}
    assert set(record["metrics"]["last"]) == {"acc_all", "acc_many", "acc_median", "acc_few"}
    with pytest.raises(ValueError, match="dataset must be one of"):  # not registered yet
        expand_grid("motivation", "smoke", {"method": ["ce"]}, dataset="blobs", experiment="own", epochs=1)
    D.register_dataset("blobs", blobs)  # 28x28 grayscale
    grid = expand_grid("motivation", "smoke", {"method": ["ce", "mixup"]}, dataset="blobs", experiment="own",
                       epochs=1)
    records = run_sweep(grid, tmp_path, progress=False)
    assert [r["config"]["method"] for r in records] == ["ce", "mixup"]
    assert records[0]["data"]["classes"] == ["a", "b", "c", "d"]


def test_name_clashes_and_malformed_loaders_are_rejected():
    with pytest.raises(ValueError, match="'cifar10' is a built-in dataset"):
        D.register_dataset("cifar10", blobs)
    D.register_dataset("blobs", blobs)
    with pytest.raises(ValueError, match="'blobs' is already registered.*replace=True"):
        D.register_dataset("blobs", blobs)
    D.register_dataset("blobs", blobs, replace=True)
    with pytest.raises(ValueError, match="name must be lowercase"):
        D.register_dataset("My Data", blobs)
    with pytest.raises(TypeError, match="loader must be a function"):
        D.register_dataset("nothing", 42)
    with pytest.raises(ValueError, match="name must be one of"):
        D.register_dataset("variant", "no_such_base")
    with pytest.raises(ValueError, match="default_imb"):
        D.register_dataset("bad_lt", blobs, default_imb=10)
    with pytest.raises(ValueError, match="normalization of 'bad_norm'"):
        D.register_dataset("bad_norm", blobs, normalization=((0.5,), (0.0,)))

    def floats(split):
        d = blobs(split)
        return D.ImageData(d.images.float(), d.labels, d.classes, "x")

    def short_labels(split):
        d = blobs(split)
        return D.ImageData(d.images, d.labels[:-1], d.classes, "x")

    def too_few_names(split):
        d = blobs(split)
        return D.ImageData(d.images, d.labels, ["a"], "x")

    cases = [(lambda split: blobs(split).images, "must return amixup.data.ImageData, got Tensor"),
             (floats, r"images must be a uint8 tensor \[N, C, H, W\], got torch.float32"),
             (short_labels, "240 images but 239 labels"),
             (too_few_names, r"labels must lie in \[0, 1\)")]
    for i, (loader, message) in enumerate(cases):
        D.register_dataset(f"bad{i}", loader)
        with pytest.raises((TypeError, ValueError), match=f"dataset 'bad{i}'.*split 'train'.*{message}"):
            D.build_dataset(f"bad{i}", "train")


def write_tree(root, classes=("cat", "dog", "emu"), per_class=(8, 4, 2), channels=3, size=32):
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            n = per_class[label] if split == "train" else 2
            for i in range(n):
                img = torch.full((channels, size, size), 40 * label + i, dtype=torch.uint8)
                (folder / f"{i}.png").write_bytes(encode_png(img).numpy().tobytes())


def test_imagefolder_path_dataset_folder_archive_and_command_line(tmp_path, capsys):
    import tarfile

    write_tree(tmp_path / "pets")
    name = f"imagefolder:{tmp_path / 'pets'}"
    train_set = D.build_dataset(name, "train")
    assert train_set.classes == ["cat", "dog", "emu"] and train_set.counts() == [8, 4, 2]
    assert train_set.images.shape[1:] == (3, 32, 32) and int(train_set.images[9, 0, 0, 0]) == 41
    assert D.build_dataset(name, "test").counts() == [2, 2, 2]
    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "pets", arcname="pets")
    packed = D.build_dataset(f"imagefolder:{tmp_path / 'pets.tar.gz'}", "train")
    assert torch.equal(packed.images, train_set.images) and packed.classes == train_set.classes
    write_tree(tmp_path / "digits", classes=("0", "1"), per_class=(3, 3), channels=1, size=28)
    assert D.build_dataset(f"imagefolder:{tmp_path / 'digits'}", "train").images.shape == (6, 1, 28, 28)
    config = make_config("motivation", "smoke", dataset=name, method="ce", epochs=1)
    assert "/" not in config.run_id() and config.run_id().startswith("custom-imagefolder_")
    assert cli(["train", "--dataset", name, "--profile", "smoke", "--method", "ce", "--set", "epochs=1",
                "--results-dir", str(tmp_path / "runs")]) == 0
    assert '"acc_all"' in capsys.readouterr().out
    with pytest.raises(D.DataNotFoundError, match="ImageFolder dataset .*nowhere not found"):
        D.build_dataset(f"imagefolder:{tmp_path / 'nowhere'}", "train")


def test_torchvision_class_over_files_already_there(tmp_path):
    raw = tmp_path / "datasets" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            blob = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(blob)
        if prefix == "train":
            expected = images
    found = D.build_dataset("torchvision:MNIST", "train")  # root found in AMIXUP_DATA_PATH, no download
    assert found.images.shape == (20, 1, 28, 28) and torch.equal(found.images[:, 0], torch.from_numpy(expected))
    assert found.classes[0].startswith("0") and found.counts() == [2] * 10
    explicit = D.build_dataset(f"torchvision:MNIST:{tmp_path / 'datasets'}", "test")
    assert len(explicit) == 10
    with pytest.raises(D.DataNotFoundError, match="torchvision dataset FashionMNIST not found"):
        D.build_dataset("torchvision:FashionMNIST", "train")
    with pytest.raises(ValueError, match="has no dataset class 'Nope'"):
        D.build_dataset("torchvision:Nope", "train")
    assert gzip  # (imported for symmetry with test_data's writers)


def test_plugin_modules_reach_other_processes(tmp_path, monkeypatch):
    (tmp_path / "my_blobs.py").write_text(
        "from amixup import data\n"
        "def load(split):\n"
        "    import torch\n"
        "    return data.ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),"
        " ['x', 'y'], 'plugin')\n"
        "data.register_dataset('plugin_blobs', load)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AMIXUP_PLUGINS", "my_blobs")
    assert D.build_dataset("plugin_blobs", "test").counts() == [2, 2]
    assert D.plugin_modules(["plugin_blobs", "cifar10"]) == ["my_blobs"]
    D._MODULES["plugin_blobs"] = "__main__"
    with pytest.raises(ValueError, match="worker processes cannot import"):
        D.plugin_modules(["plugin_blobs"])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("model", ["cnn_vis2d", "resnet32"])
def test_models_take_channels_and_size_from_the_data(model, shape):
    from amixup.models import build_model

    net = build_model(model, num_classes=5, in_channels=shape[0])
    x = torch.randn(2, *shape)
    assert net(x).shape == (2, 5)
    logits, _ = net.forward_mixed(x, 1, lambda h: h.flip(0))
    assert logits.shape == (2, 5)


def test_hidden_files_and_folders_are_not_images_or_classes(tmp_path):
    write_tree(tmp_path / "pets")
    (tmp_path / "pets" / "train" / "cat" / ".DS_Store").write_bytes(b"not an image")  # sorts before 0.png
    (tmp_path / "pets" / "test" / ".ipynb_checkpoints").mkdir()
    name = f"imagefolder:{tmp_path / 'pets'}"
    assert D.build_dataset(name, "train").counts() == [8, 4, 2]
    assert D.build_dataset(name, "test").counts() == [2, 2, 2]


def test_long_tailed_variant_of_an_unbalanced_base(tmp_path):
    """The README's SVHN example: the head is class 0's count, not the largest class's."""
    write_tree(tmp_path / "uneven", classes=("a", "b", "c"), per_class=(6, 12, 9))
    D.register_dataset("uneven_lt", D.imagefolder_loader(tmp_path / "uneven"), longtail=True, default_imb=4)
    assert D.build_dataset("uneven_lt", "train").counts() == D.longtail_counts(6, 3, 4) == [6, 3, 1]


def test_non_square_images_train_through_the_static_step_as_eagerly(tmp_path):
    """The static (and packed) step's fixed batch takes the stored image shape, height and width apart."""
    def wide(split):
        data = blobs(split, channels=3, size=24)
        return D.ImageData(data.images[..., 4:20, :].contiguous(), data.labels, data.classes, "wide blobs")

    D.register_dataset("wide_blobs", wide)
    common = dict(dataset="wide_blobs", method="mixup", experiment="own", epochs=1, device="cpu",
                  split_convention="counts")
    eager = train(make_config("motivation", "smoke", step_mode="eager", **common), tmp_path / "eager", progress=False)
    static = train(make_config("motivation", "smoke", step_mode="static", **common), tmp_path / "static",
                   progress=False)
    assert static["environment"]["step"] == "static_eager"
    assert static["history"][0]["train_acc_mixed"] == eager["history"][0]["train_acc_mixed"]
    assert static["history"][0]["train_loss"] == pytest.approx(eager["history"][0]["train_loss"], rel=1e-4)
