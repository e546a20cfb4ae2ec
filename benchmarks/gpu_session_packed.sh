#!/usr/bin/env bash
# The measurement of packed runs (amixup.packing) on a GPU, as prepared scripts for two device calls (issue 9).
# PART=1 (default):
#   1. correctness on the GPU: 2 packed runs against the same 2 runs alone (static step), 3 epochs of the
#      Table 3 recipe on 2,000 images: first-epoch losses, accuracies, lambda, which step ran;
#   2. benchmarks/packing_step.py: one step of K runs alone against packed, ResNet32 and CNN-Vis2D, K up to 32,
#      and the data path (K loaders against pack_batches);
#   3. benchmarks/gpu_throughput.py, what decides the sweep's GPU default: the baselines on the same card (solo
#      static, 8 processes under MPS: the sweep's default; without MPS where the setup's probe found it failing),
#      then packed 16 and 32 in one process and 16 x 2 processes (a packed phase cut by its time limit keeps the
#      epochs it finished);
#   4. for ResNet32 the K runs as one CUDA graph of K parallel streams (--streams), the packed network in NCHW,
#      and with cudnn.benchmark (grouped convolutions may prefer either), in the time left.
# PART=2: manifold mixup (a layer drawn per batch: a CUDA graph per layer) eagerly and through the compiled static
#   step, 2 epochs; the compiled twins (compile_step=True) beside a solo static baseline, bf16; and
#   benchmarks/loader_vs_engine.py (CNN-Vis2D: the engine against a DataLoader loop).
# Every phase has its own time limit inside a global deadline; what finished is packed into $OUT.
#
#   COMMIT=$(git rev-parse HEAD) [PART=2] bash benchmarks/gpu_session_packed.sh OUTDIR
#
# Needs cifar10-jpeg.tar.gz in .carry/datasets (a git-ignored folder carried to the machine).
# TINY=1 runs the same path on a CPU in a few minutes (a few hundred images, 1-2 epochs, no MPS).
set -u
OUT=${1:?usage: COMMIT=sha bash benchmarks/gpu_session_packed.sh OUTDIR}
PY=${PY:-python3}
COMMIT=${COMMIT:?set COMMIT to the commit of this tree}
DEADLINE=${DEADLINE:-560}   # seconds for everything (one device call of at most 600 s)
source benchmarks/gpu_session_setup.sh
PART=${PART:-1}
if [ -n "${TINY:-}" ]; then
  DEVICE=cpu; CHECK_IMAGES=300; CHECK_EPOCHS=1; PHASE_T=120; DRAWN_COMPILE=0  # compiling takes minutes on a CPU
  BENCH_ARGS="--device cpu --tiny --no-eager --concurrent none --packed 2,2x2"
  STEP_ARGS="--device cpu --models cnn_vis2d --packs 1,2 --steps 1 --warmup 1 --eval-images 64 --data-batches 3"
  VARIANT_ARGS="--device cpu --models cnn_vis2d --packs 2 --steps 1 --warmup 1 --no-data"
  COMPILED_ARGS="--device cpu --tiny --no-eager --concurrent none --packed 2 --only static"  # no compile: minutes on a CPU
  LOADER_ARGS="--device cpu --epochs 1 --warmup 0 --train-subset 300 --test-subset 200"
else
  DEVICE=cuda; CHECK_IMAGES=2000; CHECK_EPOCHS=3; PHASE_T=75; DRAWN_COMPILE=1
  BENCH_ARGS="--device cuda --no-eager --epochs 8 --concurrent 8 --concurrent-epochs 6 --packed 16,32,16x2"
  STEP_ARGS="--device cuda --packs 1,8,16,32 --steps 20 --eval-images 10000"
  VARIANT_ARGS="--device cuda --models resnet32 --packs 16,32 --steps 20 --no-data"
  COMPILED_ARGS="--device cuda --no-eager --epochs 8 --concurrent none --concurrent-epochs 6 --packed 16,32 --compile --bf16
    --only static,static_compiled,packed_16_compiled,packed_32_compiled,static_bf16"
  LOADER_ARGS="--device cuda --epochs 3 --warmup 1"  # 2 DataLoader workers, as the figures in issue 9
fi

throughput() {  # output JSON name, arguments, seconds to leave for what follows (default 0)
  local t=$(date +%s) bench_t=$(( $(left) - 15 - ${3:-0} ))
  # the inner deadline leaves time to stop a phase cut at it (SIGINT, up to 20 s, then SIGKILL, up to 10 s)
  timeout "$bench_t" $PY benchmarks/gpu_throughput.py $2 --phase-timeout "$PHASE_T" --deadline $(( bench_t - 35 )) \
    --commit "$COMMIT" --out "$OUT/$1.json" > "$LOGS/$1.txt" 2>&1
  echo "$1 rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
}

if [ "$PART" = 1 ]; then
# 1. packed against alone, on this device
t=$(date +%s)
timeout 90 $PY - "$DEVICE" "$CHECK_IMAGES" "$CHECK_EPOCHS" "$OUT/packed_check.json" > "$LOGS/check.txt" 2>&1 <<'EOF'
import gc, json, sys, tempfile, time
import torch
from amixup import engine
from amixup.recipes import make_config
device, images, epochs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
configs = [make_config("cifar_lt", "paper", dataset="cifar10_lt", imb_factor=100, method="am_mixup", seed=seed,
                       epochs=epochs, warmup_epochs=min(5, epochs - 1), milestones=(160, 180), train_subset=images,
                       test_subset=1000, device=device, step_mode="static", experiment="packed-check")
           for seed in (0, 1)]
result = {"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__}
with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    packed = engine.train_packed(configs, f"{tmp}/packed", progress=False)
    result["packed_s"] = time.perf_counter() - t
    gc.collect()  # the pack's CUDA graph freed now, before the runs alone capture theirs
    alone = []
    t = time.perf_counter()
    for config in configs:
        alone.append(engine.train(config, f"{tmp}/alone", progress=False))
    result["alone_s"] = time.perf_counter() - t
keys = ("train_loss", "train_acc_clean", "lambda", "test_all")
result["runs"] = [{"seed": a["config"]["seed"], "step": [a["environment"]["step"], p["environment"]["step"]],
                   "alone": [{k: h[k] for k in keys} for h in a["history"]],
                   "packed": [{k: h[k] for k in keys} for h in p["history"]]} for a, p in zip(alone, packed)]
json.dump(result, open(out, "w"), indent=1)
for run in result["runs"]:
    print(run["seed"], run["step"])
    for a, p in zip(run["alone"], run["packed"]):
        print("  alone ", a, "\n  packed", p)
EOF
echo "check rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"

# 2. one step, K runs alone against packed (no data, no epoch loop), the data path; each row is saved as it ends
step() {  # output JSON name, time limit (cut to what the deadline leaves), arguments
  local t=$(date +%s) limit=$(( $2 < $(left) - 5 ? $2 : $(left) - 5 ))
  if [ "$limit" -lt 10 ]; then echo "$1 skipped: $(left) s left" >> "$LOGS/phases.txt"; return; fi
  timeout "$limit" $PY benchmarks/packing_step.py $3 --out "$OUT/$1.json" > "$LOGS/$1.txt" 2>&1
  echo "$1 rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
}
step packing_step 80 "$STEP_ARGS"

# 3. throughput, what decides the sweep's GPU default: the baselines and the packed phases on the same card,
#    leaving 80 s for the variants after it
throughput gpu_throughput "$BENCH_ARGS $MPS_ARGS" 80

# 4. the variants of the packed step: the K runs as one graph of parallel streams, the layout, cudnn.benchmark
step packing_step_streams 40 "$VARIANT_ARGS --streams"  # its own process: a failed capture cannot cost the rest
step packing_step_contiguous 35 "$VARIANT_ARGS --packed-layout contiguous"
step packing_step_cudnn_benchmark 35 "$VARIANT_ARGS --cudnn-benchmark"
else
# manifold mixup through the compiled static step: each drawn layer compiled and captured after its own warm-up
t=$(date +%s)
timeout 120 $PY - "$DEVICE" "$CHECK_IMAGES" "$DRAWN_COMPILE" "$OUT/drawn_layers_check.json" \
  > "$LOGS/drawn_layers_check.txt" 2>&1 <<'EOF'
import json, sys, tempfile, time
import torch
from amixup import engine
from amixup.recipes import make_config
device, images, compile_step, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
result = {"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__,
          "runs": []}
with tempfile.TemporaryDirectory() as tmp:
    for mode in (dict(step_mode="eager"), dict(step_mode="static", compile_step=compile_step)):
        config = make_config("cifar_lt", "paper", dataset="cifar10_lt", imb_factor=100, method="manifold_mixup",
                             seed=0, epochs=2, warmup_epochs=1, train_subset=images, test_subset=1000, device=device,
                             experiment="drawn-check", **mode)
        t = time.perf_counter()
        try:
            rec = engine.train(config, f"{tmp}/{mode['step_mode']}", progress=False)
            history = [{k: h[k] for k in ("train_loss", "train_acc_mixed", "test_all")} for h in rec["history"]]
            result["runs"].append({**mode, "step": rec["environment"]["step"], "history": history})
        except Exception as exc:  # a failed capture or compilation is the finding
            result["runs"].append({**mode, "error": repr(exc)[-2000:]})
        result["runs"][-1]["seconds"] = time.perf_counter() - t
        json.dump(result, open(out, "w"), indent=1)  # each run as it ends
print(json.dumps(result, indent=1))
EOF
echo "drawn_layers_check rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
# the compiled twins beside a solo static baseline, bf16; then the engine against a DataLoader loop
throughput gpu_throughput_compiled "$COMPILED_ARGS $MPS_ARGS" "${LOADER_T:-70}"
t=$(date +%s)
timeout $(( $(left) - 5 )) $PY benchmarks/loader_vs_engine.py $LOADER_ARGS --json "$OUT/loader_vs_engine.json" \
  > "$LOGS/loader_vs_engine.txt" 2>&1
echo "loader_vs_engine rc=$? $(( $(date +%s) - t )) s" >> "$LOGS/phases.txt"
fi
cat "$LOGS/phases.txt"
for log in "$LOGS"/*.txt; do echo "== $log"; tail -n 20 "$log"; done
tar czf "$OUT/logs.tgz" -C "$(dirname "$LOGS")" logs && rm -rf "$(dirname "$LOGS")"  # one file: at most 8 come back
