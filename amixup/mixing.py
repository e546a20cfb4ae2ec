"""Mixing methods: input mixup, manifold mixup and AM-mixup, plus the ablation switches.

The three primitives drop into any training loop:

* :func:`mixup` (paper Eq. 4) with the lambda-weighted loss :func:`mixup_loss` (Eq. 8);
* :func:`am_mixup` (Eq. 5) whose one-sided labels are trained with plain cross entropy (Eq. 9);
* :class:`MixPolicy`, which turns a method name plus the Table 7 switches into
  "which lambda, at which layer, with which loss" for every batch.

Manifold mixup draws the layer per batch from the model's eligible layers (input,
after stage 1, after stage 2, as Verma et al. draw it) and, like every method here,
is trained with softmax cross entropy (the manifold-mixup reference code used BCE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: float, perm=None, generator=None):
    """Eq. 4: ``mixed = lam * x + (1 - lam) * x[perm]``.

    Returns ``(mixed, targets_a, targets_b)`` with ``targets_a = targets`` and
    ``targets_b = targets[perm]``; train with :func:`mixup_loss`.
    """
    lam = _check_lam(lam)
    perm = _pairing(x, perm, generator)
    if x.dtype in (torch.float32, torch.float64):
        mixed = x.mul(lam).add_(x[perm], alpha=1.0 - lam)
    else:  # bf16 autocast: in float32, rounded once (a CPU add_ would round alpha = 1 - lam itself to bf16)
        mixed = x.float().mul_(lam).add_(x[perm].float(), alpha=1.0 - lam).to(x.dtype)
    return mixed, targets, targets[perm]


def mix_weighted(h: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor, lam_rest: torch.Tensor) -> torch.Tensor:
    """Eq. 4 with lambda and 1 - lambda as float32 tensors (the static and packed steps keep them on the device):
    ``lam * h + lam_rest * partner``. A lower-precision ``h`` (bf16 autocast) is mixed in float32 and rounded
    once, as :func:`mixup` mixes it, so lambda is never rounded to bf16 (an operation of a bf16 tensor with a
    float32 device tensor would round it on a GPU)."""
    if h.dtype == lam.dtype:
        return torch.addcmul(h * lam, partner, lam_rest)
    return torch.addcmul(h.float() * lam, partner.float(), lam_rest).to(h.dtype)


def mixup_loss(logits: torch.Tensor, targets_a: torch.Tensor, targets_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 8: ``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``."""
    return lam * F.cross_entropy(logits, targets_a) + (1.0 - lam) * F.cross_entropy(logits, targets_b)


def one_sided_targets(targets: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """Eq. 5 (labels): ``c_i`` if ``lam >= 0.5`` else ``c_perm[i]``."""
    return targets if lam >= 0.5 else targets[perm]


def am_mixup(features: torch.Tensor, targets: torch.Tensor, lam: float, perm=None, generator=None):
    """Eq. 5: ``z = lam * z_i + (1 - lam) * z_j`` with the one-sided label of the larger side.

    Returns ``(mixed, one_sided_targets, perm)``; the loss is plain cross entropy (Eq. 9).
    """
    lam = _check_lam(lam)
    perm = _pairing(features, perm, generator)
    mixed = features.mul(lam).add_(features[perm], alpha=1.0 - lam)
    return mixed, one_sided_targets(targets, lam, perm), perm


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
    """Per-batch decisions of a :class:`MixSpec`: the lambda and the layer index.

    Layer indices follow :class:`amixup.models.SplitModel`: 0 is the input, ``k`` the
    output of stage ``k``, ``len(stages)`` the encoder output (last layer).
    Random draws come from a seeded NumPy generator on the host, so no step waits on the device.
    """

    def __init__(self, spec: MixSpec, *, alpha: float = 1.0, fixed_lambda: float = 0.51,
                 eligible_layers=(0, 1, 2), last_layer_index: int = 3, seed: int = 0):
        if spec.rate == "beta" and not alpha > 0:
            raise ValueError(f"alpha must be > 0 for Beta(alpha, alpha) mixing, got {alpha!r}")
        if spec.rate == "fixed":
            _check_lam(fixed_lambda)
        self.spec = spec
        self.alpha = float(alpha)
        self.fixed_lambda = float(fixed_lambda)
        self.eligible_layers = tuple(int(i) for i in eligible_layers)
        self.last_layer_index = int(last_layer_index)
        self.rng = np.random.default_rng(seed)

    @property
    def mixes(self) -> bool:
        return self.spec.rate != "none"

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

    def loss(self, logits, targets, lam, perm) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of a mixed batch and the dominant label used to score it (for accuracy)."""
        if not self.mixes:
            return F.cross_entropy(logits, targets), targets
        dominant = one_sided_targets(targets, lam, perm)
        if self.spec.one_sided:
            return F.cross_entropy(logits, dominant), dominant  # Eq. 9
        return mixup_loss(logits, targets, targets[perm], lam), dominant  # Eq. 8

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
