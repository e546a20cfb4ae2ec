"""The paper's hyperparameters, in one place, and the run profiles.

``RECIPES`` holds each experiment's full recipe (the ``paper`` profile). ``PROFILES``
shrink a recipe for a CPU: ``smoke`` runs in seconds (CI), ``quick`` in minutes.
Shortened profiles scale the lr milestones, the step size and warm-up with the number of epochs.
"""

from __future__ import annotations

import copy
import dataclasses

from .config import RunConfig

#: Paper Section 3 / Appendix A.1: CNN-Vis2D on Mini-CIFAR(-LT, -Coarse).
MOTIVATION = dict(
    model="cnn_vis2d", epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
    weight_decay=5e-4, lr_schedule="multistep", milestones=(30, 60, 80), gamma=0.2,
    alpha=1.0, beta=0.34,
    # Mini-CIFAR-LT splits of Section 3: many > 1000, median 200-1000, few < 200 images.
    split_convention="counts", many_threshold=1000, few_threshold=200,
)

#: Appendix A.2, following Zhong et al. (MiSLAS) / LDAM-DRW: ResNet32 on CIFAR-10/100-LT.
CIFAR_LT = dict(
    model="resnet32", epochs=200, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
    weight_decay=2e-4, lr_schedule="multistep", milestones=(160, 180), gamma=0.1,
    warmup_epochs=5, alpha=1.0, beta=0.34,
    # MiSLAS's class-index splits (CIFAR-10: [0,3) [3,7) [7,10)); count thresholds would
    # leave CIFAR-10-LT without a few class although Table 3 reports one.
    split_convention="index",
)

#: A control for Table 3 (not a table of the paper): the ERM recipe of LDAM-DRW's code (Cao et al. 2019), whose CE
#: figure on canonical CIFAR-10-LT at imbalance 100 (70.36, best over epochs) Table 3 cites through MiSLAS [10].
#: CIFAR_LT but for three things: the lr decay (x0.01 after epoch 160, x0.0001 after 180: gamma 0.01 at both
#: milestones), the normalisation (the CIFAR-10 mean with LDAM-DRW's std (0.2023, 0.1994, 0.2010)) and which
#: images the long tail keeps (numpy's np.random.seed(0) + shuffle per class). CE only; run it in fp32.
#: ``experiments.ldam_drw_control_configs`` builds it; notebook 02 compares it with the cited figure and Table 3's CE.
LDAM_DRW_NORMALIZATION = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
LDAM_DRW_ERM = dict(CIFAR_LT, method="ce", gamma=0.01, normalization=LDAM_DRW_NORMALIZATION,
                    longtail_selection="ldam_drw")

#: Coarse-to-fine second stage (Section 3): the encoder pre-trained on Mini-CIFAR-Coarse is
#: frozen and a new linear head is fit on the four fine classes. The paper gives no recipe for
#: this stage of the toy study; we take the one of its cited coarse-to-fine setup (Chen et al.,
#: Appendix A.3: AdamW, lr 1e-3, no weight decay, cosine annealing), shortened to 30 epochs since
#: only a 2x4 linear head is trained.
MOTIVATION_FINETUNE = dict(
    model="cnn_vis2d", epochs=30, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.0,
    lr_schedule="cosine", milestones=(), alpha=1.0, beta=0.34, method="ce", freeze_encoder=True,
    split_convention="counts", many_threshold=1000, few_threshold=200,
)

#: Seeds ("trials") per table, as the paper's captions state them (Tables 1, 2 and 8 state none). The table
#: functions of ``amixup.experiments`` and the notebooks default to seed 0; pass ``seeds=range(PAPER_SEEDS[t])``.
PAPER_SEEDS = {"table3": 20, "table4": 5, "table5": 3, "table6": 5, "table7": 5}

#: Section 4.1 / Appendix A.2: ImageNet-LT with torchvision ResNets. The paper gives SGD momentum
#: 0.9, weight decay 5e-4, cosine annealing and mixup alpha 0.2; it is silent on epochs, batch
#: size and lr, which are those of its cited setup (MiSLAS stage 1: batch 256, lr 0.1, 180 epochs
#: on ImageNet-LT, 90 on Places-LT). Augmentation is MiSLAS's: RandomResizedCrop(224) + flip of
#: the 256-pixel stored images, then ColorJitter(0.4, 0.4, 0.4) (``color_jitter``); test images are
#: center-cropped to 224 (Resize(256) + CenterCrop(224)). Splits: many > 100, median 20-100, few < 20 training images.
#: AM-mixup's beta per network in Table 4 (ImageNet-LT) and in Table 5 (Places-LT).
TABLE4_BETA = {"resnet50": 0.34, "resnet101": 0.5, "resnet152": 0.2}
TABLE5_BETA = 0.1

IMAGENET_LT = dict(
    dataset="imagenet_lt", model="resnet50", epochs=180, batch_size=256, optimizer="sgd", lr=0.1,
    momentum=0.9, weight_decay=5e-4, lr_schedule="cosine", milestones=(), warmup_epochs=0,
    alpha=0.2, beta=0.34, augmentation="resized_crop_flip", crop_size=224, crop_padding=0, flip=True,
    color_jitter=0.4, split_convention="counts", many_threshold=100, few_threshold=20,
    beta_per_model=TABLE4_BETA,  # make_config: the beta of the chosen model unless beta is given
)

#: Places-LT (Table 5): the paper names no network and borrows "the same settings as [10]" (MiSLAS), whose
#: stage 1 on Places-LT keeps an ImageNet-pretrained ResNet-152 frozen (eval mode, no gradient) and trains one
#: new bottleneck block and the classifier on its features (``models.resnet152_places``, ``frozen_stages=1``).
#: ``finetune_from="torchvision:IMAGENET1K_V1"`` loads torchvision's ImageNet weights into the trunk (downloaded
#: once into torch's hub cache; offline, pass the weights file's path instead). ``model="resnet152",
#: frozen_stages=0, finetune_from=None`` trains a whole ResNet-152 from random weights instead.
PLACES_LT = dict(IMAGENET_LT, dataset="places_lt", model="resnet152_places", epochs=90, beta=TABLE5_BETA,
                 beta_per_model={}, frozen_stages=1, finetune_from="torchvision:IMAGENET1K_V1")

#: Section 4.3 / Appendix A.3 (after Chen et al. 2022, the paper's [5]): stage 1 trains the ViT encoder
#: on the coarse labels with the method; AdamW lr 3e-4 without weight decay, cosine annealing with
#: T_max = 100 epochs over 600 epochs in torch's CosineAnnealingLR sense (the lr reaches 0 at epoch 100,
#: is back at 3e-4 at epoch 200, and so on: three periods), batch 128, dropout 0.05 (in the model).
#: Augmentation per dataset (the paper is silent): COARSE_TO_FINE_AUGMENTATION.
COARSE_TO_FINE = dict(
    model="vit", epochs=600, batch_size=128, optimizer="adamw", lr=3e-4, weight_decay=0.0,
    lr_schedule="cosine", cosine_t_max=100, milestones=(), alpha=1.0, beta=0.34,
    profiles={"smoke": dict(cosine_t_max=2), "quick": dict(epochs=2, cosine_t_max=2)},
)

#: Stage 2: the stage-1 encoder frozen (eval mode: no dropout), a new linear head on the fine labels
#: with plain CE: AdamW lr 1e-3, no weight decay, cosine T_max 100 over 100 epochs, batch 128, no
#: augmentation, so the images are encoded once and the head trains on the stored features
#: (``cache_frozen_features``). The quick profile keeps all 100 epochs (they cost seconds), smoke has 20.
COARSE_TO_FINE_TRANSFER = dict(
    model="vit", epochs=100, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.0,
    lr_schedule="cosine", cosine_t_max=100, milestones=(), method="ce", freeze_encoder=True,
    crop_padding=0, flip=False,
    profiles={"smoke": dict(epochs=20, cosine_t_max=20), "quick": dict(epochs=100)},
)

#: Stage-1 augmentation per coarse dataset (the paper is silent): RandomCrop(32, padding=4) + horizontal flip,
#: the CIFAR recipe of the paper's other experiments (LDAM-DRW / MiSLAS), and none on MNIST, where flips change
#: digits. The code of the cited coarse-to-fine setup [5] uses SimCLR-style augmentation instead (README).
COARSE_TO_FINE_AUGMENTATION = {
    "mnist_coarse": dict(crop_padding=0, flip=False),
    "cifar10_coarse": dict(crop_padding=4, flip=True),
    "cifar100_coarse": dict(crop_padding=4, flip=True),
}

#: Table 6's coarse dataset -> the fine dataset the frozen encoder is transferred to.
FINE_OF_COARSE = {"mnist_coarse": "mnist", "cifar10_coarse": "cifar10", "cifar100_coarse": "cifar100"}

#: Appendix B.1 / Table 8: CE, mixup, manifold mixup and AM-mixup (beta 0.67) on CIFAR-10, CIFAR-100 and
#: Tiny-ImageNet with the CIFAR-style VGG11, ResNet-50 and DenseNet-BC (k = 12) of amixup.models. The paper
#: gives the lr schedules, epochs and (Tiny-ImageNet) batch size and weight decay; where it is silent we take
#: the public code that has exactly its schedules: on CIFAR-10 (lr 0.05 halved every 30 of 300 epochs)
#: pytorch-vgg-cifar10 (batch 128, SGD momentum 0.9, weight decay 5e-4), on CIFAR-100 (lr 0.1 / 5 at 60,
#: 120, 160 of 200 epochs) pytorch-cifar100 (batch 128, momentum 0.9, weight decay 5e-4);
#: augmentation RandomCrop(size, padding=4) + flip everywhere (on Tiny-ImageNet: 64-pixel crops, as in the
#: manifold-mixup / PuzzleMix Tiny-ImageNet training), mixup alpha 1.0 as in the other recipes. All classes
#: are balanced, so only overall accuracy is reported (every class falls in "many").
TABLE8_BETA = 0.67
_BENCHMARK = dict(optimizer="sgd", momentum=0.9, alpha=1.0, beta=TABLE8_BETA, warmup_epochs=0,
                  augmentation="crop_flip", crop_padding=4, flip=True, split_convention="counts")
BENCHMARK_CIFAR10 = dict(_BENCHMARK, dataset="cifar10", model="vgg11", epochs=300, batch_size=128, lr=0.05,
                         weight_decay=5e-4, lr_schedule="step", step_size=30, gamma=0.5, milestones=())
BENCHMARK_CIFAR100 = dict(_BENCHMARK, dataset="cifar100", model="vgg11", epochs=200, batch_size=128, lr=0.1,
                          weight_decay=5e-4, lr_schedule="multistep", milestones=(60, 120, 160), gamma=0.2)
#: Tiny-ImageNet, VGG11 and ResNet-50: batch 256, no weight decay, 200 epochs, lr 0.1 x 0.9 every 20 epochs.
BENCHMARK_TINY_IMAGENET = dict(_BENCHMARK, dataset="tiny_imagenet", model="vgg11", epochs=200, batch_size=256,
                               lr=0.1, weight_decay=0.0, lr_schedule="step", step_size=20, gamma=0.9, milestones=())
#: Tiny-ImageNet, DenseNet-BC: batch 64, no weight decay, 300 epochs, lr 0.1 / 10 at 150 and 225.
BENCHMARK_TINY_IMAGENET_DENSENET = dict(BENCHMARK_TINY_IMAGENET, model="densenet_bc", epochs=300, batch_size=64,
                                        lr_schedule="multistep", step_size=0, milestones=(150, 225), gamma=0.1)

#: our Table 8 networks -> their names in the paper's rows (results/paper/paper_results.csv, column network)
TABLE8_NETWORKS = {"vgg11": "vgg11", "resnet50_cifar": "resnet50", "densenet_bc": "densenet_bc_k12"}
TABLE8_DATASETS = ("cifar10", "cifar100", "tiny_imagenet")


def benchmark_recipe(dataset: str, network: str) -> str:
    """The recipe name of a Table 8 (dataset, network) pair."""
    if dataset not in TABLE8_DATASETS:
        raise ValueError(f"dataset must be one of {list(TABLE8_DATASETS)}, got {dataset!r}")
    if network not in TABLE8_NETWORKS:
        raise ValueError(f"network must be one of {list(TABLE8_NETWORKS)}, got {network!r}")
    if dataset == "tiny_imagenet":
        return "benchmark_tiny_imagenet_densenet" if network == "densenet_bc" else "benchmark_tiny_imagenet"
    return f"benchmark_{dataset}"


RECIPES: dict[str, dict] = {
    "motivation": MOTIVATION,
    "motivation_finetune": MOTIVATION_FINETUNE,
    "cifar_lt": CIFAR_LT,
    "ldam_drw_erm": LDAM_DRW_ERM,
    "imagenet_lt": IMAGENET_LT,
    "places_lt": PLACES_LT,
    "coarse_to_fine": COARSE_TO_FINE,
    "coarse_to_fine_transfer": COARSE_TO_FINE_TRANSFER,
    "benchmark_cifar10": BENCHMARK_CIFAR10,
    "benchmark_cifar100": BENCHMARK_CIFAR100,
    "benchmark_tiny_imagenet": BENCHMARK_TINY_IMAGENET,
    "benchmark_tiny_imagenet_densenet": BENCHMARK_TINY_IMAGENET_DENSENET,
}

#: Table 7 rows (MR, OL, LL) as configuration on top of method "am_mixup".
ABLATION_ROWS: dict[int, dict] = {
    1: dict(rate="am", one_sided=False, last_layer=False),
    2: dict(rate="am", one_sided=False, last_layer=True),
    3: dict(rate="am", one_sided=True, last_layer=False),
    4: dict(rate="beta", one_sided=True, last_layer=True),
    5: dict(rate="fixed", one_sided=True, last_layer=True),
    6: dict(rate="am", one_sided=True, last_layer=True),
}

#: A recipe's ``profiles`` entry refines these for that recipe (e.g. a quick profile sized to its model).
PROFILES: dict[str, dict] = {
    "smoke": dict(epochs=2, train_subset=512, test_subset=256),
    "quick": dict(epochs=12),
    "paper": dict(),
}


def make_config(recipe: str, profile: str = "paper", **overrides) -> RunConfig:
    """A validated :class:`RunConfig` for ``recipe`` at ``profile``, then ``overrides``.

    A shortened run scales the lr milestones, the warm-up and the cosine period ``cosine_t_max``
    with its number of epochs, unless the profile or the overrides set them.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    settings = copy.deepcopy(RECIPES[recipe])  # a config never shares a dict (normalization, ...) with the recipe
    full_epochs = settings["epochs"]
    recipe_profile = settings.pop("profiles", {}).get(profile, {})
    settings.update(PROFILES[profile])
    settings.update(recipe_profile)
    epochs = overrides.get("epochs", settings["epochs"])
    if epochs != full_epochs and "milestones" not in overrides:
        scale = epochs / full_epochs
        settings["milestones"] = tuple(sorted({max(1, round(m * scale)) for m in settings["milestones"]}))
        if settings.get("warmup_epochs"):
            settings["warmup_epochs"] = min(epochs - 1, settings["warmup_epochs"], max(1, round(settings["warmup_epochs"] * scale)))
    if (epochs != full_epochs and settings.get("cosine_t_max") and "cosine_t_max" not in overrides
            and "cosine_t_max" not in recipe_profile):
        settings["cosine_t_max"] = max(1, round(settings["cosine_t_max"] * epochs / full_epochs))
    if epochs != full_epochs and settings.get("step_size") and "step_size" not in overrides:
        settings["step_size"] = max(1, round(settings["step_size"] * epochs / full_epochs))
    beta_per_model = settings.pop("beta_per_model", {})
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}; RunConfig's fields are {sorted(fields)}")
    settings.update(overrides)
    if "beta" not in overrides and settings["model"] in beta_per_model:
        settings["beta"] = beta_per_model[settings["model"]]
    settings["profile"] = profile
    return RunConfig(**settings).validate()
