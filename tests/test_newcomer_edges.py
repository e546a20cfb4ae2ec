"""What a newcomer meets first: command-line errors about datasets and plugins, and a clean git status."""

import shutil
import subprocess
from pathlib import Path

import pytest

from amixup.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_dataset_the_command_line_does_not_know_points_to_amixup_plugins(capsys, monkeypatch):
    monkeypatch.delenv("AMIXUP_PLUGINS", raising=False)
    err = _cli_error(["train", "--dataset", "my_blobs_from_a_script"], capsys)
    assert "dataset must be one of" in err and "'my_blobs_from_a_script'" in err
    assert "AMIXUP_PLUGINS" in err


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_the_module_and_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("AMIXUP_PLUGINS", "no_such_amixup_plugin_module")
    err = _cli_error(["train", "--dataset", "plugin_blobs"], capsys)
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1, err
    assert "AMIXUP_PLUGINS" in line[0] and "'no_such_amixup_plugin_module'" in line[0]
    assert "ModuleNotFoundError" in line[0]


def test_a_plugin_whose_own_import_fails_is_a_value_error_naming_it(tmp_path, monkeypatch):
    from amixup import data

    (tmp_path / "broken_plugin.py").write_text("import a_dependency_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AMIXUP_PLUGINS", " broken_plugin ")
    with pytest.raises(ValueError, match=r"AMIXUP_PLUGINS names module 'broken_plugin'.*"
                                         r"a_dependency_nobody_installed") as exc:
        data.dataset_spec("blobs_of_the_broken_plugin")
    assert isinstance(exc.value.__cause__, ImportError)


def test_a_working_plugin_still_registers_its_dataset(tmp_path, monkeypatch):
    from amixup import data

    (tmp_path / "fine_plugin.py").write_text(
        "from amixup import data\n"
        "import torch\n"
        "def load(split):\n"
        "    return data.ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),"
        " ['x', 'y'], 'plugin')\n"
        "data.register_dataset('fine_plugin_blobs', load)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AMIXUP_PLUGINS", "fine_plugin")
    try:
        assert data.dataset_spec("fine_plugin_blobs").base == "fine_plugin_blobs"
    finally:
        data.DATASETS.pop("fine_plugin_blobs", None)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
@pytest.mark.parametrize("path", ["results/runs/cli-cifar10-x/record.json",
                                  "results/01_motivation/quick/01_motivation.ipynb",
                                  "results/01_motivation/quick/tables/summary.csv"])
def test_default_outputs_of_ad_hoc_runs_and_main_sh_are_ignored(path):
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_no_committed_result_is_ignored():
    out = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out == ""
    assert subprocess.run(["git", "check-ignore", "-q", "results/01_motivation/paper/01_motivation.ipynb"],
                          cwd=ROOT).returncode == 1


def test_every_parameter_main_sh_passes_is_a_parameter_of_the_notebook():
    """papermill injects an unknown name without complaint: a parameter renamed in the notebook would silently stop
    main.sh's choice (e.g. leaving the silent-choices study out)."""
    import json
    import re

    script = (ROOT / "scripts" / "main.sh").read_text()
    passed = set(re.findall(r"-p (\w+) ", script))
    cells = json.loads((ROOT / "notebooks" / "01_motivation.ipynb").read_text())["cells"]
    parameters = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    defined = set(re.findall(r"^(\w+) *=", "".join(parameters["source"]), re.M))
    assert {"profile", "results_dir", "choice_seeds", "pattern_seeds"} <= passed
    assert passed <= defined, passed - defined
