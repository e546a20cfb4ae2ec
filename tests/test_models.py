import pytest
import torch

from amixup.models import MODELS, SplitModel, build_model, register_model


@pytest.mark.parametrize("name, classes, feature_dim", [("cnn_vis2d", 4, 2), ("resnet32", 10, 64)])
def test_shapes_and_split(name, classes, feature_dim):
    model = build_model(name, classes).eval()
    x = torch.randn(5, 3, 32, 32)
    z = model.features(x)
    assert z.shape == (5, feature_dim) and model.feature_dim == feature_dim
    assert model(x).shape == (5, classes)
    assert torch.allclose(model.head(z), model(x))
    assert model.last_layer == 3 and model.manifold_layers == (0, 1, 2)


def test_resnet32_is_ldam_drw_size():
    model = build_model("resnet32", 10)
    # 3 stages x 5 blocks x 2 convs + stem = 31 convs + 1 linear = 32 weighted layers, option-A shortcuts
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 31
    assert sum(p.numel() for p in model.parameters()) == 464154


def test_option_a_shortcut_pads_channels_with_zeros():
    block = build_model("resnet32", 10).stages[1][0]
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2]) and not s[:, :8].any() and not s[:, 24:].any()


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_forward_mixed_at_each_layer(layer):
    torch.manual_seed(0)
    model = build_model("cnn_vis2d", 4).eval()
    x = torch.randn(6, 3, 32, 32)
    seen = {}

    def identity(h):
        seen["shape"] = tuple(h.shape)
        return h

    logits, clean = model.forward_mixed(x, layer, identity)
    assert torch.allclose(logits, model(x), atol=1e-6)
    expected = {0: (6, 3, 32, 32), 1: (6, 32, 16, 16), 2: (6, 64, 8, 8), 3: (6, 2)}[layer]
    assert seen["shape"] == expected
    assert (clean is not None) == (layer == 3)
    zeroed, _ = model.forward_mixed(x, layer, torch.zeros_like)
    assert not torch.allclose(zeroed, logits)


def test_registry_plugs_in_new_models_and_rejects_unknown():
    @register_model("tiny_test_model")
    def tiny(num_classes, in_channels=3):
        return SplitModel([torch.nn.Flatten()], torch.nn.Linear(in_channels * 4, num_classes))

    try:
        assert build_model("tiny_test_model", 3, in_channels=1)(torch.randn(2, 1, 2, 2)).shape == (2, 3)
    finally:
        MODELS.pop("tiny_test_model")
    with pytest.raises(ValueError, match=r"model must be one of \['cnn_vis2d', 'resnet101', 'resnet152', 'resnet32', 'resnet50'\]"):
        build_model("vit", 10)


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_torchvision_resnets_shapes(name):
    torch.manual_seed(0)
    model = build_model(name, 5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.features(x).shape == (2, 2048) and model(x).shape == (2, 5)
    assert model.feature_dim == 2048 and model.last_layer == 4 and model.manifold_layers == (0, 1, 2)


def test_resnet50_matches_torchvision_and_mixes_at_each_layer():
    import torchvision

    count = sum(p.numel() for p in build_model("resnet50", 1000).parameters())
    assert count == sum(p.numel() for p in torchvision.models.resnet50(weights=None).parameters()) == 25_557_032
    torch.manual_seed(0)
    model = build_model("resnet50", 5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        for layer in range(5):
            logits, clean = model.forward_mixed(x, layer, lambda h: h)
            assert torch.allclose(logits, plain, atol=1e-5) and (clean is not None) == (layer == 4)


def test_resnet50_in_channels():
    model = build_model("resnet50", 5, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)
