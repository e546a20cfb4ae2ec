"""Multi-process training with torchrun (DistributedDataParallel).

``torchrun --nproc_per_node=N -m amixup train ...`` (or any launcher that sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) makes :func:`amixup.engine.train` run
data-parallel: each process takes its share of every global batch, gradients are averaged by
DDP, BatchNorm statistics are those of the global batch (``SyncBatchNorm`` on GPUs,
:class:`GlobalBatchNorm2d` on CPUs, where ``SyncBatchNorm`` is not available), and only rank 0
evaluates and writes checkpoints and records. A checkpoint resumes only with the number of processes
that wrote it. A last global batch smaller than the number of processes leaves some processes an empty
share: they take part in the step with zero gradients, and the epoch's loss counts the images trained.
"""

from __future__ import annotations

import atexit
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn


def init_from_env(device_type: str) -> bool:
    """Join the process group described by the environment (if ``WORLD_SIZE > 1``); True if distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if device_type == "cuda":  # NCCL's collectives (and object gathers) use the current device: this process's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    # Leave the group before the interpreter tears down: a process group still alive at exit can
    # abort the process from a C++ destructor ("terminate called without an active exception").
    atexit.register(_leave_at_exit)
    return True


def shutdown() -> None:
    """Leave the process group (after every process got here); a no-op if there is none."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def abandon() -> None:
    """Leave the process group at once, not waiting for the others: this process failed, and the others may be
    inside a collective it will never join (waiting for them would hang it, and torchrun, until a timeout; once
    it exits, torchrun stops the others)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _leave_at_exit() -> None:
    if getattr(sys, "last_value", None) is not None:  # the interpreter ends on an uncaught exception
        abandon()
    else:
        shutdown()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank()))


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place (a no-op in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def gather_objects(obj) -> list:
    """``obj`` of every process, in rank order."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the batch over all processes.

    The CPU counterpart of ``nn.SyncBatchNorm`` (which needs GPUs): per-channel sums and
    sums of squares are summed with a differentiable all-reduce, so gradients flow through
    the global mean and variance as in a single process over the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x.float()
        count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
            unbiased = var.detach() * n / max(float(n) - 1.0, 1.0)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = (1, c, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers synchronised across processes: SyncBatchNorm on GPUs, GlobalBatchNorm2d on CPUs."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats).to(child.weight.device)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_batchnorm(child, device)
    return model


class MixedForward(nn.Module):
    """Wraps ``SplitModel.forward_mixed`` as a ``forward`` so DDP can synchronise its gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, layer, mix):
        return self.model.forward_mixed(x, layer, mix)


def share_weighted_objective(global_batch_sizes: list[int], world: int):
    """The objective of one process's step (:class:`amixup.step.TrainStep`'s ``objective``): DDP averages
    gradients over processes, so each process's mean loss is weighted by its share of the global batch. An empty
    share (a last global batch smaller than the processes) has a NaN mean loss: its objective is 0 with zero
    gradients, which DDP still averages with the others."""
    def objective(loss, logits, n: int, index: int):
        return loss * (n * world / global_batch_sizes[index]) if n else logits.sum()
    return objective
