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


# --- one bar over every run a process trains (amixup.experiments.run_configs) ---

#: configs the experiment builders made (run id -> config, in order), counted into the overall bar by the
#: next run_configs, so the first stage of a notebook already shows the runs of the later ones
_PLANNED: dict = {}
_OVERALL = None


def plan(config):
    """Note ``config`` as a run this process is about to train (amixup.experiments' builders call it)."""
    _PLANNED.setdefault(config.run_id(), config)
    return config


def run_label(config) -> str:
    """What a run is, for a person: the method (a fine-tuning run: its encoder's method and the head's), the
    dataset, the seed and the labels that tell runs of one experiment apart. The run id stays as it is."""
    extra = dict(config.extra or {})
    pretrain = extra.pop("pretrain_method", None)
    what = f"{pretrain} encoder -> {config.method} head" if config.finetune_from and pretrain else config.method
    parts = [what, config.dataset, f"s{config.seed}"]
    if "am_mixup" in (config.method, pretrain):
        parts.append(f"beta={config.beta:g}")
    parts += [f"{k}={v}" for k, v in sorted(extra.items())]
    return " ".join(parts)


class Overall:
    """Runs done / total, epochs and time left over every run still to train, with the stage (the
    experiment) and the run in progress. ``remaining(config)`` gives a run's epochs left, None if finished.
    The bar appears with the first run to train."""

    def __init__(self, remaining):
        self.remaining = remaining
        self.left: dict = {}      # run id -> epochs left when counted, for the runs counted and not finished
        self.runs_total = self.runs_done = 0
        self.current, self.trained = None, 0   # the run in progress, its epochs trained since it started here
        self.bar = None

    def add(self, configs) -> None:
        """Count the runs of ``configs`` not counted yet and not finished."""
        added = 0
        for config in configs:
            rid = config.run_id()
            if rid in self.left:
                continue
            left = self.remaining(config)
            if left is not None:
                self.left[rid] = left
                self.runs_total += 1
                added += left
        if self.bar is None and self.left:
            from tqdm import tqdm

            self.bar = tqdm(total=added, desc=f"runs 0/{self.runs_total}", unit="epoch", file=stream(),
                            mininterval=1.0, bar_format="{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} "
                                                        "epochs [{elapsed}<{remaining}]")
        elif self.bar is not None:
            self.bar.total += added
        self._describe()

    def start(self, config) -> None:
        self.current, self.trained = config, 0
        self._describe()

    def epoch(self, epoch, entry=None) -> None:
        """``on_epoch_end`` of :func:`amixup.engine.train`: one more epoch of the current run."""
        if self.current is not None and self.current.run_id() in self.left:
            self.trained += 1
            self._describe(epoch, refresh=False)
            self.bar.update(1)

    def finish(self, config, skipped: bool = False) -> None:
        """The run ended (``skipped``: it could not start, its epochs leave the total)."""
        left = self.left.pop(config.run_id(), None)
        if left is not None:
            rest = max(left - self.trained, 0) if self.current is config else left
            if skipped:
                self.runs_total -= 1
                self.bar.total -= rest
            else:
                self.runs_done += 1
                self.bar.update(rest)
        if self.current is config:
            self.current, self.trained = None, 0
        self._describe()

    def close(self) -> None:
        if self.bar is not None:
            self._describe()
            self.bar.close()

    def _describe(self, epoch=None, refresh=True) -> None:
        if self.bar is None:
            return
        desc = f"runs {self.runs_done}/{self.runs_total}"
        config = self.current
        if config is not None and config.run_id() in self.left:
            shown = epoch if epoch is not None else config.epochs - self.left[config.run_id()] + self.trained
            desc += f" | {config.experiment}: {run_label(config)} | epoch {shown}/{config.epochs}"
        self.bar.set_description_str(desc, refresh=refresh)


def overall(configs, remaining) -> Overall:
    """The process's overall bar with the runs of ``configs`` and of the planned ones counted (a new bar when
    the last one finished its runs)."""
    global _OVERALL
    if _OVERALL is None or not _OVERALL.left:
        if _OVERALL is not None:
            _OVERALL.close()
        _OVERALL = Overall(remaining)
    _OVERALL.remaining = remaining
    _OVERALL.add(list(configs) + [c for c in _PLANNED.values()])
    _PLANNED.clear()
    return _OVERALL


def release() -> None:
    """Close the overall bar once its runs are all done (a later run_configs starts a new one)."""
    global _OVERALL
    if _OVERALL is not None and not _OVERALL.left:
        _OVERALL.close()
        _OVERALL = None
