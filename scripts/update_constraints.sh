#!/usr/bin/env bash
# Upgrade the pinned versions: install amixup with the newest versions pyproject.toml allows into a
# throwaway virtual environment, write its pip freeze to constraints.txt and pin environment.yml to it.
# Then: rm .venv/.amixup-installed (or touch constraints.txt: scripts/env.sh re-installs), run the
# tests (bash scripts/test.sh) and re-execute what the results depend on before committing.
# Interpreter: PYTHON=python3.11 (default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"${PYTHON:-python3}" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT"
{
  sed -n '/^#/p' "$ROOT/constraints.txt"   # keep the header comment
  "$TMP/venv/bin/python" -m pip freeze --exclude-editable
} > "$TMP/constraints.txt"
mv "$TMP/constraints.txt" "$ROOT/constraints.txt"
"$TMP/venv/bin/python" "$ROOT/scripts/sync_environment_yml.py" "$ROOT/constraints.txt" "$ROOT/environment.yml"
git -C "$ROOT" diff --stat -- constraints.txt environment.yml || true
