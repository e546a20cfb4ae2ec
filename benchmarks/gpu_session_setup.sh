# Sourced by the prepared GPU session scripts (benchmarks/gpu_session*.sh) once OUT, PY, COMMIT and DEADLINE are
# set: the clock (left: seconds to the deadline), the environment of every phase, and the decoded CIFAR-10 cache.
START=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
LOGS=$(mktemp -d)/logs  # outside $OUT: only logs.tgz comes back (a device call returns at most 8 files)
mkdir -p "$LOGS" "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 AMIXUP_PROGRESS=off AMIXUP_COMMIT=$COMMIT
export OMP_NUM_THREADS=1 AMIXUP_DATA_PATH=$PWD/.carry/datasets${AMIXUP_DATA_PATH:+:$AMIXUP_DATA_PATH} AMIXUP_CACHE_DIR=${AMIXUP_CACHE_DIR:-/tmp/amixup-cache}
{ nvidia-smi -L; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } > "$LOGS/env.txt" 2>&1
t=$(date +%s)
timeout 90 $PY -c "from amixup import data; print(data.build_dataset('cifar10', 'train').source); data.build_dataset('cifar10', 'test')" \
  > "$LOGS/cache.txt" 2>&1
echo "cache rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
