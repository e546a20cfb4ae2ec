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
