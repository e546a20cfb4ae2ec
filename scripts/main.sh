#!/usr/bin/env bash
# The main job: create the environment (scripts/env.sh), prepare the data, run notebook 01 (quick
# profile) with papermill. Leaves the executed notebook, records, tables (CSV) and figures in
# results/01_motivation/<profile>/. PROFILE=paper bash scripts/main.sh runs the full recipe.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PROFILE=${PROFILE:-quick}
OUT="results/01_motivation/$PROFILE"
mkdir -p "$OUT"
START=$SECONDS
# Offline copies (../shared/datasets, AMIXUP_DATA_PATH, data/) are tried first; torchvision downloads
# CIFAR-10 otherwise.
python -m amixup prepare cifar10 --download
# The runs' progress (which run, epoch k of N, time left) goes to this terminal, not into the notebook.
# Table 2's silent-choices study (15 more CE runs a seed) and the four methods under the combination closest to the
# paper's CE are left out (choice_seeds [], pattern_seeds []): pass -p choice_seeds "[0]" -p pattern_seeds "[0]" to add them.
echo "running notebooks/01_motivation.ipynb ($PROFILE profile); progress below"
AMIXUP_PROGRESS=terminal papermill notebooks/01_motivation.ipynb "$OUT/01_motivation.ipynb" -k python3 \
  --no-progress-bar -p profile "$PROFILE" -p results_dir "$OUT" -p choice_seeds "[]" \
  -p pattern_seeds "[]" "$@"
ELAPSED=$((SECONDS - START))
cat <<MSG

done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s. Outputs in $ROOT/$OUT/:
  01_motivation.ipynb (the executed notebook), its records, tables (CSV) and figures.
The environment it made is $VENV. To use it:
  source ${VENV#$ROOT/}/bin/activate      # then python -m amixup ..., papermill, jupyter lab, pytest
  or call its programs directly: ${VENV#$ROOT/}/bin/python -m amixup --help
MSG
