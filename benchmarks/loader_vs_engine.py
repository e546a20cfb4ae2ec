"""Training throughput: the amixup engine against a canonical PyTorch DataLoader loop.

Both sides train CNN-Vis2D with the paper's motivation recipe (SGD lr 0.1, momentum 0.9,
weight decay 5e-4, batch 128, RandomCrop(32, padding=4) + horizontal flip, CIFAR-10
normalisation, the recipe's step schedule scaled to ``--epochs``) on the same Mini-CIFAR-LT
training images, one after the other in one process, and evaluate once on the test set at
the end:

* engine:    ``amixup.engine.train`` (uint8 tensors on the device, batched augmentation,
             channels-last), with ``eval_every=epochs``, into a temporary results folder.
* canonical: a ``torch.utils.data.Dataset`` over PIL images with a torchvision transform
             pipeline, a ``DataLoader`` with worker processes, a contiguous (not channels-last)
             model and a per-batch ``loss.item()``.

Each side first runs ``--warmup`` untimed epochs (a separate short run with a fresh model),
then a fresh timed run of ``--epochs`` epochs. The timed span of each side is wall-clock from
its start (model, optimiser and loaders built) to its end (final test evaluation done); see
benchmarks/README.md for exactly what falls inside it.

Example::

    AMIXUP_DATA_PATH=/path/to/datasets python benchmarks/loader_vs_engine.py --epochs 3 --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from a checkout: import the checkout's amixup
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from amixup import data as datasets  # noqa: E402
from amixup.config import number_argument  # noqa: E402
from amixup import engine  # noqa: E402
from amixup.mixing import METHODS  # noqa: E402
from amixup.models import build_model  # noqa: E402
from amixup.recipes import make_config  # noqa: E402

DATASET = "mini_cifar_lt"
#: Methods the canonical loop implements itself; any other method falls back to plain CE there.
CANONICAL_METHODS = ("ce", "mixup")
TEST_BATCH = 512  # the engine's test batch size


# --------------------------------------------------------------------------- arguments

_positive_int = number_argument(int, 1)
_non_negative_int = number_argument(int, 0)


def _method(text: str) -> str:
    if text not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {text!r}; allowed: {', '.join(METHODS)}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/loader_vs_engine.py",
        description="Training images/s of the amixup engine vs. a canonical PIL + DataLoader loop "
                    "(CNN-Vis2D, motivation recipe, Mini-CIFAR-LT). Data is found through "
                    "AMIXUP_DATA_PATH like every amixup run.")
    parser.add_argument("--epochs", type=_positive_int, default=3,
                        help="timed epochs per side (default: 3)")
    parser.add_argument("--warmup", type=_non_negative_int, default=1,
                        help="untimed epochs run first by each side, as a separate short run with a "
                             "fresh model; 0 times the cold first epoch too (default: 1)")
    parser.add_argument("--method", type=_method, default="ce", metavar="METHOD",
                        help=f"training method of the engine, one of {', '.join(METHODS)} (default: ce). "
                             f"The canonical loop implements {' and '.join(CANONICAL_METHODS)}; for any "
                             "other method it trains plain CE and the output says so")
    parser.add_argument("--workers", type=_non_negative_int, default=2,
                        help="DataLoader worker processes of the canonical loop (default: 2)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda if available, else cpu), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--train-subset", type=_positive_int, default=None, metavar="N",
                        help="benchmark on about N training images (stratified, the same for both "
                             "sides) instead of all 6,025")
    parser.add_argument("--test-subset", type=_positive_int, default=None, metavar="N",
                        help="evaluate on about N test images instead of all 4,000")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch.set_num_threads for the main process (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (default: 0)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="the engine's precision (the canonical loop always trains in fp32, "
                             "as a plain loop does); default: fp32")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the numbers and the environment to this JSON file")
    return parser


# --------------------------------------------------------------------------- canonical loop

class PILDataset(Dataset):
    """A list of PIL images and integer labels behind a torchvision transform."""

    def __init__(self, images: list, labels: list[int], transform):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def to_pil(data: "datasets.ImageData") -> tuple[list, list[int]]:
    """The uint8 [N, 3, H, W] tensors of ``data`` as RGB PIL images, and the labels as ints."""
    hwc = data.images.permute(0, 2, 3, 1).contiguous().numpy()
    return [Image.fromarray(img) for img in hwc], data.labels.tolist()


def run_canonical(config, train_pil, test_pil, num_classes: int, device: torch.device, workers: int,
                  method: str) -> dict:
    """Train and evaluate with a plain DataLoader loop.

    Returns ``seconds`` (everything: transforms, loaders, model, optimiser, epochs, evaluation),
    ``epoch_seconds`` (the epochs and the final evaluation only), the test accuracy in % and
    the last batch's loss.
    """
    start = time.perf_counter()
    mean, std = datasets.NORMALIZATION[datasets.base_of(config.dataset)]
    train_tf = transforms.Compose([
        transforms.RandomCrop(32, padding=config.crop_padding),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    cuda = device.type == "cuda"
    loader_args = dict(num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0)
    train_loader = DataLoader(PILDataset(*train_pil, train_tf), batch_size=config.batch_size,
                              shuffle=True, **loader_args)
    test_loader = DataLoader(PILDataset(*test_pil, test_tf), batch_size=TEST_BATCH, shuffle=False,
                             **loader_args)

    torch.manual_seed(config.seed)  # the engine's initial weights
    model = build_model(config.model, num_classes).to(device)  # contiguous, not channels-last
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones),
                                                     gamma=config.gamma)
    rng = np.random.default_rng(config.seed)

    loop_start = time.perf_counter()  # epochs + final evaluation: the span of the engine's record["seconds"]
    losses = []
    for _ in range(config.epochs):
        model.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if method == "mixup":  # Zhang et al.'s input mixup
                lam = float(rng.beta(config.alpha, config.alpha))
                index = torch.randperm(x.size(0), device=device)
                out = model(lam * x + (1 - lam) * x[index])
                loss = lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[index])
            else:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # per-batch logging, as typical loops do
        scheduler.step()

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    end = time.perf_counter()  # .item() above has synchronised with the device
    seconds, epoch_seconds = end - start, end - loop_start
    del train_loader, test_loader  # shut persistent workers down before the next run
    return {"seconds": seconds, "epoch_seconds": epoch_seconds, "test_acc": 100.0 * correct / total,
            "final_train_loss": losses[-1] if losses else None}


# --------------------------------------------------------------------------- engine

def run_engine(config, device: torch.device) -> dict:
    """``engine.train`` into a temporary folder, timed wall-clock around the call."""
    with tempfile.TemporaryDirectory(prefix="amixup-bench-") as tmp:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        record = engine.train(config, tmp, overwrite=True, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "epoch_seconds": record["seconds"],
            "test_acc": record["metrics"]["last"]["acc_all"],
            "final_train_loss": record["history"][-1]["train_loss"]}


# --------------------------------------------------------------------------- main

def make_benchmark_config(args, epochs: int, device: torch.device):
    return make_config("motivation", "paper", dataset=DATASET, method=args.method, epochs=epochs,
                       train_subset=args.train_subset, test_subset=args.test_subset, eval_every=epochs,
                       seed=args.seed, device=str(device), experiment="benchmark",
                       precision=args.precision)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def format_table(result: dict) -> str:
    eng, can = result["engine"], result["canonical"]
    rows = [("side", "method", "wall s", "images/s", "epoch-span s", "images/s (epoch span)")]
    for side, res, method in (("engine", eng, result["method"]), ("canonical", can, result["canonical_method"])):
        rows.append((side, method, f"{res['seconds']:.2f}", f"{res['images_per_s']:.1f}",
                     f"{res['epoch_seconds']:.2f}", f"{res['epoch_images_per_s']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"ratio engine/canonical: {result['ratio']:.2f}x wall-clock "
                 f"({result['epoch_ratio']:.2f}x over the epoch span)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = engine.resolve_device(args.device)
        config = make_benchmark_config(args, args.epochs, device)
    except (ValueError, RuntimeError) as err:  # torch.device("bogus") raises RuntimeError
        parser.error(str(err))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    canonical_method = args.method if args.method in CANONICAL_METHODS else "ce"

    # Untimed: load (and cache) the data, and convert the same images to PIL once.
    train_data, test_data, _ = engine.load_data(config)
    train_pil, test_pil = to_pil(train_data), to_pil(test_data)
    n_train = len(train_data)

    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {n_train} training images, {len(test_data)} test images, "
          f"{args.epochs} timed epoch(s) after {args.warmup} warm-up epoch(s), {args.workers} workers")
    if canonical_method != args.method:
        print(f"note: the canonical loop implements only {' and '.join(CANONICAL_METHODS)}; "
              f"it trains plain CE while the engine trains {args.method}")

    if args.warmup:
        warm = make_benchmark_config(args, args.warmup, device)
        run_engine(warm, device)
        run_canonical(warm, train_pil, test_pil, train_data.num_classes, device, args.workers, canonical_method)

    eng = run_engine(config, device)
    can = run_canonical(config, train_pil, test_pil, train_data.num_classes, device, args.workers, canonical_method)
    for side in (eng, can):
        side["images_per_s"] = n_train * args.epochs / side["seconds"]
        side["epoch_images_per_s"] = n_train * args.epochs / side["epoch_seconds"]

    result = {
        "benchmark": "loader_vs_engine",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": args.method,
        "canonical_method": canonical_method,
        "dataset": DATASET,
        "model": config.model,
        "train_images": n_train,
        "test_images": len(test_data),
        "epochs": args.epochs,
        "warmup": args.warmup,
        "workers": args.workers,
        "precision": args.precision,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "engine": eng,
        "canonical": can,
        "ratio": eng["images_per_s"] / can["images_per_s"],
        "epoch_ratio": eng["epoch_images_per_s"] / can["epoch_images_per_s"],
    }
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
