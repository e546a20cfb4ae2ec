import torch
import torch.nn.functional as F

from amixup.augment import TensorLoader, normalize, random_crop_flip


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
