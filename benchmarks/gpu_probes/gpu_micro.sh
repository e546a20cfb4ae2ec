#!/usr/bin/env bash
# GPU check 2: step variants, parts of an epoch, replay throughput of K processes under MPS.
OUT=${1:?outdir}; PY=${PY:-python3}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
timeout ${T_STEPS:-75} $PY benchmarks/gpu_probes/gpu_micro.py steps "$OUT/steps.json" > "$OUT/steps.txt" 2>&1; echo "steps rc=$?"
timeout ${T_PARTS:-30} $PY benchmarks/gpu_probes/gpu_micro.py parts "$OUT/parts.json" > "$OUT/parts.txt" 2>&1; echo "parts rc=$?"
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY; nvidia-cuda-mps-control -d && echo "mps started"
fi
for K in ${KS:-1 4 8}; do
  for i in $(seq $K); do timeout 40 $PY benchmarks/gpu_probes/gpu_micro.py replay_worker ${SECS:-8} > "$OUT/replay_${K}_$i.txt" 2>&1 & done
  wait
  echo "K=$K $(cat $OUT/replay_${K}_*.txt | tail -n $K | python3 -c 'import sys,json; v=[json.loads(l)["steps_per_s"] for l in sys.stdin if l.startswith("{")]; print(len(v), "workers", round(sum(v),1), "steps/s total")')"
done
command -v nvidia-cuda-mps-control >/dev/null && echo quit | nvidia-cuda-mps-control
cat "$OUT/steps.txt" "$OUT/parts.txt" | cut -c1-300
