"""The data-copy experiment on a generated miniature CIFAR-10 archive: the copy as it is and the copy
JPEG-encoded once more, run at the smoke profile through amixup.data_copy, never mixed."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from amixup import data_copy, experiments, report
from amixup.data import CIFAR10_CLASSES
from amixup.jpegquality import reencode


def miniature_archive(path, train_per_class=100, test_per_class=10, quality=90):
    """A cifar10-jpeg.tar.gz in ImageFolder layout of 32x32 JPEGs whose colour depends on the class."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            for label, name in enumerate(CIFAR10_CLASSES):
                for i in range(n):
                    base = np.array([label * 25, 255 - label * 25, (label * 70) % 256])
                    pixels = np.clip(base + rng.integers(-40, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("copies")
    original = miniature_archive(root / "original" / "cifar10-jpeg.tar.gz")
    (root / "q75").mkdir()
    reencode(original, root / "q75" / "cifar10-jpeg.tar.gz", 75)
    return root


def test_configs_label_the_copy_in_the_run_id():
    original = experiments.data_copy_configs("paper")
    again = experiments.data_copy_configs("paper", "q75")
    assert [c.extra for c in again] == [{"data_copy": "q75"}] * 4
    assert experiments.data_copy_configs("paper", "reencoded", quality=75) == again
    assert [(c.method, c.seed) for c in original] == [("ce", 0), ("ce", 1), ("am_mixup", 0), ("am_mixup", 1)]
    c = original[0]
    assert (c.experiment, c.dataset, c.imb_factor, c.model, c.epochs, c.beta) == ("data_copy", "cifar10_lt", 100,
                                                                                  "resnet32", 200, 0.34)
    assert c.extra == {"data_copy": "original"}
    assert not {c.run_id() for c in original} & {c.run_id() for c in again}
    for bad in ("q0", "q101", "jpeg", "75"):
        with pytest.raises(ValueError, match="copy"):
            experiments.data_copy_configs("smoke", bad)


def test_smoke_runs_on_both_copies_differ_in_data_source_and_label(copies, tmp_path, monkeypatch):
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("AMIXUP_CACHE_DIR", raising=False)
    results = tmp_path / "results"
    kw = dict(results_dir=results, seeds=(0,), methods=("ce",), progress=False)
    [orig] = data_copy.run("smoke", "original", copies / "original", tmp_path / "cache-original", **kw)
    # the re-encoded copy through a sweep worker process: it inherits the environment run() sets
    [again] = data_copy.run("smoke", "q75", copies / "q75", tmp_path / "cache-q75", workers=2, **kw)
    assert os.environ["AMIXUP_DATA_PATH"] == str(tmp_path / "elsewhere") and "AMIXUP_CACHE_DIR" not in os.environ
    assert orig["config"]["extra"] == {"data_copy": "original"} and again["config"]["extra"] == {"data_copy": "q75"}
    # run() built each copy's cache first, so the runs read it; the cache names the archive it holds
    assert orig["data"]["source"] == "cache cifar10.pt of imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"
    assert again["data"]["source"] == ("cache cifar10.pt of imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG "
                                       "re-encoding; JPEG-encoded once more at quality 75 (amixup-copy.json))")
    assert orig["config"]["profile"] == again["config"]["profile"] == "smoke"
    assert orig["data"]["train_counts"] == again["data"]["train_counts"]  # same images, encoded once more
    assert sorted(p.name for p in (results / "data_copy").glob("*.json")) == sorted(
        f"{r['run_id']}.json" for r in (orig, again))
    # finished runs are read back, not retrained
    assert data_copy.run("smoke", "q75", copies / "q75", tmp_path / "cache-q75", **kw) == [again]
    # the report pairs them
    rows = report.data_copy(report.read_run_records(results)).set_index("copy")
    assert rows.loc["q75", "paired_seeds"] == 1 and rows.loc["original", "runs"] == 1
    assert rows.loc["q75", "diff_acc_all"] == pytest.approx(again["metrics"]["last"]["acc_all"]
                                                            - orig["metrics"]["last"]["acc_all"])
    assert data_copy.main(["--check", "--results-dir", str(results)]) == 0


def test_copies_are_never_mixed(copies, tmp_path, monkeypatch):
    monkeypatch.delenv("AMIXUP_CACHE_DIR", raising=False)
    results = tmp_path / "results"
    kw = dict(results_dir=results, seeds=(0,), methods=("ce",), progress=False)
    # a q75 run pointed at the original archive, or at a cache built from it, fails before training
    with pytest.raises(data_copy.DataCopyError, match="copy 'q75' came from"):
        data_copy.run("smoke", "q75", copies / "original", tmp_path / "cache-a", **kw)
    with pytest.raises(data_copy.DataCopyError, match="the cache in"):
        data_copy.run("smoke", "q75", copies / "q75", tmp_path / "cache-a", **kw)
    with pytest.raises(data_copy.DataCopyError, match="copy 'original' came from"):
        data_copy.run("smoke", "original", copies / "q75", tmp_path / "cache-b", **kw)
    with pytest.raises(data_copy.DataCopyError, match="holds no cifar10-jpeg.tar.gz"):
        data_copy.run("smoke", "original", tmp_path, tmp_path / "cache-c", **kw)
    assert not results.exists()
    # a record labelled q75 that was trained on the original copy is reported by --check
    config = experiments.data_copy_configs("smoke", "q75", seeds=(0,), methods=("ce",))[0]
    record = {"run_id": config.run_id(), "config": config.to_dict(),
              "data": {"source": "cache cifar10.pt of " + data_copy.ORIGINAL_SOURCE}}
    (results / "data_copy").mkdir(parents=True)
    (results / "data_copy" / f"{config.run_id()}.json").write_text(json.dumps(record))
    assert data_copy.main(["--check", "--results-dir", str(results)]) == 1
    with pytest.raises(data_copy.DataCopyError, match=config.run_id()):
        data_copy.run("smoke", "q75", copies / "q75", tmp_path / "cache-d", **kw)


def test_pixel_difference_of_the_two_copies(copies, tmp_path, capsys):
    same = data_copy.pixel_difference((copies / "original", tmp_path / "c1"), (copies / "original", tmp_path / "c2"))
    assert same["changed"] == 0 and same["max_abs"] == 0 and same["psnr_db"] == float("inf")
    assert same["pixels"] == (1000 + 100) * 3 * 32 * 32
    diff = data_copy.pixel_difference((copies / "original", tmp_path / "c1"), (copies / "q75", tmp_path / "c3"))
    assert 0 < diff["changed"] <= 1 and diff["mean_abs"] > 0 and 20 < diff["psnr_db"] < 60
    assert data_copy.main(["--compare", str(copies / "original"), str(tmp_path / "c1"), str(copies / "q75"),
                           str(tmp_path / "c3")]) == 0
    assert "pixel values differ" in capsys.readouterr().out


def test_a_measured_distance_is_kept_for_the_report_and_never_overwritten(copies, tmp_path, monkeypatch, capsys):
    original, q75 = (copies / "original", tmp_path / "c1"), (copies / "q75", tmp_path / "c3")
    measured = data_copy.measure_copy("q75", original, q75)
    from amixup.jpegquality import file_sha256

    assert measured == {"copy": "q75", "against": "original", **data_copy.pixel_difference(original, q75),
                        "original_sha256": file_sha256(copies / "original" / "cifar10-jpeg.tar.gz"),
                        "copy_sha256": file_sha256(copies / "q75" / "cifar10-jpeg.tar.gz")}
    assert measured["original_sha256"] != measured["copy_sha256"] and len(measured["copy_sha256"]) == 64
    with pytest.raises(data_copy.DataCopyError, match="q50"):  # the folder holds the q75 copy, not q50
        data_copy.measure_copy("q50", original, q75)
    with pytest.raises(data_copy.DataCopyError, match="original"):  # the first copy must be the copy as it is
        data_copy.measure_copy("q75", q75, q75)
    with pytest.raises(ValueError, match="not 'original'"):
        data_copy.measure_copy("original", original, original)
    path = tmp_path / "distances.json"
    assert data_copy.save_distance(measured, path) == "added"
    assert data_copy.save_distance(dict(measured), path) == "unchanged"
    kept = data_copy.read_distances(path)
    assert kept == {"q75": {k: v for k, v in measured.items() if k != "copy"}}
    with pytest.raises(data_copy.DataCopyError, match="already holds other numbers for copy 'q75'"):
        data_copy.save_distance({**measured, "psnr_db": measured["psnr_db"] + 1}, path)
    assert data_copy.read_distances(path) == kept  # left as it was
    # from the command line, into results/data_copy/ of the repository
    monkeypatch.setattr(data_copy, "REPO_ROOT", tmp_path)
    assert data_copy.main(["--compare", *map(str, original + q75), "--save-as", "q75"]) == 0
    assert "copy q75 added in results/data_copy/distances.json" in capsys.readouterr().out
    assert data_copy.read_distances(tmp_path / "results" / "data_copy" / "distances.json") == kept
    with pytest.raises(SystemExit):
        data_copy.main(["--compare", *map(str, original + q75), "--save-as", "75"])
    assert "--save-as must name a re-encoded copy" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a quality outside 1..100, refused before any image is read
        data_copy.main(["--compare", *map(str, original + q75), "--save-as", "q101"])
    assert "got 'q101'" in capsys.readouterr().err
