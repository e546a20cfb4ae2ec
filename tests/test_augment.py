import torch
import torch.nn.functional as F

import pytest

from amixup.augment import (TensorLoader, center_crop, color_jitter, color_jitter_draws, normalize, random_crop_flip,
                            random_resized_crop_flip)


def _matches_some_crop(out, img, padding):
    padded = F.pad(img, (padding,) * 4)
    h, w = img.shape[-2:]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top:top + h, left:left + w]
            if torch.equal(out, crop):
                return top, left, False
            if torch.equal(out, crop.flip(-1)):
                return top, left, True
    return None


def test_crop_flip_equals_torchvision_randomcrop_with_zero_padding():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zero pixels: padding is visible
    out = random_crop_flip(imgs, 4, True, g)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    found = [_matches_some_crop(o, i, 4) for o, i in zip(out, imgs)]
    assert all(f is not None for f in found)
    tops = {f[0] for f in found}
    flips = {f[2] for f in found}
    assert tops <= set(range(9)) and len(tops) > 4 and flips == {True, False}
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_crop_is_deterministic_for_a_seed():
    imgs = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(imgs, 2, True, torch.Generator().manual_seed(5))
    b = random_crop_flip(imgs, 2, True, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_normalize_standardises_per_channel():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.5, 1.0, 0.25]))
    assert out[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]


def test_tensor_loader_covers_the_data_once_per_pass_in_new_order():
    imgs = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    loader = TensorLoader(imgs, labels, 4, device="cpu", mean=[0.0], std=[1 / 255], train=True,
                          generator=torch.Generator().manual_seed(0))
    assert len(loader) == 3
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    for x, y in loader:  # images still belong to their labels after shuffling
        assert torch.allclose(x[:, 0, 0, 0], y.float(), atol=1e-4)


def test_resized_crop_of_the_whole_image_at_its_own_size_is_the_image_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    out = random_resized_crop_flip(imgs, 12, False, g, scale=(1, 1), ratio=(1, 1))
    close = lambda a, b: torch.allclose(a, b.float(), atol=1e-3)  # noqa: E731 (grid_sample rounding)
    assert close(out, imgs) and out.is_contiguous(memory_format=torch.channels_last)
    out = random_resized_crop_flip(imgs, 12, True, g, scale=(1, 1), ratio=(1, 1))
    same = [close(o, i) for o, i in zip(out, imgs)]
    mirrored = [close(o, i.flip(-1)) for o, i in zip(out, imgs)]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)


def test_resized_crop_at_scale_one_quarter_cuts_a_window_anywhere():
    # area fraction 1/4 and ratio 1 on 16x16: an 8x8 box, output 8x8: an exact window at a uniform offset
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8)
    out = random_resized_crop_flip(imgs, 8, False, g, scale=(0.25, 0.25), ratio=(1, 1))
    offsets = set()
    for o, img in zip(out, imgs):
        hits = [(t, l) for t in range(9) for l in range(9) if torch.allclose(o, img[:, t:t + 8, l:l + 8].float(), atol=1e-3)]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 40  # uniform over the 81 positions, not a fixed one


def test_resized_crop_falls_back_to_the_central_crop_with_clamped_ratio():
    # ratio 2 on a square image never fits at scale 1: torchvision's fallback is the central
    # 16 wide x 8 high box; resized to 8x8 it averages column pairs of rows 4..11
    g = torch.Generator().manual_seed(2)
    imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out = random_resized_crop_flip(imgs, 8, False, g, scale=(1, 1), ratio=(2, 2))
    box = imgs[:, :, 4:12].float()
    assert torch.allclose(out, (box[..., 0::2] + box[..., 1::2]) / 2)


def test_resized_crop_boxes_are_distributed_as_torchvision_draws_them():
    # a centred square covers 1/4 of the image; the share of it a crop shows depends on where the
    # box lands and how large it is: ours and torchvision's get_params must agree in distribution
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    n, side = 4000, 64
    imgs = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    imgs[:, :, 16:48, 16:48] = 255
    ours = random_resized_crop_flip(imgs, 32, True, torch.Generator().manual_seed(3)).mean(dim=(1, 2, 3)) / 255
    square = imgs[0, 0].float() / 255
    theirs = []
    for _ in range(n):
        top, left, h, w = RandomResizedCrop.get_params(square[None], (0.08, 1.0), (3 / 4, 4 / 3))
        theirs.append(square[top:top + h, left:left + w].mean())
    theirs = torch.stack(theirs)
    assert abs(ours.mean() - theirs.mean()) < 0.015
    assert abs((ours > 0.99).float().mean() - (theirs > 0.99).float().mean()) < 0.03  # box inside the square
    assert abs(ours.std() - theirs.std()) < 0.015


def test_center_crop_and_the_loader_crops_evaluation_batches():
    imgs = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    assert torch.equal(center_crop(imgs, 6), imgs[..., 2:8, 2:8])
    with pytest.raises(ValueError, match="crop_size must be <= the stored image size 10"):
        center_crop(imgs, 11)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(10)
    test = TensorLoader(images, labels, 4, device="cpu", mean=(0, 0, 0), std=(1, 1, 1), train=False,
                        augmentation="resized_crop_flip", crop_size=8)
    x, _ = next(iter(test))
    assert torch.allclose(x, images[:4, :, 4:12, 4:12].float() / 255)
    g = torch.Generator().manual_seed(0)
    train = TensorLoader(images, labels, 4, device="cpu", mean=(0, 0, 0), std=(1, 1, 1), train=True,
                         augmentation="resized_crop_flip", crop_size=8, flip=True, generator=g)
    assert [tuple(x.shape) for x, _ in train] == [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)]
    with pytest.raises(ValueError, match=r"augmentation must be one of \['crop_flip', 'resized_crop_flip'\]"):
        TensorLoader(images, labels, 4, device="cpu", mean=(0,) * 3, std=(1,) * 3, train=False, augmentation="big")


def test_color_jitter_is_torchvisions_brightness_contrast_saturation_per_image_in_its_order():
    """Each image gets torchvision's adjust_brightness / adjust_contrast / adjust_saturation (float images) with
    its own factors, in its own order (ColorJitter(s, s, s, hue=0) of MiSLAS's ImageNet-LT / Places-LT)."""
    import torchvision.transforms.functional as TF

    gen = torch.Generator().manual_seed(3)
    images = torch.rand(12, 3, 9, 7, generator=gen) * 255
    factors, order = color_jitter_draws(12, 0.4, gen, "cpu")
    assert sorted(map(tuple, order.sort(dim=1).values.tolist())) == [(0, 1, 2)] * 12  # permutations
    assert len({tuple(o) for o in order.tolist()}) > 1  # orders differ between images
    out = color_jitter(images, (factors, order))
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in range(12):
        expected = images[i] / 255
        for op in order[i].tolist():
            expected = ops[op](expected, float(factors[i, op]))
        torch.testing.assert_close(out[i] / 255, expected, rtol=1e-5, atol=1e-5)
    gray = torch.rand(4, 1, 5, 5, generator=gen) * 255  # one channel: saturation leaves it, contrast uses its mean
    draws = color_jitter_draws(4, 0.4, gen, "cpu")
    for i, image in enumerate(color_jitter(gray, draws)):
        expected = gray[i] / 255
        for op in draws[1][i].tolist():
            expected = ops[op](expected, float(draws[0][i, op]))
        torch.testing.assert_close(image / 255, expected, rtol=1e-5, atol=1e-5)


def test_color_jitter_factors_lie_in_its_range_and_never_below_zero():
    factors, _ = color_jitter_draws(4000, 0.4, torch.Generator().manual_seed(0), "cpu")
    assert 0.6 <= factors.min() < 0.61 and 1.39 < factors.max() <= 1.4
    factors, _ = color_jitter_draws(4000, 1.5, torch.Generator().manual_seed(0), "cpu")
    assert 0 <= factors.min() < 0.01 and 2.49 < factors.max() <= 2.5


def test_the_loader_jitters_training_images_after_the_crop_and_never_evaluation_images():
    """Training batches: the crops and flips of the loader without jitter (drawn first, from the same generator),
    then the jitter drawn after them; evaluation batches: unchanged."""
    from amixup.augment import crop_flip_draws

    images = torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10)
    common = dict(device="cpu", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_padding=2, flip=True)
    (x, y), = TensorLoader(images, labels, 10, train=True, generator=torch.Generator().manual_seed(1), **common)
    (xj, yj), = TensorLoader(images, labels, 10, train=True, generator=torch.Generator().manual_seed(1),
                             color_jitter=0.4, **common)
    gen = torch.Generator().manual_seed(1)  # the loader's stream: order, crops and flips, then the jitter
    torch.randperm(10, generator=gen)
    crop_flip_draws(10, 2, True, gen, "cpu")
    jitter = color_jitter_draws(10, 0.4, gen, "cpu")
    assert torch.equal(y, yj)
    torch.testing.assert_close(xj, color_jitter(x * 255, jitter) / 255)
    assert not torch.allclose(xj, x)
    (xe, _), = TensorLoader(images, labels, 10, train=False, color_jitter=0.4, **common)
    assert torch.equal(xe, images.float() / 255)
