"""The one training engine behind every experiment.

``train(config)`` builds the data (uint8 tensors on the device), the model and the
mixing policy from a :class:`~amixup.config.RunConfig`, trains with per-epoch
checkpoints, evaluates, and writes one JSON record. A run whose record exists is not
repeated; a run whose checkpoint exists resumes from it and ends with the same record
(on the CPU) as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from . import data as datasets
from . import distributed as ddp
from . import progress as progress_bars
from .augment import TensorLoader
from .config import RunConfig
from .metrics import (alignment, class_groups, neighborhood_uniformity, per_class_accuracy,
                      split_accuracy, uniformity)
from .mixing import MixPolicy, mixup, random_permutation, resolve_spec
from .models import TORCHVISION_ARCH, SplitModel, build_model, from_torchvision_state, torchvision_prefixes
from .records import (CorruptFileError, atomic_write_bytes, code_provenance, environment, read_record, run_lock,
                      write_record)
from .schedule import AMScheduler
from .static_step import StaticStep, check_sgd, frozen_batchnorm_stats

DEFAULT_RESULTS_DIR = Path("results") / "runs"


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` names on this machine; a ``ValueError`` naming it where this machine lacks it
    (CUDA or MPS not available, a GPU index beyond the visible GPUs; under torchrun each process takes its local
    GPU instead, so the index is not checked there)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use device='cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(f"device {str(device)!r} was asked for but {count} CUDA device(s) are visible "
                             f"(cuda:0 to cuda:{count - 1}); use device='cuda', 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but MPS is not available here; use device='cpu' or 'auto'")
    return device


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The lr of 0-based ``epoch``: linear warm-up (``lr * (e+1) / warmup``, LDAM-DRW), then
    step decay by ``gamma`` at each milestone, or cosine annealing: ``lr (1 + cos(pi e / T_max)) / 2``
    with torch's ``CosineAnnealingLR`` semantics (zero at ``T_max``, back at ``lr`` at ``2 T_max``;
    ``T_max`` = the epochs after warm-up unless ``cosine_t_max`` is given); ``lr_schedule="step"``
    multiplies by ``gamma`` every ``step_size`` epochs."""
    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1) / config.warmup_epochs
    if config.lr_schedule == "cosine":
        t_max = config.cosine_t_max or max(1, config.epochs - config.warmup_epochs)
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * (epoch - config.warmup_epochs) / t_max))
    if config.lr_schedule == "step":  # StepLR: x gamma every step_size epochs, counted from epoch 0
        return config.lr * config.gamma ** (epoch // config.step_size)
    return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)


def stratified_subset(data: "datasets.ImageData", n: int, seed: int) -> "datasets.ImageData":
    """About ``n`` images keeping each class's share (at least one per class), chosen by ``seed``."""
    if n >= len(data):
        return data
    gen = torch.Generator().manual_seed(seed)
    total = len(data)
    keep = []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.labels == c).flatten()
        if len(idx) == 0:
            continue
        take = max(1, round(n * len(idx) / total))
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    return data.subset(torch.sort(torch.cat(keep)).values)


def load_data(config: RunConfig):
    """Train and test :class:`~amixup.data.ImageData` of a config (subsets applied), and the
    per-class counts of the full training set (which define many/median/few)."""
    train = datasets.build_dataset(config.dataset, "train", imb_factor=config.imb_factor,
                                   subsample_seed=config.subsample_seed)
    test = datasets.build_dataset(config.dataset, "test", imb_factor=config.imb_factor,
                                  subsample_seed=config.subsample_seed)
    full_counts = train.counts()
    if config.train_subset:
        train = stratified_subset(train, config.train_subset, config.subsample_seed)
    if config.test_subset:
        test = stratified_subset(test, config.test_subset, config.subsample_seed)
    return train, test, full_counts


def _autocast(device: torch.device, precision: str):
    """bf16 autocast for ``precision="bf16"``, a no-op context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def encode(model: SplitModel, loader: TensorLoader, autocast=contextlib.nullcontext()) -> torch.Tensor:
    """Encoder features (float32) of a whole un-augmented loader, in eval mode."""
    model.eval()
    feats = []
    for x, _ in loader:
        with autocast:
            feats.append(model.features(x).float())
    return torch.cat(feats)


@torch.inference_mode()
def evaluate_features(model: SplitModel, feats: torch.Tensor, labels: torch.Tensor,
                      autocast=contextlib.nullcontext(), batch_size: int = 512):
    """:func:`evaluate` on stored features: the head's logits, the features and the labels."""
    model.eval()
    logits = []
    for start in range(0, len(feats), batch_size):
        with autocast:
            logits.append(model.head(feats[start:start + batch_size]).float())
    return torch.cat(logits), feats, labels


@torch.inference_mode()
def evaluate(model: SplitModel, loader: TensorLoader, autocast=contextlib.nullcontext()):
    """Logits, features and labels of a whole (un-augmented) loader, in eval mode."""
    model.eval()
    logits, feats, labels = [], [], []
    for x, y in loader:
        with autocast:
            z = model.features(x)
            out = model.head(z)
        feats.append(z.float())
        logits.append(out.float())
        labels.append(y)
    return torch.cat(logits), torch.cat(feats), torch.cat(labels)


def _checkpoint_path(results_dir: Path, run_id: str) -> Path:
    return results_dir / "checkpoints" / f"{run_id}.pt"


def record_path(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR) -> Path:
    return Path(results_dir) / config.experiment / f"{config.run_id()}.json"


def _save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location, **kwargs) -> dict:
    """A checkpoint; ``CorruptFileError`` naming the file and what to do when it cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
    except Exception as exc:  # truncated zip, full disk, not a checkpoint: torch raises many kinds
        raise CorruptFileError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "it may be truncated (e.g. a disk that filled up). Delete it to restart this run from its first "
            "epoch, or pass overwrite=True (--overwrite) to start over") from exc


def epochs_done(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR) -> int:
    """The epochs a run has trained: all of them if it has a record, else its checkpoint's epoch (0 if none);
    ``CorruptFileError`` for an unreadable checkpoint. Only the epoch counter is read (mmap), not the weights."""
    results_dir = Path(results_dir)
    if record_path(config, results_dir).exists():
        return config.epochs
    path = _checkpoint_path(results_dir, config.run_id())
    return int(load_checkpoint(path, "cpu", mmap=True)["epoch"]) if path.exists() else 0


def _run_record(results_dir: Path, run_id: str) -> Path | None:
    """The record of ``run_id`` in ``results_dir`` (its folder, the experiment, starts the id), None if none."""
    paths = (results_dir / run_id[:i] / f"{run_id}.json" for i, char in enumerate(run_id) if char == "-")
    return next((path for path in paths if path.is_file()), None)


def _encoder_source(source: str, results_dir: Path, model_name: str | None = None) -> Path:
    """The checkpoint ``finetune_from`` names: a file, taken as it is, torchvision's weights ``torchvision:NAME``
    for ``model_name`` (:func:`_torchvision_weights_file`), or the checkpoint of a finished run (one with a record)
    of ``results_dir``; a ``ValueError`` naming ``finetune_from`` otherwise."""
    if Path(source).is_file():
        return Path(source)
    if source.startswith(TORCHVISION_WEIGHTS):
        return _torchvision_weights_file(source, model_name)
    path = _checkpoint_path(results_dir, source)
    usage = (f"finetune_from takes the run id of a finished run in {results_dir}, the path of a checkpoint or "
             "state-dict file, or torchvision:NAME (torchvision's pretrained weights, e.g. IMAGENET1K_V1)")
    if not path.exists():
        raise ValueError(f"finetune_from={source!r}: there is no such file and no checkpoint {path}; {usage}")
    if _run_record(results_dir, source) is None:
        done = load_checkpoint(path, "cpu", mmap=True).get("epoch")
        raise ValueError(f"finetune_from={source!r}: that run is not finished (its checkpoint {path} is at epoch "
                         f"{done} and it has no record); finish it first (train it again: it resumes)")
    return path


#: ``finetune_from="torchvision:NAME"``: torchvision's pretrained weights NAME (e.g. IMAGENET1K_V1) of the model's
#: torchvision network (models.TORCHVISION_ARCH), from torch's hub cache (downloaded there once).
TORCHVISION_WEIGHTS = "torchvision:"


def _torchvision_weights_file(source: str, model_name: str) -> Path:
    """The file of torchvision's weights ``source`` for ``model_name`` in torch's hub cache, downloaded there if
    missing; a ``ValueError`` naming ``finetune_from`` where the name does not exist or the download fails."""
    path, url = torchvision_weights_location(source, model_name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as exc:  # offline, refused, interrupted: torch raises many kinds
            raise datasets.WeightsNotFoundError(
                f"finetune_from={source!r}: {path} is not there and could not be downloaded from {url} "
                f"({type(exc).__name__}: {exc}); put that file there, or pass the path of a copy as "
                "finetune_from") from exc
    return path


def torchvision_weights_location(source: str, model_name: str) -> tuple[Path, str]:
    """Where torchvision's weights ``source`` (``torchvision:NAME``) for ``model_name`` are kept (torch's hub
    cache) and their download address; a ``ValueError`` naming ``finetune_from`` for an unknown name."""
    import torchvision

    arch = TORCHVISION_ARCH.get(model_name)
    if arch is None:
        raise ValueError(f"finetune_from={source!r}: torchvision weights fit the models {sorted(TORCHVISION_ARCH)}, "
                         f"not {model_name!r}")
    name = source[len(TORCHVISION_WEIGHTS):]
    known = torchvision.models.get_model_weights(arch)
    if name not in known.__members__:
        raise ValueError(f"finetune_from={source!r}: torchvision's {arch} has the weights "
                         f"{list(known.__members__)}, not {name!r}")
    url = known[name].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def _load_encoder(model: SplitModel, source: str, results_dir: Path, device, model_name: str | None = None) -> str:
    path = _encoder_source(source, Path(results_dir), model_name)
    state = load_checkpoint(path, device)
    if "model" in state:  # an amixup checkpoint: the whole encoder
        state = state["model"]
        covered = ("stages.",)
    else:  # a torchvision ResNet state dict (e.g. ImageNet weights): the stages it maps onto
        prefixes = torchvision_prefixes(model)
        state = from_torchvision_state(state, prefixes)
        covered = tuple(p for p in prefixes.values() if p and p.startswith("stages."))
    encoder = {k: v for k, v in state.items() if k.startswith("stages.")}
    missing = [k for k in model.state_dict() if k.startswith(covered) and k not in encoder]
    if missing:
        raise ValueError(f"finetune_from={source!r} does not fit model {type(model).__name__}: "
                         f"{len(missing)} encoder tensors missing, e.g. {missing[0]!r}")
    model.load_state_dict(encoder, strict=False)
    return str(path)


def _frozen_stages(model: SplitModel, config: RunConfig) -> torch.nn.ModuleList:
    """The encoder stages that do not train: all with ``freeze_encoder``, else the first ``frozen_stages``."""
    if config.freeze_encoder:
        return model.stages
    if config.frozen_stages >= len(model.stages):
        raise ValueError(f"frozen_stages={config.frozen_stages}: {config.model} has {len(model.stages)} encoder "
                         f"stages, so at most {len(model.stages) - 1} can be frozen (freeze_encoder=True freezes all)")
    return model.stages[:config.frozen_stages]


@dataclasses.dataclass
class _Run:
    """What one run owns while it trains: its model, optimizer, generators, policy, scheduler and loader."""

    config: RunConfig
    model: SplitModel
    optimizer: torch.optim.Optimizer
    host_gen: torch.Generator      # pairings
    device_gen: torch.Generator    # augmentation
    shuffle_gen: torch.Generator | None  # distributed runs: the data order all processes share
    policy: MixPolicy
    scheduler: AMScheduler
    train_loader: TensorLoader
    encoder_source: str | None
    world: int = 1                 # processes training the run
    history: list = dataclasses.field(default_factory=list)
    start_epoch: int = 0
    seconds: float = 0.0


def _build_run(config: RunConfig, spec, train_data, input_size: int, device, results_dir: Path, *,
               distributed: bool = False, rank: int = 0, world: int = 1) -> _Run:
    """A run's model (initialised from its seed), optimizer, generators, mixing policy, scheduler and
    training loader, before any checkpoint is restored."""
    mean, std = datasets.normalization(config.dataset)
    torch.manual_seed(config.seed)
    model = build_model(config.model, train_data.num_classes, train_data.images.shape[1], input_size,
                        **config.model_options)
    encoder_source = None
    if config.finetune_from:
        encoder_source = _load_encoder(model, config.finetune_from, results_dir, "cpu", config.model)
    if distributed:
        model = ddp.convert_batchnorm(model, device)
    model = model.to(device, memory_format=torch.channels_last)
    for p in _frozen_stages(model, config).parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    host_gen = torch.Generator().manual_seed(config.seed)
    # one process: data order and augmentation from seed + 1; several: the shared order from seed + 1 (the one
    # process's order), each rank's augmentation from a stream of its own (rank 0's did replay the order's numbers)
    rank_offset = 7919 * (rank + 1) if distributed else 0
    device_gen = torch.Generator(device=device).manual_seed(config.seed + 1 + rank_offset)
    shuffle_gen = torch.Generator(device=device).manual_seed(config.seed + 1) if distributed else None
    policy = MixPolicy(spec, alpha=config.alpha, fixed_lambda=config.fixed_lambda,
                       eligible_layers=model.manifold_layers, last_layer_index=model.last_layer,
                       seed=config.seed + 2)
    train_loader = TensorLoader(train_data.images, train_data.labels, config.batch_size, device=device,
                                mean=mean, std=std, train=True, crop_padding=config.crop_padding,
                                flip=config.flip, augmentation=config.augmentation, crop_size=config.crop_size,
                                color_jitter=config.color_jitter, generator=device_gen, shuffle_generator=shuffle_gen,
                                rank=rank, world_size=world)
    return _Run(config, model, optimizer, host_gen, device_gen, shuffle_gen, policy, AMScheduler(config.beta),
                train_loader, encoder_source, world)


def _torch_rng_state(device: torch.device) -> dict:
    """torch's global RNG state (what dropout draws from): the CPU one, and that of ``device`` on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_torch_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _restore(run: _Run, path: Path, device, rank: int = 0) -> None:
    """Load the checkpoint at ``path`` into ``run``; a ``ValueError`` if it was written by another number of
    processes (each one's data order and augmentation go on from it)."""
    state = load_checkpoint(path, device)
    written = state.get("world_size", len(state.get("rank_gens", [None])))  # older checkpoints: from their generators
    if written != run.world:
        raise ValueError(f"checkpoint {path} was written by {written} process(es) and cannot resume in {run.world}: "
                         f"resume it with {written} (torchrun --nproc_per_node={written}; 1: without torchrun), or "
                         "start over with overwrite=True (--overwrite) or a fresh results dir")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["am"])
    run.policy.load_state_dict(state["policy"])
    run.host_gen.set_state(state["rank_host_gens"][rank] if "rank_host_gens" in state else state["host_gen"])
    run.device_gen.set_state(state["device_gen"].cpu() if "rank_gens" not in state else state["rank_gens"][rank].cpu())
    if run.shuffle_gen is not None:
        run.shuffle_gen.set_state(state["shuffle_gen"].cpu())
    if "torch_rng" in state:  # older checkpoints lack it (they resume as before)
        _set_torch_rng_state(state["torch_rng"][rank], device)
    run.history, run.start_epoch, run.seconds = state["history"], state["epoch"], state["seconds"]


def _checkpoint_state(run: _Run, epoch: int, model_state: dict, optimizer_state: dict) -> dict:
    return {
        "epoch": epoch, "model": model_state, "optimizer": optimizer_state, "am": run.scheduler.state_dict(),
        "policy": run.policy.state_dict(), "host_gen": run.host_gen.get_state(),
        "device_gen": run.device_gen.get_state().cpu(), "history": run.history, "seconds": run.seconds,
        "world_size": run.world,
    }


def _epoch_entry(run: _Run, spec, epoch: int, lr: float, lam_epoch: float, loss_sum, correct_mixed, correct_clean,
                 n_seen: int, n_clean: int) -> dict:
    """The epoch's history entry from its sums; steps the run's lambda scheduler (Eq. 6) for AM rates."""
    acc_mixed = float(correct_mixed) / n_seen
    acc_clean = float(correct_clean) / n_clean if n_clean else None
    if spec.rate == "am":
        run.scheduler.step(acc_clean if run.config.train_acc_source == "clean" else acc_mixed)
    return {"epoch": epoch + 1, "lr": lr, "lambda": lam_epoch if spec.rate == "am" else None,
            "train_loss": float(loss_sum) / n_seen, "train_acc_clean": acc_clean, "train_acc_mixed": acc_mixed}


def _evaluates(config: RunConfig, epoch: int) -> bool:
    return (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs


def _saves(config: RunConfig, epoch: int) -> bool:
    """Whether ``epoch`` ends with a checkpoint: every ``checkpoint_every`` epochs, and the last one always."""
    return (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs


def _test_metrics(evaluation, groups) -> dict:
    """The history entry's test accuracies (all, many, median, few) of an evaluation's logits."""
    logits, _, labels = evaluation
    return {f"test_{k}": v for k, v in split_accuracy(logits.argmax(1), labels, groups).items()}


def _postfix(entry: dict, spec) -> dict:
    postfix = {"loss": f"{entry['train_loss']:.3f}", "acc": f"{entry['train_acc_mixed']:.3f}",
               "test": f"{entry.get('test_all', float('nan')):.1f}"}
    if spec.rate == "am":
        postfix["lam"] = f"{entry['lambda']:.3f}"
    return postfix


def train(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR, *, overwrite: bool = False,
          progress: bool = True, on_epoch_end=None) -> dict:
    """Train one run and return its record (the existing record if the run already finished).

    ``on_epoch_end(epoch, history_entry)`` is called after each epoch's checkpoint is saved.
    """
    config = RunConfig.from_dict(config.to_dict()).validate()
    results_dir = Path(results_dir)
    out_path = record_path(config, results_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: the processes of one run share it (no lock), and
        return _train(config, results_dir, out_path, overwrite, progress, on_epoch_end)  # look for its record together
    if out_path.exists() and not overwrite:
        return read_record(out_path)
    with run_lock(_lock_path(results_dir, config.run_id()), config.run_id()):  # RunBusyError: trained elsewhere
        if out_path.exists() and not overwrite:  # it finished while this process waited to start
            return read_record(out_path)
        return _train(config, results_dir, out_path, overwrite, progress, on_epoch_end)


def _record_everywhere(out_path: Path, ckpt_path: Path) -> bool:
    """Whether every process of a distributed run sees the run's record (one answer, the same on every process).
    They must see one results folder: a ``ValueError`` on every process where some see the record or checkpoint
    and others do not (a folder on each machine's own disk), where they would resume from different epochs or
    wait for each other forever."""
    seen = ddp.gather_objects((out_path.exists(), ckpt_path.exists()))
    if all(record for record, _ in seen):  # finished: nothing to resume
        return True
    for i, (what, path) in enumerate((("record", out_path), ("checkpoint", ckpt_path))):
        found = [s[i] for s in seen]
        if any(found) and not all(found):
            ranks = lambda want: [r for r, f in enumerate(found) if f == want]  # noqa: E731
            raise ValueError(f"the run's {what} {path.name} is in the results folder of rank(s) {ranks(True)} but not "
                             f"of {ranks(False)} (this process's: {path.parent.parent}): the "
                             "processes of a distributed run must share one results folder (--results-dir on a file "
                             "system every machine mounts), or resume from the same copy of it")
    return False


def _lock_path(results_dir: Path, run_id: str) -> Path:
    return results_dir / "checkpoints" / f"{run_id}.lock"


def _train(config: RunConfig, results_dir: Path, out_path: Path, overwrite: bool, progress: bool,
           on_epoch_end) -> dict:
    run_id = config.run_id()
    ckpt_path = _checkpoint_path(results_dir, run_id)
    if overwrite:
        ckpt_path.unlink(missing_ok=True)
    device = resolve_device(config.device)
    distributed = ddp.init_from_env(device.type)
    rank, world = ddp.rank(), ddp.world_size()
    main_process = rank == 0
    if distributed and not overwrite and _record_everywhere(out_path, ckpt_path):  # decided together
        return read_record(out_path)
    if config.finetune_from:
        _encoder_source(config.finetune_from, results_dir, config.model)  # before any data is loaded
    if distributed and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank())
    spec = resolve_spec(config.method, config.rate, config.one_sided, config.last_layer)
    train_data, test_data, full_counts = load_data(config)
    input_size = _input_size(config, train_data)
    run = _build_run(config, spec, train_data, input_size, device, results_dir, distributed=distributed, rank=rank,
                     world=world)
    model, optimizer, policy, scheduler, host_gen = run.model, run.optimizer, run.policy, run.scheduler, run.host_gen
    if distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            ddp.MixedForward(model), device_ids=[device.index] if device.type == "cuda" else None)
        forward = wrapped
    else:
        forward = model.forward_mixed
    train_loader = run.train_loader
    test_loader = _test_loader(config, test_data, device)
    groups = class_groups(config.split_convention, full_counts, config.many_threshold,
                          config.few_threshold)
    need_clean = spec.rate == "am" and config.train_acc_source == "clean"
    autocast = _autocast(device, config.precision)
    batches, run_evaluation = train_loader, lambda: evaluate(model, test_loader, autocast)
    frozen_features = _uses_frozen_features(config, policy, distributed)
    static = None
    if _uses_static_step(config, device, optimizer, distributed, frozen_features):
        static = StaticStep(model, policy, optimizer, batch_size=config.batch_size, device=device,
                            sample_shape=_sample_shape(config, train_data, input_size),
                            precision=config.precision, need_clean=need_clean)
    if frozen_features:
        # the encoder is frozen, the batches unaugmented and unmixed: encode every image once
        # and train the head on the stored features, in the order the image loader would draw
        mean, std = datasets.normalization(config.dataset)
        plain = dict(device=device, mean=mean, std=std, train=False, augmentation=config.augmentation,
                     crop_size=config.crop_size)
        train_feats = encode(model, TensorLoader(train_data.images, train_data.labels, 512, **plain), autocast)
        test_feats = encode(model, TensorLoader(test_data.images, test_data.labels, 512, **plain), autocast)
        train_labels, test_labels = train_loader.labels, test_loader.labels
        batches = _FeatureBatches(train_loader, train_feats, train_labels)
        forward = lambda z, layer, mix: (model.head(z), None)  # noqa: E731
        run_evaluation = lambda: evaluate_features(model, test_feats, test_labels, autocast)  # noqa: E731
    provenance = code_provenance()  # the code this process loaded
    batch_sizes = _batch_sizes(config, train_loader)

    if ckpt_path.exists():
        _restore(run, ckpt_path, device, rank)
    history = run.history

    evaluation = None
    bar = tqdm(range(run.start_epoch, config.epochs), desc=run_id, initial=run.start_epoch, total=config.epochs,
               disable=not (progress_bars.enabled(progress) and main_process), leave=False, mininterval=2.0,
               file=progress_bars.stream(), unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        _frozen_stages(model, config).eval()  # frozen stages: BatchNorm statistics stay those they were given
        lam_epoch = scheduler.value
        if static is not None:  # the same step at fixed shapes, replayed as a CUDA graph on a GPU
            sums = static.run_epoch(batches, batch_sizes, lam_epoch, lr, host_gen)
            loss_sum, correct_mixed, correct_clean, n_seen, n_clean = sums
        else:
            loss_sum = torch.zeros((), device=device)
            correct_mixed = torch.zeros((), device=device, dtype=torch.long)
            correct_clean = torch.zeros((), device=device, dtype=torch.long)
            n_seen, n_clean = 0, 0
            for step, (x, y) in enumerate(batches):
                lam, layer = policy.draw(lam_epoch)
                with autocast:
                    if policy.mixes:
                        perm = random_permutation(len(y), host_gen, device)
                        logits, clean = forward(x, layer, lambda h: mixup(h, y, lam, perm)[0])
                        if clean is None and need_clean:
                            with torch.no_grad(), frozen_batchnorm_stats(model):
                                clean = model(x)
                    else:
                        perm = None
                        logits, _ = forward(x, None, None)
                        clean = logits.detach()
                    loss, dominant = policy.loss(logits.float(), y, lam, perm)
                    objective = loss
                    if distributed:  # DDP averages over processes: weight by this share of the global batch
                        # an empty share (a last global batch smaller than the processes) has a NaN mean loss:
                        # its objective is 0 with zero gradients, which DDP still averages with the others
                        objective = loss * (len(y) * world / batch_sizes[step]) if len(y) else logits.sum()
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                if len(y):
                    loss_sum += loss.detach() * len(y)
                correct_mixed += (logits.detach().argmax(1) == dominant).sum()
                n_seen += len(y)
                if clean is not None:
                    correct_clean += (clean.argmax(1) == y).sum()
                    n_clean += len(y)
        if distributed:  # epoch totals over all processes
            totals = torch.stack([loss_sum.double(), correct_mixed.double(), correct_clean.double(),
                                  torch.tensor(float(n_seen), device=device, dtype=torch.float64),
                                  torch.tensor(float(n_clean), device=device, dtype=torch.float64)])
            loss_sum, correct_mixed, correct_clean, n_seen, n_clean = ddp.all_sum(totals).tolist()
            n_seen, n_clean = int(n_seen), int(n_clean)
        entry = _epoch_entry(run, spec, epoch, lr, lam_epoch, loss_sum, correct_mixed, correct_clean, n_seen, n_clean)
        if main_process and _evaluates(config, epoch):
            evaluation = run_evaluation()
            entry.update(_test_metrics(evaluation, groups))
        run.seconds += time.perf_counter() - t0
        entry["seconds"] = run.seconds
        history.append(entry)
        if _saves(config, epoch):  # every process: the gathers below are collective
            state = _checkpoint_state(run, epoch + 1, model.state_dict(), optimizer.state_dict())
            state["torch_rng"] = ddp.gather_objects(_torch_rng_state(device))  # per process, in rank order
            if distributed:  # per process: a rank's pairings draw its share's size (uneven in a last batch)
                state["rank_host_gens"] = ddp.gather_objects(run.host_gen.get_state())
                state["rank_gens"] = ddp.gather_objects(run.device_gen.get_state().cpu())
                state["shuffle_gen"] = run.shuffle_gen.get_state().cpu()
            if main_process:
                _save_checkpoint(ckpt_path, state)
        if distributed:
            torch.distributed.barrier()
        bar.set_postfix(_postfix(entry, spec))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, entry)
    bar.close()

    if distributed:
        in_sync = _parameters_in_sync(model)
    if not main_process:
        return ddp.broadcast_object(None)
    if evaluation is None:  # resumed from a checkpoint of the last epoch
        evaluation = run_evaluation()
    record = _final_record(config, model, evaluation, train_data, test_data, groups, history, run.seconds,
                           device, run.encoder_source, provenance)
    record["data"]["full_train_counts"] = full_counts
    record["environment"]["step"] = static.kind if static is not None else "eager"
    if distributed:
        record["distributed"] = {"world_size": world, "backend": torch.distributed.get_backend(),
                                 "ranks_in_sync": in_sync}
    write_record(record, out_path, overwrite=overwrite)
    return ddp.broadcast_object(record)


def _input_size(config: RunConfig, train_data) -> int:
    stored = min(train_data.images.shape[-2:])
    if config.augmentation == "resized_crop_flip" and config.crop_size > stored:
        raise ValueError(f"crop_size must be <= the stored image size {stored} of {config.dataset!r}, "
                         f"got {config.crop_size}")
    return config.crop_size if config.augmentation == "resized_crop_flip" else train_data.images.shape[-1]


def _sample_shape(config: RunConfig, train_data, input_size: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of a training batch's images: the crop of ``resized_crop_flip``, else the stored size (which
    may be non-square)."""
    c, h, w = train_data.images.shape[1:]
    return (c, input_size, input_size) if config.augmentation == "resized_crop_flip" else (c, h, w)


def _test_loader(config: RunConfig, test_data, device) -> TensorLoader:
    mean, std = datasets.normalization(config.dataset)
    return TensorLoader(test_data.images, test_data.labels, config.eval_batch_size, device=device, mean=mean,
                        std=std, train=False, augmentation=config.augmentation, crop_size=config.crop_size)


def _batch_sizes(config: RunConfig, loader: TensorLoader) -> list[int]:
    n_train = len(loader.labels)
    return [min(config.batch_size, n_train - start) for start in range(0, n_train, config.batch_size)]


def _uses_static_step(config: RunConfig, device: torch.device, optimizer, distributed: bool,
                      frozen_features: bool) -> bool:
    """Whether the epoch runs through :class:`~amixup.static_step.StaticStep`: ``step_mode="static"``, or
    ``"auto"`` on one CUDA device with SGD; ``"static"`` where it cannot apply is an error."""
    if config.step_mode == "eager":
        return False
    problems = []
    if distributed:
        problems.append("one process (distributed runs step eagerly)")
    if frozen_features:
        problems.append("a trainable encoder (a frozen one trains the head on stored features)")
    try:
        check_sgd(optimizer)
    except ValueError as err:
        problems.append(str(err).removeprefix("step_mode='static' needs "))
    if config.step_mode == "static" and problems:
        raise ValueError(f"step_mode='static' needs {'; '.join(problems)}; use step_mode='auto' or 'eager'")
    return not problems and (config.step_mode == "static" or device.type == "cuda")


def _uses_frozen_features(config: RunConfig, policy: MixPolicy, distributed: bool) -> bool:
    """Whether the head can be trained on features encoded once: a frozen encoder (eval mode, so
    no dropout or BatchNorm updates), no augmentation, no mixing, one process."""
    augments = config.augmentation != "crop_flip" or config.crop_padding > 0 or config.flip or config.color_jitter > 0
    return (config.freeze_encoder and config.cache_frozen_features and not augments and not policy.mixes
            and not distributed)


class _FeatureBatches:
    """Batches of stored features in the order ``loader`` (a training TensorLoader) would draw its images."""

    def __init__(self, loader: TensorLoader, feats: torch.Tensor, labels: torch.Tensor):
        self.loader, self.feats, self.labels = loader, feats, labels

    def __iter__(self):
        for idx in self.loader.batch_indices():
            yield self.feats[idx], self.labels[idx]


def _parameters_in_sync(model: nn.Module) -> bool:
    """Whether every process holds the same parameters and buffers (a checksum comparison)."""
    values = [t.detach().double().flatten() for t in model.state_dict().values() if t.is_floating_point()]
    local = torch.cat(values)
    checksum = torch.stack([local.sum(), (local * torch.arange(1, len(local) + 1, dtype=torch.float64,
                                                               device=local.device)).sum()])
    gathered = ddp.gather_objects(checksum.cpu().tolist())
    return all(g == gathered[0] for g in gathered)


def _final_record(config, model, evaluation, train_data, test_data, groups, history, seconds, device,
                  encoder_source, provenance) -> dict:
    logits, feats, labels = evaluation
    preds = logits.argmax(1)
    feats, labels = feats.cpu(), labels.cpu()
    last = split_accuracy(preds, labels.to(preds.device), groups)
    metrics = {
        "last": {f"acc_{k}": v for k, v in last.items()},
        "per_class_acc": per_class_accuracy(preds.cpu(), labels, train_data.num_classes),
        "alignment": alignment(feats, labels),
    }
    if train_data.num_classes >= 2:
        metrics["uniformity"] = uniformity(feats, labels)
        metrics["uniformity_k1"] = neighborhood_uniformity(feats, labels, k=1)
    evaluated = [h for h in history if "test_all" in h]
    best = max(evaluated, key=lambda h: h["test_all"])
    metrics["best"] = {"epoch": best["epoch"], **{f"acc_{k}": best[f"test_{k}"] for k in ("all", *groups)}}
    record = {
        "run_id": config.run_id(),
        "config": config.to_dict(),
        "seed": config.seed,
        "metrics": metrics,
        "history": history,
        "lambda_trajectory": [h["lambda"] for h in history],
        "data": {
            "source": train_data.source,
            "classes": train_data.classes,
            "train_counts": train_data.counts(),
            "test_counts": test_data.counts(),
            "groups": groups,
        },
        "seconds": seconds,
        "environment": environment(device),
        "git": provenance,
        "finetuned_from": encoder_source,
    }
    if model.feature_dim <= 2:  # the 2-D features of the paper's figures
        record["features"] = {
            "test": [[round(v, 5) for v in row] for row in feats.tolist()],
            "labels": labels.tolist(),
            "head_weight": model.head.weight.detach().cpu().tolist(),
            "head_bias": model.head.bias.detach().cpu().tolist(),
        }
    return record
