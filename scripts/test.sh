#!/usr/bin/env bash
# The whole test suite: unit and end-to-end tests, then nbval over the committed notebooks.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k mixing).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg tests notebooks "$@"
