"""Time of one training step: K runs alone (K static steps) against the same K runs packed (one packed step).

No data is read: each step trains on random images of the recipe's shape (batch 128, 3 x 32 x 32) with
AM-mixup at the last layer, through the engine's own step classes (:class:`amixup.static_step.StaticStep` and
:class:`amixup.packing.PackedStep`, replayed as CUDA graphs on a GPU, eager on a CPU). For every model and K it
reports milliseconds per step of the K runs alone (K steps one after the other in one process) and packed (one
step), and their ratio: how much faster the packed network trains the same K runs in one process; the ATen
operators one step dispatches (the K runs alone together, and packed), the kernels a launch-bound GPU pays for;
the milliseconds to write the K runs' checkpoints once (what a pack pays every ``checkpoint_every`` epochs) and,
with ``--eval-images N``, to evaluate N test images, alone and packed.
Options measure the candidates beside it: ``--streams`` the K runs alone as one CUDA graph of K parallel streams
(:class:`StreamSteps`, checked to end in the same weights as the runs alone), ``--packed-layout contiguous`` the
packed network in NCHW, ``--cudnn-benchmark`` cuDNN's own algorithm search; and, unless ``--no-data``, the data
path of a step over an epoch's pass (``--data-batches``): K loaders one after the other against
:func:`amixup.packing.pack_batches`, each with the loaders' chunks (``--chunk-bytes``) and batch by batch.
Processes sharing a GPU under MPS are measured by ``benchmarks/gpu_throughput.py``, not here.

    python benchmarks/packing_step.py --device cuda --packs 1,4,8,16,32 --steps 50 --streams
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
              packed_layout: str = "channels_last", with_streams: bool = False):
    """The K runs alone (K StaticSteps), packed (one PackedStep) and, with ``with_streams``, alone again as
    :class:`StreamSteps`, with their random batches; the packed network and its input buffer in ``packed_layout``
    (the runs alone are channels-last, as in the engine)."""
    import torch

    from amixup.mixing import MixPolicy, resolve_spec
    from amixup.models import build_model
    from amixup.packing import PackedStep, pack_models
    from amixup.static_step import StaticStep

    spec = resolve_spec("am_mixup")

    def models_from_seeds():
        out = []
        for seed in range(packs):
            torch.manual_seed(seed)
            model = build_model(model_name, CLASSES, SHAPE[0], SHAPE[1])
            out.append(model.to(device, memory_format=torch.channels_last))
        return out

    models = models_from_seeds()
    packed = pack_models(models)
    if packed_layout == "contiguous":
        packed.to(memory_format=torch.contiguous_format)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4)

    def policy(model, seed):
        return MixPolicy(spec, eligible_layers=model.manifold_layers, last_layer_index=model.last_layer, seed=seed)

    common = dict(batch_size=BATCH, device=device, precision=precision, need_clean=True, compile=compile)

    def alone_steps(models):
        return [StaticStep(m, policy(m, k), sgd(m.parameters()), sample_shape=SHAPE, **common)
                for k, m in enumerate(models)]

    alone = alone_steps(models)
    together = PackedStep(packed, [policy(packed, k) for k in range(packs)], sgd(packed.parameters()),
                          sample_shape=SHAPE, **common)
    if packed_layout == "contiguous":
        together.x = together.x.contiguous()
    xs = [torch.randn(BATCH, *SHAPE, device=device).contiguous(memory_format=torch.channels_last) for _ in range(packs)]
    ys = [torch.randint(0, CLASSES, (BATCH,), device=device) for _ in range(packs)]
    streams = StreamSteps(alone_steps(models_from_seeds())) if with_streams else None
    return alone, together, streams, xs, ys


class StreamSteps:
    """K runs' own static steps, each on its own CUDA stream, captured as one CUDA graph of K parallel branches and
    replayed once per step (another way to fill a GPU with K small runs: no grouped convolutions, no MPS). Each run
    draws and trains exactly as alone; on a CPU the K steps run one after the other. A benchmark candidate only."""

    def __init__(self, steps):
        self.steps, self.graph, self.eager_steps, self.grads = steps, None, 0, None

    def run(self, n: int, xs, ys, gens) -> None:
        """``n`` steps of every run on its batch ``xs[k], ys[k]``, drawing lambda and pairings from ``gens[k]``."""
        import torch

        steps = self.steps
        device = steps[0].device
        if n == 0:
            return
        draws = [s.draws([BATCH] * n, 0.7, gen) for s, gen in zip(steps, gens)]
        layer = draws[0][0][1]
        if any(d[1] != layer for run in draws for d in run):
            raise ValueError("StreamSteps needs one mixing layer (AM-mixup mixes at the last)")
        perms = [torch.stack([d[2] for d in run]).to(device) for run in draws]  # one copy per run and call
        for s in steps:
            s.lr.fill_(0.1)  # as run_epoch(..., lr=0.1) on the runs alone
        for i in range(n):
            for k, s in enumerate(steps):
                lam = draws[k][i][0]
                s.x.copy_(xs[k])
                s.y.copy_(ys[k])
                s.perm.copy_(perms[k][i])
                s.lam.fill_(lam)
                s.lam_rest.fill_(1.0 - lam)
                s.own.fill_(lam >= 0.5)
            if not steps[0].graphs_enabled:
                for s in steps:
                    s._eager(s.x, s.y, s.perm, s.lam, s.lam_rest, s.own, layer)
            elif self.graph is None and self.eager_steps < 3:  # warm-up off the capture stream, as each run alone
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for s in steps:
                        s._eager(s.x, s.y, s.perm, s.lam, s.lam_rest, s.own, layer)
                torch.cuda.current_stream(device).wait_stream(side)
                self.eager_steps += 1
            else:
                if self.graph is None:
                    self._capture(layer)
                self.graph.replay()

    def _capture(self, layer: int) -> None:
        import torch

        device = self.steps[0].device
        for s in self.steps:
            s._clear_grads()
        # torch hands out streams round-robin from a pool of 32 per priority, and the capture stream comes from the
        # default-priority pool: branch streams from the high-priority pool are all distinct from it (a branch on
        # the capture stream itself would serialise every branch forked after it), up to K = 32
        graph, streams = torch.cuda.CUDAGraph(), [torch.cuda.Stream(device, priority=-1) for _ in self.steps]
        with torch.cuda.graph(graph):
            main = torch.cuda.current_stream(device)
            for s, stream in zip(self.steps, streams):  # fork: run k on stream k
                stream.wait_stream(main)
                with torch.cuda.stream(stream):
                    s._step(s.x, s.y, s.perm, s.lam, s.lam_rest, s.own, layer)
            for stream in streams:  # join
                main.wait_stream(stream)
        self.grads = [[p.grad for p in s.params] for s in self.steps]  # the graph's gradient memory, kept alive
        for s in self.steps:
            s._clear_grads()
        self.graph = graph


def max_relative_difference(steps_a, steps_b) -> float:
    """The largest |a - b| / max|a| over the parameters of two sets of runs: how far two ways of training drifted."""
    worst = 0.0
    for a, b in zip(steps_a, steps_b):
        for pa, pb in zip(a.params, b.params):
            scale = pa.detach().abs().max().item() or 1.0
            worst = max(worst, (pa.detach() - pb.detach()).abs().max().item() / scale)
    return worst


def _sync(device):
    """A function that waits for ``device`` (a no-op on a CPU): timings end when the work has run."""
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _loader(images, labels, device, **kw):
    """A TensorLoader over CIFAR-shaped tensors with CIFAR-10's normalisation."""
    from amixup.augment import TensorLoader
    from amixup.data import normalization

    mean, std = normalization("cifar10")
    return TensorLoader(images, labels, kw.pop("batch_size", BATCH), device=device, mean=mean, std=std, **kw)


def _call_ms(fn, sync) -> float:
    """Milliseconds of one call of ``fn()`` after one untimed call (cuDNN's first call per shape, allocations)."""
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - start) * 1000


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
    return count_ops(lambda: step._eager(x, y, perm, lam, 1 - lam, step.own.new_ones(step.own.shape), layer))


def measure(model_name: str, packs: int, device, steps: int, warmup: int, precision: str,
            compile: bool = False, packed_layout: str = "channels_last", streams: bool = False,
            eval_images: int = 0) -> dict:
    import torch

    from amixup.packing import pack_inputs

    alone, together, stream_steps, xs, ys = _steppers(model_name, packs, device, precision, compile, packed_layout,
                                                      streams)
    sync = _sync(device)
    gens = [torch.Generator().manual_seed(k) for k in range(packs)]
    packed_x, packed_y = pack_inputs(xs).contiguous(memory_format=torch.channels_last), torch.stack(ys)

    def run_alone(n):
        for step, x, y, gen in zip(alone, xs, ys, gens):
            step.run_epoch([(x, y)] * n, [BATCH] * n, 0.7, 0.1, gen)

    def run_packed(n):
        together.run_epoch([(packed_x, packed_y)] * n, [BATCH] * n, [0.7] * packs, 0.1, gens)

    alone_ms = _time(run_alone, steps, warmup, sync)
    packed_ms = _time(run_packed, steps, warmup, sync)
    streams = {}
    if stream_steps is not None:  # the same K runs, same draws and batches: after as many steps, the same weights
        stream_gens = [torch.Generator().manual_seed(k) for k in range(packs)]
        try:
            streams_ms = _time(lambda n: stream_steps.run(n, xs, ys, stream_gens), steps, warmup, sync)
            streams = {"streams_ms": streams_ms, "streams_speedup": alone_ms / streams_ms,
                       "streams_max_rel_diff": max_relative_difference(alone, stream_steps.steps)}
        except Exception as err:  # a candidate: its failure is a finding, not the end of the benchmark
            streams = {"streams_error": f"{type(err).__name__}: {err}"}
    checkpoint_ms = time_checkpoints(together, packs, sync)
    evaluation = time_evaluation(alone, together, eval_images, sync) if eval_images else {}
    perm = torch.randperm(BATCH).to(device)  # the operator counts step every run once more: after the comparison
    alone_ops = sum(count_step_ops(step, x, y, perm, step.model.last_layer) for step, x, y in zip(alone, xs, ys))
    packed_ops = count_step_ops(together, packed_x, packed_y, perm.repeat(packs, 1), together.mix_layers)
    return {"model": model_name, "packs": packs, "packed_layout": packed_layout, "alone_ms": alone_ms,
            "packed_ms": packed_ms, "alone_ms_per_run": alone_ms / packs, "packed_ms_per_run": packed_ms / packs,
            "speedup": alone_ms / packed_ms, "alone_ops": alone_ops, "packed_ops": packed_ops, "step": together.kind,
            "checkpoint_ms": checkpoint_ms, **evaluation, **streams}


def time_checkpoints(together, packs: int, sync) -> float:
    """Milliseconds to write the K runs' checkpoints once, as ``engine.train_packed`` does at an epoch's end (unpack
    the packed model and optimizer, one ordinary checkpoint file per run), into a temporary folder: what a pack
    pays per ``checkpoint_every`` epochs besides its steps."""
    import tempfile

    from amixup.engine import _save_checkpoint
    from amixup.packing import checkpoint_states

    with tempfile.TemporaryDirectory() as folder:
        sync()
        start = time.perf_counter()
        models, optimizers = checkpoint_states(together.model, together.optimizer, packs)
        for k in range(packs):
            _save_checkpoint(Path(folder) / f"run{k}.pt", {"epoch": 1, "model": models[k], "optimizer": optimizers[k]})
        return (time.perf_counter() - start) * 1000


def time_evaluation(alone, together, images: int, sync) -> dict:
    """Milliseconds to evaluate ``images`` test images (batches of 512, as the engine) with the K runs alone, one
    after the other, and with the packed network (``engine.evaluate_packed``: every run sees the same images)."""
    import torch

    from amixup.engine import evaluate, evaluate_packed

    device = together.device
    data = torch.randint(0, 256, (images, *SHAPE), dtype=torch.uint8, device=device)
    loader = _loader(data, torch.randint(0, CLASSES, (images,), device=device), device, batch_size=512, train=False)
    out = {"eval_images": images}
    for name, run in (("alone", lambda: [evaluate(step.model, loader) for step in alone]),
                      ("packed", lambda: evaluate_packed(together.model, loader, len(alone)))):
        out[f"eval_{name}_ms"] = _call_ms(run, sync)
    for model in [step.model for step in alone] + [together.model]:
        model.train()  # evaluate() leaves eval mode; the steps train
    return out


def measure_data(packs: int, device, batches: int, chunk_bytes: int | None = None) -> dict:
    """The training batches of K runs (the CIFAR recipe's crop and flip), from K loaders one after the other
    against :func:`amixup.packing.pack_batches`: milliseconds and ATen operators per step (K batches), over one
    pass of ``batches`` batches of 128, with ``chunk_bytes`` (None: the loaders' default for the device; on a GPU
    a CIFAR-10-LT epoch is one chunk) and batch by batch (``..._per_batch``, ``chunk_bytes=0``)."""
    import torch

    from amixup.augment import default_chunk_bytes
    from amixup.packing import pack_batches

    n = BATCH * batches
    images = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, device=device)
    labels = torch.randint(0, CLASSES, (n,), device=device)

    def loaders(chunk_bytes):
        return [_loader(images, labels, device, train=True, crop_padding=4, flip=True, chunk_bytes=chunk_bytes,
                        generator=torch.Generator(device=device).manual_seed(k)) for k in range(packs)]

    def alone_pass(runs):
        return [list(loader) for loader in runs]

    def packed_pass(runs):
        return list(pack_batches(runs))

    sync = _sync(device)
    row = {"packs": packs, "pass_batches": batches,
           "chunk_bytes": default_chunk_bytes(device) if chunk_bytes is None else chunk_bytes}
    for chunk_bytes, suffix in ((row["chunk_bytes"], ""), (0, "_per_batch")):
        for name, one_pass in (("alone", alone_pass), ("packed", packed_pass)):
            row[f"{name}{suffix}_ms"] = _call_ms(lambda: one_pass(loaders(chunk_bytes)), sync) / batches
            row[f"{name}{suffix}_ops"] = count_ops(lambda: one_pass(loaders(chunk_bytes))) / batches
    return row


def free_graphs(device) -> None:
    """Free the CUDA graphs of the steps just measured now, not at some later garbage collection (the steps sit in
    reference cycles): a graph destroyed while later ones replay on the same capture stream is a needless risk."""
    import gc

    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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
    parser.add_argument("--streams", action="store_true",
                        help="also the K runs alone as one CUDA graph of K parallel streams (StreamSteps)")
    parser.add_argument("--eval-images", type=number_argument(int, 0), default=0, metavar="N",
                        help="also time the evaluation of N test images, K runs alone against packed (default: 0, "
                             "none; the recipe's test set is 10000)")
    parser.add_argument("--no-data", dest="data", action="store_false",
                        help="skip the data rows (K loaders against pack_batches)")
    parser.add_argument("--data-batches", type=number_argument(int, 1), default=97, metavar="N",
                        help="batches of 128 in the data rows' pass (default: 97, an epoch of the Table 3 recipe)")
    parser.add_argument("--chunk-bytes", type=number_argument(int, 0), default=None, metavar="BYTES",
                        help="the data rows' loaders' chunk_bytes (default: the device's, amixup.augment."
                             "default_chunk_bytes; 268435456 is the GPU's)")
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
              "packed_layout": args.packed_layout, "cudnn_benchmark": args.cudnn_benchmark, "streams": args.streams,
              "steps": args.steps, "warmup": args.warmup, "data_batches": args.data_batches, "data_rows": [], "rows": []}
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every row: a phase killed by its time limit keeps what it measured
        out.write_text(json.dumps(result, indent=2) + "\n")

    # the steps first: they are what a time limit must not cut
    print(f"{'model':10} {'K':>3} {'alone ms':>9} {'packed ms':>9} {'ms/run packed':>13} {'speedup':>7} "
          f"{'alone ops':>9} {'packed ops':>10} {'ckpt ms':>8}")
    for model_name in models:
        for k in packs:
            row = measure(model_name, k, device, args.steps, args.warmup, args.precision, args.compile,
                          args.packed_layout, args.streams, args.eval_images)
            free_graphs(device)
            result["rows"].append(row)
            save()
            print(f"{model_name:10} {k:3d} {row['alone_ms']:9.2f} {row['packed_ms']:9.2f} "
                  f"{row['packed_ms_per_run']:13.2f} {row['speedup']:6.2f}x {row['alone_ops']:9d} "
                  f"{row['packed_ops']:10d}"
                  f" {row['checkpoint_ms']:8.1f}"
                  + (f"  eval {row['eval_alone_ms']:.1f} ms alone, {row['eval_packed_ms']:.1f} packed"
                     if "eval_alone_ms" in row else "")
                  + (f"  streams {row['streams_ms']:.2f} ms ({row['streams_speedup']:.2f}x, weights "
                     f"{row['streams_max_rel_diff']:.1e})" if "streams_ms" in row else "")
                  + (f"  streams failed: {row['streams_error']}" if "streams_error" in row else ""), flush=True)
    if args.data:
        print(f"{'data: K':>10} {'alone ms':>9} {'packed ms':>9} {'alone ops':>9} {'packed ops':>10}"
              "   (per step; in brackets batch by batch)")
        for k in packs:
            row = measure_data(k, device, args.data_batches, args.chunk_bytes)
            result["data_rows"].append(row)
            save()
            print(f"{k:10d} {row['alone_ms']:9.2f} {row['packed_ms']:9.2f} {row['alone_ops']:9.0f} "
                  f"{row['packed_ops']:10.0f}   ({row['alone_per_batch_ms']:.2f} {row['packed_per_batch_ms']:.2f} "
                  f"{row['alone_per_batch_ops']:.0f} {row['packed_per_batch_ops']:.0f})", flush=True)
    save()
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
