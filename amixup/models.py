"""Models split into an encoder (a sequence of stages) and a linear head.

Every model is a :class:`SplitModel`: ``stages`` run in order to produce the feature
``z`` (the encoder output), ``head`` maps ``z`` to logits. Mixing layers are indexed
0 (the input), ``k`` (output of stage ``k``) and ``len(stages)`` (the feature ``z``,
"last layer" in the paper). ``manifold_layers`` are the layers manifold mixup draws
from: input, after stage 1, after stage 2 (Verma et al.'s choice for ResNets).

New architectures plug in with :func:`register_model`.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS: dict[str, Callable[..., "SplitModel"]] = {}


def register_model(name: str):
    """Decorator adding a constructor ``f(num_classes, in_channels) -> SplitModel`` to the registry."""

    def add(fn):
        MODELS[name] = fn
        return fn

    return add


#: Constructor arguments the engine sets itself: never a model option.
_BUILT_IN_ARGUMENTS = ("num_classes", "in_channels", "image_size")


def model_option_names(name: str) -> list[str]:
    """The options (keyword arguments) model ``name`` takes from ``RunConfig.model_options``."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return [p for p in inspect.signature(MODELS[name]).parameters if p not in _BUILT_IN_ARGUMENTS]


def check_model_options(name: str, options: dict) -> None:
    """``ValueError`` naming ``model_options`` where it holds an option model ``name`` does not take."""
    allowed = model_option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"model_options {unknown} are not options of model {name!r}; it takes {allowed}")


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None,
                **options) -> "SplitModel":
    """The registered model ``name``; ``image_size`` (the input's side) reaches the constructors that
    take it (the ViT's position embedding depends on it), the others pool globally. ``options`` are the
    model's own arguments (``RunConfig.model_options``, e.g. CNN-Vis2D's ``batchnorm``)."""
    check_model_options(name, options)
    kwargs = dict(options)
    if image_size is not None and "image_size" in inspect.signature(MODELS[name]).parameters:
        kwargs["image_size"] = int(image_size)
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


class SplitModel(nn.Module):
    """Encoder stages + linear head, with mixing at any layer."""

    manifold_layers: tuple[int, ...] = (0, 1, 2)

    def __init__(self, stages: list[nn.Module], head: nn.Linear):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head

    @property
    def last_layer(self) -> int:
        return len(self.stages)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_mixed(self, x: torch.Tensor, layer: int, mix: Callable[[torch.Tensor], torch.Tensor]):
        """Logits with ``mix`` applied to the hidden state at ``layer``.

        Returns ``(logits, clean_logits)``; ``clean_logits`` are the head's outputs on the
        un-mixed features (detached) when mixing happens at the last layer, else ``None``.
        """
        clean_logits = None
        for i, stage in enumerate(self.stages):
            if i == layer:
                x = mix(x)
            x = stage(x)
        if layer == self.last_layer:
            with torch.no_grad():
                clean_logits = self.head(x.detach())
            x = mix(x)
        return self.head(x), clean_logits


def _conv_bn_relu(cin: int, cout: int, batchnorm: bool = True) -> list[nn.Module]:
    if not batchnorm:  # the convolution keeps its bias where no BatchNorm follows
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


#: CNN-Vis2D's choices where the paper is silent (Section 3 / Appendix A.1 give only the widths and the 2-D
#: feature); the first value of each is the default.
VIS2D_FEATURE_ACTIVATIONS = ("none", "relu", "prelu")
VIS2D_POOLINGS = ("avg", "flatten")


@register_model("cnn_vis2d")
def cnn_vis2d(num_classes: int, in_channels: int = 3, feature_dim: int = 2, convs_per_block: int = 1,
              batchnorm: bool = True, feature_activation: str = "none", pooling: str = "avg",
              image_size: int = 32) -> SplitModel:
    """CNN-Vis2D: three conv blocks of 32, 64 and 128 channels, then a 2-D feature.

    The paper gives only the three widths and the 2-D feature. Here a block is
    ``convs_per_block`` 3x3 conv-BN-ReLU layers and a 2x2 max-pool (default one conv per
    block, the literal reading; 2 gives the LeNet++ layout of 2-D feature plots at about
    2.3x the cost); global average pooling and a linear layer give the feature, a linear
    head with bias the logits. The other silent choices are arguments too (``RunConfig.model_options``):
    ``batchnorm`` after each conv, ``feature_activation`` on the 2-D feature (``none``, ``relu``,
    or ``prelu`` as LeNet++), ``pooling`` of the last map (``avg``: global average; ``flatten``:
    all ``128 x (image_size / 8)^2`` values into the linear layer).
    """
    if feature_activation not in VIS2D_FEATURE_ACTIVATIONS:
        raise ValueError(f"feature_activation must be one of {list(VIS2D_FEATURE_ACTIVATIONS)}, "
                         f"got {feature_activation!r}")
    if pooling not in VIS2D_POOLINGS:
        raise ValueError(f"pooling must be one of {list(VIS2D_POOLINGS)}, got {pooling!r}")
    if not isinstance(batchnorm, bool):
        raise ValueError(f"batchnorm must be True or False, got {batchnorm!r}")
    blocks = []
    cin = in_channels
    for width in (32, 64, 128):
        layers = _conv_bn_relu(cin, width, batchnorm)
        for _ in range(convs_per_block - 1):
            layers += _conv_bn_relu(width, width, batchnorm)
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
        cin = width
    if pooling == "avg":
        blocks[-1].extend([nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, feature_dim)])
    else:
        side = int(image_size) // 8
        blocks[-1].extend([nn.Flatten(), nn.Linear(128 * side * side, feature_dim)])
    if feature_activation == "relu":
        blocks[-1].append(nn.ReLU())
    elif feature_activation == "prelu":
        blocks[-1].append(nn.PReLU())
    return SplitModel(blocks, nn.Linear(feature_dim, num_classes))


class _BasicBlock(nn.Module):
    """ResNet basic block with the option-A (zero-padding, parameter-free) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@register_model("resnet32")
def resnet32(num_classes: int, in_channels: int = 3) -> SplitModel:
    """ResNet-32 for CIFAR as in LDAM-DRW / MiSLAS: a 3x3 stem of 16 channels, three stages
    of five basic blocks (16, 32, 64 channels), option-A shortcuts, global average pool,
    a 64-d feature, kaiming-normal init of convs and the head.

    Stage 1 = stem + first five blocks, so manifold mixup's layers are input, after stage 1,
    after stage 2.
    """
    def stage(cin, cout, stride):
        return [_BasicBlock(cin, cout, stride)] + [_BasicBlock(cout, cout, 1) for _ in range(4)]

    stem = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    stages = [
        nn.Sequential(*stem, *stage(16, 16, 1)),
        nn.Sequential(*stage(16, 32, 2)),
        nn.Sequential(*stage(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    ]
    model = SplitModel(stages, nn.Linear(64, num_classes))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    return model


def _torchvision_resnet(depth: int, num_classes: int, in_channels: int) -> SplitModel:
    """torchvision's ResNet-``depth`` (random init, no weights downloaded) as a SplitModel.

    Stages: stem (conv1, bn1, relu, maxpool) + layer1, layer2, layer3, layer4 + avgpool +
    flatten; head: fc (2048 -> num_classes). A conv1 for ``in_channels`` != 3 is
    re-initialised as torchvision does (kaiming normal, fan_out).
    """
    import torchvision

    net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1),
        net.layer2,
        net.layer3,
        nn.Sequential(net.layer4, net.avgpool, nn.Flatten()),
    ]
    return SplitModel(stages, net.fc)


#: torchvision ResNet parameter prefixes -> SplitModel prefixes (see _torchvision_resnet)
_TORCHVISION_PREFIXES = {"conv1.": "stages.0.0.", "bn1.": "stages.0.1.", "layer1.": "stages.0.4.",
                         "layer2.": "stages.1.", "layer3.": "stages.2.", "layer4.": "stages.3.0.", "fc.": "head."}


def torchvision_prefixes(model: nn.Module) -> dict[str, str | None]:
    """How a torchvision ResNet ``state_dict``'s prefixes map onto ``model`` (None: not used)."""
    return getattr(model, "torchvision_prefixes", _TORCHVISION_PREFIXES)


def from_torchvision_state(state: dict, prefixes: dict[str, str | None] = _TORCHVISION_PREFIXES) -> dict:
    """A torchvision ResNet-50/101/152 ``state_dict`` (e.g. ImageNet weights) renamed for the SplitModel
    (``prefixes``: :func:`torchvision_prefixes` of the model; tensors mapped to None are left out)."""
    out = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"not a torchvision ResNet state dict: unexpected key {key!r}")
        if prefixes[prefix] is not None:
            out[prefixes[prefix] + key[len(prefix):]] = value
    return out


@register_model("resnet50")
def resnet50(num_classes: int, in_channels: int = 3) -> SplitModel:
    """torchvision ResNet-50 (see _torchvision_resnet), 2048-d feature."""
    return _torchvision_resnet(50, num_classes, in_channels)


@register_model("resnet101")
def resnet101(num_classes: int, in_channels: int = 3) -> SplitModel:
    """torchvision ResNet-101 (see _torchvision_resnet), 2048-d feature."""
    return _torchvision_resnet(101, num_classes, in_channels)


@register_model("resnet152")
def resnet152(num_classes: int, in_channels: int = 3) -> SplitModel:
    """torchvision ResNet-152 (see _torchvision_resnet), 2048-d feature."""
    return _torchvision_resnet(152, num_classes, in_channels)


#: The torchvision network whose pretrained weights (``finetune_from="torchvision:NAME"``) fit each model.
TORCHVISION_ARCH = {"resnet50": "resnet50", "resnet101": "resnet101", "resnet152": "resnet152",
                    "resnet152_places": "resnet152"}


class PlacesResNet(SplitModel):
    """The Places-LT network of the paper's cited setup (MiSLAS stage 1, after Decoupling): a torchvision
    ResNet-152 trunk (conv1 to layer4; ImageNet weights through ``finetune_from``, kept frozen with
    ``frozen_stages=1``), one new bottleneck block (2048 -> 512 -> 2048 channels), global average pooling and
    the linear head. Mixing layers: 0 the input, 1 the trunk's output (the new block's input), 2 the pooled
    feature; manifold mixup draws from 0 and 1."""

    manifold_layers = (0, 1)
    torchvision_prefixes = {"conv1.": "stages.0.0.", "bn1.": "stages.0.1.", "layer1.": "stages.0.4.",
                            "layer2.": "stages.0.5.", "layer3.": "stages.0.6.", "layer4.": "stages.0.7.",
                            "fc.": None}  # ImageNet's classifier is not Places'


@register_model("resnet152_places")
def resnet152_places(num_classes: int, in_channels: int = 3) -> PlacesResNet:
    """:class:`PlacesResNet` (random init here; the recipe loads ImageNet weights into the trunk)."""
    from torchvision.models.resnet import Bottleneck

    net = _torchvision_resnet(152, num_classes, in_channels)
    trunk = nn.Sequential(*net.stages[0], net.stages[1], net.stages[2], net.stages[3][0])
    block = Bottleneck(2048, 512)  # torchvision's initialisation of a bottleneck (kaiming normal, BN 1 / 0)
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return PlacesResNet([trunk, nn.Sequential(block, nn.AdaptiveAvgPool2d(1), nn.Flatten())], net.head)


class FastDropout(nn.Module):
    """Dropout with probability ``p`` (quantised to 1/65536) whose mask comes from 16-bit slices of
    64-bit random integers: the same operation as ``nn.Dropout``, about 5x faster on a CPU, where
    drawing one random number per element dominates a small ViT's step. Identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {p!r}")
        self.p = float(p)
        self.threshold = round(self.p * 65536) - 32768  # keep where the int16 slice >= threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep * (1.0 / (1.0 - self.p))


class _PatchEmbedding(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` patches -> linear embedding, a learned class token
    prepended and a learned position embedding added (Dosovitskiy et al.'s ViT)."""

    def __init__(self, in_channels: int, image_size: int, patch: int, dim: int, dropout: float):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of the patch size {patch}")
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)            # [B, patches, dim]
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.dropout(tokens + self.position)


class _Attention(nn.Module):
    """Multi-head self-attention, dropout on the attention weights and on the output."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding size {dim} must be a multiple of heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = FastDropout(dropout)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        mixed = self.attn_dropout(weights) @ v                        # [B, heads, T, d/heads]
        return self.dropout(self.out(mixed.transpose(1, 2).reshape(b, t, d)))


class _TransformerBlock(nn.Module):
    """Pre-norm encoder block: x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = _Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), FastDropout(dropout),
                                 nn.Linear(mlp_dim, dim), FastDropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ClassToken(nn.Module):
    """Final LayerNorm and the class token's embedding: the encoder's feature."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x[:, 0])


@register_model("vit")
def vit(num_classes: int, in_channels: int = 3, image_size: int = 32, patch: int = 4, depth: int = 7,
        heads: int = 8, mlp_dim: int = 256, dim: int = 128, dropout: float = 0.05) -> SplitModel:
    """The coarse-to-fine encoder of Appendix A.3: a ViT with 4x4 patches, 7 pre-norm blocks of
    8 heads (head size dim/heads = 16), MLP size 256, embedding 128, dropout 0.05.

    Where the paper is silent (as its cited setup, Chen et al. 2022): a learned class token whose
    final-LayerNorm embedding is the 128-d feature, learned position embeddings, GELU.
    Stages: patch embedding, then one stage per block (the last with the final norm and the
    class-token readout), so mixing layer 0 is the image and ``len(stages)`` the feature.
    """
    blocks = [_TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(depth)]
    stages = [_PatchEmbedding(in_channels, image_size, patch, dim, dropout), *blocks[:-1],
              nn.Sequential(blocks[-1], _ClassToken(dim))]
    model = SplitModel(stages, nn.Linear(dim, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


# --------------------------------------------------------------------------- Table 8 (CIFAR-style)
#
# The image-classification benchmarks of Appendix B.1 on 32x32 (CIFAR) and 64x64 (Tiny-ImageNet)
# images: 3x3 stems without an initial max-pool and a global average pool before the linear head,
# so one network works at both sizes. Manifold mixup mixes at the input, after stage 1 and after
# stage 2, as for the ResNets above.

def _init_cifar(model: nn.Module) -> nn.Module:
    """Kaiming-normal (fan_out) convolutions, BatchNorm at 1 / 0, zero linear biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


#: VGG11 (configuration "A" of Simonyan & Zisserman): 3x3 conv widths per block, each block ends in a 2x2 max-pool
_VGG11_BLOCKS = ((64,), (128,), (256, 256), (512, 512), (512, 512))


@register_model("vgg11")
def vgg11(num_classes: int, in_channels: int = 3) -> SplitModel:
    """VGG11 with batch normalisation for CIFAR-size images: five blocks of 3x3 conv-BN-ReLU layers
    (64 | 128 | 256, 256 | 512, 512 | 512, 512), each followed by a 2x2 max-pool, then a global
    average pool (1x1 at 32x32 input, 2x2 at 64x64) and one linear classifier on the 512-d feature.

    Stages are the five blocks, so manifold mixup's layers (input, after stage 1, after stage 2)
    are the input and the outputs of the 64- and 128-channel blocks.
    """
    blocks, cin = [], in_channels
    for widths in _VGG11_BLOCKS:
        layers = []
        for width in widths:
            layers += _conv_bn_relu(cin, width)
            cin = width
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    blocks[-1].extend([nn.AdaptiveAvgPool2d(1), nn.Flatten()])
    return _init_cifar(SplitModel(blocks, nn.Linear(512, num_classes)))


@register_model("resnet50_cifar")
def resnet50_cifar(num_classes: int, in_channels: int = 3) -> SplitModel:
    """ResNet-50 for CIFAR-size images: torchvision's bottleneck ResNet-50 (stages of 3, 4, 6, 3
    blocks, 64-512 base widths, projection shortcuts, stride on the 3x3 conv) with the 7x7 stride-2
    stem and the max-pool replaced by one 3x3 stride-1 conv, so a 32x32 input reaches layer4 at 4x4;
    global average pool, 2048-d feature, linear head. Random init as torchvision's.

    Stages: stem + layer1, layer2, layer3, layer4 + pool; manifold mixup's layers are input,
    after layer1 and after layer2 (Verma et al.).
    """
    import torchvision

    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    stem = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    stages = [
        nn.Sequential(stem, net.bn1, net.relu, net.layer1),
        net.layer2,
        net.layer3,
        nn.Sequential(net.layer4, net.avgpool, nn.Flatten()),
    ]
    return SplitModel(stages, net.fc)


class _DenseLayer(nn.Module):
    """DenseNet-BC bottleneck layer: BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k), concatenated to its input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def _transition(cin: int, cout: int) -> nn.Sequential:
    """DenseNet transition: BN-ReLU-1x1 conv (compression) - 2x2 average pool."""
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2))


def densenet_bc_model(num_classes: int, in_channels: int = 3, depth: int = 100, growth: int = 12,
                      compression: float = 0.5) -> SplitModel:
    """DenseNet-BC (Huang et al.) for CIFAR-size images: a 3x3 stem conv of 2k channels, three dense
    blocks of (depth - 4) / 6 bottleneck layers with transitions that compress the channels by
    ``compression`` and halve the resolution, then BN-ReLU, global average pool and a linear head.

    Stages: stem + block 1 + transition 1, block 2 + transition 2, block 3 + BN-ReLU-pool; manifold
    mixup's layers are input, after stage 1 and after stage 2.
    """
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
    n = (depth - 4) // 6
    channels = 2 * growth
    stages: list[nn.Module] = []
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
    for block in range(3):
        for _ in range(n):
            layers.append(_DenseLayer(channels, growth))
            channels += growth
        if block < 2:
            out = int(channels * compression)
            layers.append(_transition(channels, out))
            channels = out
        else:
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        stages.append(nn.Sequential(*layers))
        layers = []
    return _init_cifar(SplitModel(stages, nn.Linear(channels, num_classes)))


@register_model("densenet_bc")
def densenet_bc(num_classes: int, in_channels: int = 3) -> SplitModel:
    """DenseNet-BC with depth 100, growth rate 12, compression 0.5 (342-d feature); see densenet_bc_model."""
    return densenet_bc_model(num_classes, in_channels, depth=100, growth=12, compression=0.5)
