#!/usr/bin/env bash
# One GPU session's work as one prepared script (how the committed GPU figures and records were made):
#   1. benchmarks/gpu_throughput.py (issue 9): eager vs static vs K concurrent runs under CUDA MPS;
#   2. result runs under one MPS daemon, two sweeps at once: the beta sweep of notebook 04 (paper profile)
#      and the CIFAR-10 VGG11 runs of notebook 05 (quick profile, 4 methods).
# Every phase has its own time limit inside a global deadline, and what finished is packed into $OUT.
#
#   COMMIT=$(git rev-parse HEAD) bash benchmarks/gpu_session.sh OUTDIR
#
# Needs cifar10-jpeg.tar.gz in .carry/datasets (a git-ignored folder carried to the machine).
# TINY=1 runs the same path on a CPU in a minute or two (a few hundred images, 1-2 epochs, no MPS).
set -u
OUT=${1:?usage: COMMIT=sha bash benchmarks/gpu_session.sh OUTDIR}
PY=${PY:-python3}
COMMIT=${COMMIT:?set COMMIT to the commit of this tree}
DEADLINE=${DEADLINE:-380}   # seconds for everything
BENCH_T=${BENCH_T:-165}     # seconds for the benchmark
source benchmarks/gpu_session_setup.sh
if [ -n "${TINY:-}" ]; then
  DEVICE=cpu; OVERRIDES='{"train_subset": 300, "test_subset": 200, "epochs": 1, "milestones": []}'
  BENCH_ARGS="--device cpu --tiny"; BETA_WORKERS=2; VGG_WORKERS=2
else
  DEVICE=cuda; OVERRIDES='{}'
  BENCH_ARGS="--device cuda --eager-epochs 8 --epochs 20 --concurrent 8,16 --concurrent-epochs 10 --bf16"
  BETA_WORKERS=${BETA_WORKERS:-12}; VGG_WORKERS=${VGG_WORKERS:-4}
fi

# 1. throughput (the GPU to itself)
t=$(date +%s)
timeout "$BENCH_T" $PY benchmarks/gpu_throughput.py $BENCH_ARGS --phase-timeout 75 --deadline $(( BENCH_T - 10 )) \
  --commit "$COMMIT" --out "$OUT/gpu_throughput.json" > "$LOGS/bench.txt" 2>&1
echo "bench rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"

# 2. result runs: one MPS daemon, both sweeps at once (the sweeps reuse a daemon that answers)
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && echo "mps started" >> "$LOGS/phases.txt"
fi
sweep() {  # log name, python expression of the configs, results dir, workers
  timeout "$(left)" $PY -c "
import json, time
from amixup import experiments, sweep
configs = $2
t = time.time()
try:
    sweep.run_sweep(configs, '$3', workers=$4, devices=['$DEVICE'], progress=False)
finally:
    print('$1', len(configs), 'runs', round(time.time() - t, 1), 's', flush=True)
" > "$LOGS/$1.txt" 2>&1
  echo "$1 rc=$? $(( $(date +%s) - START )) s since start" >> "$LOGS/phases.txt"
}
sweep beta "experiments.beta_sweep_configs('paper', **json.loads('$OVERRIDES'))" results/04_ablation/paper "$BETA_WORKERS" &
sweep vgg11 "experiments.table8_configs('quick', datasets=['cifar10'], networks=['vgg11'], **json.loads('$OVERRIDES'))" \
  results/05_benchmarks/quick "$VGG_WORKERS" &
wait
command -v nvidia-cuda-mps-control > /dev/null && [ "$DEVICE" = cuda ] && echo quit | nvidia-cuda-mps-control
cat "$LOGS/phases.txt"
tail -n 25 "$LOGS/bench.txt"
tar czf "$OUT/records.tgz" --exclude=checkpoints results/04_ablation/paper/beta_sweep results/05_benchmarks/quick/table8 2> /dev/null
tar czf "$OUT/logs.tgz" -C "$(dirname "$LOGS")" logs && rm -rf "$(dirname "$LOGS")"  # one file: at most 8 come back
