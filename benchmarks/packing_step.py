"""Time of one training step: K runs alone (K static steps) against the same K runs packed (one packed step).

No data is read: each step trains on random images of the recipe's shape (batch 128, 3 x 32 x 32) with
AM-mixup at the last layer, through the engine's own step classes (:class:`amixup.static_step.StaticStep` and
:class:`amixup.packing.PackedStep`, replayed as CUDA graphs on a GPU, eager on a CPU). For every model and K it
reports milliseconds per step of the K runs alone (K steps one after the other in one process) and packed (one
step), and their ratio: how much faster the packed network trains the same K runs in one process; and the ATen
operators one step dispatches (the K runs alone together, and packed), the kernels a launch-bound GPU pays for. Processes
sharing a GPU under MPS are measured by ``benchmarks/gpu_throughput.py``, not here.

    python benchmarks/packing_step.py --device cuda --packs 1,4,8,16,32 --steps 50
    python benchmarks/packing_step.py --device cpu --models cnn_vis2d --packs 1,2 --steps 2 --warmup 1  # smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from a checkout: import the checkout's amixup
    sys.path.insert(0, str(ROOT))

from amixup.config import number_argument  # noqa: E402

BATCH, SHAPE, CLASSES = 128, (3, 32, 32), 10


def _steppers(model_name: str, packs: int, device, precision: str, compile: bool = False,
              packed_layout: str = "channels_last"):
    """The K runs alone (K StaticSteps) and packed (one PackedStep), with their random batches; the packed
    network and its input buffer in ``packed_layout`` (the runs alone are channels-last, as in the engine)."""
    import torch

    from amixup.mixing import MixPolicy, resolve_spec
    from amixup.models import build_model
    from amixup.packing import PackedStep, pack_models
    from amixup.static_step import StaticStep

    spec = resolve_spec("am_mixup")
    models = []
    for seed in range(packs):
        torch.manual_seed(seed)
        models.append(build_model(model_name, CLASSES, SHAPE[0], SHAPE[1]).to(device, memory_format=torch.channels_last))
    packed = pack_models(models)
    if packed_layout == "contiguous":
        packed.to(memory_format=torch.contiguous_format)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4)

    def policy(model, seed):
        return MixPolicy(spec, eligible_layers=model.manifold_layers, last_layer_index=model.last_layer, seed=seed)

    common = dict(batch_size=BATCH, device=device, precision=precision, need_clean=True, compile=compile)
    alone = [StaticStep(m, policy(m, k), sgd(m.parameters()), sample_shape=SHAPE, **common)
             for k, m in enumerate(models)]
    together = PackedStep(packed, [policy(packed, k) for k in range(packs)], sgd(packed.parameters()),
                          sample_shape=SHAPE, **common)
    if packed_layout == "contiguous":
        together.x = together.x.contiguous()
    xs = [torch.randn(BATCH, *SHAPE, device=device).contiguous(memory_format=torch.channels_last) for _ in range(packs)]
    ys = [torch.randint(0, CLASSES, (BATCH,), device=device) for _ in range(packs)]
    return alone, together, xs, ys


def _time(run_steps, steps: int, warmup: int, sync) -> float:
    """Milliseconds per step of ``run_steps(n)`` after ``warmup`` steps (captures happen there)."""
    run_steps(warmup)
    sync()
    start = time.perf_counter()
    run_steps(steps)
    sync()
    return (time.perf_counter() - start) / steps * 1000


def count_ops(fn) -> int:
    """ATen operators ``fn()`` dispatches: about the kernels a device runs for it, which is what a launch-bound
    GPU pays for."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


def count_step_ops(step, x, y, perm, layer) -> int:
    """ATen operators of one eager step of ``step`` (forward, backward, update)."""
    lam = step.lam.new_full(step.lam.shape, 0.7)
    return count_ops(lambda: step._eager(x, y, perm, lam, 1 - lam, layer))


def measure(model_name: str, packs: int, device, steps: int, warmup: int, precision: str,
            compile: bool = False, packed_layout: str = "channels_last") -> dict:
    import torch

    from amixup.packing import pack_inputs

    alone, together, xs, ys = _steppers(model_name, packs, device, precision, compile, packed_layout)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    gens = [torch.Generator().manual_seed(k) for k in range(packs)]
    packed_x, packed_y = pack_inputs(xs).contiguous(memory_format=torch.channels_last), torch.stack(ys)

    def run_alone(n):
        for step, x, y, gen in zip(alone, xs, ys, gens):
            step.run_epoch([(x, y)] * n, [BATCH] * n, 0.7, 0.1, gen)

    def run_packed(n):
        together.run_epoch([(packed_x, packed_y)] * n, [BATCH] * n, [0.7] * packs, 0.1, gens)

    alone_ms = _time(run_alone, steps, warmup, sync)
    packed_ms = _time(run_packed, steps, warmup, sync)
    perm = torch.randperm(BATCH).to(device)
    alone_ops = sum(count_step_ops(step, x, y, perm, step.model.last_layer) for step, x, y in zip(alone, xs, ys))
    packed_ops = count_step_ops(together, packed_x, packed_y, perm.repeat(packs, 1), together.mix_layers)
    return {"model": model_name, "packs": packs, "packed_layout": packed_layout, "alone_ms": alone_ms,
            "packed_ms": packed_ms, "alone_ms_per_run": alone_ms / packs, "packed_ms_per_run": packed_ms / packs,
            "speedup": alone_ms / packed_ms, "alone_ops": alone_ops, "packed_ops": packed_ops, "step": together.kind}


def measure_data(packs: int, device, steps: int, warmup: int) -> dict:
    """The training batches of K runs (the CIFAR recipe's crop and flip), from K loaders one after the other
    against :func:`amixup.packing.pack_batches`: milliseconds and ATen operators per step (K batches)."""
    import torch

    from amixup.augment import TensorLoader
    from amixup.packing import pack_batches

    n = BATCH * (steps + warmup)
    images = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, device=device)
    labels = torch.randint(0, CLASSES, (n,), device=device)

    def loaders():
        return [TensorLoader(images, labels, BATCH, device=device, mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7),
                             train=True, crop_padding=4, flip=True,
                             generator=torch.Generator(device=device).manual_seed(k)) for k in range(packs)]

    def alone_pass(runs):
        return [list(loader) for loader in runs]

    def packed_pass(runs):
        return list(pack_batches(runs))

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    row = {"packs": packs}
    for name, one_pass in (("alone", alone_pass), ("packed", packed_pass)):
        one_pass(loaders())  # warm-up
        sync()
        start = time.perf_counter()
        one_pass(loaders())
        sync()
        row[f"{name}_ms"] = (time.perf_counter() - start) / (steps + warmup) * 1000
        row[f"{name}_ops"] = count_ops(lambda: one_pass(loaders())) / (steps + warmup)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python benchmarks/packing_step.py", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--models", default="resnet32,cnn_vis2d", help="comma-separated (default: resnet32,cnn_vis2d)")
    parser.add_argument("--packs", default="1,4,8,16", help="comma-separated K (default: 1,4,8,16)")
    parser.add_argument("--steps", type=number_argument(int, 1), default=30, help="timed steps (default: 30)")
    parser.add_argument("--warmup", type=number_argument(int, 0), default=5,
                        help="untimed steps first; CUDA graphs are captured after 3 (default: 5)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true",
                        help="both sides with torch.compile (compile_step); the warm-up steps then include compilation")
    parser.add_argument("--packed-layout", choices=["channels_last", "contiguous"], default="channels_last",
                        help="memory layout of the packed network and its input (the runs alone stay channels-last, "
                             "as in the engine); grouped convolutions may prefer either (default: channels_last)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True: cuDNN times its algorithms per shape")
    parser.add_argument("--no-data", dest="data", action="store_false",
                        help="skip the data rows (K loaders against pack_batches)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: results/benchmarks/packing_step_<device-slug>.json)")
    args = parser.parse_args(argv)

    import torch

    from amixup import engine
    from amixup.models import MODELS
    from amixup.packing import check_packable_model
    from amixup.records import git_commit

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_throughput import device_name, slug

    try:
        device = engine.resolve_device(args.device)
        packs = [int(k) for k in args.packs.split(",")]
        models = args.models.split(",")
        for name in models:
            if name not in MODELS:
                raise ValueError(f"--models: {name!r} is not one of {sorted(MODELS)}")
            check_packable_model(MODELS[name](num_classes=CLASSES))
        if not packs or min(packs) < 1:
            raise ValueError(f"--packs must be integers >= 1, got {args.packs!r}")
    except ValueError as err:
        parser.error(str(err))
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    name = device_name(device)
    out = args.out or ROOT / "results" / "benchmarks" / f"packing_step_{slug(name)}.json"
    result = {"benchmark": "packing_step", "device": str(device), "device_name": name, "torch": torch.__version__,
              "python": platform.python_version(), "threads": torch.get_num_threads(), **git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "batch": BATCH, "method": "am_mixup", "precision": args.precision, "compile": args.compile,
              "packed_layout": args.packed_layout, "cudnn_benchmark": args.cudnn_benchmark, "steps": args.steps,
              "warmup": args.warmup, "data_rows": [], "rows": []}
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every row: a phase killed by its time limit keeps what it measured
        out.write_text(json.dumps(result, indent=2) + "\n")

    if args.data:
        print(f"{'data: K':>10} {'alone ms':>9} {'packed ms':>9} {'alone ops':>9} {'packed ops':>10}")
        for k in packs:
            row = measure_data(k, device, args.steps, args.warmup)
            result["data_rows"].append(row)
            save()
            print(f"{k:10d} {row['alone_ms']:9.2f} {row['packed_ms']:9.2f} {row['alone_ops']:9.0f} "
                  f"{row['packed_ops']:10.0f}", flush=True)
    print(f"{'model':10} {'K':>3} {'alone ms':>9} {'packed ms':>9} {'ms/run packed':>13} {'speedup':>7} "
          f"{'alone ops':>9} {'packed ops':>10}")
    for model_name in models:
        for k in packs:
            row = measure(model_name, k, device, args.steps, args.warmup, args.precision, args.compile,
                          args.packed_layout)
            result["rows"].append(row)
            save()
            print(f"{model_name:10} {k:3d} {row['alone_ms']:9.2f} {row['packed_ms']:9.2f} "
                  f"{row['packed_ms_per_run']:13.2f} {row['speedup']:6.2f}x {row['alone_ops']:9d} {row['packed_ops']:10d}",
                  flush=True)
    save()
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
