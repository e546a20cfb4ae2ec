"""Command line: ``python -m amixup prepare ...`` and ``python -m amixup train ...``.

Examples::

    python -m amixup prepare cifar10 mnist
    python -m amixup train --recipe motivation --profile quick --method am_mixup --seed 0
    python -m amixup train --recipe cifar_lt --dataset cifar10_lt --set imb_factor=100 --method ce
"""

from __future__ import annotations

import argparse
import json
import sys

from . import data
from . import distributed as ddp
from .config import parse_assignments
from .engine import DEFAULT_RESULTS_DIR, resolve_device, train
from .records import CorruptFileError, ResultsWriteError, RunBusyError
from .recipes import PROFILES, RECIPES, make_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amixup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="find, decode and cache datasets (cifar10, cifar100, mnist, tiny_imagenet)")
    prep.add_argument("datasets", nargs="+", choices=["cifar10", "cifar100", "mnist", "tiny_imagenet"])
    prep.add_argument("--download", action="store_true", help="allow torchvision to download")
    run = sub.add_parser("train", help="train one run and write its record")
    run.add_argument("--recipe", default="motivation", choices=sorted(RECIPES))
    run.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    run.add_argument("--method", default="am_mixup")
    run.add_argument("--dataset", default=None)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--experiment", default="cli")
    run.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR),
                     help=f"where the record and checkpoint go (default: {DEFAULT_RESULTS_DIR})")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="any RunConfig field, e.g. --set beta=0.5 --set imb_factor=100")
    run.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        from .data.tinyimagenet import load_tiny_imagenet

        loaders = {"cifar10": data.load_cifar10, "cifar100": data.load_cifar100, "mnist": data.load_mnist,
                   "tiny_imagenet": load_tiny_imagenet}
        for name in args.datasets:
            try:
                d = loaders[name]("train", download=args.download)
            except (CorruptFileError, data.DataNotFoundError, data.DataCorruptError) as err:
                parser.exit(1, f"{parser.prog}: error: {err}\n")
            print(f"{name}: {len(d)} training images from {d.source}")
        return 0

    try:
        overrides = parse_assignments(args.set)
    except ValueError as err:
        parser.error(str(err))
    if args.dataset:
        overrides["dataset"] = args.dataset
    try:
        config = make_config(args.recipe, args.profile, method=args.method, seed=args.seed,
                             experiment=args.experiment, **overrides)
        resolve_device(config.device)  # e.g. device=cuda without CUDA, or cuda:3 on one GPU: a command-line error
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: torch's, e.g. a device string
        parser.error(str(err))
    try:
        record = train(config, args.results_dir, overwrite=args.overwrite)
    except (CorruptFileError, RunBusyError, ResultsWriteError, data.DataNotFoundError, data.DataCorruptError) as err:
        ddp.abandon()  # under torchrun: exit now, whatever the other processes are doing
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    except ValueError as err:  # a parameter found wrong once the data or a checkpoint is read (the message names it)
        ddp.abandon()
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if ddp.rank() == 0:
        print(json.dumps({"run_id": record["run_id"], **record["metrics"]["last"],
                          "best": record["metrics"]["best"]}, indent=1))
    ddp.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
