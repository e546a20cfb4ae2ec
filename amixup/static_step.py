"""The training step at fixed shapes, replayed as a CUDA graph on a GPU.

On a GPU a ResNet32 step on 128 images is a few hundred small kernels, and launching them from
Python costs more than running them. :class:`StaticStep` runs one step (forward with mixing at
the drawn layer, loss of Eq. 8 or 9, backward, the SGD update, the epoch's counters) with every
per-step value held in a device tensor (the batch, the pairing, lambda and 1 - lambda, which label
dominates, the lr),
so nothing in it reads a value back to the host. On a CUDA device it captures that step once per
mixing layer as a CUDA graph and replays it for every full batch; the last, smaller batch of an
epoch runs the same code eagerly, so what is trained does not change. On a CPU the same code runs
eagerly (that is how the tests check it against the eager engine).

The randomness of an epoch (pairings, Beta lambdas, manifold layers) is drawn on the host before
the epoch from the same generators, in the same order, as the eager engine draws it batch by
batch, so a seed gives the same draws on both paths. The numbers differ from the eager path only
in rounding: lambda and the lr are tensors here, so ``lam * x + (1 - lam) * x[perm]`` and
``p - lr * buf`` are a multiply and an add where the eager path's scalar ``add_(..., alpha=...)``
is one fused multiply-add.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .mixing import MixPolicy, mix_weighted
from .models import SplitModel

#: Eager full-size steps before the first capture (lazy initialisation of cuBLAS / cuDNN and the
#: allocator happens outside the graph, as torch.cuda.graphs asks).
WARMUP_STEPS = 3


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


def check_sgd(optimizer: torch.optim.Optimizer) -> None:
    """The static step implements plain SGD with momentum and weight decay (the paper's recipes)."""
    if not isinstance(optimizer, torch.optim.SGD) or len(optimizer.param_groups) != 1:
        raise ValueError("step_mode='static' needs optimizer='sgd' with one parameter group")
    group = optimizer.param_groups[0]
    if group["nesterov"] or group["dampening"] or group.get("maximize"):
        raise ValueError("step_mode='static' supports SGD without nesterov, dampening or maximize")


class StaticStep:
    """Fixed-shape training steps of one run (see the module docstring).

    ``run_epoch`` trains one pass over ``batches`` and returns the epoch's sums as the eager
    engine computes them: ``(loss_sum, correct_mixed, correct_clean, n_seen, n_clean)``.
    """

    def __init__(self, model: SplitModel, policy: MixPolicy, optimizer: torch.optim.SGD, *, batch_size: int,
                 sample_shape, device: torch.device, precision: str, need_clean: bool, graphs: bool | None = None):
        check_sgd(optimizer)
        self.model, self.policy, self.optimizer = model, policy, optimizer
        self.params = list(optimizer.param_groups[0]["params"])
        self.batch_size, self.device, self.need_clean = int(batch_size), torch.device(device), need_clean
        self.graphs_enabled = self.device.type == "cuda" if graphs is None else graphs
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16",
                                       cache_enabled=False)  # a weight cache would outlive a graph's capture
        b = self.batch_size
        self.x = torch.zeros((b, *sample_shape), device=device).contiguous(memory_format=torch.channels_last)
        self.y = torch.zeros(b, dtype=torch.long, device=device)
        self.perm = torch.arange(b, device=device)
        self.lam = torch.ones((), device=device)       # lambda
        self.lam_rest = torch.zeros((), device=device)  # 1 - lambda, rounded once from float64 as the eager path
        self.own = torch.ones((), dtype=torch.bool, device=device)  # Eq. 5: lambda >= 0.5, decided in float64 on
        # the host as the eager path (lambda in (0.5 - 3e-8, 0.5) is 0.5 in float32)
        self.lr = torch.zeros((), device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct_mixed = torch.zeros((), dtype=torch.long, device=device)
        self.correct_clean = torch.zeros((), dtype=torch.long, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._graph_grads: dict[int, list] = {}  # gradient memory each graph writes, kept alive
        self.warmup_steps: dict = {}  # eager full steps per graph key (mixing layer) before its capture

    @property
    def kind(self) -> str:
        return "cuda_graph" if self.graphs_enabled else "static_eager"

    def has_clean(self, layer: int) -> bool:
        """Whether a step at ``layer`` sees clean (un-mixed) predictions, as in the eager engine."""
        return not self.policy.mixes or layer == self.model.last_layer or self.need_clean

    def draws(self, sizes, lam_epoch: float, host_gen: torch.Generator, policy: MixPolicy | None = None):
        """The epoch's (lambda, layer, pairing) per batch, drawn in the eager engine's order (from
        ``policy``, default this step's)."""
        policy = policy or self.policy
        out = []
        for n in sizes:
            lam, layer = policy.draw(lam_epoch)
            perm = torch.randperm(n, generator=host_gen) if policy.mixes else None
            out.append((lam, layer, perm))
        return out

    def run_epoch(self, batches, sizes, lam_epoch: float, lr: float, host_gen: torch.Generator):
        draws = self.draws(sizes, lam_epoch, host_gen)
        b, device = self.batch_size, self.device
        lams = torch.tensor([[lam, 1.0 - lam] for lam, _, _ in draws], dtype=torch.float32).to(device)
        owns = torch.tensor([lam >= 0.5 for lam, _, _ in draws]).to(device)
        full_perms = [p for (_, _, p), n in zip(draws, sizes) if n == b and p is not None]
        perms = torch.stack(full_perms).to(device) if full_perms else None  # one copy per epoch
        self.lr.fill_(lr)
        for t in (self.loss_sum, self.correct_mixed, self.correct_clean):
            t.zero_()
        n_seen = n_clean = full = 0
        for i, (x, y) in enumerate(batches):
            lam, layer, perm = draws[i]
            if len(y) == b:
                self.x.copy_(x)
                self.y.copy_(y)
                if perm is not None:
                    self.perm.copy_(perms[full])
                self.lam.copy_(lams[i, 0])
                self.lam_rest.copy_(lams[i, 1])
                self.own.copy_(owns[i])
                self._full_step(layer)
                full += 1
            else:  # the last, smaller batch: the same step, eagerly
                perm = perm.to(device) if perm is not None else None
                self._eager(x, y, perm, lams[i, 0], lams[i, 1], owns[i], layer)
            n_seen += len(y)
            n_clean += len(y) if self.has_clean(layer) else 0
        return self.loss_sum, self.correct_mixed, self.correct_clean, n_seen, n_clean

    def _full_step(self, layer: int) -> None:
        args = (self.x, self.y, self.perm, self.lam, self.lam_rest, self.own, layer)
        if not self.graphs_enabled:
            self._eager(*args)
            return
        with torch.cuda.device(self.device):  # streams and captures on the run's GPU (e.g. cuda:1 of a sweep)
            self._graph_step(layer, args)

    def warming_up(self, layer) -> bool:
        """Whether the next full step at ``layer`` runs eagerly before its graph is captured: the first
        :data:`WARMUP_STEPS` at each layer and every step before the optimizer's momentum buffers exist."""
        return layer not in self.graphs and (self.warmup_steps.get(layer, 0) < WARMUP_STEPS
                                             or not self._has_momentum())

    def _graph_step(self, layer: int, args) -> None:
        if self.warming_up(layer):
            side = torch.cuda.Stream(self.device)  # warm-up off the capture stream, as torch.cuda.graphs asks
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._eager(*args)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warmup_steps[layer] = self.warmup_steps.get(layer, 0) + 1
            return
        if layer not in self.graphs:
            self._capture(layer)
        self.graphs[layer].replay()

    def _capture(self, layer: int) -> None:
        self._clear_grads()  # backward inside the capture allocates the graph's own gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step(self.x, self.y, self.perm, self.lam, self.lam_rest, self.own, layer)
        self._graph_grads[layer] = [p.grad for p in self.params]
        self._clear_grads()
        self.graphs[layer] = graph

    def _clear_grads(self) -> None:
        for p in self.params:
            p.grad = None

    def _eager(self, x, y, perm, lam, lam_rest, own, layer) -> None:
        self._clear_grads()
        self._step(x, y, perm, lam, lam_rest, own, layer)

    def _step(self, x, y, perm, lam, lam_rest, own, layer) -> None:
        """One step with tensors only: what a CUDA graph captures."""
        loss, outputs, clean, dominant = self._forward_loss(x, y, perm, lam, lam_rest, own, layer)
        if clean is None and self.policy.mixes and self.need_clean:  # the un-mixed batch's predictions
            with torch.no_grad(), frozen_batchnorm_stats(self.model), self.autocast:
                clean = self.model(x)
        loss.backward()
        self._sgd_update()
        self._count(loss, outputs, clean, dominant, y)

    def _forward_loss(self, x, y, perm, lam, lam_rest, own, layer: int):
        """The loss (Eq. 8 or 9), what :meth:`_count` needs of the outputs (the logits, mixed at ``layer``),
        the clean logits where they come for free (mixing at the last layer, or none), and the labels the
        predictions are scored against."""
        model, policy = self.model, self.policy
        with self.autocast:
            if policy.mixes:
                logits, clean = model.forward_mixed(x, layer, lambda h: mix_weighted(h, h[perm], lam, lam_rest))
            else:
                logits, _ = model.forward_mixed(x, None, None)
                clean = logits.detach()
            logits = logits.float()
            if not policy.mixes:
                dominant = y
                loss = F.cross_entropy(logits, y)
            else:
                dominant = torch.where(own, y, y[perm])  # Eq. 5's one-sided label (own: lambda >= 0.5)
                if policy.spec.one_sided:
                    loss = F.cross_entropy(logits, dominant)  # Eq. 9
                else:
                    loss = lam * F.cross_entropy(logits, y) + lam_rest * F.cross_entropy(logits, y[perm])  # Eq. 8
        return loss, logits, clean, dominant

    @torch.no_grad()
    def _count(self, loss, logits, clean, dominant, y) -> None:
        self.loss_sum += loss.detach() * y.shape[0]
        self.correct_mixed += (logits.detach().argmax(1) == dominant).sum()
        if clean is not None:
            self.correct_clean += (clean.argmax(1) == y).sum()

    def _has_momentum(self) -> bool:
        group = self.optimizer.param_groups[0]
        return not group["momentum"] or all("momentum_buffer" in self.optimizer.state[p] for p in self.params)

    @torch.no_grad()
    def _sgd_update(self) -> None:
        """torch.optim.SGD's update (momentum, weight decay) with the lr read from a device tensor."""
        group = self.optimizer.param_groups[0]
        params = self.params
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if group["momentum"]:
            state = self.optimizer.state
            if self._has_momentum():
                bufs = [state[p]["momentum_buffer"] for p in params]
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, grads)
            else:  # the run's first step (never inside a capture): the buffers start as the gradients
                bufs = [g.detach().clone() for g in grads]
                for p, buf in zip(params, bufs):
                    state[p]["momentum_buffer"] = buf
            grads = bufs
        torch._foreach_sub_(params, torch._foreach_mul(grads, self.lr))
