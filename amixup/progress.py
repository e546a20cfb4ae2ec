"""Where progress bars go.

By default tqdm writes to stderr: a terminal, or inside a notebook the cell's stderr output.
With ``AMIXUP_PROGRESS=terminal`` a Jupyter kernel (e.g. one papermill started) writes them to
the terminal that started it instead, so ``bash scripts/main.sh`` shows which run, epoch k of N
and the time left while the executed notebook stays free of bars. ``AMIXUP_PROGRESS=off``
hides them.
"""

from __future__ import annotations

import io
import os
import sys

MODES = ("", "terminal", "off")
_STREAM = None


def stream():
    """The file progress bars write to (None: tqdm's default, stderr)."""
    global _STREAM
    mode = os.environ.get("AMIXUP_PROGRESS", "")
    if mode not in MODES:
        raise ValueError(f"AMIXUP_PROGRESS must be one of {list(MODES)}, got {mode!r}")
    if mode != "terminal" or "ipykernel" not in sys.modules:
        return None
    if _STREAM is None:
        try:  # an ipykernel stream's fileno() is the kernel's original stderr: the launching terminal
            _STREAM = open(sys.stderr.fileno(), "w", buffering=1, closefd=False)
        except (OSError, ValueError, io.UnsupportedOperation):  # the kernel does not capture fd 2
            _STREAM = sys.__stderr__
    return _STREAM


def enabled(requested: bool = True) -> bool:
    """Whether to show bars: as requested, unless AMIXUP_PROGRESS=off."""
    return requested and os.environ.get("AMIXUP_PROGRESS", "") != "off"
