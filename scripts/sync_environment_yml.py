"""Pin environment.yml's conda dependencies to the versions of constraints.txt.

    python scripts/sync_environment_yml.py [constraints.txt] [environment.yml]

Each top-level ``  - name...`` entry (pytorch for pip's torch) gets ``==<version>`` from the
constraints file; python and pip are left as they are. Run by scripts/update_constraints.sh.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}
UNPINNED = {"python", "pip"}


def read_constraints(text: str) -> dict[str, str]:
    """{normalized name: version} of the ``name==version`` lines."""
    pins = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sync(env_text: str, pins: dict[str, str]) -> str:
    """``env_text`` with each conda dependency pinned as in ``pins``; KeyError naming one without a pin."""
    out, in_deps = [], False
    for line in env_text.splitlines(keepends=True):
        if re.match(r"^dependencies:", line):
            in_deps = True
        m = re.match(r"^(  - )([A-Za-z0-9_.\-]+)(\S*)(.*)$", line.rstrip("\n")) if in_deps else None
        if m and m.group(2) not in UNPINNED and not m.group(2).startswith("pip:"):
            pip_name = normalize(CONDA_TO_PIP.get(m.group(2), m.group(2)))
            if pip_name not in pins:
                raise KeyError(f"environment.yml names {m.group(2)!r}, which the constraints file does not pin")
            line = f"{m.group(1)}{m.group(2)}=={pins[pip_name]}{m.group(4)}\n"
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    constraints = Path(argv[0]) if argv else ROOT / "constraints.txt"
    env = Path(argv[1]) if len(argv) > 1 else ROOT / "environment.yml"
    env.write_text(sync(env.read_text(), read_constraints(constraints.read_text())))
    print(f"{env}: pinned to {constraints}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
