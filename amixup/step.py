"""The training step, written once.

:class:`TrainStep` is one step on device tensors: the forward pass with Eq. 4 mixing at the drawn layer, the
loss of Eq. 8 or 9 (:meth:`amixup.mixing.MixPolicy.loss`), backward, the optimizer's update and the epoch's
counters. The engine calls it batch by batch (:meth:`TrainStep.run_epoch`); :class:`amixup.static_step.StaticStep`
captures the same call as a CUDA graph; distributed training passes its ``objective`` (the weighting DDP's
gradient average needs) and sums the counters over processes afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .mixing import BatchDraw, MixPolicy, mix
from .models import SplitModel


@contextlib.contextmanager
def frozen_batchnorm_stats(model: torch.nn.Module):
    """Forward in train mode without touching BatchNorm running statistics."""
    saved = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class EpochSums:
    """An epoch's training counters: sums on the device (read once, after the epoch), sample counts on the host."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct_mixed = torch.zeros((), dtype=torch.long, device=device)
        self.correct_clean = torch.zeros((), dtype=torch.long, device=device)
        self.n_seen = self.n_clean = 0

    def zero_(self) -> EpochSums:
        for t in (self.loss_sum, self.correct_mixed, self.correct_clean):
            t.zero_()
        self.n_seen = self.n_clean = 0
        return self

    def summed(self, all_sum: Callable[[torch.Tensor], torch.Tensor]) -> EpochSums:
        """New sums: these counters summed by ``all_sum`` (over processes: ``distributed.all_sum``), in float64,
        counts as integers; these are left as they are."""
        device = self.loss_sum.device
        counts = torch.tensor([float(self.n_seen), float(self.n_clean)], device=device, dtype=torch.float64)
        totals = all_sum(torch.cat([torch.stack([self.loss_sum.double(), self.correct_mixed.double(),
                                                 self.correct_clean.double()]), counts]))
        out = EpochSums(device)
        out.loss_sum, out.correct_mixed, out.correct_clean = totals[0], totals[1].long(), totals[2].long()
        out.n_seen, out.n_clean = int(totals[3]), int(totals[4])
        return out

    def accuracies(self) -> tuple[float | None, float]:
        """``(clean, mixed)`` training accuracy of the epoch (clean None where no batch had clean predictions)."""
        clean = float(self.correct_clean) / self.n_clean if self.n_clean else None
        return clean, float(self.correct_mixed) / self.n_seen


class TrainStep:
    """One training step of ``model`` under ``policy`` (see the module docstring).

    ``forward(x, layer, mix_fn)`` returns ``(logits, clean_logits_or_None)`` (default ``model.forward_mixed``;
    DDP's wrapper, or the head alone on stored features). ``update()`` applies the gradients (``optimizer.step``,
    or the static step's graph-safe SGD). ``objective(loss, logits, n, index)``, if given, is what is
    differentiated instead of the loss (DDP's share weighting).
    """

    def __init__(self, model: SplitModel, policy: MixPolicy, update: Callable[[], None], *,
                 autocast=contextlib.nullcontext(), forward=None, objective=None):
        self.model, self.policy, self.update = model, policy, update
        self.autocast = autocast
        self.forward = forward or model.forward_mixed
        self.objective = objective

    def zero_grad(self) -> None:
        """Drop the gradients (set to None, as ``optimizer.zero_grad`` does), so backward writes fresh ones."""
        for p in self.model.parameters():
            p.grad = None

    def sees_clean(self, layer: int) -> bool:
        """Whether a step mixing at ``layer`` scores clean (un-mixed) predictions: no mixing, mixing at the last
        layer (the clean logits come with the forward pass), or an extra clean forward the schedule needs."""
        return not self.policy.mixes or layer == self.model.last_layer or self.policy.needs_clean

    def forward_loss(self, x, y, draw: BatchDraw):
        """The loss, the logits it was computed from, the clean logits (or None) and the labels predictions are
        scored against."""
        with self.autocast:
            if draw.perm is not None:
                perm = draw.perm
                logits, clean = self.forward(x, draw.layer, lambda h: mix(h, h[perm], draw.lam, draw.lam_rest))
                if clean is None and self.policy.needs_clean:  # the un-mixed batch's predictions
                    with torch.no_grad(), frozen_batchnorm_stats(self.model):
                        clean = self.model(x)
            else:
                logits, _ = self.forward(x, None, None)
                clean = logits.detach()
            logits = logits.float()
            loss, dominant = self.policy.loss(logits, y, draw)
        return loss, logits, clean, dominant

    def __call__(self, x, y, draw: BatchDraw, sums: EpochSums, index: int = 0) -> None:
        """Train on one batch and add it to ``sums``' device counters (the host counts are the caller's: a
        CUDA graph replays this without running Python)."""
        loss, logits, clean, dominant = self.forward_loss(x, y, draw)
        objective = loss if self.objective is None else self.objective(loss, logits, y.shape[0], index)
        objective.backward()
        self.update()
        with torch.no_grad():
            if y.shape[0]:  # an empty distributed share has a NaN mean loss
                sums.loss_sum += loss.detach() * y.shape[0]
            sums.correct_mixed += (logits.detach().argmax(1) == dominant).sum()
            if clean is not None:
                sums.correct_clean += (clean.argmax(1) == y).sum()

    def run_epoch(self, batches, sums: EpochSums, device=None) -> EpochSums:
        """One pass over ``batches``, a step per batch, drawing each batch's mixing from the policy."""
        for index, (x, y) in enumerate(batches):
            draw = self.policy.draw_batch(len(y), device)
            self.zero_grad()
            self(x, y, draw, sums, index)
            sums.n_seen += len(y)
            sums.n_clean += len(y) if self.sees_clean(draw.layer) else 0
        return sums
