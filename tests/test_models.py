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
    with pytest.raises(ValueError, match=r"model must be one of \['cnn_vis2d', 'resnet32'\]"):
        build_model("vit", 10)
