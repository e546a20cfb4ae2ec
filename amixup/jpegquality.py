"""JPEG quality of an image copy, read from its quantisation tables, and re-encoding a copy at a quality.

The quality is the libjpeg quality (1-100) whose standard tables, as Pillow writes them, are nearest to
a file's tables; "exact" when they are identical (any libjpeg-based encoder at that quality).

    python -m amixup.jpegquality estimate cifar10-jpeg.tar.gz
    python -m amixup.jpegquality reencode cifar10-jpeg.tar.gz cifar10-jpeg-q75.tar.gz --quality 75
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

from PIL import Image, JpegImagePlugin

JPEG_SUFFIXES = (".jpg", ".jpeg")
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


@lru_cache(maxsize=None)
def _reference_tables(mode: str) -> dict[int, dict[int, tuple[int, ...]]]:
    """quality -> {table id: table} of Pillow's (libjpeg's) standard tables, for 'L' or 'RGB' images."""
    out = {}
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.new(mode, (8, 8)).save(buf, "JPEG", quality=q)
        out[q] = {k: tuple(v) for k, v in Image.open(buf).quantization.items()}
    return out


def table_quality(tables: dict, mode: str = "RGB") -> tuple[int, bool]:
    """(nearest libjpeg quality, whether the tables match it exactly) for a JPEG's quantisation tables."""
    tables = {k: tuple(v) for k, v in tables.items()}
    refs = _reference_tables("L" if len(tables) == 1 else mode)

    def distance(q):
        ref = refs[q]
        return sum(abs(a - b) for k in tables.keys() & ref.keys() for a, b in zip(tables[k], ref[k]))

    best = min(range(1, 101), key=lambda q: (distance(q), q))
    return best, distance(best) == 0


def image_quality(source) -> dict:
    """quality, exact and chroma subsampling of one JPEG (a path or a file object)."""
    with Image.open(source) as im:
        if im.format != "JPEG":
            raise ValueError(f"{source} is not a JPEG (format {im.format})")
        quality, exact = table_quality(im.quantization)
        sampling = SUBSAMPLING.get(JpegImagePlugin.get_sampling(im), "n/a") if im.mode != "L" else "n/a"
    return {"quality": quality, "exact": exact, "subsampling": sampling}


def _jpeg_members(source: Path):
    """(name, bytes) of the JPEG files of an ImageFolder archive or folder, in stored / sorted order."""
    source = Path(source)
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield path.relative_to(source).as_posix(), path.read_bytes()
        return
    with tarfile.open(source, "r|*") as tf:
        for member in tf:
            if member.isfile():
                yield member.name, tf.extractfile(member).read()


def copy_quality(source, sample: int = 200, stride: int = 1) -> dict:
    """JPEG quality of an ImageFolder copy (archive or folder), from ``sample`` JPEG files: every
    ``stride``-th one in stored order (a stride of about files / sample spreads them over all classes)."""
    qualities, exact, sampling, n, seen = Counter(), 0, Counter(), 0, 0
    for name, payload in _jpeg_members(source):
        if not name.lower().endswith(JPEG_SUFFIXES):
            continue
        seen += 1
        if (seen - 1) % stride:
            continue
        info = image_quality(io.BytesIO(payload))
        qualities[info["quality"]] += 1
        exact += info["exact"]
        sampling[info["subsampling"]] += 1
        n += 1
        if n >= sample:
            break
    if not n:
        raise ValueError(f"{source} holds no JPEG files")
    return {"quality": qualities.most_common(1)[0][0], "qualities": dict(sorted(qualities.items())),
            "exact": exact, "sampled": n, "stride": stride, "subsampling": sampling.most_common(1)[0][0]}


def describe(info: dict) -> str:
    """One line for a copy_quality result."""
    spread = "" if len(info["qualities"]) == 1 else f" (spread {info['qualities']})"
    match = ("standard libjpeg tables" if info["exact"] == info["sampled"]
             else f"tables match libjpeg's exactly in {info['exact']} of {info['sampled']} files")
    return (f"quality about {info['quality']}{spread}, chroma {info['subsampling']}, "
            f"{match}; {info['sampled']} files sampled" + (f" (every {info['stride']}th)" if info.get("stride", 1) > 1 else ""))


@lru_cache(maxsize=None)
def _cached_quality(path: str, size: int, mtime_ns: int) -> str:
    return describe(copy_quality(path, sample=200, stride=300))  # 200 of CIFAR's 60,000 files, all classes


def located_copy_note(source_text: str) -> str | None:
    """The quality line for the archive or folder a record's data source names (e.g. "imagefolder
    archive cifar10-jpeg.tar.gz ..."), found on amixup.data.search_paths(); None if it is not here."""
    from .data import search_paths

    match = re.search(r"imagefolder (?:archive|folder) (\S+)", source_text)
    if not match:
        return None
    for base in search_paths():
        path = base / match.group(1)
        if path.exists():
            stat = path.stat()
            return f"{path.name}: " + _cached_quality(str(path), stat.st_size, stat.st_mtime_ns)
    return None


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file (hex), None where it is not a file."""
    if not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reencode(source, dest, quality: int) -> dict:
    """Write ``source`` (an ImageFolder archive or folder) to ``dest`` with every JPEG decoded and
    encoded once more at ``quality`` (same names, same chroma subsampling; other files copied).

    ``dest`` ending in .tar.gz / .tgz is a gzip tar archive (reproducible: sorted order is kept from a
    folder, no timestamps), else a folder. At its top it holds ``amixup.data.COPY_MARKER`` (JSON: the
    qualities of every re-encoding by this tool, in order, and the source's name and SHA-256), so the
    data source of a run on it says "JPEG-encoded once more at quality Q" although the file name is the
    source's. Returns counts and the sizes before and after."""
    from .data import COPY_MARKER

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists")
    as_archive = dest.name.endswith((".tar.gz", ".tgz"))
    stats = {"quality": int(quality), "jpegs": 0, "other_files": 0, "bytes_in": 0, "bytes_out": 0}
    marker = {"reencoded_at_quality": [], "tool": "python -m amixup.jpegquality reencode",
              "from": Path(source).name, "from_sha256": file_sha256(source)}
    tmp = dest.with_name(dest.name + ".partial")
    raw = None

    def write(name, out):
        if as_archive:
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(out), 0o644, 0
            tar.addfile(member, io.BytesIO(out))
        else:
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(out)

    try:
        if as_archive:
            raw = open(tmp, "wb")
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            tar = tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT)
        for name, payload in _jpeg_members(source):
            if Path(name).name == COPY_MARKER and name.count("/") <= 1:  # the source's own marker: carried on
                marker["reencoded_at_quality"] = list(json.loads(payload)["reencoded_at_quality"])
                continue
            out = payload
            if name.lower().endswith(JPEG_SUFFIXES):
                with Image.open(io.BytesIO(payload)) as im:
                    sampling = JpegImagePlugin.get_sampling(im) if im.mode != "L" else -1
                    buf = io.BytesIO()
                    options = {"quality": int(quality)}
                    if sampling >= 0:
                        options["subsampling"] = sampling
                    im.convert(im.mode).save(buf, "JPEG", **options)
                out = buf.getvalue()
                stats["jpegs"] += 1
            else:
                stats["other_files"] += 1
            stats["bytes_in"] += len(payload)
            stats["bytes_out"] += len(out)
            write(name, out)
        marker["reencoded_at_quality"].append(int(quality))
        write(COPY_MARKER, (json.dumps(marker, indent=1) + "\n").encode())
        stats["marker"] = marker
        if as_archive:
            tar.close()
            gz.close()
            raw.close()
        tmp.rename(dest)
    except BaseException:
        if as_archive:
            if raw is not None:
                raw.close()
            tmp.unlink(missing_ok=True)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m amixup.jpegquality", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="estimate the JPEG quality of an ImageFolder archive or folder")
    est.add_argument("source")
    est.add_argument("--sample", type=int, default=200)
    est.add_argument("--stride", type=int, default=1, help="take every stride-th JPEG (default 1)")
    re_ = sub.add_parser("reencode", help="re-encode every JPEG of a copy once more at a quality")
    re_.add_argument("source")
    re_.add_argument("dest", help="a .tar.gz archive or a folder (must not exist)")
    re_.add_argument("--quality", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "estimate":
            info = copy_quality(args.source, args.sample, args.stride)
            print("JPEG " + describe(info))
            print(json.dumps(info))
        else:
            stats = reencode(args.source, args.dest, args.quality)
            stats["source_quality"] = copy_quality(args.source)["quality"]
            stats["dest_quality"] = copy_quality(args.dest)["quality"]
            print(json.dumps(stats))
    except (OSError, ValueError) as err:  # a missing or unreadable source, an existing destination: the message
        parser.exit(1, f"{parser.prog}: error: {err}\n")


if __name__ == "__main__":
    main()
