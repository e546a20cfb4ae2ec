"""Tests for amixup.data.imagelist: list-file parsing, decoding, caching and the imagenet_lt / places_lt registry."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from amixup import data as D
from amixup.data.imagelist import load_image_list, parse_list_file
from amixup.metrics import groups_by_counts

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

# (relative path, label, width, height, fill); the 20x50 image has a 200-band in rows 10..39 only
IMAGES = [("train/a/0.png", 0, 40, 30, 10), ("train/a/1.jpg", 0, 20, 50, 30), ("train/a/2.png", 0, 32, 32, 50),
          ("train/b/3.png", 1, 20, 50, None), ("train/b/4.png", 1, 50, 20, 90), ("train/c/5.png", 2, 33, 47, 110)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("AMIXUP_IMAGENET_LT_ROOT", "AMIXUP_PLACES_LT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


def write_images(root: Path) -> list[str]:
    """The IMAGES under root; returns their list-file lines."""
    lines = []
    for rel, label, w, h, fill in IMAGES:
        if fill is None:
            img = torch.zeros((3, h, w), dtype=torch.uint8)
            img[:, 10:40] = 200
        else:
            img = torch.full((3, h, w), fill, dtype=torch.uint8)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = encode_jpeg(img, quality=100) if rel.endswith(".jpg") else encode_png(img)
        path.write_bytes(blob.numpy().tobytes())
        lines.append(f"{rel} {label}")
    return lines


def write_list(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_good_file(tmp_path):
    f = write_list(tmp_path / "l.txt", ["train/x/1.JPEG 0", "", "  train/y/2.JPEG\t12  ", "   ", "z.jpg 3"])
    assert parse_list_file(f) == [("train/x/1.JPEG", 0), ("train/y/2.JPEG", 12), ("z.jpg", 3)]


@pytest.mark.parametrize("bad, reason", [
    ("foo", "expected '<relative path> <label>'"), ("a.jpg 1 2", "expected"), ("a.jpg x", "non-negative integer"),
    ("a.jpg -1", "non-negative integer"), ("a.jpg 1.5", "non-negative integer"), ("/abs/a.jpg 0", "relative"),
    ("train/../../etc/a.jpg 0", "'..'"),
])
def test_parse_rejects_malformed_lines(tmp_path, bad, reason):
    f = write_list(tmp_path / "ImageNet_LT_train.txt", ["ok.jpg 0", "", bad, "ok2.jpg 1"])
    with pytest.raises(ValueError) as info:
        parse_list_file(f)
    msg = str(info.value)
    assert "ImageNet_LT_train.txt line 3:" in msg and repr(bad) in msg and reason in msg


def test_load_shapes_labels_counts_and_center_crop(tmp_path, cache):
    lines = write_images(tmp_path / "root")
    data = load_image_list(write_list(tmp_path / "list.txt", lines), tmp_path / "root", size=32)
    assert data.images.shape == (6, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 2] and data.counts() == [3, 2, 1]
    assert data.classes == ["0", "1", "2"] and "list.txt" in data.source and "root" in data.source
    for i, (_, _, _, _, fill) in enumerate(IMAGES):
        if fill is not None and i != 1:  # PNGs are lossless: a constant image stays constant
            assert data.images[i].eq(fill).all()
    assert data.images[3].eq(200).all()  # shorter side to 32, center crop keeps only the 200-band (no squash)
    named = load_image_list(tmp_path / "list.txt", tmp_path / "root", size=32, classes=["x", "y", "z", "w"])
    assert named.classes == ["x", "y", "z", "w"] and named.counts() == [3, 2, 1, 0]
    with pytest.raises(ValueError, match=r"list.txt line 6: label 2 >= the 2 classes"):
        load_image_list(tmp_path / "list.txt", tmp_path / "root", size=32, classes=["x", "y"])


def test_missing_image_names_line_and_path(tmp_path, cache):
    lines = write_images(tmp_path / "root")
    f = write_list(tmp_path / "list.txt", lines[:2] + ["train/a/gone.png 0"] + lines[2:])
    with pytest.raises(FileNotFoundError) as info:
        load_image_list(f, tmp_path / "root", size=16)
    msg = str(info.value)
    assert "list.txt line 3" in msg and str(tmp_path / "root" / "train/a/gone.png") in msg


def test_second_load_comes_from_cache(tmp_path, cache):
    f = write_list(tmp_path / "list.txt", write_images(tmp_path / "root"))
    first = load_image_list(f, tmp_path / "root", size=16)
    shutil.rmtree(tmp_path / "root" / "train")
    second = load_image_list(f, tmp_path / "root", size=16)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.source.startswith("cache list-") and "list.txt" in second.source
    assert [p.name for p in cache.iterdir()] == [next(cache.iterdir()).name]  # one file, no temp files left
    with pytest.raises(FileNotFoundError):  # another size or cache=False decodes again
        load_image_list(f, tmp_path / "root", size=8)
    with pytest.raises(FileNotFoundError):
        load_image_list(f, tmp_path / "root", size=16, cache=False)


def test_build_dataset_imagenet_lt_and_places_lt(tmp_path, cache, monkeypatch):
    root = tmp_path / "imagenet" / "images"
    lines = write_images(root)
    by_class = {c: [ln for ln in lines if ln.endswith(f" {c}")] for c in range(3)}
    # 101 / 20 / 19 train images: many / median / few at ImageNet-LT's 100 / 20 thresholds
    train = [by_class[c][i % len(by_class[c])] for c, n in ((0, 101), (1, 20), (2, 19)) for i in range(n)]
    write_list(root.parent / "ImageNet_LT_train.txt", train)  # list files in the root's parent
    write_list(root.parent / "ImageNet_LT_test.txt", lines)
    monkeypatch.setenv("AMIXUP_IMAGENET_LT_ROOT", str(root))
    tr, te = D.build_dataset("imagenet_lt", "train"), D.build_dataset("imagenet_lt", "test")
    assert tr.images.shape == (140, 3, 256, 256) and te.images.shape == (6, 3, 256, 256)
    assert tr.num_classes == te.num_classes == 1000 and tr.counts()[:4] == [101, 20, 19, 0]
    groups = groups_by_counts(tr.counts(), 100, 20)
    assert groups["many"] == [0] and groups["median"] == [1] and groups["few"] == [2] + list(range(3, 1000))
    with pytest.raises(ValueError, match="imb_factor"):
        D.build_dataset("imagenet_lt", "train", imb_factor=10)

    places = tmp_path / "places"
    write_images(places)
    write_list(places / "Places_LT_test.txt", lines)  # list file in the root itself
    monkeypatch.setenv("AMIXUP_PLACES_LT_ROOT", str(places))
    te = D.build_dataset("places_lt", "test")
    assert te.num_classes == 365 and te.counts()[:3] == [3, 2, 1] and "Places_LT_test.txt" in te.source
    assert D.base_of("imagenet_lt") == "imagenet_lt" and D.base_of("places_lt") == "places_lt"
    assert D.NORMALIZATION["places_lt"] == D.NORMALIZATION["imagenet_lt"] == ((0.485, 0.456, 0.406),
                                                                              (0.229, 0.224, 0.225))


def test_build_dataset_without_env_var_or_list_files(tmp_path, cache, monkeypatch):
    with pytest.raises(D.DataNotFoundError) as info:
        D.build_dataset("imagenet_lt", "train")
    msg = str(info.value)
    assert "'imagenet_lt'" in msg and "AMIXUP_IMAGENET_LT_ROOT" in msg and "ImageNet_LT_train.txt" in msg
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("AMIXUP_PLACES_LT_ROOT", str(tmp_path / "empty"))
    with pytest.raises(D.DataNotFoundError) as info:
        D.build_dataset("places_lt", "test")
    msg = str(info.value)
    assert "AMIXUP_PLACES_LT_ROOT" in msg and str(tmp_path / "empty" / "Places_LT_test.txt") in msg
    assert str(tmp_path / "Places_LT_test.txt") in msg


def _imagenet_lt_folder(tmp_path, monkeypatch):
    root = tmp_path / "imagenet" / "images"
    lines = write_images(root)
    by_class = {c: [ln for ln in lines if ln.endswith(f" {c}")] for c in range(3)}
    train = [by_class[c][i % len(by_class[c])] for c, n in ((0, 101), (1, 20), (2, 19)) for i in range(n)]
    write_list(root.parent / "ImageNet_LT_train.txt", train)
    write_list(root.parent / "ImageNet_LT_test.txt", lines)
    monkeypatch.setenv("AMIXUP_IMAGENET_LT_ROOT", str(root))
    return root


def test_imagenet_lt_recipe_trains_end_to_end_on_a_generated_folder(tmp_path, cache, monkeypatch):
    from amixup.engine import train
    from amixup.experiments import table4_configs

    _imagenet_lt_folder(tmp_path, monkeypatch)
    (config,) = table4_configs("smoke", methods=["am_mixup"], networks=["resnet50"], epochs=1, crop_size=32,
                               batch_size=64)
    rec = train(config, tmp_path / "results", progress=False)
    assert rec["config"]["augmentation"] == "resized_crop_flip" and rec["config"]["lr_schedule"] == "cosine"
    assert sum(rec["data"]["train_counts"]) == 140 and sum(rec["data"]["test_counts"]) == 6
    assert set(rec["metrics"]["last"]) >= {"acc_all", "acc_many", "acc_median", "acc_few"}
    assert rec["lambda_trajectory"][0] == 1.0
    with pytest.raises(ValueError, match="crop_size must be <= the stored image size 256"):
        train(config.__class__.from_dict({**config.to_dict(), "crop_size": 300}), tmp_path / "results")


def test_finetune_from_a_torchvision_state_dict(tmp_path, cache, monkeypatch):
    import torchvision

    from amixup.weights import load_encoder
    from amixup.models import build_model

    net = torchvision.models.resnet50(weights=None, num_classes=1000)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(net.state_dict(), path)
    model = build_model("resnet50", 365)
    load_encoder(model, str(path), tmp_path, "cpu")
    assert torch.equal(model.stages[0][0].weight, net.conv1.weight)
    assert torch.equal(model.stages[2][3].conv2.weight, net.layer3[3].conv2.weight)
    assert model.head.weight.shape == (365, 2048)  # the head is new
    with pytest.raises(ValueError, match="does not fit model"):
        load_encoder(build_model("resnet101", 365), str(path), tmp_path, "cpu")


def _imagenet_weights(monkeypatch, tmp_path, arch="resnet152"):
    """torch's hub cache in tmp_path, and a 'download' that writes a random torchvision ``arch`` state dict (the
    network at its seeded initialisation); returns that state dict."""
    import torchvision

    torch.manual_seed(123)
    state = getattr(torchvision.models, arch)(weights=None).state_dict()
    fetched = []

    def download(url, dst, **kwargs):
        fetched.append(url)
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return state, fetched


def test_places_lt_recipe_is_the_cited_setup_a_frozen_imagenet_trunk(tmp_path, cache, monkeypatch):
    """MiSLAS on Places-LT: ImageNet ResNet-152 frozen (weights and BatchNorm statistics), a new bottleneck block
    and the classifier trained; the weights come from torchvision:IMAGENET1K_V1 (fetched once into the hub cache)."""
    from amixup.engine import train
    from amixup.experiments import table5_configs

    places = tmp_path / "places"
    lines = write_images(places)
    write_list(places / "Places_LT_train.txt", lines * 4)
    write_list(places / "Places_LT_test.txt", lines)
    monkeypatch.setenv("AMIXUP_PLACES_LT_ROOT", str(places))
    imagenet, fetched = _imagenet_weights(monkeypatch, tmp_path)
    (config,) = table5_configs("smoke", methods=["am_mixup"], epochs=1, crop_size=32, batch_size=8)
    assert (config.model, config.frozen_stages, config.finetune_from) == \
        ("resnet152_places", 1, "torchvision:IMAGENET1K_V1")
    results = tmp_path / "results"
    rec = train(config, results, progress=False)
    assert len(fetched) == 1 and fetched[0].endswith(".pth") and rec["finetuned_from"].endswith(".pth")
    state = torch.load(next((results / "checkpoints").glob("*.pt")), weights_only=True)["model"]
    trunk = {k[len("stages.0."):]: v for k, v in state.items() if k.startswith("stages.0.")}
    from amixup.models import build_model, from_torchvision_state, torchvision_prefixes
    fresh = build_model("resnet152_places", 365)
    loaded = {k[len("stages.0."):]: v for k, v in
              from_torchvision_state(imagenet, torchvision_prefixes(fresh)).items()}
    assert trunk.keys() == loaded.keys()
    assert all(torch.equal(trunk[k], loaded[k]) for k in trunk)  # frozen: weights and running statistics
    fresh_state = fresh.state_dict()
    changed = [k for k, v in state.items() if k.startswith(("stages.1.", "head.")) and v.is_floating_point()
               and not torch.equal(v, fresh_state[k])]
    assert "stages.1.0.conv2.weight" in changed and "head.weight" in changed
    assert rec["config"]["frozen_stages"] == 1
    static = train(config.__class__.from_dict({**config.to_dict(), "step_mode": "static"}), tmp_path / "static",
                   progress=False)  # the fixed-shape step (a CUDA graph on a GPU) trains the same parameters
    assert static["history"][0]["train_loss"] == pytest.approx(rec["history"][0]["train_loss"], rel=1e-4)
    assert len(fetched) == 1  # the weights come from the hub cache now


def test_torchvision_weights_named_wrong_or_out_of_reach_are_clear_errors(tmp_path, cache, monkeypatch):
    from amixup.engine import train
    from amixup.weights import encoder_source
    from amixup.recipes import make_config

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ValueError, match=r"finetune_from='torchvision:IMAGENET1K_V1': .* could not be downloaded "
                                         r"from https://.*no route to host.*pass the path of a copy") as info:
        train(make_config("places_lt", "smoke"), tmp_path / "results")  # before any data: none is there
    assert isinstance(info.value, D.DataNotFoundError)  # a run that cannot start here: skipped, as without data
    from amixup.experiments import missing_report, run_configs, table5_configs
    assert run_configs(table5_configs("smoke"), tmp_path / "results", progress=False) == []
    status = missing_report(table5_configs("smoke"), tmp_path / "results", check_data=False)["status"]
    assert len(status) == 4 and status.str.match(  # why they did not start (was "not started")
        rf"weights not here: {re.escape(str(tmp_path))}/hub/checkpoints/resnet152-\w+\.pth \(from https://").all(), \
        status.tolist()
    bad = missing_report(table5_configs("smoke", finetune_from="torchvision:IMAGENET"), tmp_path / "results",
                         check_data=False)["status"]
    assert bad.str.startswith("cannot start: finetune_from='torchvision:IMAGENET': torchvision's resnet152 has the "
                              "weights").all(), bad.tolist()
    with pytest.raises(ValueError, match=r"has the weights \['IMAGENET1K_V1', 'IMAGENET1K_V2', 'DEFAULT'\], not 'IMAGENET'"):
        encoder_source("torchvision:IMAGENET", tmp_path, "resnet152_places")
    with pytest.raises(ValueError, match="torchvision weights fit the models"):
        encoder_source("torchvision:IMAGENET1K_V1", tmp_path, "resnet32")
    with pytest.raises(ValueError, match="frozen_stages=1 needs finetune_from"):
        make_config("places_lt", finetune_from=None)
    with pytest.raises(ValueError, match="frozen_stages must be >= 0"):
        make_config("places_lt", frozen_stages=-1)
    from amixup.engine import _frozen_stages
    from amixup.models import build_model
    with pytest.raises(ValueError, match="resnet152_places has 2 encoder stages, so at most 1 can be frozen"):
        _frozen_stages(build_model("resnet152_places", 3), make_config("places_lt", frozen_stages=2))
