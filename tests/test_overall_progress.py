"""One progress bar over a notebook's runs: runs done / total from the first stage on, the stage and a run
name that says what the run is (a fine-tuning run names its encoder's method); run ids unchanged."""

import re

import pytest

from amixup import experiments, progress, recipes
from amixup.data import DataNotFoundError


@pytest.fixture(autouse=True)
def fresh_bar(monkeypatch):
    monkeypatch.delenv("AMIXUP_PROGRESS", raising=False)
    progress._PLANNED.clear()
    progress._OVERALL = None
    yield
    progress._PLANNED.clear()
    progress._OVERALL = None


def fake_train(trained, missing=()):
    def train(config, results_dir, *, progress=True, on_epoch_end=None):
        if config.dataset in missing:
            raise DataNotFoundError(f"{config.dataset} not here")
        assert progress is False  # the overall bar replaces the per-run one
        for epoch in range(config.epochs):
            on_epoch_end(epoch + 1, {})
        trained.append(config.run_id())
        return {"run_id": config.run_id()}
    return train


def _descriptions(err: str) -> list[str]:
    return [d.strip() for d in re.split(r"[\r\n]", err) if d.strip().startswith("runs ")]


def test_run_ids_do_not_change():
    pairs = experiments.table1_configs("quick", seeds=(0,))
    for coarse, fine in pairs:
        direct = recipes.make_config("motivation_finetune", "quick", dataset="mini_cifar", seed=0, device="auto",
                                     beta=0.34, experiment="table1", finetune_from=coarse.run_id(),
                                     extra={"pretrain_method": coarse.method})
        assert fine.run_id() == direct.run_id()
        assert "-ce-" in fine.run_id()


def test_a_fine_tuning_run_is_named_by_its_encoders_method():
    labels = [progress.run_label(fine) for _, fine in experiments.table1_configs("quick")]
    assert labels[0].startswith("ce encoder -> ce head mini_cifar s0")
    assert labels[1].startswith("mixup encoder -> ce head")
    assert labels[3].startswith("am_mixup encoder -> ce head") and "beta=0.34" in labels[3]
    assert len(set(labels)) == 4
    plain = progress.run_label(experiments.table2_configs("quick", methods=("mixup",))[0])
    assert plain == "mixup mini_cifar_lt s0"


def test_one_bar_counts_every_planned_run_from_the_first_stage(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(experiments, "train", fake_train(trained))
    table2 = experiments.table2_configs("smoke")
    table1 = experiments.table1_configs("smoke")
    epochs = sum(c.epochs for c in table2) + sum(c.epochs for pair in table1 for c in pair)

    experiments.run_configs(table2, tmp_path)
    stage1 = _descriptions(capsys.readouterr().err)
    assert stage1 and all("/12" in d.split("|")[0] for d in stage1), stage1[:3]  # 4 + 4 encoders + 4 heads
    assert any(d.startswith("runs 0/12 | table2: ce mini_cifar_lt s0 | epoch ") for d in stage1)
    assert progress._OVERALL is not None  # the bar goes on into the next stage

    experiments.run_configs(table1, tmp_path)
    stage2 = _descriptions(capsys.readouterr().err)
    assert any("table1: am_mixup encoder -> ce head" in d for d in stage2)
    assert any(d.startswith("runs 4/12 | table1_coarse: ce ") for d in stage2)
    assert stage2[-1].startswith("runs 12/12") and f"{epochs}/{epochs} epochs" in stage2[-1]
    assert progress._OVERALL is None and len(trained) == 12


def test_finished_runs_are_not_counted_and_a_skipped_run_leaves_the_total(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(experiments, "train", fake_train(trained, missing={"mini_cifar_coarse"}))
    done = experiments.table2_configs("smoke", methods=("ce",))
    monkeypatch.setattr(experiments, "record_path",
                        lambda config, results_dir: tmp_path / ("done" if config.run_id() == done[0].run_id()
                                                                else "absent"))
    (tmp_path / "done").write_text("{}")
    configs = experiments.table2_configs("smoke", methods=("ce", "mixup")) + experiments.table1_configs(
        "smoke", methods=("ce",))
    experiments.run_configs(configs, tmp_path)
    final = _descriptions(capsys.readouterr().err)
    assert final[0].startswith("runs 0/3")       # ce of table2 has its record; mixup, the encoder and its head
    assert final[-1].startswith("runs 1/1")      # the encoder's data is missing: it and its head leave the total
    assert trained == [configs[0].run_id(), configs[1].run_id()]  # the fake "trains" the finished one too


def test_progress_off_shows_no_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AMIXUP_PROGRESS", "off")
    trained = []

    def train(config, results_dir, *, progress=True, on_epoch_end=None):
        assert on_epoch_end is None
        trained.append(config)
        return {}
    monkeypatch.setattr(experiments, "train", train)
    experiments.run_configs(experiments.table2_configs("smoke"), tmp_path)
    assert len(trained) == 4 and _descriptions(capsys.readouterr().err) == []
