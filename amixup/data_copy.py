"""The data-copy experiment: what does one more JPEG compression step cost on CIFAR-10-LT?

The offline CIFAR-10 here is a JPEG re-encoding (quality about 75: ``python -m amixup.jpegquality estimate``).
CE and AM-mixup are trained on CIFAR-10-LT (imbalance 100, the Table 3 recipe) twice with the same seeds:
on the copy as it is ("original") and on the copy encoded once more at its own quality ("q75"), made with

    python -m amixup.jpegquality reencode cifar10-jpeg.tar.gz DIR-q75/cifar10-jpeg.tar.gz --quality 75

The re-encoded archive keeps the file name (the data loader looks for ``cifar10-jpeg.tar.gz``) and carries a
marker (``amixup.data.COPY_MARKER``), so the data source of every run says which copy it read. Which copy a run
reads is set by the environment: AMIXUP_DATA_PATH names the folder holding the archive and AMIXUP_CACHE_DIR a
cache of that copy alone (the prepared cache is searched first). :func:`run` sets both for the runs (sweep
workers are subprocesses and inherit them), builds the copy's cache first, and refuses to mix copies: a run
labelled q75 whose data source is not the re-encoded archive (or an "original" one that read a re-encoded
archive) is an error, before and after training. Records go to ``results/data_copy/<profile>/``, which
``python -m amixup.report`` turns into its data-copy section.

    python -m amixup.data_copy --profile paper --copy original --data DIR --cache CACHE-original --workers 4 --devices cuda
    python -m amixup.data_copy --profile paper --copy q75 --data DIR-q75 --cache CACHE-q75 --workers 4 --devices cuda
    python -m amixup.data_copy --check --results-dir results/data_copy/paper
    python -m amixup.data_copy --compare DIR CACHE-original DIR-q75 CACHE-q75   # how far apart the pixels are
    python -m amixup.data_copy --compare DIR CACHE-original DIR-q75 CACHE-q75 --save-as q75   # ... kept for the report

``--save-as`` keeps the distance (PSNR included) in ``results/data_copy/distances.json``, which the report sets
beside each copy's accuracy: accuracy against PSNR is the dose-response.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

from . import experiments
from .config import parse_assignments
from .data.copies import (ARCHIVE, DISTANCES_FILE, ORIGINAL_SOURCE, DataCopyError, check_source,  # noqa: F401
                          data_copy_label, expected_source, read_distances)
from .engine import resolve_device
from .records import REPO_ROOT, read_record

def results_dir_for(profile: str) -> Path:
    """Where the records of the experiment at a profile go: results/data_copy/<profile>."""
    return REPO_ROOT / "results" / "data_copy" / profile


@contextlib.contextmanager
def using_copy(data_dir, cache_dir):
    """AMIXUP_DATA_PATH = ``data_dir`` (alone) and AMIXUP_CACHE_DIR = ``cache_dir`` inside the block
    (processes started inside inherit them); the previous values are restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("AMIXUP_DATA_PATH", "AMIXUP_CACHE_DIR")}
    os.environ["AMIXUP_DATA_PATH"] = str(Path(data_dir).expanduser().resolve())
    os.environ["AMIXUP_CACHE_DIR"] = str(Path(cache_dir).expanduser().resolve())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare(label: str, data_dir, cache_dir) -> dict:
    """Load (and on first use decode and cache) the copy ``label`` from ``data_dir`` into ``cache_dir`` and
    check that it is that copy; returns its source, whether the cache was built now, and the seconds taken."""
    from . import data

    data_dir, cache_dir = Path(data_dir).expanduser(), Path(cache_dir).expanduser()
    if not (data_dir / ARCHIVE).is_file():
        raise DataCopyError(f"{data_dir} holds no {ARCHIVE} (copy {label!r})")
    with using_copy(data_dir, cache_dir):
        built = not (data.cache_dir() / "cifar10.pt").is_file()
        start = time.perf_counter()
        sources = [data.load_cifar10(split).source for split in ("train", "test")]
        seconds = time.perf_counter() - start
    for source in sources:
        check_source(label, source, f"the cache in {cache_dir}" if source.startswith("cache ") else str(data_dir))
    return {"copy": label, "source": re.sub(r"^cache \S+ of ", "", sources[0]), "cache_built": built,
            "seconds": seconds}


def check_records(records, label: str | None = None) -> None:
    """Raise :class:`DataCopyError` for a data-copy record whose data source is not its copy
    (``config.extra.data_copy``, or ``label`` when given)."""
    for rec in records:
        copy = label or rec["config"].get("extra", {}).get("data_copy")
        if copy is None:
            raise DataCopyError(f"record {rec['run_id']} has no extra.data_copy label")
        check_source(copy, rec["data"]["source"], f"record {rec['run_id']}")


def read_records(results_dir) -> list[dict]:
    """Every run record under ``results_dir`` (e.g. results/data_copy/paper)."""
    return [read_record(p) for p in sorted(Path(results_dir).glob("*/*.json"))]


def pixel_difference(copy_a, copy_b) -> dict:
    """How far apart two copies are, each given as (data folder, cache folder): over all pixel values of
    both splits, the share that differ, the mean and largest absolute difference (of 255) and the PSNR (dB)."""
    import math

    import torch

    from . import data

    splits = []
    for data_dir, cache_dir in (copy_a, copy_b):
        with using_copy(data_dir, cache_dir):
            splits.append([data.load_cifar10(s) for s in ("train", "test")])
    changed = total = abs_sum = sq_sum = largest = 0.0
    for a, b in zip(*splits):
        if not torch.equal(a.labels, b.labels) or a.images.shape != b.images.shape:
            raise DataCopyError("the two copies do not hold the same images in the same order")
        diff = a.images.to(torch.int16) - b.images.to(torch.int16)
        changed += float((diff != 0).sum())
        total += diff.numel()
        abs_sum += float(diff.abs().sum(dtype=torch.float64))
        sq_sum += float(diff.to(torch.float64).pow(2).sum())
        largest = max(largest, float(diff.abs().max()))
    mse = sq_sum / total
    return {"pixels": int(total), "changed": changed / total, "mean_abs": abs_sum / total, "max_abs": int(largest),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)}


def measure_copy(label: str, original, copy) -> dict:
    """How far the copy ``label`` (e.g. "q50") lies from the copy as it is, each given as (data folder, cache folder)
    and first checked to be that copy (:func:`prepare`): :func:`pixel_difference` with the copy's label and the
    SHA-256 of both archives."""
    from .jpegquality import file_sha256

    label = data_copy_label(label)
    if label == "original":
        raise ValueError("--save-as names the re-encoded copy (e.g. q50), not 'original'")
    prepare("original", *original)
    prepare(label, *copy)
    return {"copy": label, "against": "original", **pixel_difference(original, copy),
            "original_sha256": file_sha256(Path(original[0]) / ARCHIVE),
            "copy_sha256": file_sha256(Path(copy[0]) / ARCHIVE)}


def save_distance(measured: dict, path=None) -> str:
    """Keep ``measured`` (:func:`measure_copy`) in ``path`` (default results/data_copy/distances.json), one entry per
    copy; returns "added" or "unchanged". A copy already there with other numbers raises :class:`DataCopyError`
    (nothing is overwritten: delete its entry to measure it again)."""
    import json
    import math

    path = Path(path) if path is not None else REPO_ROOT / "results" / "data_copy" / DISTANCES_FILE
    kept = read_distances(path)
    entry = {k: v for k, v in measured.items() if k != "copy"}
    old = kept.get(measured["copy"])
    if old is not None:
        # the same bytes decode to the same pixels, so the numbers agree to rounding; another JPEG decoder may
        # round a few pixels differently, which moves them far less than 1e-6 relative
        same = old.keys() == entry.keys() and all(
            old[k] == entry[k] if isinstance(entry[k], str) else math.isclose(old[k], entry[k], rel_tol=1e-6)
            for k in entry)
        if not same:
            raise DataCopyError(f"{path} already holds other numbers for copy {measured['copy']!r} ({old}); "
                                f"delete that entry to keep the new ones ({entry})")
        return "unchanged"
    kept[measured["copy"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(kept.items())), indent=1) + "\n")
    return "added"


def run(profile: str, copy: str, data_dir, cache_dir, *, results_dir=None, seeds=(0, 1), methods=("ce", "am_mixup"),
        quality: int = 75, workers: int = 1, devices=None, device: str = "auto", progress: bool = True,
        **overrides) -> list[dict]:
    """Train the data-copy runs of one copy (``"original"``, or ``"q75"`` / ``"reencoded"`` at ``quality``)
    reading ``data_dir``/cifar10-jpeg.tar.gz through ``cache_dir``; finished runs are read back.

    The copy's cache is built first (once) and checked; the runs go through :func:`amixup.sweep.run_sweep`
    (``workers`` processes, ``devices`` in turn) with the environment pointing at the copy; every record,
    earlier ones included, must name the copy it is labelled with. Returns the records."""
    from .engine import record_path
    from .sweep import run_sweep

    label = experiments.data_copy_label(copy, quality)
    results_dir = Path(results_dir) if results_dir is not None else results_dir_for(profile)
    configs = experiments.data_copy_configs(profile, label, seeds, methods, device=device, **overrides)
    done = [record_path(c, results_dir) for c in configs if record_path(c, results_dir).exists()]
    check_records([read_record(p) for p in done], label)  # earlier records of this copy read it too
    prepared = prepare(label, data_dir, cache_dir)
    if progress:
        print(f"copy {label}: {prepared['source']} ({'cache built' if prepared['cache_built'] else 'cache read'} "
              f"in {prepared['seconds']:.1f} s); {len(configs) - len(done)} of {len(configs)} runs to train "
              f"into {results_dir}", file=sys.stderr)
    with using_copy(data_dir, cache_dir):
        records = run_sweep(configs, results_dir, workers=workers, devices=devices, progress=progress)
    check_records(records, label)
    return records


def _is_reencoded_label(text: str) -> bool:
    """Whether ``text`` is already the label of a re-encoded copy (q<quality>, quality 1..100: data_copy_label)."""
    try:
        return text != "original" and data_copy_label(text) == text
    except ValueError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amixup.data_copy", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper", choices=("smoke", "quick", "paper"))
    parser.add_argument("--copy", help="original, or q<quality> for the copy encoded once more (e.g. q75)")
    parser.add_argument("--data", help=f"the folder holding this copy's {ARCHIVE}")
    parser.add_argument("--cache", help="a cache folder for this copy alone")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--methods", default="ce,am_mixup")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--devices", default=None, help="comma-separated devices the workers take in turn")
    parser.add_argument("--results-dir", default=None, help="default: results/data_copy/<profile>")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field for every run, e.g. --set precision=bf16")
    parser.add_argument("--check", action="store_true",
                        help="train nothing: check that every record under the results dir names its copy")
    parser.add_argument("--compare", nargs=4, metavar=("DATA_A", "CACHE_A", "DATA_B", "CACHE_B"),
                        help="train nothing: how far apart the pixels of two copies are")
    parser.add_argument("--save-as", metavar="LABEL",
                        help="with --compare: the second copy is the re-encoded copy LABEL (e.g. q50), the first the "
                        f"original; keep the numbers in results/data_copy/{DISTANCES_FILE}")
    args = parser.parse_args(argv)
    if args.save_as and not args.compare:
        parser.error("--save-as goes with --compare")
    if args.save_as and not _is_reencoded_label(args.save_as):
        parser.error(f"--save-as must name a re-encoded copy, q<quality> (e.g. q50), got {args.save_as!r}")
    if args.compare:
        a_data, a_cache, b_data, b_cache = args.compare
        try:
            diff = (measure_copy(args.save_as, (a_data, a_cache), (b_data, b_cache)) if args.save_as
                    else pixel_difference((a_data, a_cache), (b_data, b_cache)))
            saved = save_distance(diff) if args.save_as else None
        except (ValueError, DataCopyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{diff['changed']:.2%} of {diff['pixels']:,} pixel values differ; mean |difference| "
              f"{diff['mean_abs']:.3f}, largest {diff['max_abs']} (of 255); PSNR {diff['psnr_db']:.1f} dB"
              + (f"; copy {diff['copy']} {saved} in results/data_copy/{DISTANCES_FILE}" if saved else ""))
        return 0
    results_dir = Path(args.results_dir) if args.results_dir else results_dir_for(args.profile)
    if args.check:
        records = read_records(results_dir)
        try:
            check_records(records)
        except DataCopyError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{len(records)} records under {results_dir}, each from the copy it is labelled with")
        return 0
    if not (args.copy and args.data and args.cache):
        parser.error("--copy, --data and --cache are required (or --check)")
    try:
        overrides = parse_assignments(args.set)
        for device in (args.devices.split(",") if args.devices else []):  # before any worker starts
            resolve_device(device)
    except (ValueError, RuntimeError) as err:  # RuntimeError: torch's, e.g. a malformed device
        parser.error(str(err))
    try:
        records = run(args.profile, args.copy, args.data, args.cache, results_dir=results_dir,
                      seeds=[int(s) for s in args.seeds.split(",")], methods=args.methods.split(","),
                      workers=args.workers, devices=args.devices.split(",") if args.devices else None, **overrides)
    except (ValueError, DataCopyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for rec in records:
        last = rec["metrics"]["last"]
        print(rec["run_id"], f"acc_all={last['acc_all']:.2f} acc_few={last['acc_few']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
