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
    with pytest.raises(ValueError, match=r"model must be one of \['cnn_vis2d', 'densenet_bc', .*'resnet50', "
                                          r"'resnet50_cifar', 'vgg11'.*\], got 'no_such_model'"):
        build_model("no_such_model", 10)


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


# --------------------------------------------------------------------------- Table 8 networks

#: name -> (parameters at 10 / 100 / 200 classes, feature size, stages, hidden shapes per stage at 32x32)
TABLE8_NETWORKS = {
    "vgg11": ((9_228_362, 9_274_532, 9_325_832), 512, 5,
              [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (512,)]),
    "resnet50_cifar": ((23_520_842, 23_705_252, 23_910_152), 2048, 4,
                       [(256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048,)]),
    "densenet_bc": ((769_162, 800_032, 834_332), 342, 3, [(108, 16, 16), (150, 8, 8), (342,)]),
}


@pytest.mark.parametrize("name", sorted(TABLE8_NETWORKS))
def test_table8_parameter_counts(name):
    counts, feature_dim, n_stages, _ = TABLE8_NETWORKS[name]
    for classes, count in zip((10, 100, 200), counts):
        model = build_model(name, classes)
        assert sum(p.numel() for p in model.parameters()) == count
        assert model.feature_dim == feature_dim and len(model.stages) == n_stages
        assert model.last_layer == n_stages and model.manifold_layers == (0, 1, 2)


@pytest.mark.parametrize("name", sorted(TABLE8_NETWORKS))
@pytest.mark.parametrize("size", [32, 64])
def test_table8_output_shapes_at_32_and_64_pixels(name, size):
    torch.manual_seed(0)
    _, feature_dim, _, shapes = TABLE8_NETWORKS[name]
    model = build_model(name, 7).eval()
    x = torch.randn(2, 3, size, size)
    seen = []
    with torch.no_grad():
        h = x
        for stage in model.stages:
            h = stage(h)
            seen.append(tuple(h.shape[1:]))
        assert model(x).shape == (2, 7) and model.features(x).shape == (2, feature_dim)
    scale = size // 32  # 64x64 input: every spatial map twice the size, same feature
    assert seen == [s if len(s) == 1 else (s[0], s[1] * scale, s[2] * scale) for s in shapes]


def test_table8_structure():
    vgg = build_model("vgg11", 10)
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) for c in convs)  # 8 conv + 1 linear = 11 layers
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules()) == 8
    assert [m for m in vgg.modules() if isinstance(m, torch.nn.Linear)] == [vgg.head]  # one linear classifier
    resnet = build_model("resnet50_cifar", 10)
    stem = resnet.stages[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in resnet.modules())
    assert [len(resnet.stages[0][3]), len(resnet.stages[1]), len(resnet.stages[2]), len(resnet.stages[3][0])] == [3, 4, 6, 3]
    dense = build_model("densenet_bc", 10)
    convs = [m for m in dense.modules() if isinstance(m, torch.nn.Conv2d)]
    # depth 100: stem + 3 blocks x 16 bottleneck layers x 2 convs + 2 transitions + the linear head
    assert len(convs) == 1 + 3 * 16 * 2 + 2 and convs[0].out_channels == 24 and convs[0].kernel_size == (3, 3)
    assert sum(c.out_channels == 12 and c.kernel_size == (3, 3) for c in convs) == 48  # growth rate 12
    with pytest.raises(ValueError, match="6n \\+ 4"):
        from amixup.models import densenet_bc_model
        densenet_bc_model(10, depth=99)


@pytest.mark.parametrize("name", sorted(TABLE8_NETWORKS))
def test_table8_mixing_at_every_manifold_layer(name):
    """forward_mixed at each manifold layer and at the last layer: the identity mix leaves the
    logits unchanged, a zeroing mix changes them, and the mix sees the hidden state of that layer."""
    torch.manual_seed(0)
    _, feature_dim, n_stages, shapes = TABLE8_NETWORKS[name]
    model = build_model(name, 5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        expected = {0: (3, 32, 32), **{k: shapes[k - 1] for k in range(1, n_stages + 1)}}
        for layer in (*model.manifold_layers, model.last_layer):
            seen = {}

            def identity(h):
                seen["shape"] = tuple(h.shape[1:])
                return h

            logits, clean = model.forward_mixed(x, layer, identity)
            assert seen["shape"] == expected[layer]
            assert torch.allclose(logits, plain, atol=1e-4)
            assert (clean is not None) == (layer == model.last_layer)
            halved, _ = model.forward_mixed(x, layer, lambda h: h * 0.5)
            assert not torch.allclose(halved, plain, atol=1e-4)


def test_places_network_is_resnet152s_trunk_then_a_new_bottleneck():
    import torchvision

    model = build_model("resnet152_places", 365)
    trunk, block = model.stages
    tv = torchvision.models.resnet152(weights=None)
    assert sum(p.numel() for p in trunk.parameters()) == sum(
        p.numel() for n, p in tv.named_parameters() if not n.startswith("fc.")) == 58_143_808
    assert sum(p.numel() for p in block.parameters()) + sum(p.numel() for p in model.head.parameters()) == 5_210_477
    assert model.manifold_layers == (0, 1) and model.last_layer == 2
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    assert trunk(x).shape == (2, 2048, 2, 2) and model.features(x).shape == (2, 2048) and model(x).shape == (2, 365)
