# Sourced by scripts/main.sh and scripts/test.sh: create (once) the virtual environment
# .venv with amixup and its dependencies, and put it first on PATH.
# Override the interpreter with PYTHON=python3.11, the folder with AMIXUP_VENV=...
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AMIXUP_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.amixup-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1
cd "$ROOT"
