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
# CUDA MPS: the sweep's GPU default runs its workers under it; where a client cannot run under a fresh daemon on this
# machine, the throughput phases run without it (MPS_ARGS) rather than fail (no CUDA, no daemon binary: nothing to do)
MPS_ARGS=""
if [ -z "${TINY:-}" ] && command -v nvidia-cuda-mps-control > /dev/null 2>&1; then
  t=$(date +%s) probe=$(mktemp -d /tmp/mps-probe-XXXX)
  if ( export CUDA_MPS_PIPE_DIRECTORY=$probe/p CUDA_MPS_LOG_DIRECTORY=$probe/l; mkdir -p "$probe/p" "$probe/l"
       nvidia-cuda-mps-control -d || exit 1
       timeout 60 $PY -c "import torch; torch.zeros(1, device='cuda').add_(1); torch.cuda.synchronize(); print('MPS client ok')"
       rc=$?; echo quit | nvidia-cuda-mps-control; sleep 1; exit $rc ) > "$LOGS/mps_probe.txt" 2>&1; then
    echo "mps probe ok $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
  else
    MPS_ARGS="--mps off"
    echo "mps probe FAILED: throughput phases run without MPS $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
  fi
  rm -rf "$probe"
fi
