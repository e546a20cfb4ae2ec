"""nbval settings for the notebooks: compare printed text; numbers of smoke training runs within a tolerance.

Progress bars and warnings (stderr), rich HTML and figures are not compared; printed text and the plain-text
form of displayed tables are. A cell whose source holds a line

    # nbval-tolerance: abs=A rel=R  (the reason)

compares its decimal numbers as ``|new - reference| <= A + R * |reference|`` and everything else in its text
exactly, whitespace aside: words, punctuation, the count and order of the numbers, and whole numbers (counts of
runs, seeds, epochs, rows). Such cells print what smoke training
runs measured: float results depend on which CPU kernels PyTorch picks (AVX-512, AMX, AVX2, ...), so a
2-epoch run's accuracy moves by a few test images between CPUs (see docs/testing.md). Every other cell is
compared exactly.
"""

from __future__ import annotations

import math
import re

from nbval.plugin import IPyNbCell

#: A number as printed by Python and pandas: sign, digits, decimals, exponent; or nan / inf.
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:NaN|nan|inf)\b")
MARKER = re.compile(r"#\s*nbval-tolerance:\s*abs=(inf|[0-9.eE+-]+)\s+rel=([0-9.eE+-]+)")


def tolerance_of(source: str) -> tuple[float, float] | None:
    """The ``(abs, rel)`` tolerance a cell's source declares, None for an exactly compared cell."""
    found = MARKER.search(source)
    return (float(found.group(1)), float(found.group(2))) if found else None


def _skeleton(text: str) -> str:
    return " ".join(NUMBER.sub("#", text).split())


def _close(new: str, ref: str, abs_tol: float, rel_tol: float) -> bool:
    if not any(c in ref + new for c in ".eEna"):  # whole numbers: counts, exactly
        return new == ref
    a, b = float(new), float(ref)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= abs_tol + rel_tol * abs(b)


def within_tolerance(new: str, ref: str, abs_tol: float, rel_tol: float) -> bool:
    """Whether text ``new`` is text ``ref`` but for whitespace and numbers within the tolerance."""
    if _skeleton(new) != _skeleton(ref):
        return False
    pairs = list(zip(NUMBER.findall(new), NUMBER.findall(ref)))
    return all(_close(a, b, abs_tol, rel_tol) for a, b in pairs)


def _texts(output) -> list[tuple[str, object, str]]:
    """The compared texts of one output: ``(kind, container, key)`` where ``container[key]`` is the text."""
    if output.get("output_type") == "stream":
        return [(f"stream:{output.get('name')}", output, "text")]
    data = output.get("data", {})
    return [(f"data:{mime}", data, mime) for mime in ("text/plain",) if mime in data]


def adopt_reference_numbers(test_outputs, ref_outputs, abs_tol: float, rel_tol: float, sanitize=lambda s: s) -> None:
    """Where a new output's text is its reference's within the tolerance (both ``sanitize``-d first), put the
    reference text in its place (so nbval's exact comparison passes); elsewhere leave it, so nbval shows the
    difference."""
    refs: dict[str, list[str]] = {}
    for out in ref_outputs:
        for kind, container, key in _texts(out):
            refs.setdefault(kind, []).append(container[key])
    seen: dict[str, int] = {}
    for out in test_outputs:
        for kind, container, key in _texts(out):
            i = seen.get(kind, 0)
            seen[kind] = i + 1
            candidates = refs.get(kind, [])
            if i < len(candidates) and within_tolerance(sanitize(container[key]), sanitize(candidates[i]), abs_tol,
                                                                rel_tol):
                container[key] = candidates[i]


_exact_compare = IPyNbCell.compare_outputs


def _compare_outputs(self, test, ref, skip_compare=None):
    tolerance = tolerance_of(self.cell.source)
    if tolerance is not None:
        adopt_reference_numbers(test, ref, *tolerance, sanitize=self.sanitize)
    return _exact_compare(self, test, ref, skip_compare)


IPyNbCell.compare_outputs = _compare_outputs


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "image/png", "application/javascript")


def pytest_collection_modifyitems(config, items):
    """Every notebook cell is a kernel-sensitive check (``-m kernels``: CI runs them again with other kernels)."""
    import pytest

    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.kernels)
