"""environment.yml (conda) and pyproject.toml (pip) must name the same dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}
CONDA_ONLY = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def conda_dependencies() -> set[str]:
    names, in_deps = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^dependencies:", line):
            in_deps = True
            continue
        m = re.match(r"^  - (\S.*)$", line)  # top-level entries only, not the pip: sub-list
        if in_deps and m and not m.group(1).startswith("pip:"):
            names.add(_name(m.group(1)))
    return {CONDA_TO_PIP.get(n, n) for n in names} - CONDA_ONLY


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pip_names = {_name(d) for d in pyproject["project"]["dependencies"]}
    assert conda_dependencies() == pip_names


def test_environment_yml_uses_conda_forge_and_installs_the_package():
    text = (ROOT / "environment.yml").read_text()
    assert "- conda-forge" in text and "- pytorch\n" not in text.split("dependencies:")[0]
    assert re.search(r"^\s+- .*-e \.$", text, re.M), "the pip: section must install the package"


# --- pinned versions: constraints.txt (pip) and environment.yml (conda) agree with pyproject.toml ---

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import sync_environment_yml as sync_env  # noqa: E402


def constraint_pins() -> dict[str, str]:
    return sync_env.read_constraints((ROOT / "constraints.txt").read_text())


def conda_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1].splitlines():
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)==(\S+)$", line)
        if m:
            pins[sync_env.normalize(CONDA_TO_PIP.get(m.group(1), m.group(1)))] = m.group(2)
    return pins


def test_constraints_pin_every_dependency_to_a_version_pyproject_allows():
    pins = constraint_pins()
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        name = sync_env.normalize(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is not {spec}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"  # what the committed results used
    assert not re.search(r"^\S+ @ |^-e ", (ROOT / "constraints.txt").read_text(), re.M), "local paths in pins"


def test_environment_yml_pins_each_dependency_as_the_constraints_do():
    pins, conda = constraint_pins(), conda_pins()
    assert set(conda) == {sync_env.normalize(n) for n in conda_dependencies()}, "an unpinned conda dependency"
    assert {n: pins.get(n) for n in conda} == conda


def test_sync_environment_yml_is_a_no_op_now_and_repins_a_changed_version():
    text = (ROOT / "environment.yml").read_text()
    pins = constraint_pins()
    assert sync_env.sync(text, pins) == text
    bumped = sync_env.sync(text, {**pins, "torch": "9.9.9", "pillow": "1.0"})
    assert "  - pytorch==9.9.9\n" in bumped and "  - pillow==1.0\n" in bumped and "  - python=3.11\n" in bumped
    with pytest.raises(KeyError, match="seaborn"):
        sync_env.sync(text, {k: v for k, v in pins.items() if k != "seaborn"})


# --- scripts/env.sh: where the data is looked for, and when it re-installs ---

def _fake_clone(tmp_path, shared: bool):
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "env.sh", clone / "scripts")
    for name in ("pyproject.toml", "constraints.txt"):
        (clone / name).write_text("")
    venv = clone / ".venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip.log"\n')
    python.chmod(0o755)
    if shared:
        (tmp_path / "shared" / "datasets").mkdir(parents=True)
    return clone, venv


def _source_env(clone, data_path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("AMIXUP_DATA_PATH", "AMIXUP_VENV")}
    if data_path is not None:
        env["AMIXUP_DATA_PATH"] = data_path
    out = subprocess.run(["bash", "-c", f'source "{clone}/scripts/env.sh" && source "{clone}/scripts/env.sh"'
                                        ' && echo "${AMIXUP_DATA_PATH-}"'],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_env_sh_puts_the_shared_offline_copies_first_as_ci_does(tmp_path):
    clone, _ = _fake_clone(tmp_path, shared=True)
    shared = str((tmp_path / "shared" / "datasets").resolve())
    assert _source_env(clone) == shared  # sourced twice: listed once
    assert _source_env(clone, "/my/data") == f"{shared}:/my/data"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_env_sh_without_shared_copies_leaves_amixup_data_path_alone(tmp_path):
    clone, _ = _fake_clone(tmp_path, shared=False)
    assert _source_env(clone, "/my/data") == "/my/data"
    assert _source_env(clone) == ""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_env_sh_installs_with_the_constraints_and_again_when_they_change(tmp_path):
    clone, venv = _fake_clone(tmp_path, shared=False)
    log = tmp_path / "pip.log"
    _source_env(clone)
    assert log.read_text().splitlines() == [
        f"-m pip install --quiet --disable-pip-version-check -c {clone}/constraints.txt -e {clone}"]
    _source_env(clone)
    assert len(log.read_text().splitlines()) == 1  # the stamp is newer: nothing to do
    stamp = venv / ".amixup-installed"
    os.utime(stamp, (1_000_000, 1_000_000))
    os.utime(clone / "pyproject.toml", (1_000_000, 1_000_000))
    _source_env(clone)
    assert len(log.read_text().splitlines()) == 2  # constraints.txt newer than the stamp
