"""The configuration of one training run, validated before any work starts."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field

SPLIT_CONVENTIONS = ("counts", "index")
TRAIN_ACC_SOURCES = ("clean", "mixed")
LR_SCHEDULES = ("multistep", "cosine", "step")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("fp32", "bf16")
AUGMENTATIONS = ("crop_flip", "resized_crop_flip")  # amixup.augment
STEP_MODES = ("auto", "eager", "static")  # amixup.engine / amixup.static_step
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # N: a GPU index >= 0

#: Fields added after records were first written: left out of the run id while at these
#: defaults, so earlier records keep their ids.
_DIGEST_OPTIONAL = {"precision": "fp32", "augmentation": "crop_flip", "crop_size": 224, "cosine_t_max": None,
                    "cache_frozen_features": True, "step_size": 0, "eval_batch_size": 512,
                    "frozen_stages": 0, "color_jitter": 0.0, "model_options": {},
                    "longtail_selection": "randperm", "normalization": {}}
#: Fields that say how a run is executed, not what it trains (like the device): never in the run id.
_EXECUTION_ONLY = ("device", "step_mode", "checkpoint_every")
#: Execution-only fields of earlier versions: a record that holds one at this value reads as if it did not (the run
#: is the same, its id too); any other value is an error naming what replaced it. ``compile_step`` (torch.compile
#: of the static step) had no GPU figure and left the engine (benchmarks/README.md).
_REMOVED = {"compile_step": (False, "compile_step was removed (torch.compile of the static step had no measured "
                                    "gain; see benchmarks/README.md); drop it")}


#: Float fields whose whole numbers enter the run id as ints (the other float fields': as floats), the form every
#: committed record has (imbalance factors such as 100 are written as ints by the recipes).
_WHOLE_AS_INT = ("imb_factor",)


def _canonical_number(name: str, type_name: str, value):
    """``value`` as the run id hashes it: a whole number of a float field as a float (``beta=1`` is
    ``beta=1.0``), or as an int for :data:`_WHOLE_AS_INT` (``imb_factor=100.0`` is ``100``)."""
    if "float" not in type_name or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if name in _WHOLE_AS_INT:
        return int(value) if float(value).is_integer() else value
    return float(value)


def parse_value(text: str):
    """A config value typed on a command line: a Python literal (``0.5``, ``False``, ``[1, 2]``) or plain text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(items, option: str = "--set", split: bool = False) -> dict:
    """``["lr=0.1", "flip=False"]`` -> ``{"lr": 0.1, "flip": False}`` (values by :func:`parse_value`); with
    ``split``, each value is a comma-separated list (``"method=ce,mixup"`` -> ``["ce", "mixup"]``).
    ``ValueError`` naming ``option`` and an item without ``=`` or a field given twice."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{option} expects FIELD=VALUE, got {item!r}")
        if key in out:
            raise ValueError(f"{option} gives {key} twice ({key}={out[key]!r} and {item!r})"
                             + ("; list every value once: FIELD=V1,V2" if split else ""))
        out[key] = [parse_value(v) for v in value.split(",")] if split else parse_value(value)
    return out


def number_argument(kind=int, low=1, strict: bool = False):
    """An argparse ``type``: a number of ``kind`` that is >= ``low`` (> ``low`` if ``strict``); anything else
    is a usage error naming what was given (``expected an integer, got 'x'``, ``must be >= 1, got 0``)."""
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {value}")
        return value

    parse.__name__ = f"{'positive' if low > 0 or strict else 'non-negative'} {kind.__name__}"
    return parse


def _file_safe(name: str) -> str:
    """A dataset name usable in a file name (``imagefolder:/data/x`` -> ``imagefolder_data_x``); the
    built-in names are returned unchanged, and the run id's digest keeps full names apart."""
    safe = re.sub(r"[^A-Za-z0-9_.]+", "_", str(name)).strip("_.")
    return safe if len(safe) <= 40 else safe[:19] + "_" + safe[-20:]


_TYPES = {"str": (str,), "int": (numbers.Integral,), "float": (numbers.Real,), "bool": (bool,),
          "dict": (dict,), "None": (type(None),)}


def _type_ok(value, annotation: str) -> bool:
    for part in (a.strip() for a in annotation.split("|")):
        if part.startswith("tuple["):
            if isinstance(value, (tuple, list)) and all(_type_ok(v, "int") for v in value):
                return True
            continue
        if part in ("int", "float") and isinstance(value, bool):
            continue
        if isinstance(value, _TYPES[part]):
            return True
    return False


def _describe(annotation: str) -> str:
    words = {"str": "text", "int": "an integer", "float": "a number", "bool": "True or False",
             "dict": "a dict", "None": "None"}
    return " or ".join("a list of integers" if a.strip().startswith("tuple[") else words[a.strip()]
                       for a in annotation.split("|"))


def check_device(device: str) -> None:
    """Raise ``ValueError`` unless ``device`` is one of :data:`DEVICES` (``cuda:N`` parsed by torch);
    whether the device exists here is not checked (a config may be written for another machine)."""
    if device in ("auto", "cpu", "cuda", "mps"):
        return
    import torch

    try:
        parsed = torch.device(device) if isinstance(device, str) and device.startswith("cuda:") else None
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type != "cuda" or parsed.index is None:
        raise ValueError(f"device must be one of {list(DEVICES)} (N: a GPU index >= 0), got {device!r}")


def check_types(config) -> None:
    """Raise ``ValueError`` naming every field whose value has the wrong type, what it got and what it takes."""
    bad = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _type_ok(value, str(f.type)):
            bad.append(f"{f.name} must be {_describe(str(f.type))}, got {value!r} ({type(value).__name__})")
    if bad:
        raise ValueError("; ".join(bad))


def check_normalization(value: dict, dataset_stats=None) -> None:
    """Raise ``ValueError`` unless ``value`` is ``{"mean": [...], "std": [...]}``: finite numbers, one of each per
    channel (as many as ``dataset_stats``' means where the dataset's statistics are known), every std > 0."""
    form = 'normalization must be {} (the dataset\'s statistics) or {"mean": [...], "std": [...]} per channel'
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise ValueError(f"{form}, got {value!r}")
    mean, std = value["mean"], value["std"]
    numbers_only = all(isinstance(v, (list, tuple)) and v and all(
        isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in v) for v in (mean, std))
    if not numbers_only or len(mean) != len(std) or not all(s > 0 for s in std):
        raise ValueError(f"{form}: finite numbers, as many means as stds, every std > 0; got {value!r}")
    if dataset_stats is not None and len(mean) != len(dataset_stats[0]):
        raise ValueError(f"normalization has {len(mean)} channel(s) but the dataset's images have "
                         f"{len(dataset_stats[0])}; got {value!r}")


@dataclass
class RunConfig:
    """Everything that determines a run. Defaults are close to the paper's motivation recipe but not all of it
    (the many/few thresholds are the CIFAR-LT ones, 100 / 20); build configs with
    :func:`amixup.recipes.make_config`, which fills in the recipe of each experiment."""

    experiment: str = "custom"          # groups records, e.g. "table2"
    profile: str = "custom"             # smoke | quick | paper | custom
    # data
    dataset: str = "mini_cifar_lt"
    imb_factor: float | None = None     # None: the dataset's default (mini_cifar_lt: 200)
    subsample_seed: int = 0             # which images the long-tail subsampling keeps (LDAM-DRW: 0)
    longtail_selection: str = "randperm"  # how that seed picks them: randperm (ours) | ldam_drw (LDAM-DRW's numpy
    # draw; amixup.data.LONGTAIL_SELECTIONS)
    train_subset: int | None = None     # cap on training images (stratified), for smoke/quick profiles
    test_subset: int | None = None      # cap on test images (stratified)
    crop_padding: int = 4               # RandomCrop(32, padding=4) as in the mixup / LDAM-DRW code
    flip: bool = True
    augmentation: str = "crop_flip"     # crop_flip (CIFAR) | resized_crop_flip (ImageNet-LT, Places-LT)
    crop_size: int = 224                # resized_crop_flip: RandomResizedCrop size; test images center-cropped to it
    color_jitter: float = 0.0           # s > 0: ColorJitter(brightness=s, contrast=s, saturation=s) of the training
    # images after the crop and flip (ImageNet-LT, Places-LT: 0.4, as MiSLAS); 0: none
    normalization: dict = field(default_factory=dict)  # {}: the dataset's per-channel statistics
    # (amixup.data.normalization); else {"mean": [...], "std": [...]} per channel in [0, 1] pixel units
    # model and method
    model: str = "cnn_vis2d"
    model_options: dict = field(default_factory=dict)  # the model's own arguments where the paper is silent,
    # e.g. CNN-Vis2D's {"batchnorm": False, "feature_activation": "relu", "pooling": "flatten"} (models.cnn_vis2d)
    method: str = "ce"                  # ce | mixup | manifold_mixup | am_mixup
    rate: str | None = None             # Table 7 "MR" override: am | beta | fixed
    one_sided: bool | None = None       # Table 7 "OL" override
    last_layer: bool | None = None      # Table 7 "LL" override (False: mix at a drawn eligible layer)
    alpha: float = 1.0                  # Beta(alpha, alpha) for mixup / manifold mixup
    beta: float = 0.34                  # Eq. 6
    fixed_lambda: float = 0.51          # Table 7 row 5
    train_acc_source: str = "clean"     # accuracy driving Eq. 6: clean predictions or mixed-batch predictions
    # optimisation
    epochs: int = 100
    batch_size: int = 128               # the toy runs' batch size is not given; 128 as in the cited mixup code
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "multistep"
    milestones: tuple[int, ...] = (30, 60, 80)
    gamma: float = 0.2
    step_size: int = 0                  # lr_schedule="step": lr x gamma every step_size epochs (0: unused)
    warmup_epochs: int = 0              # linear warm-up from lr/warmup_epochs (LDAM-DRW style)
    cosine_t_max: int | None = None     # cosine period parameter in epochs (torch's CosineAnnealingLR T_max:
                                        # lr reaches 0 after T_max epochs and rises again); None: anneal once over the run
    # evaluation
    split_convention: str = "counts"    # many/median/few by training counts or by class index
    many_threshold: int = 100           # counts convention: many if count > many_threshold
    few_threshold: int = 20             # counts convention: few if count < few_threshold
    eval_every: int = 1
    eval_batch_size: int = 512          # test images per evaluation batch (a few large batches are cheaper on a GPU)
    # transfer
    finetune_from: str | None = None    # run id (or checkpoint path) whose encoder is reused
    freeze_encoder: bool = False
    frozen_stages: int = 0              # the first N encoder stages keep the weights finetune_from gives them
                                        # (eval mode, no gradient); the rest and the head train (Places-LT)
    cache_frozen_features: bool = True  # frozen encoder, no augmentation, no mixing: encode the images once and
                                        # train the head on the stored features (same result, far faster)
    # run
    seed: int = 0
    device: str = "auto"
    step_mode: str = "auto"             # eager: one Python step per batch; static: fixed-shape step with every
                                        # per-step value a device tensor, replayed as a CUDA graph on a GPU;
                                        # auto: static on one CUDA device with SGD, eager elsewhere
    checkpoint_every: int = 1           # epochs between checkpoints (the last epoch is always saved)
    precision: str = "fp32"             # fp32, or bf16 autocast (about 1.75x faster on a CPU with AMX, and on GPUs)
    extra: dict = field(default_factory=dict)  # free-form labels (e.g. Table 7 row) kept in the record

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        for name, (harmless, message) in _REMOVED.items():
            if name in d and d.pop(name) != harmless:
                raise ValueError(message)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(known)}")
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def digest(self) -> str:
        """A short hash of everything but how the run executes (device, step mode, checkpoint
        frequency), which does not change the experiment."""
        d = self.to_dict()
        for f in dataclasses.fields(self):  # 1 and 1.0 name one experiment
            d[f.name] = _canonical_number(f.name, str(f.type), d[f.name])
        for name in _EXECUTION_ONLY:
            d.pop(name)
        for name, default in _DIGEST_OPTIONAL.items():
            if d[name] == default:
                d.pop(name)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]

    def run_id(self) -> str:
        return f"{self.experiment}-{_file_safe(self.dataset)}-{self.model}-{self.method}-s{self.seed}-{self.digest()}"

    def validate(self) -> "RunConfig":
        """Raise ``ValueError`` naming the parameter and its allowed values; return self."""
        from . import data, metrics, mixing, models

        def one_of(name, value, allowed):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")

        check_types(self)
        for f in dataclasses.fields(self):  # nan / inf pass the range checks below or fail late
            value = getattr(self, f.name)
            if "float" in str(f.type) and value is not None and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        try:
            spec = data.dataset_spec(self.dataset)
        except ValueError as err:
            raise ValueError(f"dataset {str(err).removeprefix('name ')}") from None
        one_of("model", self.model, sorted(models.MODELS))
        if self.model_options:  # names and values checked on a model built without memory
            import torch

            try:
                with torch.device("meta"):
                    models.build_model(self.model, 2, 3, None, **self.model_options)
            except (TypeError, ValueError) as err:
                raise ValueError(f"model_options={self.model_options!r}: {err}") from None
        mix = mixing.resolve_spec(self.method, self.rate, self.one_sided, self.last_layer)
        one_of("train_acc_source", self.train_acc_source, TRAIN_ACC_SOURCES)
        one_of("split_convention", self.split_convention, SPLIT_CONVENTIONS)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("precision", self.precision, PRECISIONS)
        one_of("augmentation", self.augmentation, AUGMENTATIONS)
        one_of("step_mode", self.step_mode, STEP_MODES)
        if self.split_convention == "index" and spec.num_classes is not None:  # registered datasets: once loaded
            metrics.groups_by_index(spec.num_classes, self.dataset)
        if not 0 <= self.few_threshold < self.many_threshold:
            raise ValueError(f"few_threshold and many_threshold must satisfy 0 <= few_threshold < many_threshold "
                             f"(few: fewer than few_threshold training images, many: more than many_threshold), "
                             f"got few_threshold={self.few_threshold!r}, many_threshold={self.many_threshold!r}")
        for name in ("seed", "subsample_seed"):
            if not 0 <= getattr(self, name) < 2 ** 63:
                raise ValueError(f"{name} must lie in [0, 2**63), got {getattr(self, name)!r}")
        if self.longtail_selection not in data.LONGTAIL_SELECTIONS:
            raise ValueError(f"longtail_selection must be one of {list(data.LONGTAIL_SELECTIONS)}, "
                             f"got {self.longtail_selection!r}")
        if self.longtail_selection != "randperm" and not spec.longtail:
            raise ValueError(f"longtail_selection applies to the subsampled long-tailed datasets only, "
                             f"not {self.dataset!r}; leave it at 'randperm'")
        if self.normalization:
            check_normalization(self.normalization, data.NORMALIZATION.get(spec.base))
        if self.color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0 (brightness, contrast and saturation factors drawn from "
                             f"[max(0, 1 - s), 1 + s]; 0: no colour jitter), got {self.color_jitter!r}")
        if int(self.crop_padding) < 0:
            raise ValueError(f"crop_padding must be >= 0 (pixels of zero padding before the random crop; "
                             f"0: no crop), got {self.crop_padding!r}")
        if int(self.crop_size) < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size!r}")
        if self.imb_factor is not None and not self.imb_factor >= 1:
            raise ValueError(f"imb_factor must be >= 1 (n_max / n_min), got {self.imb_factor!r}")
        if self.imb_factor is not None and not spec.longtail:
            raise ValueError(f"imb_factor applies to the subsampled long-tailed datasets "
                             f"{sorted(k for k, v in data.DATASETS.items() if v.longtail)} only, not {self.dataset!r}")
        if self.imb_factor is None and spec.longtail and spec.default_imb is None:
            raise ValueError(f"imb_factor is required for {self.dataset!r} (e.g. 100, 50 or 10)")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if mix.rate == "beta" and not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.fixed_lambda <= 1:
            raise ValueError(f"fixed_lambda must lie in [0, 1], got {self.fixed_lambda!r}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma!r}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"warmup_epochs must lie in [0, epochs={self.epochs}), got {self.warmup_epochs!r}")
        if self.cosine_t_max is not None and int(self.cosine_t_max) < 1:
            raise ValueError(f"cosine_t_max must be None or >= 1 epoch, got {self.cosine_t_max!r}")
        if int(self.step_size) < 0:
            raise ValueError(f"step_size must be >= 0 epochs (0: unused), got {self.step_size!r}")
        if self.lr_schedule == "step" and int(self.step_size) < 1:
            raise ValueError(f"step_size must be >= 1 with lr_schedule='step', got {self.step_size!r}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive epochs, got {list(self.milestones)}")
        check_device(self.device)
        if self.optimizer != "sgd" and self.step_mode == "static":
            raise ValueError(f"step_mode='static' needs optimizer='sgd' (the static step "
                             f"implements SGD), got optimizer={self.optimizer!r}; use step_mode='auto' or 'eager'")
        if self.freeze_encoder and not self.finetune_from:
            raise ValueError("freeze_encoder=True needs finetune_from (the run whose encoder is reused)")
        if int(self.frozen_stages) < 0:
            raise ValueError(f"frozen_stages must be >= 0 (encoder stages kept frozen), got {self.frozen_stages!r}")
        if self.frozen_stages and not self.finetune_from:
            raise ValueError(f"frozen_stages={self.frozen_stages} needs finetune_from (the weights the frozen stages "
                             "keep: a run id, a state-dict file or torchvision:WEIGHTS)")
        if self.frozen_stages and self.freeze_encoder:
            raise ValueError("freeze_encoder=True already freezes every stage: leave frozen_stages at 0")
        return self
