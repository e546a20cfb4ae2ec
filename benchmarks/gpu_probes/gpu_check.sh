#!/usr/bin/env bash
# GPU check 1 (driver): every phase under its own timeout, all under a global deadline.
# usage: bash benchmarks/gpu_probes/gpu_check.sh OUTDIR [extra args for gpu_check.py, e.g. --cpu --tiny]
OUT=${1:?outdir}; shift; PY=${PY:-python3}
mkdir -p "$OUT/logs"
START=$(date +%s); DEADLINE=${DEADLINE:-200}
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 AMIXUP_PROGRESS=off
export AMIXUP_DATA_PATH=$PWD/.carry/datasets AMIXUP_CACHE_DIR=${AMIXUP_CACHE_DIR:-/tmp/amixup-cache}
(nvidia-smi -L; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())") > "$OUT/logs/env.txt" 2>&1
t=$(date +%s); timeout 120 $PY -c "from amixup import data; d=data.build_dataset('cifar10','train'); data.build_dataset('cifar10','test'); print(d.source)" > "$OUT/logs/cache.txt" 2>&1; echo "cache rc=$? $(( $(date +%s) - t )) s" >> "$OUT/logs/cache.txt"
run_phase() {  # name, max seconds, args
  local name=$1 max=$2; shift 2
  local budget=$(( $(left) < max ? $(left) : max ))
  if [ "$budget" -lt 10 ]; then echo "skip $name (deadline)" >> "$OUT/logs/phases.txt"; return; fi
  local t=$(date +%s)
  timeout "$budget" $PY benchmarks/gpu_probes/gpu_check.py "$name" "$OUT" "$@" > "$OUT/logs/$name.txt" 2>&1
  echo "$name rc=$? $(( $(date +%s) - t )) s (budget $budget)" >> "$OUT/logs/phases.txt"
}
EXTRA=("$@")
run_phase correct ${PHASE_CORRECT:-70} "${EXTRA[@]}"
run_phase solo ${PHASE_SOLO:-60} "${EXTRA[@]}"
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && echo "mps started" >> "$OUT/logs/phases.txt"
fi
run_phase mps ${PHASE_MPS:-60} "${EXTRA[@]}"
command -v nvidia-cuda-mps-control >/dev/null && echo quit | nvidia-cuda-mps-control
cat "$OUT/logs/phases.txt"
tar czf "$OUT/check.tgz" -C "$OUT" logs $(cd "$OUT" && ls *.json 2>/dev/null)
