"""The edges a new user hits end in messages, not tracebacks; files honour the umask; missing data is per run."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import papermill
import pytest
import torch

from amixup import data as D
from amixup import engine
from amixup.__main__ import main as cli
from amixup.engine import train
from amixup.experiments import missing_report, run_configs
from amixup.recipes import make_config
from amixup.records import CorruptFileError, RunBusyError, load_records, run_lock

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registered 8x8 two-class dataset (no files needed) and an empty data path; registry restored after."""
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "no-data"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")
    saved = (dict(D.DATASETS), dict(D._LOADERS), dict(D.NORMALIZATION))

    def load(split):
        gen = torch.Generator().manual_seed(int(split == "train"))
        labels = torch.arange(40) % 2
        images = (labels.view(-1, 1, 1, 1) * 100 + torch.randint(0, 50, (40, 3, 8, 8), generator=gen)).to(torch.uint8)
        return D.ImageData(images, labels, ["x", "y"], "tiny")

    D.register_dataset("tiny", load)
    yield lambda **kw: make_config("motivation", "smoke", dataset="tiny", experiment="err", **{"epochs": 2, **kw})
    for live, old in zip((D.DATASETS, D._LOADERS, D.NORMALIZATION), saved):
        live.clear()
        live.update(old)


def test_wrong_types_are_named_before_any_data_is_loaded(monkeypatch, capsys):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "lr=abc", "--set", "epochs=2.5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "lr must be a number, got 'abc' (str)" in err and "epochs must be an integer, got 2.5 (float)" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "convs_per_block=2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unknown config field(s) convs_per_block; RunConfig's fields are [" in err
    assert "'alpha'" in err and "Traceback" not in err
    for field, value, takes in (("flip", 1, "True or False"), ("imb_factor", "10", "a number or None"),
                                ("milestones", (1, "a"), "a list of integers"), ("train_subset", 1.5, "an integer or None")):
        with pytest.raises(ValueError, match=re.escape(f"{field} must be {takes}, got {value!r}")):
            make_config("motivation", "smoke", dataset="mini_cifar_lt" if field != "imb_factor" else "cifar10_lt",
                        **{field: value})


def test_cuda_device_without_cuda_is_a_command_line_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "device=cuda"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "CUDA is not available" in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) > 0 and err.count("error:") == 1


@pytest.mark.parametrize("setting, message", [
    ("device=cuda:x", "device must be one of ['auto', 'cpu', 'cuda', 'cuda:N', 'mps'] (N: a GPU index >= 0), "
                      "got 'cuda:x'"),
    ("crop_padding=-1", "crop_padding must be >= 0"),
    ("momentum=-1", "momentum must lie in [0, 1), got -1"),
    ("weight_decay=-5", "weight_decay must be >= 0, got -5"),
    ("many_threshold=5", "few_threshold and many_threshold must satisfy 0 <= few_threshold < many_threshold"),
    ("split_convention=index", "split_convention='index' (the MiSLAS CIFAR-LT class-index splits) needs a dataset "
                               "of 10 or 100 classes, but 'mini_cifar_lt' has 4; use split_convention='counts'"),
])
def test_bad_values_are_command_line_errors_before_any_data_is_loaded(monkeypatch, capsys, setting, message):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", setting])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("device, gpus, message", [
    ("cuda:1", 1, "device 'cuda:1' was asked for but 1 CUDA device(s) are visible (cuda:0 to cuda:0)"),
    ("mps", 0, "device 'mps' was asked for but MPS is not available here"),
])
def test_a_device_this_machine_lacks_is_a_command_line_error(monkeypatch, capsys, device, gpus, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", f"device={device}"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err


def test_the_static_step_with_adamw_is_an_error_before_any_data_is_loaded(monkeypatch, capsys):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "step_mode=static", "--set", "optimizer=adamw"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "needs optimizer='sgd'" in err and "Traceback" not in err


def test_a_parameter_found_wrong_in_training_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "finetune_from=no-such-run", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "finetune_from='no-such-run': there is no such file" in err
    assert err.count("error:") == 1


def test_a_run_another_process_trains_is_refused_then_trains_once_it_is_free(tiny, tmp_path, monkeypatch, capsys):
    """A second process on the same run (a resubmitted job, a second sweep) gets a message, not a second writer of
    its checkpoint and record; the CLI says it in one line."""
    from amixup.checkpoints import lock_path

    config = tiny(method="mixup")
    with run_lock(lock_path(tmp_path, config.run_id()), "held elsewhere"):  # flock: per open file, as a process
        with pytest.raises(RunBusyError, match=f"run {config.run_id()} is being trained by another process"):
            train(config, tmp_path, progress=False)
        assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.pt"))
    assert train(config, tmp_path, progress=False)["run_id"] == config.run_id()  # free again

    cli_config = make_config("motivation", "smoke", method="am_mixup", seed=0, experiment="cli")
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with run_lock(lock_path(tmp_path, cli_config.run_id()), "held elsewhere"):
        with pytest.raises(SystemExit) as info:
            cli(["train", "--profile", "smoke", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "is being trained by another process" in err and "Traceback" not in err


def test_a_download_that_fails_is_listed_with_the_places_looked(tmp_path, monkeypatch, capsys):
    import torchvision.datasets as tvd

    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(D.cache, "REPO_DATA_DIR", tmp_path / "repo_data")

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(SystemExit) as info:
        cli(["prepare", "cifar10", "--download"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert "dataset 'cifar10' not found" in err and "download into" in err and "Name or service not known" in err


def test_index_split_on_a_dataset_of_unknown_class_count_names_the_convention(tiny, tmp_path):
    config = tiny(split_convention="index")  # a registered dataset: its class count is known once loaded
    with pytest.raises(ValueError, match=r"split_convention='index' .*10 or 100 classes, but this one has 2; "
                                         r"use split_convention='counts'"):
        train(config, tmp_path, progress=False)


def test_corrupt_checkpoint_names_the_file_and_is_kept(tiny, tmp_path, capsys):
    config = tiny()
    ckpt = tmp_path / "runs" / "checkpoints" / f"{config.run_id()}.pt"
    ckpt.parent.mkdir(parents=True)
    real = tmp_path / "real.pt"
    torch.save({"epoch": 1, "model": {"w": torch.zeros(1000)}}, real)
    ckpt.write_bytes(real.read_bytes()[:300])  # truncated, as by a full disk
    with pytest.raises(CorruptFileError, match=f"checkpoint {ckpt} cannot be read.*Delete it.*--overwrite"):
        train(config, tmp_path / "runs", progress=False)
    assert ckpt.exists()  # nothing deleted silently
    report = missing_report([config], tmp_path / "runs")
    assert report["status"].iloc[0].startswith(f"checkpoint unreadable: checkpoint {ckpt}")
    args = ["train", "--dataset", "tiny", "--profile", "smoke", "--method", "ce", "--experiment", "err",
            "--set", "epochs=2", "--results-dir", str(tmp_path / "runs")]
    config_cli = make_config("motivation", "smoke", dataset="tiny", method="ce", experiment="err", epochs=2)
    (tmp_path / "runs" / "checkpoints" / f"{config_cli.run_id()}.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as info:
        cli(args)
    err = capsys.readouterr().err
    assert info.value.code == 1 and "cannot be read" in err and "Traceback" not in err
    assert cli(args + ["--overwrite"]) == 0  # the documented way out


def test_corrupt_record_names_the_file(tiny, tmp_path):
    config = tiny(epochs=1)
    record = train(config, tmp_path, progress=False)
    path = engine.record_path(config, tmp_path)
    path.write_text(json.dumps(record)[:50])
    with pytest.raises(CorruptFileError, match=f"record {path} is corrupt or truncated.*delete it"):
        train(config, tmp_path, progress=False)
    with pytest.warns(UserWarning, match=f"record {path} is corrupt"):
        assert load_records(tmp_path) == []
    assert path.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_records_and_checkpoints_honour_the_umask(tiny, tmp_path, umask):
    config = tiny(epochs=1)
    old = os.umask(umask)
    try:
        train(config, tmp_path, progress=False)
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    ckpt = tmp_path / "checkpoints" / f"{config.run_id()}.pt"
    for path in (engine.record_path(config, tmp_path), ckpt):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_missing_data_is_reported_per_run_and_the_rest_runs(tiny, tmp_path):
    absent = make_config("cifar_lt", "smoke", dataset="cifar100_lt", imb_factor=100, experiment="err", epochs=1)
    here = tiny(epochs=1)
    records = run_configs([absent, here], tmp_path, progress=False)
    assert [r["run_id"] for r in records] == [here.run_id()]
    report = missing_report([absent, here], tmp_path)
    assert report["status"].tolist() == ["data not found: dataset 'cifar100' not found"]


def test_notebook_04_smoke_profile_finishes_without_its_data(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "no-data"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "04.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "04_ablation.ipynb"), str(out), kernel_name="python3",
                               parameters={"profile": "smoke", "rows": [6]}, progress_bar=False, cwd=str(NOTEBOOKS))
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", []))
    assert "no record yet" in text and "0 of 1 runs have a record" in text
    assert "data not found: dataset 'cifar100' not found" in text


def _fail_writes_after(monkeypatch, writes_ok: int, code: int):
    """Make every file write of amixup.records after the first ``writes_ok`` fail as a full / forbidden disk."""
    import amixup.records as records

    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > writes_ok:
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(records.os, "fsync", fsync)


def test_a_full_disk_during_a_run_is_one_line_naming_the_file_and_what_was_kept(tiny, tmp_path, monkeypatch, capsys):
    import errno

    results = tmp_path / "results"
    config = tiny(epochs=3)
    _fail_writes_after(monkeypatch, 1, errno.ENOSPC)  # epoch 1's checkpoint is written, epoch 2's is not
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--dataset", "tiny", "--experiment", "err", "--set", "epochs=3",
             "--results-dir", str(results)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]  # (the rest: the run's progress bar)
    assert info.value.code == 1 and "Traceback" not in err and len(errors) == 1, err
    err = errors[0]
    cli_config = make_config("motivation", "smoke", dataset="tiny", experiment="err", epochs=3, method="am_mixup")
    ckpt = results / "checkpoints" / f"{cli_config.run_id()}.pt"
    assert f"cannot write {ckpt}" in err and "the disk is full" in err
    assert f"kept: the previous {ckpt.name}, unchanged" in err
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # the last good checkpoint: the run resumes from it
    assert not list((results / "checkpoints").glob(".*.tmp"))  # nothing half-written
    assert config.epochs == 3


def test_a_results_folder_that_cannot_be_written_fails_before_training(tiny, tmp_path, monkeypatch):
    import errno

    import amixup.records as records
    from amixup.records import ResultsWriteError

    def forbidden(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    monkeypatch.setattr(records, "open", forbidden, raising=False)
    with pytest.raises(ResultsWriteError, match=r"cannot write .*\.lock: Permission denied \(the folder is not "
                                                 r"writable.*kept: every file of the run as it was"):
        train(tiny(), tmp_path / "locked", progress=False)


def test_model_options_are_checked_before_any_data(monkeypatch, capsys):
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        cli(["train", "--profile", "smoke", "--set", "model_options={'pooling': 'max'}"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "pooling must be one of ['avg', 'flatten'], got 'max'" in err
    with pytest.raises(ValueError, match=r"model_options \['depth'\] are not options of model 'cnn_vis2d'; it takes "):
        make_config("motivation", "smoke", model_options={"depth": 3}).validate()
