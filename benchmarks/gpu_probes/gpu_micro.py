"""Where a ResNet32 static step spends its time on the GPU: graph replay per variant, eval, loader.

python benchmarks/gpu_probes/gpu_micro.py steps|parts|replay_worker SECONDS
"""
import json
import os
import sys
import time

import torch

from amixup.augment import TensorLoader
from amixup.mixing import MixPolicy, resolve_spec
from amixup.models import build_model
from amixup.static_step import StaticStep

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
B = 128
N = int(os.environ.get("MICRO_N", "200"))


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def make_step(fmt="cl", precision="fp32", method="am_mixup", graphs=None):
    torch.manual_seed(0)
    model = build_model("resnet32", 10, 3, 32)
    model = model.to(dev, memory_format=torch.channels_last if fmt == "cl" else torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    spec = resolve_spec(method)
    policy = MixPolicy(spec, eligible_layers=model.manifold_layers, last_layer_index=model.last_layer, seed=0,
                       train_acc_source="clean")  # AM-mixup: a clean forward pass for Eq. 6's accuracy
    step = StaticStep(model, policy, opt, batch_size=B, sample_shape=(3, 32, 32), device=dev, precision=precision,
                      graphs=graphs)
    if fmt != "cl":
        step.x = step.x.contiguous()
    step.x.copy_(torch.randn(B, 3, 32, 32, device=dev))
    step.y.copy_(torch.randint(0, 10, (B,), device=dev))
    step.perm.copy_(torch.randperm(B, device=dev))
    step.lam.fill_(0.8), step.lam_rest.fill_(0.2), step.lr.fill_(0.01)
    model.train()
    return step, model


def time_steps(step, layer, n):
    for _ in range(5):  # warm-up and capture
        step._full_step(layer)
    sync()
    t = time.perf_counter()
    for _ in range(n):
        step._full_step(layer)
    sync()
    return (time.perf_counter() - t) / n * 1e3


def steps():
    out = {}
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        for fmt in ("cl", "nchw"):
            for precision in ("fp32", "bf16"):
                name = f"{fmt}/{precision}/bench={bench}"
                try:
                    step, _ = make_step(fmt, precision)
                    out[name] = {"graph_ms": round(time_steps(step, step.model.last_layer, N), 3)}
                    step, _ = make_step(fmt, precision, graphs=False)
                    out[name]["eager_ms"] = round(time_steps(step, step.model.last_layer, max(2, N // 4)), 3)
                except Exception as e:  # noqa: BLE001
                    out[name] = repr(e)[:300]
                print(name, out[name], flush=True)
    torch.backends.cudnn.allow_tf32 = False
    step, _ = make_step("cl", "fp32")
    out["cl/fp32/no_tf32"] = round(time_steps(step, step.model.last_layer, N), 3)
    print("no tf32", out["cl/fp32/no_tf32"], flush=True)
    return out


def parts():
    out = {}
    step, model = make_step()
    model.eval()
    n_test = 10000 if dev.type == 'cuda' else 1000
    images = torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8)
    for bs in (512, 2048):
        loader = TensorLoader(images, torch.zeros(n_test, dtype=torch.long), bs, device=dev, mean=[0.5] * 3,
                              std=[0.25] * 3, train=False)
        for rep in range(3):
            sync()
            t = time.perf_counter()
            with torch.inference_mode():
                for x, _ in loader:
                    model.head(model.features(x)).float()
            sync()
            out[f"eval_{bs}_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    train_images = torch.randint(0, 256, (12406, 3, 32, 32), dtype=torch.uint8)
    gen = torch.Generator(device=dev).manual_seed(0)
    loader = TensorLoader(train_images, torch.zeros(12406, dtype=torch.long), B, device=dev, mean=[0.5] * 3,
                          std=[0.25] * 3, train=True, crop_padding=4, flip=True, generator=gen)
    for rep in range(3):
        sync()
        t = time.perf_counter()
        for x, y in loader:
            step.x.copy_(x) if len(y) == B else None
        sync()
        out["loader_epoch_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    # host time of one replay (queue only) vs its GPU time
    step, model = make_step()
    time_steps(step, step.model.last_layer, 10)
    sync()
    t = time.perf_counter()
    for _ in range(50):
        step.graphs[model.last_layer].replay() if step.graphs else None
    host = (time.perf_counter() - t) / 50 * 1e3
    sync()
    out["replay_host_ms"] = round(host, 4)
    print(out, flush=True)
    return out


def replay_worker(seconds):
    step, model = make_step()
    time_steps(step, model.last_layer, 10)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(20):
            step._full_step(model.last_layer)
        sync()
        n += 20
    print(json.dumps({"steps_per_s": n / (time.perf_counter() - t)}), flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "replay_worker":
        replay_worker(float(sys.argv[2]))
    else:
        result = steps() if what == "steps" else parts()
        json.dump(result, open(sys.argv[2], "w"), indent=1)
