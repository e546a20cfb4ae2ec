"""K runs of one architecture packed into one network: each kernel computes all K at once.

A ResNet32 step on 128 images is a few hundred kernels too small to fill a GPU. Packing puts K
independent runs side by side along the channel axis: run ``k`` owns channels ``[k C, (k+1) C)`` of
every layer, convolutions become grouped convolutions (``groups = K``), BatchNorm normalises each
channel over its own run's batch (it always works per channel), linear layers are K matrices
applied to their own slices. Nothing mixes runs: every run sees its own images in its own channel
group, so its loss and gradients are the ones it gets alone, up to the order of float sums.

Packed parameters are the runs' tensors concatenated along dimension 0, under the same names, so
packing and unpacking a state dict is ``torch.cat`` and ``chunk`` (:func:`pack_state`,
:func:`unpack_state`), and an elementwise optimizer (SGD with momentum and weight decay) on the
packed tensors is K independent optimizers with the same learning rate.

Mixing (Eqs. 4-5) pairs samples within a run: :func:`mix_packed` gathers each run's partners with
its own pairing and weights them with its own lambda.
"""

from __future__ import annotations

import copy
import functools
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import batch_chunks, join_draws
from .config import RunConfig
from .mixing import MixPolicy, mix_weighted
from .models import SplitModel, _BasicBlock
from .static_step import StaticStep

#: Modules that act on each channel alone (or only hold others): unchanged by packing.
_CHANNEL_LOCAL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Sequential,
                  nn.ModuleList, nn.Identity, SplitModel)


def _torchvision_blocks() -> tuple[type, ...]:
    """torchvision's ResNet blocks: convolutions, BatchNorm, ReLU and a residual add, all channel-local."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return BasicBlock, Bottleneck


class PackedLinear(nn.Module):
    """K linear layers ``in_features -> out_features`` on the K slices of a ``[B, K * in_features]`` input.

    ``weight`` is ``[K * out, in]`` and ``bias`` ``[K * out]``: the K layers' tensors concatenated.
    """

    def __init__(self, packs: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.packs, self.in_features, self.out_features = packs, in_features, out_features
        self.weight = nn.Parameter(torch.empty(packs * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(packs * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.packs
        w = self.weight.view(k, self.out_features, self.in_features)
        xk = x.view(len(x), k, self.in_features).transpose(0, 1)
        if self.bias is None:
            out = torch.bmm(xk, w.transpose(1, 2))  # [K, B, out]
        else:  # the bias inside the product, as nn.Linear's addmm (under autocast all three in bf16)
            out = torch.baddbmm(self.bias.view(k, 1, self.out_features), xk, w.transpose(1, 2))
        return out.transpose(0, 1).reshape(len(x), k * self.out_features)


def check_packable_model(model: nn.Module) -> None:
    """``ValueError`` naming the first module packing cannot handle (one that mixes channels, such as a
    DenseNet's concatenation or a ViT's attention)."""
    allowed = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear, _BasicBlock, *_CHANNEL_LOCAL,
               *_torchvision_blocks())
    for name, module in model.named_modules():
        if type(module) not in allowed:
            raise ValueError(f"packing needs a model built of convolutions, BatchNorm, linear layers and channel-wise "
                             f"operations; module {name or 'model'!r} is a {type(module).__name__}. Use pack=1")


def _packed_module(module: nn.Module, k: int) -> nn.Module | None:
    """The K-run counterpart of one leaf module, or None where the module stays as it is."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(k * module.in_channels, k * module.out_channels, module.kernel_size, stride=module.stride,
                         padding=module.padding, dilation=module.dilation, groups=k * module.groups,
                         bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(module)(k * module.num_features, eps=module.eps, momentum=module.momentum,
                            affine=module.affine, track_running_stats=module.track_running_stats)
    if isinstance(module, nn.Linear):
        return PackedLinear(k, module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, _BasicBlock):
        module.packs = k  # its zero-padding shortcut pads each run's channels
    return None


def _replace_leaves(module: nn.Module, k: int) -> None:
    for name, child in module.named_children():
        packed = _packed_module(child, k)
        if packed is None:
            _replace_leaves(child, k)
        else:
            setattr(module, name, packed)


def pack_state(states: list[dict]) -> dict:
    """The packed state dict of K runs' state dicts: tensors concatenated along dimension 0; a 0-d
    tensor (BatchNorm's ``num_batches_tracked``) is shared and taken from the first run."""
    return {key: states[0][key] if states[0][key].dim() == 0 else torch.cat([s[key] for s in states])
            for key in states[0]}


def unpack_state(state: dict, packs: int, device=None) -> list[dict]:
    """The K runs' state dicts of a packed state dict (the inverse of :func:`pack_state`); each tensor owns its
    memory. With ``device``, each packed tensor is first copied there whole: one transfer, not one per run."""
    runs = [{} for _ in range(packs)]
    for key, value in state.items():
        value = value if device is None else value.to(device)
        parts = [value] * packs if value.dim() == 0 else value.chunk(packs)
        for run, part in zip(runs, parts):
            run[key] = part.clone()
    return runs


#: Config fields packed runs may differ in: they change per-run draws and scalars, never a shape.
PACK_VARYING = ("seed", "beta", "alpha", "fixed_lambda")


def check_packable(configs: list[RunConfig]) -> list[RunConfig]:
    """``configs`` if they can train as one pack (``ValueError`` naming what stands in the way): all equal
    but for :data:`PACK_VARYING`, distinct, SGD, a trainable encoder, a model :func:`pack_models` handles."""
    if not configs:
        raise ValueError("packing needs at least one config")
    first = configs[0].to_dict()
    for config in configs[1:]:
        differ = sorted(k for k, v in config.to_dict().items() if k not in PACK_VARYING and v != first[k])
        if differ:
            raise ValueError(f"packed runs may differ only in {list(PACK_VARYING)}; these differ: {differ} "
                             f"({', '.join(f'{k}={first[k]!r} vs {config.to_dict()[k]!r}' for k in differ[:3])})")
    ids = [c.run_id() for c in configs]
    if len(set(ids)) < len(ids):
        raise ValueError(f"packed runs must be distinct; {len(ids) - len(set(ids))} repeated")
    if configs[0].optimizer != "sgd":
        raise ValueError(f"packing needs optimizer='sgd', got {configs[0].optimizer!r}; use pack=1")
    if configs[0].freeze_encoder or configs[0].frozen_stages:
        raise ValueError("packing needs a trainable encoder (freeze_encoder=False, frozen_stages=0); use pack=1")
    problem = _model_problem(configs[0].model)
    if problem:
        raise ValueError(problem)
    return configs


@functools.lru_cache(maxsize=None)
def _model_problem(name: str) -> str | None:
    """Why the registered model ``name`` cannot be packed (None: it can); built once per name."""
    from .models import build_model

    try:
        check_packable_model(build_model(name, 2, 3))
    except ValueError as err:
        return str(err)
    return None


def pack_groups(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """``configs`` in packs of at most ``size`` runs that may train together (equal but for
    :data:`PACK_VARYING`), in order of first appearance; a config that cannot be packed is a pack of one."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"pack must be an integer >= 1, got {size!r}")
    groups: dict = {}
    for i, config in enumerate(configs):
        try:
            check_packable([config])
            key = json.dumps({k: v for k, v in config.to_dict().items() if k not in PACK_VARYING}, sort_keys=True)
        except ValueError:
            key = f"alone {i}"
        groups.setdefault(key, []).append(config)
    return [members[i:i + size] for members in groups.values() for i in range(0, len(members), size)]


def pack_optimizer_state(states: list[dict]) -> dict:
    """The packed optimizer state dict of K runs' (per-parameter tensors concatenated, as :func:`pack_state`)."""
    packed = {"param_groups": states[0]["param_groups"], "state": {}}
    for index in states[0]["state"]:
        packed["state"][index] = pack_state([s["state"][index] for s in states])
    return packed


def unpack_optimizer_state(state: dict, packs: int, device=None) -> list[dict]:
    """The K runs' optimizer state dicts of a packed one (the inverse of :func:`pack_optimizer_state`);
    ``device`` as for :func:`unpack_state`."""
    runs = [{"param_groups": copy.deepcopy(state["param_groups"]), "state": {}} for _ in range(packs)]
    for index, values in state["state"].items():
        for run, part in zip(runs, unpack_state(values, packs, device)):
            run["state"][index] = part
    return runs


def checkpoint_states(model: nn.Module, optimizer: torch.optim.Optimizer, packs: int) -> tuple[list, list]:
    """The K runs' model and optimizer state dicts, on the host, as each run's checkpoint holds them: every
    packed tensor crosses to the host once and is cut there (K times fewer transfers than cutting on a GPU)."""
    return unpack_state(model.state_dict(), packs, "cpu"), unpack_optimizer_state(optimizer.state_dict(), packs, "cpu")


def pack_models(models: list[SplitModel]) -> SplitModel:
    """One :class:`~amixup.models.SplitModel` computing the K given models (same architecture) side by side:
    input ``[B, K * C, H, W]`` (run ``k``'s images in channels ``[k C, (k+1) C)``), logits ``[B, K * classes]``."""
    first = models[0]
    check_packable_model(first)
    names = [list(m.state_dict()) for m in models]
    if any(n != names[0] for n in names) or any(type(m) is not type(first) for m in models):
        raise ValueError("pack_models needs models of one architecture")
    packed = copy.deepcopy(first)
    _replace_leaves(packed, len(models))
    packed.to(next(first.parameters()))  # the runs' device and dtype
    if any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
           for p in first.parameters()):
        packed.to(memory_format=torch.channels_last)  # and their layout
    packed.load_state_dict(pack_state([m.state_dict() for m in models]))
    return packed


def pack_inputs(xs: list[torch.Tensor]) -> torch.Tensor:
    """K batches ``[B, C, ...]`` -> one packed batch ``[B, K * C, ...]``."""
    return torch.cat(xs, dim=1)


def pack_batches(loaders):
    """One pass of K training loaders (over the same images) as packed batches ``(x [B, K * C, H, W], y [K, B])``.

    Each loader keeps its own order and draws its own augmentation from its own generator, in the order it
    draws them alone, so ``x`` equals :func:`pack_inputs` of the K loaders' own batches; but the K runs' batches
    are gathered, cropped, flipped and normalised together, as many consecutive ones at a time as the loaders'
    ``chunk_bytes`` allows for all K, in one set of kernels instead of one per run and batch.
    """
    first = loaders[0]
    same = ("images", "labels")
    settings = ("batch_size", "train", "augmentation", "crop_padding", "flip", "crop_size", "color_jitter",
                "world_size", "chunk_bytes")
    if any(getattr(o, a) is not getattr(first, a) for o in loaders for a in same) or \
            any(getattr(o, a) != getattr(first, a) for o in loaders for a in settings) or \
            any(not torch.equal(o.mean, first.mean) or not torch.equal(o.std, first.std) for o in loaders):
        raise ValueError("pack_batches needs loaders over the same tensors with the same settings")
    if not first.train:
        raise ValueError("pack_batches packs training loaders (train=True)")
    packs = len(loaders)
    indices = [list(loader.batch_indices()) for loader in loaders]
    sizes = [len(idx) for idx in indices[0]]
    for chunk in batch_chunks(sizes, packs * first.image_bytes(), first.chunk_bytes):
        counts = [sizes[i] for i in chunk]
        idx = torch.cat([run[i] for run in indices for i in chunk])  # run k's batches are rows [kM, (k+1)M)
        draws = join_draws([loader.draws(n) for loader in loaders for n in counts])
        x = first.augment(first.images[idx], draws)
        x, y = x.view(packs, -1, *x.shape[1:]), first.labels[idx].view(packs, -1)  # [K, M, C, H, W], [K, M]
        start = 0
        for n in counts:
            yield _runs_to_channels(x[:, start:start + n]), y[:, start:start + n]
            start += n


def _runs_to_channels(x: torch.Tensor) -> torch.Tensor:
    """K batches ``[K, B, C, H, W]`` -> the packed batch ``[B, K * C, H, W]``, channels-last, in one copy (what
    :func:`pack_inputs` of the K batches gives)."""
    packs, b, c, h, w = x.shape
    out = torch.empty((b, h, w, packs, c), dtype=x.dtype, device=x.device)
    out.copy_(x.permute(1, 3, 4, 0, 2))  # [B, H, W, K, C]
    return out.view(b, h, w, packs * c).permute(0, 3, 1, 2)


def per_run(t: torch.Tensor, packs: int) -> torch.Tensor:
    """A packed ``[B, K * D, ...]`` tensor as ``[B, K, D, ...]`` (a view where the layout allows)."""
    return t.unflatten(1, (packs, -1))


def mix_packed(h: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, lam_rest: torch.Tensor) -> torch.Tensor:
    """Eq. 4 / Eq. 5 on each run of a packed hidden state ``h`` ``[B, K * D, ...]``:
    ``lam[k] * h_k + lam_rest[k] * h_k[perm[k]]``, with ``perm`` ``[K, B]`` and ``lam``, ``lam_rest`` ``[K]``."""
    packs = perm.shape[0]
    hv = per_run(h, packs)
    partner = hv[perm.t(), torch.arange(packs, device=h.device)]  # [B, K, D, ...]: run k's partners
    shape = (1, packs) + (1,) * (hv.dim() - 2)
    return mix_weighted(hv, partner, lam.view(shape), lam_rest.view(shape)).flatten(1, 2)


def cross_entropy_per_run(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each run's mean cross entropy: packed ``logits`` ``[B, K * classes]``, ``targets`` ``[K, B]`` -> ``[K]``."""
    packs = targets.shape[0]
    per_sample = F.cross_entropy(per_run(logits, packs).transpose(1, 2), targets.t(), reduction="none")  # [B, K]
    return per_sample.mean(0)


def predictions_per_run(logits: torch.Tensor, packs: int) -> torch.Tensor:
    """Each run's predicted class ``[K, B]`` from packed logits ``[B, K * classes]``."""
    return per_run(logits, packs).argmax(2).t()


def _mixing_layers(policy: MixPolicy, last_layer: int) -> tuple[int, ...]:
    """Every layer where some run of a pack may mix: none, the input, the last layer, or the eligible layers."""
    if not policy.mixes:
        return ()
    return {"input": (0,), "last": (last_layer,), "drawn": policy.eligible_layers}[policy.spec.layer]


class PackedStep(StaticStep):
    """The static training step of K packed runs (see :class:`~amixup.static_step.StaticStep`): one forward,
    backward and SGD update trains all K, each with its own batch, pairing, lambda and labels.

    Each run draws its lambdas, layers and pairings from its own policy and generator, in the order it
    draws them alone. Where runs mix at different layers (manifold mixup draws one per batch), the packed
    step mixes at every eligible layer, each run with weights ``(1, 0)`` (the identity) at the layers it
    did not draw. Every full batch replays one CUDA graph on a GPU.
    """

    def __init__(self, model: SplitModel, policies: list[MixPolicy], optimizer: torch.optim.SGD, *, batch_size: int,
                 sample_shape, device, precision: str, need_clean: bool, graphs: bool | None = None,
                 compile: bool = False):
        packs = len(policies)
        channels, *spatial = sample_shape
        super().__init__(model, policies[0], optimizer, batch_size=batch_size, sample_shape=(packs * channels, *spatial),
                         device=device, precision=precision, need_clean=need_clean, graphs=graphs, compile=compile)
        self.policies, self.packs = policies, packs
        spec = policies[0].spec
        if spec.layer == "drawn" and model.last_layer in policies[0].eligible_layers:
            raise ValueError("packing cannot mix at a drawn layer that may be the last one; use pack=1")
        self.mix_layers = _mixing_layers(policies[0], model.last_layer)
        b, rows = self.batch_size, 1 + len(self.mix_layers)
        self.y = torch.zeros((packs, b), dtype=torch.long, device=self.device)
        self.perm = torch.arange(b, device=self.device).repeat(packs, 1)
        # row 0: each run's lambda (its labels, Eq. 8); row 1 + j: its weights at mix_layers[j]
        self.lam = torch.ones((rows, packs), device=self.device)
        self.lam_rest = torch.zeros((rows, packs), device=self.device)
        self.own = torch.ones(packs, dtype=torch.bool, device=self.device)  # Eq. 5 per run: lambda >= 0.5 (float64)
        self.loss_sum = torch.zeros(packs, device=self.device)
        self.correct_mixed = torch.zeros(packs, dtype=torch.long, device=self.device)
        self.correct_clean = torch.zeros(packs, dtype=torch.long, device=self.device)

    def _weights(self, draws) -> tuple[list, list]:
        """One batch's ``[1 + layers, K]`` lambda and 1 - lambda rows from the K runs' (lambda, layer) draws."""
        lam = [[d[0] for d in draws]] + [[d[0] if d[1] == layer else 1.0 for d in draws] for layer in self.mix_layers]
        rest = [[1.0 - d[0] for d in draws]] + [[1.0 - d[0] if d[1] == layer else 0.0 for d in draws]
                                                 for layer in self.mix_layers]
        return lam, rest

    def run_epoch(self, batches, sizes, lam_epochs, lr: float, host_gens):
        """One pass; ``batches`` yields packed batches ``(x [B, K * C, ...], y [K, B])`` (:func:`pack_batches`).
        Returns the K runs' sums:
        ``(loss_sum [K], correct_mixed [K], correct_clean [K], n_seen, n_clean list)``."""
        per_run_draws = [self.draws(sizes, lam, gen, policy)
                         for policy, lam, gen in zip(self.policies, lam_epochs, host_gens)]
        steps = list(zip(*per_run_draws))  # steps[i][k]: run k's (lambda, layer, pairing) of batch i
        b, device = self.batch_size, self.device
        weights = [self._weights(step) for step in steps]
        lams = torch.tensor([w[0] for w in weights], dtype=torch.float64).float().to(device)
        rests = torch.tensor([w[1] for w in weights], dtype=torch.float64).float().to(device)
        owns = torch.tensor([[d[0] >= 0.5 for d in step] for step in steps]).to(device)
        mixes = self.policy.mixes
        perms = torch.stack([torch.stack([d[2] for d in step]) for step, n in zip(steps, sizes) if n == b]).to(device) \
            if mixes and b in sizes else None
        self.lr.fill_(lr)
        for t in (self.loss_sum, self.correct_mixed, self.correct_clean):
            t.zero_()
        n_seen, n_clean, full = 0, [0] * self.packs, 0
        for i, (x, y) in enumerate(batches):
            n = y.shape[1]
            if n == b:
                self.x.copy_(x)
                self.y.copy_(y)
                if mixes:
                    self.perm.copy_(perms[full])
                self.lam.copy_(lams[i])
                self.lam_rest.copy_(rests[i])
                self.own.copy_(owns[i])
                self._full_step(self.mix_layers)
                full += 1
            else:  # the last, smaller batch: the same step, eagerly
                perm = torch.stack([d[2] for d in steps[i]]).to(device) if mixes else None
                self._eager(x.contiguous(memory_format=torch.channels_last), y, perm,
                            lams[i], rests[i], owns[i], self.mix_layers)
            n_seen += n
            n_clean = [c + (n if self.has_clean(layer) else 0) for c, (_, layer, _) in zip(n_clean, steps[i])]
        return self.loss_sum, self.correct_mixed, self.correct_clean, n_seen, n_clean

    def _forward_loss(self, x, y, perm, lam, lam_rest, own, layers):
        """The K runs' logits, losses ``[K]`` (Eq. 8 or 9 each), free clean logits and scored labels ``[K, B]``."""
        model, policy = self.model, self.policy
        with self.autocast:
            if policy.mixes:
                mixes = {layer: functools.partial(mix_packed, perm=perm, lam=lam[1 + j], lam_rest=lam_rest[1 + j])
                         for j, layer in enumerate(layers)}
                logits, clean = model.forward_mixing(x, mixes)
            else:
                logits, _ = model.forward_mixing(x, {})
                clean = logits.detach()
            logits = logits.float()
            if not policy.mixes:
                dominant = y
                losses = cross_entropy_per_run(logits, y)
            else:
                partner = y.gather(1, perm)
                dominant = torch.where(own[:, None], y, partner)  # Eq. 5's one-sided label, per run
                if policy.spec.one_sided:
                    losses = cross_entropy_per_run(logits, dominant)  # Eq. 9
                else:  # Eq. 8
                    losses = lam[0] * cross_entropy_per_run(logits, y) + lam_rest[0] * cross_entropy_per_run(logits, partner)
        return losses.sum(), (losses, logits), clean, dominant  # the sum's gradient: run k's loss's for run k

    @torch.no_grad()
    def _count(self, loss, outputs, clean, dominant, y) -> None:
        losses, logits = outputs
        self.loss_sum += losses.detach() * y.shape[1]
        self.correct_mixed += (predictions_per_run(logits.detach(), self.packs) == dominant).sum(1)
        if clean is not None:
            self.correct_clean += (predictions_per_run(clean, self.packs) == y).sum(1)
