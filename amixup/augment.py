"""Batched augmentation and a loader over tensors that live on the training device.

``random_crop_flip`` reproduces torchvision's ``RandomCrop(size, padding=p)`` (raw
pixels padded with zeros, a uniform offset in [0, 2p] per image) followed by
``RandomHorizontalFlip()``, for a whole uint8 batch in one gather. The result is laid
out channels-last. ``TensorLoader`` replaces a ``DataLoader`` over PIL images: the
dataset is one uint8 tensor on the device, shuffled and augmented there.
"""

from __future__ import annotations

import math

import torch


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random ``padding``-pixel zero-padded crop and horizontal flip of an NCHW batch.

    Offsets and flips are drawn from ``generator`` (which must live on the images' device).
    """
    n, c, h, w = images.shape
    device = images.device
    if padding > 0:
        images = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    rows = top + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        flipped = torch.rand(n, 1, generator=generator, device=device) < 0.5
        cols = torch.where(flipped, w - 1 - cols, cols)
    cols = cols + left
    nhwc = images.permute(0, 2, 3, 1)
    out = nhwc[torch.arange(n, device=device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels-last


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float, standardised per channel, channels-last."""
    x = images.float().div_(255.0)
    x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return x.contiguous(memory_format=torch.channels_last)


class TensorLoader:
    """Mini-batches of ``(normalised images, labels)`` from uint8 tensors on ``device``.

    With ``train=True`` the order is reshuffled each pass and every batch is augmented
    (``crop_padding``, ``flip``); the last, smaller batch is kept, as a plain DataLoader does.
    With ``world_size > 1`` every process draws the same global order (``shuffle_generator``
    seeded alike) and takes its ``rank``-th share of each global batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device,
                 mean, std, train: bool, crop_padding: int = 0, flip: bool = False,
                 generator: torch.Generator | None = None, shuffle_generator: torch.Generator | None = None,
                 rank: int = 0, world_size: int = 1):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = int(batch_size)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.train = train
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.generator = generator
        self.shuffle_generator = shuffle_generator or generator
        self.rank, self.world_size = int(rank), int(world_size)
        if train and generator is None:
            raise ValueError("a training TensorLoader needs a generator for shuffling and augmentation")

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.shuffle_generator, device=self.device) if self.train else None
        for start in range(0, n, self.batch_size):
            if order is None:
                x = self.images[start:start + self.batch_size]
                y = self.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                if self.world_size > 1:  # this process's share of the global batch
                    idx = torch.tensor_split(idx, self.world_size)[self.rank]
                x, y = self.images[idx], self.labels[idx]
            if self.train and (self.crop_padding or self.flip):
                x = random_crop_flip(x, self.crop_padding, self.flip, self.generator)
            yield normalize(x, self.mean, self.std), y
