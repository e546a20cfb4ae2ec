"""The training step at fixed shapes, replayed as a CUDA graph on a GPU.

On a GPU a ResNet32 step on 128 images is a few hundred small kernels, and launching them from
Python costs more than running them. :class:`StaticStep` runs the engine's one step
(:class:`amixup.step.TrainStep`: forward with mixing at the drawn layer, loss of Eq. 8 or 9,
backward, the update, the epoch's counters) with every per-step value held in a device tensor
(the batch, the pairing, lambda and 1 - lambda, which label dominates, the lr) and an SGD update
that reads the lr from a tensor, so nothing in it reads a value back to the host. On a CUDA device it captures that step once per
mixing layer as a CUDA graph and replays it for every full batch; the last, smaller batch of an
epoch runs the same code eagerly, so what is trained does not change. On a CPU the same code runs
eagerly (that is how the tests check it against the eager engine).

The randomness of an epoch (pairings, Beta lambdas, manifold layers) is drawn on the host before
the epoch by the same :meth:`amixup.mixing.MixPolicy.draw_batch` as the eager engine calls batch by
batch, so a seed gives the same draws on both paths. The numbers differ from the eager path only
in rounding: lambda and the lr are tensors here, so ``lam * x + (1 - lam) * x[perm]`` and
``p - lr * buf`` are a multiply and an add where the eager path's scalar ``add_(..., alpha=...)``
is one fused multiply-add.
"""

from __future__ import annotations

import torch

from .mixing import BatchDraw, MixPolicy
from .models import SplitModel
from .step import EpochSums, TrainStep

#: Eager full-size steps before the first capture (lazy initialisation of cuBLAS / cuDNN and the
#: allocator happens outside the graph, as torch.cuda.graphs asks).
WARMUP_STEPS = 3


def check_sgd(optimizer: torch.optim.Optimizer) -> None:
    """The static step implements plain SGD with momentum and weight decay (the paper's recipes)."""
    if not isinstance(optimizer, torch.optim.SGD) or len(optimizer.param_groups) != 1:
        raise ValueError("step_mode='static' needs optimizer='sgd' with one parameter group")
    group = optimizer.param_groups[0]
    if group["nesterov"] or group["dampening"] or group.get("maximize"):
        raise ValueError("step_mode='static' supports SGD without nesterov, dampening or maximize")


class StaticStep:
    """Fixed-shape training steps of one run (see the module docstring).

    ``run_epoch`` trains one pass over ``batches`` and returns the epoch's :class:`~amixup.step.EpochSums`.
    """

    def __init__(self, model: SplitModel, policy: MixPolicy, optimizer: torch.optim.SGD, *, batch_size: int,
                 sample_shape, device: torch.device, precision: str, graphs: bool | None = None):
        check_sgd(optimizer)
        self.model, self.policy, self.optimizer = model, policy, optimizer
        self.params = list(optimizer.param_groups[0]["params"])
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.graphs_enabled = self.device.type == "cuda" if graphs is None else graphs
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16",
                                  cache_enabled=False)  # a weight cache would outlive a graph's capture
        self.step = TrainStep(model, policy, self._sgd_update, autocast=autocast)
        b = self.batch_size
        self.x = torch.zeros((b, *sample_shape), device=device).contiguous(memory_format=torch.channels_last)
        self.y = torch.zeros(b, dtype=torch.long, device=device)
        self.perm = torch.arange(b, device=device)
        self.lam = torch.ones((), device=device)       # lambda
        self.lam_rest = torch.zeros((), device=device)  # 1 - lambda, rounded once from float64 as the eager path
        self.own = torch.ones((), dtype=torch.bool, device=device)  # Eq. 5: lambda >= 0.5, decided in float64 on
        # the host as the eager path (lambda in (0.5 - 3e-8, 0.5) is 0.5 in float32)
        self.lr = torch.zeros((), device=device)
        self.sums = EpochSums(device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._graph_grads: dict[int, list] = {}  # gradient memory each graph writes, kept alive
        self.warmup_steps: dict = {}  # eager full steps per graph key (mixing layer) before its capture

    @property
    def kind(self) -> str:
        return "cuda_graph" if self.graphs_enabled else "static_eager"

    def run_epoch(self, batches, sizes, lr: float) -> EpochSums:
        draws = [self.policy.draw_batch(n) for n in sizes]  # the eager engine's draws, in its order
        b, device = self.batch_size, self.device
        lams = torch.tensor([[d.lam, 1.0 - d.lam] for d in draws], dtype=torch.float32).to(device)
        owns = torch.tensor([d.own for d in draws]).to(device)
        full_perms = [d.perm for d, n in zip(draws, sizes) if n == b and d.perm is not None]
        perms = torch.stack(full_perms).to(device) if full_perms else None  # one copy per epoch
        self.lr.fill_(lr)
        sums = self.sums.zero_()
        full = 0
        for i, (x, y) in enumerate(batches):
            layer, perm = draws[i].layer, draws[i].perm
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
                self._eager(x, y, BatchDraw(lams[i, 0], layer, perm, lams[i, 1], owns[i]))
            sums.n_seen += len(y)
            sums.n_clean += len(y) if self.step.sees_clean(layer) else 0
        return sums

    def _full_draw(self, layer: int) -> BatchDraw:
        perm = self.perm if self.policy.mixes else None
        return BatchDraw(self.lam, layer, perm, self.lam_rest, self.own)

    def _full_step(self, layer: int) -> None:
        if not self.graphs_enabled:
            self._eager(self.x, self.y, self._full_draw(layer))
            return
        with torch.cuda.device(self.device):  # streams and captures on the run's GPU (e.g. cuda:1 of a sweep)
            self._graph_step(layer)

    def warming_up(self, layer) -> bool:
        """Whether the next full step at ``layer`` runs eagerly before its graph is captured: the first
        :data:`WARMUP_STEPS` at each layer and every step before the optimizer's momentum buffers exist."""
        return layer not in self.graphs and (self.warmup_steps.get(layer, 0) < WARMUP_STEPS
                                             or not self._has_momentum())

    def _graph_step(self, layer: int) -> None:
        if self.warming_up(layer):
            side = torch.cuda.Stream(self.device)  # warm-up off the capture stream, as torch.cuda.graphs asks
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._eager(self.x, self.y, self._full_draw(layer))
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warmup_steps[layer] = self.warmup_steps.get(layer, 0) + 1
            return
        if layer not in self.graphs:
            self._capture(layer)
        self.graphs[layer].replay()

    def _capture(self, layer: int) -> None:
        self.step.zero_grad()  # backward inside the capture allocates the graph's own gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step(self.x, self.y, self._full_draw(layer), self.sums)
        self._graph_grads[layer] = [p.grad for p in self.params]
        self.step.zero_grad()
        self.graphs[layer] = graph

    def _eager(self, x, y, draw: BatchDraw) -> None:
        self.step.zero_grad()
        self.step(x, y, draw, self.sums)

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
