# Sourced by scripts/main.sh, scripts/test.sh and .ci/run: create (once) the virtual environment .venv
# with amixup and the pinned versions of its dependencies (constraints.txt), put it first on PATH, and
# say where the datasets are looked for.
# Override the interpreter with PYTHON=python3.11, the folder with AMIXUP_VENV=...
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AMIXUP_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# Re-install when pyproject.toml (the dependencies) or constraints.txt (their versions) changed.
STAMP="$VENV/.amixup-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/constraints.txt" -nt "$STAMP" ]; then
  echo "installing amixup and its pinned dependencies into $VENV (once; a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1
# Datasets, first found wins: the offline copies in ../shared/datasets beside the clone (as CI has them),
# then the folders already in AMIXUP_DATA_PATH, then data/ (amixup looks there itself), then a download
# where a command allows one (python -m amixup prepare cifar10 --download).
if [ -d "$ROOT/../shared/datasets" ]; then
  SHARED_DATA=$(cd "$ROOT/../shared/datasets" && pwd)
  case ":${AMIXUP_DATA_PATH:-}:" in
    *":$SHARED_DATA:"*) ;;
    *) export AMIXUP_DATA_PATH="$SHARED_DATA${AMIXUP_DATA_PATH:+:$AMIXUP_DATA_PATH}" ;;
  esac
fi
cd "$ROOT"
