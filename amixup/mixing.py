"""Mixing methods: input mixup, manifold mixup and AM-mixup, plus the ablation switches.

Each equation is one function over tensors, and every training path calls these:

* :func:`mix` (Eq. 4), through :func:`mixup` (a batch and its pairing) and :func:`am_mixup` (Eq. 5);
* :func:`mixup_loss` (Eq. 8) and :func:`one_sided_targets` (Eq. 5's labels, trained with plain cross
  entropy: Eq. 9), chosen per method by :meth:`MixPolicy.loss`;
* :class:`MixPolicy`, which turns a method name plus the Table 7 switches into "which lambda, at which
  layer, with which loss" for every batch, and owns the AM schedule (Eq. 6, :mod:`amixup.schedule`).

Manifold mixup draws the layer per batch from the model's eligible layers (input,
after stage 1, after stage 2, as Verma et al. draw it) and, like every method here,
is trained with softmax cross entropy (the manifold-mixup reference code used BCE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .schedule import AMScheduler

#: How lambda is chosen: no mixing, Beta(alpha, alpha) per batch, Eq. 6 per epoch, or a constant.
RATES = ("none", "beta", "am", "fixed")
#: Where mixing happens: the input, a layer drawn from the model's eligible layers, or the
#: encoder output (the last layer, i.e. the classifier's input).
LAYERS = ("input", "drawn", "last")


def random_permutation(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A random pairing of the batch (sample i is mixed with sample perm[i])."""
    perm = torch.randperm(n, generator=generator)
    return perm if device is None else perm.to(device, non_blocking=True)


def _pairing(x: torch.Tensor, perm, generator) -> torch.Tensor:
    if perm is None:
        return random_permutation(x.shape[0], generator, x.device)
    perm = torch.as_tensor(perm, device=x.device)
    if perm.shape != (x.shape[0],):
        raise ValueError(f"perm must have shape ({x.shape[0]},), got {tuple(perm.shape)}")
    return perm


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam!r}")
    return lam


def mix(h: torch.Tensor, partner: torch.Tensor, lam, lam_rest=None) -> torch.Tensor:
    """Eq. 4: ``lam * h + (1 - lam) * partner``, the one place where samples are mixed.

    ``lam`` is a float (``1 - lam`` is computed here: one fused multiply-add), or, where a step must not read
    it back to the host (a CUDA graph), ``lam`` and ``lam_rest = 1 - lam`` are float32 tensors (a multiply and
    an addcmul: the same value up to one rounding). A lower-precision ``h`` (bf16 autocast) is mixed in float32
    and rounded once, so lambda is never rounded to bf16.
    """
    if isinstance(lam, torch.Tensor):
        if h.dtype == lam.dtype:
            return torch.addcmul(h * lam, partner, lam_rest)
        return torch.addcmul(h.float() * lam, partner.float(), lam_rest).to(h.dtype)
    if h.dtype in (torch.float32, torch.float64):
        return h.mul(lam).add_(partner, alpha=1.0 - lam)
    # bf16: in float32, rounded once (a CPU add_ would round alpha = 1 - lam itself to bf16)
    return h.float().mul_(lam).add_(partner.float(), alpha=1.0 - lam).to(h.dtype)


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: float, perm=None, generator=None):
    """Input (or manifold) mixup of a batch with a pairing (Eq. 4).

    Returns ``(mixed, targets_a, targets_b)`` with ``targets_a = targets`` and
    ``targets_b = targets[perm]``; train with :func:`mixup_loss`.
    """
    lam = _check_lam(lam)
    perm = _pairing(x, perm, generator)
    return mix(x, x[perm], lam), targets, targets[perm]


def mixup_loss(logits: torch.Tensor, targets_a: torch.Tensor, targets_b: torch.Tensor, lam, lam_rest=None):
    """Eq. 8: ``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)`` (``lam``, ``lam_rest`` as in :func:`mix`)."""
    rest = 1.0 - lam if lam_rest is None else lam_rest
    return lam * F.cross_entropy(logits, targets_a) + rest * F.cross_entropy(logits, targets_b)


def one_sided_targets(targets: torch.Tensor, perm: torch.Tensor, own) -> torch.Tensor:
    """Eq. 5 (labels): ``c_i`` where ``own`` (``lam >= 0.5``), else ``c_perm[i]``.

    ``own`` is a bool, or a bool tensor decided on the host in float64 (a lambda in (0.5 - 3e-8, 0.5) is 0.5 in
    float32, so comparing a float32 tensor would label those batches otherwise).
    """
    if isinstance(own, torch.Tensor):
        return torch.where(own, targets, targets[perm])
    return targets if own else targets[perm]


def am_mixup(features: torch.Tensor, targets: torch.Tensor, lam: float, perm=None, generator=None):
    """Eq. 5: ``z = lam * z_i + (1 - lam) * z_j`` with the one-sided label of the larger side.

    Returns ``(mixed, one_sided_targets, perm)``; the loss is plain cross entropy (Eq. 9).
    """
    lam = _check_lam(lam)
    perm = _pairing(features, perm, generator)
    return mix(features, features[perm], lam), one_sided_targets(targets, perm, lam >= 0.5), perm


@dataclass(frozen=True)
class BatchDraw:
    """One batch's random decisions: lambda, the mixing layer and the pairing (``perm`` None: no mixing).

    In a CUDA graph ``lam``, ``lam_rest`` (1 - lambda) and ``own`` (lambda >= 0.5) are device tensors.
    """

    lam: float | torch.Tensor
    layer: int
    perm: torch.Tensor | None
    lam_rest: torch.Tensor | None = None
    own: bool | torch.Tensor = True


@dataclass(frozen=True)
class MixSpec:
    """What a method does: lambda source, label mode and mixing layer."""

    rate: str
    one_sided: bool
    layer: str


#: The four methods of the paper. The Table 7 ablation overrides single fields.
METHODS: dict[str, MixSpec] = {
    "ce": MixSpec(rate="none", one_sided=False, layer="input"),
    "mixup": MixSpec(rate="beta", one_sided=False, layer="input"),
    "manifold_mixup": MixSpec(rate="beta", one_sided=False, layer="drawn"),
    "am_mixup": MixSpec(rate="am", one_sided=True, layer="last"),
}


def resolve_spec(method: str, rate: str | None = None, one_sided: bool | None = None,
                 last_layer: bool | None = None) -> MixSpec:
    """The method's :class:`MixSpec` with any ablation switch applied.

    ``last_layer=True`` mixes the encoder output; ``last_layer=False`` mixes at a layer
    drawn per batch from the model's eligible layers (manifold-mixup style).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    spec = METHODS[method]
    if rate is not None:
        if rate not in RATES:
            raise ValueError(f"rate must be one of {list(RATES)}, got {rate!r}")
        spec = MixSpec(rate, spec.one_sided, spec.layer)
    if one_sided is not None:
        spec = MixSpec(spec.rate, bool(one_sided), spec.layer)
    if last_layer is not None:
        spec = MixSpec(spec.rate, spec.one_sided, "last" if last_layer else "drawn")
    if spec.rate == "none" and (spec.one_sided or spec.layer != "input"):
        raise ValueError(f"method {method!r} does not mix, so one_sided/last_layer do not apply")
    return spec


class MixPolicy:
    """What a method does, batch by batch and epoch by epoch (timm's ``Mixup`` is the model).

    It owns the :class:`MixSpec`, alpha, the AM schedule (Eq. 6) and the random draws, and answers the training
    loop's questions: what to draw for a batch (:meth:`draw_batch`), the loss of a batch and the labels its
    predictions are scored against (:meth:`loss`: Eq. 8, or Eq. 9 with Eq. 5's labels), which lambda an epoch
    uses and logs, and when the schedule steps on which accuracy (:meth:`end_epoch`).

    Layer indices follow :class:`amixup.models.SplitModel`: 0 is the input, ``k`` the output of stage ``k``,
    ``len(stages)`` the encoder output (last layer). Lambdas and layers come from a seeded NumPy generator,
    pairings from a seeded torch generator (``pairing``), both on the host, so no step waits on the device.
    """

    def __init__(self, spec: MixSpec, *, alpha: float = 1.0, fixed_lambda: float = 0.51,
                 eligible_layers=(0, 1, 2), last_layer_index: int = 3, seed: int = 0, pairing_seed: int = 0,
                 beta: float = 0.34, train_acc_source: str = "clean"):
        if spec.rate == "beta" and not alpha > 0:
            raise ValueError(f"alpha must be > 0 for Beta(alpha, alpha) mixing, got {alpha!r}")
        if spec.rate == "fixed":
            _check_lam(fixed_lambda)
        if train_acc_source not in ("clean", "mixed"):
            raise ValueError(f"train_acc_source must be one of ['clean', 'mixed'], got {train_acc_source!r}")
        self.spec = spec
        self.alpha = float(alpha)
        self.fixed_lambda = float(fixed_lambda)
        self.eligible_layers = tuple(int(i) for i in eligible_layers)
        self.last_layer_index = int(last_layer_index)
        self.rng = np.random.default_rng(seed)
        self.pairing = torch.Generator().manual_seed(pairing_seed)
        self.scheduler = AMScheduler(beta)
        self.train_acc_source = train_acc_source

    @property
    def mixes(self) -> bool:
        return self.spec.rate != "none"

    @property
    def scheduled(self) -> bool:
        """Whether lambda follows Eq. 6 (AM-mixup's rate), stepped once per epoch."""
        return self.spec.rate == "am"

    @property
    def needs_clean(self) -> bool:
        """Whether the schedule steps on clean (un-mixed) training predictions, so every batch needs them."""
        return self.scheduled and self.train_acc_source == "clean"

    @property
    def epoch_lambda(self) -> float:
        """The lambda of Eq. 6 for the coming epoch (1 before the first)."""
        return self.scheduler.value

    def logged_lambda(self) -> float | None:
        """What an epoch's history records as its lambda: Eq. 6's value, or None for other rates."""
        return self.scheduler.value if self.scheduled else None

    def end_epoch(self, acc_clean: float | None, acc_mixed: float) -> None:
        """Step the schedule (Eq. 6) on the epoch's training accuracy (``train_acc_source``)."""
        if self.scheduled:
            self.scheduler.step(acc_clean if self.train_acc_source == "clean" else acc_mixed)

    def draw(self, lam_am: float = 1.0) -> tuple[float, int]:
        """Lambda and layer for the next batch."""
        rate = self.spec.rate
        if rate == "none":
            return 1.0, 0
        if rate == "beta":
            lam = float(self.rng.beta(self.alpha, self.alpha))
        elif rate == "am":
            lam = float(lam_am)
        else:
            lam = self.fixed_lambda
        if self.spec.layer == "input":
            layer = 0
        elif self.spec.layer == "last":
            layer = self.last_layer_index
        else:
            layer = int(self.rng.choice(self.eligible_layers))
        return lam, layer

    def draw_batch(self, n: int, device=None) -> BatchDraw:
        """The next batch's draw (lambda, layer, then the pairing of its ``n`` samples, in that order)."""
        lam, layer = self.draw(self.scheduler.value)
        perm = random_permutation(n, self.pairing, device) if self.mixes else None
        return BatchDraw(lam, layer, perm, own=lam >= 0.5)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, draw: BatchDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of a batch mixed as ``draw`` says and the labels its predictions are scored against (the
        dominant label of each pair). Every training path computes its loss here."""
        if draw.perm is None:
            return F.cross_entropy(logits, targets), targets
        dominant = one_sided_targets(targets, draw.perm, draw.own)
        if self.spec.one_sided:
            return F.cross_entropy(logits, dominant), dominant  # Eq. 9
        return mixup_loss(logits, targets, targets[draw.perm], draw.lam, draw.lam_rest), dominant  # Eq. 8

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
