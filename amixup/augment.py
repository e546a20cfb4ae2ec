"""Batched augmentation and a loader over tensors that live on the training device.

``random_crop_flip`` reproduces torchvision's ``RandomCrop(size, padding=p)`` (raw
pixels padded with zeros, a uniform offset in [0, 2p] per image) followed by
``RandomHorizontalFlip()``, for a whole uint8 batch in one gather (the CIFAR recipes).
``random_resized_crop_flip`` is ``RandomResizedCrop(size)`` + ``RandomHorizontalFlip()``
(the ImageNet-LT / Places-LT recipes) as one batched ``grid_sample``; ``center_crop`` is
its evaluation counterpart. ``color_jitter`` is ``ColorJitter(s, s, s)`` (brightness, contrast,
saturation in a random order per image) for a whole float batch. Results are laid out channels-last. ``TensorLoader`` replaces a
``DataLoader`` over PIL images: the dataset is one uint8 tensor on the device, shuffled and
augmented there, batch by batch.
"""

from __future__ import annotations

import math

import torch

from .config import AUGMENTATIONS

def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random ``padding``-pixel zero-padded crop and horizontal flip of an NCHW batch.

    Offsets and flips are drawn from ``generator`` (which must live on the images' device).
    """
    return crop_flip(images, padding, crop_flip_draws(len(images), padding, flip, generator, images.device))


def crop_flip_draws(n: int, padding: int, flip: bool, generator: torch.Generator, device) -> tuple:
    """The random part of :func:`random_crop_flip` for ``n`` images: ``(top, left, flipped or None)``."""
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    flipped = torch.rand(n, 1, generator=generator, device=device) < 0.5 if flip else None
    return top, left, flipped


def crop_flip(images: torch.Tensor, padding: int, draws: tuple) -> torch.Tensor:
    """The crops and flips ``draws`` (of :func:`crop_flip_draws`) describe, as one gather: channels-last."""
    top, left, flipped = draws
    n, c, h, w = images.shape
    device = images.device
    if padding > 0:
        images = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = top + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flipped is not None:
        cols = torch.where(flipped, w - 1 - cols, cols)
    cols = cols + left
    nhwc = images.permute(0, 2, 3, 1)
    out = nhwc[torch.arange(n, device=device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels-last


def random_resized_crop_flip(images: torch.Tensor, size: int, flip: bool, generator: torch.Generator, *,
                             scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (+ ``RandomHorizontalFlip()``) of a batch.

    Per image, as torchvision: up to ``attempts`` boxes with area fraction ~ U(scale) and
    log aspect ratio ~ U(log ratio); the first box that fits is cut at a uniform position,
    otherwise the central crop with the aspect ratio clamped to ``ratio``. Every box is
    resized to ``size`` x ``size`` by bilinear interpolation (no antialiasing, unlike
    torchvision's tensor path: the boxes of a 256-pixel image are at most 1.14x the output).
    Returns float pixels in [0, 255], channels-last.
    """
    draws = resized_crop_flip_draws(len(images), flip, generator, images.device, scale=scale, ratio=ratio,
                                    attempts=attempts)
    return resized_crop_flip(images, size, draws, scale=scale, ratio=ratio)


def resized_crop_flip_draws(n: int, flip: bool, generator: torch.Generator, device, *, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3), attempts: int = 10) -> tuple:
    """The random part of :func:`random_resized_crop_flip` for ``n`` images: ``(area fraction, log aspect
    ratio, position, flipped or None)``."""
    area = torch.empty(n, attempts, device=device).uniform_(*scale, generator=generator)
    log_r = torch.empty(n, attempts, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                             generator=generator)
    u = torch.rand(n, 2, device=device, generator=generator)
    flipped = torch.rand(n, 1, device=device, generator=generator) < 0.5 if flip else None
    return area, log_r, u, flipped


def resized_crop_flip(images: torch.Tensor, size: int, draws: tuple, *, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """The boxes and flips ``draws`` (of :func:`resized_crop_flip_draws`) describe, resized to ``size``."""
    area, log_r, u, flipped = draws
    n, c, h, w = images.shape
    device = images.device
    area = area * (h * w)
    aspect = torch.exp(log_r)
    bw = torch.sqrt(area * aspect).round()
    bh = torch.sqrt(area / aspect).round()
    fits = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
    first = fits.int().argmax(dim=1, keepdim=True)  # first box that fits (0 if none does)
    bw, bh = bw.gather(1, first).squeeze(1), bh.gather(1, first).squeeze(1)
    found = fits.any(dim=1)
    # fallback: the central crop with the aspect ratio clamped into ``ratio``
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(h * ratio[1]), h
    else:
        fw, fh = w, h
    bw = torch.where(found, bw, torch.full_like(bw, fw))
    bh = torch.where(found, bh, torch.full_like(bh, fh))
    top = torch.where(found, torch.floor(u[:, 0] * (h - bh + 1)), torch.full_like(bh, (h - fh) // 2))
    left = torch.where(found, torch.floor(u[:, 1] * (w - bw + 1)), torch.full_like(bw, (w - fw) // 2))
    # output pixel j samples the box at left + (j + 0.5) * bw / size (pixel centres), in
    # grid_sample's normalised coordinates (align_corners=False): (2x) / w - 1 with x in pixels
    steps = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    xs = (left[:, None] + steps[None, :] * bw[:, None]) * (2.0 / w) - 1.0  # [n, size]
    ys = (top[:, None] + steps[None, :] * bh[:, None]) * (2.0 / h) - 1.0
    if flipped is not None:
        xs = torch.where(flipped, xs.flip(1), xs)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # [n, size, size, 2]
    out = torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def color_jitter_draws(n: int, strength: float, generator: torch.Generator, device) -> tuple:
    """The random part of :func:`color_jitter` for ``n`` images: ``(factors [n, 3], order [n, 3])``, the
    brightness, contrast and saturation factors ~ U[max(0, 1 - strength), 1 + strength] and the order of the
    three (a uniform permutation per image, as torchvision's ``ColorJitter`` with ``hue=0``)."""
    factors = torch.empty(n, 3, device=device).uniform_(max(0.0, 1.0 - strength), 1.0 + strength,
                                                        generator=generator)
    order = torch.rand(n, 3, device=device, generator=generator).argsort(dim=1)
    return factors, order


#: ITU-R 601-2 luma, torchvision's ``rgb_to_grayscale``.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def color_jitter(images: torch.Tensor, draws: tuple) -> torch.Tensor:
    """torchvision's ``adjust_brightness``, ``adjust_contrast`` and ``adjust_saturation`` of float images in
    [0, 255], each image with its own factors and order (``draws`` of :func:`color_jitter_draws`): every
    operation blends the image with a reference (black; the mean of its grayscale; its grayscale) and clips to
    [0, 255]. Single-channel images: saturation leaves them unchanged, contrast blends with their mean."""
    factors, order = draws
    n, c = images.shape[:2]
    weights = torch.tensor(GRAY_WEIGHTS, device=images.device).view(1, 3, 1, 1) if c == 3 else None
    x = images
    for step in range(3):
        op = order[:, step].view(n, 1, 1, 1)
        factor = factors.gather(1, order[:, step:step + 1]).view(n, 1, 1, 1)
        gray = (x * weights).sum(1, keepdim=True) if weights is not None else x
        reference = torch.where(op == 0, 0.0, torch.where(op == 1, gray.mean((1, 2, 3), keepdim=True), gray))
        x = (factor * x + (1.0 - factor) * reference).clamp_(0.0, 255.0)
    return x


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of an NCHW batch (``CenterCrop(size)``)."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop_size must be <= the stored image size {min(h, w)}, got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float, standardised per channel, channels-last."""
    x = images.float().div_(255.0)
    x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return x.contiguous(memory_format=torch.channels_last)


class TensorLoader:
    """Mini-batches of ``(normalised images, labels)`` from uint8 tensors on ``device``.

    With ``train=True`` the order is reshuffled each pass and every batch is augmented: with
    ``augmentation="crop_flip"`` by ``crop_padding`` and ``flip``, with ``"resized_crop_flip"``
    by a random resized crop to ``crop_size`` and ``flip``, then by ``color_jitter`` where it is
    above 0; evaluation batches of ``"resized_crop_flip"`` are center-cropped to ``crop_size``. The last, smaller batch is kept, as a plain
    DataLoader does.
    With ``world_size > 1`` every process draws the same global order (``shuffle_generator``
    seeded alike) and takes its ``rank``-th share of each global batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device,
                 mean, std, train: bool, crop_padding: int = 0, flip: bool = False,
                 augmentation: str = "crop_flip", crop_size: int = 224, color_jitter: float = 0.0,
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
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {augmentation!r}")
        self.augmentation, self.crop_size = augmentation, int(crop_size)
        self.color_jitter = float(color_jitter)
        self.generator = generator
        self.shuffle_generator = shuffle_generator or generator
        self.rank, self.world_size = int(rank), int(world_size)
        if train and generator is None:
            raise ValueError("a training TensorLoader needs a generator for shuffling and augmentation")

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def batch_indices(self):
        """The index (a slice, or a tensor of shuffled indices) of each batch of one pass."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.shuffle_generator, device=self.device) if self.train else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield slice(start, min(start + self.batch_size, n))
            else:
                idx = order[start:start + self.batch_size]
                if self.world_size > 1:  # this process's share of the global batch
                    idx = torch.tensor_split(idx, self.world_size)[self.rank]
                yield idx

    def draws(self, n: int):
        """The random augmentation of a training batch of ``n`` images (None where none applies), drawn from
        this loader's generator in the order ``__iter__`` draws it."""
        if not self.train:
            return None
        if self.augmentation == "resized_crop_flip":
            geometry = resized_crop_flip_draws(n, self.flip, self.generator, self.device)
        elif self.crop_padding or self.flip:
            geometry = crop_flip_draws(n, self.crop_padding, self.flip, self.generator, self.device)
        else:
            geometry = None
        if not self.color_jitter:
            return geometry
        return geometry, color_jitter_draws(n, self.color_jitter, self.generator, self.device)

    def augment(self, x: torch.Tensor, draws) -> torch.Tensor:
        """The batch ``x`` augmented as ``draws`` (of :meth:`draws`) say, normalised, channels-last."""
        jitter = None
        if self.color_jitter and draws is not None:
            draws, jitter = draws
        if self.augmentation == "resized_crop_flip":
            x = resized_crop_flip(x, self.crop_size, draws) if draws is not None else center_crop(x, self.crop_size)
        elif draws is not None:
            x = crop_flip(x, self.crop_padding, draws)
        if jitter is not None:
            x = color_jitter(x.float(), jitter)
        return normalize(x, self.mean, self.std)

    def __iter__(self):
        indices = list(self.batch_indices())  # the pass's order is drawn before its augmentation
        for idx in indices:
            x = self.augment(self.images[idx], self.draws(_size(idx)))
            yield x, self.labels[idx]


def _size(idx) -> int:
    return idx.stop - idx.start if isinstance(idx, slice) else len(idx)
