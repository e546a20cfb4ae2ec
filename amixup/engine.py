"""The one training engine behind every experiment.

``train(config)`` builds the data (uint8 tensors on the device), the model, the mixing policy
(:class:`~amixup.mixing.MixPolicy`: the method, its draws and the AM schedule) and the training step
(:class:`~amixup.step.TrainStep`, captured as a CUDA graph by :class:`~amixup.static_step.StaticStep` on a
GPU) from a :class:`~amixup.config.RunConfig`, trains with checkpoints (:mod:`amixup.checkpoints`),
evaluates, and writes one JSON record. A run whose record exists is not repeated; a run whose checkpoint
exists resumes from it and ends with the same record (on the CPU) as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from . import data as datasets
from . import distributed as ddp
from . import progress as progress_bars
from .augment import TensorLoader
from .checkpoints import (DEFAULT_RESULTS_DIR, checkpoint_path, epochs_done, lock_path, record_everywhere,  # noqa: F401
                          record_path, restore_run, save_run)
from .config import RunConfig
from .metrics import (alignment, class_groups, neighborhood_uniformity, per_class_accuracy,
                      split_accuracy, uniformity)
from .mixing import MixPolicy, resolve_spec
from .models import SplitModel, build_model
from .records import code_provenance, environment, read_record, run_lock, write_record
from .static_step import StaticStep, check_sgd
from .step import EpochSums, TrainStep
from .weights import encoder_source, load_encoder


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
                                   subsample_seed=config.subsample_seed, longtail_selection=config.longtail_selection)
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


def _frozen_stages(model: SplitModel, config: RunConfig) -> torch.nn.ModuleList:
    """The encoder stages that do not train: all with ``freeze_encoder``, else the first ``frozen_stages``."""
    if config.freeze_encoder:
        return model.stages
    if config.frozen_stages >= len(model.stages):
        raise ValueError(f"frozen_stages={config.frozen_stages}: {config.model} has {len(model.stages)} encoder "
                         f"stages, so at most {len(model.stages) - 1} can be frozen (freeze_encoder=True freezes all)")
    return model.stages[:config.frozen_stages]


@dataclasses.dataclass
class Run:
    """One run while it trains: what :func:`train`'s loop needs, built by :func:`build_run`."""

    config: RunConfig
    device: torch.device
    model: SplitModel
    optimizer: torch.optim.Optimizer
    policy: MixPolicy               # the method: its draws (pairings included) and the AM schedule
    device_gen: torch.Generator     # augmentation
    shuffle_gen: torch.Generator | None  # distributed runs: the data order all processes share
    batches: object                 # the training batches of an epoch (a TensorLoader, or stored features)
    step: TrainStep
    static: StaticStep | None       # the same step at fixed shapes (CUDA graphs), where it applies
    evaluate: Callable              # () -> (logits, features, labels) of the test set
    groups: dict                    # many / median / few classes
    batch_sizes: list               # the global batch sizes of an epoch
    encoder_source: str | None
    data: tuple                     # (train ImageData, test ImageData, the full training set's class counts)
    rank: int = 0
    world: int = 1                  # processes training the run
    history: list = dataclasses.field(default_factory=list)
    start_epoch: int = 0
    seconds: float = 0.0

    def train_epoch(self, lr: float) -> EpochSums:
        """One pass over the training batches at learning rate ``lr``; the epoch's sums (over all processes)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        _frozen_stages(self.model, self.config).eval()  # frozen stages: BatchNorm statistics stay those they were given
        if self.static is not None:  # the same step at fixed shapes, replayed as a CUDA graph on a GPU
            sums = self.static.run_epoch(self.batches, self.batch_sizes, lr)
        else:
            sums = self.step.run_epoch(self.batches, EpochSums(self.device), self.device)
        return sums.summed(ddp.all_sum) if self.world > 1 else sums


def train(config: RunConfig, results_dir=DEFAULT_RESULTS_DIR, *, overwrite: bool = False,
          progress: bool = True, on_epoch_end=None) -> dict:
    """Train one run and return its record (the existing record if the run already finished).

    ``on_epoch_end(epoch, history_entry)`` is called after each epoch's checkpoint is saved.
    """
    config = RunConfig.from_dict(config.to_dict()).validate()
    results_dir = Path(results_dir)
    out_path, ckpt_path = record_path(config, results_dir), checkpoint_path(results_dir, config.run_id())
    with _claim(config, results_dir, out_path, ckpt_path, overwrite) as finished:
        if finished is not None:
            return finished
        run = build_run(config, results_dir)
        if ckpt_path.exists():
            restore_run(run, ckpt_path)
        provenance = code_provenance()  # the code this process loaded
        evaluation = None
        bar = tqdm(range(run.start_epoch, config.epochs), desc=config.run_id(), initial=run.start_epoch,
                   total=config.epochs, disable=not (progress_bars.enabled(progress) and run.rank == 0),
                   leave=False, mininterval=2.0, file=progress_bars.stream(), unit="epoch")
        for epoch in bar:
            t0 = time.perf_counter()
            lr, lam = learning_rate(config, epoch), run.policy.logged_lambda()
            sums = run.train_epoch(lr)
            acc_clean, acc_mixed = sums.accuracies()
            run.policy.end_epoch(acc_clean, acc_mixed)  # Eq. 6: the next epoch's lambda
            entry = {"epoch": epoch + 1, "lr": lr, "lambda": lam, "train_loss": float(sums.loss_sum) / sums.n_seen,
                     "train_acc_clean": acc_clean, "train_acc_mixed": acc_mixed}
            if run.rank == 0 and _evaluates(config, epoch):
                evaluation = run.evaluate()
                entry.update(_test_metrics(evaluation, run.groups))
            run.seconds += time.perf_counter() - t0
            entry["seconds"] = run.seconds
            run.history.append(entry)
            if _saves(config, epoch):  # every process: its gathers are collective
                save_run(run, ckpt_path, epoch + 1)
            if run.world > 1:
                torch.distributed.barrier()
            bar.set_postfix(_postfix(entry))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, entry)
        bar.close()
        return _finish(run, evaluation, out_path, overwrite, provenance)


@contextlib.contextmanager
def _claim(config: RunConfig, results_dir: Path, out_path: Path, ckpt_path: Path, overwrite: bool):
    """Yield the run's record where it is finished (None: train it). One process holds the run's lock
    (:class:`~amixup.records.RunBusyError` where another trains it); the processes of a torchrun share the run
    and decide together whether it is finished."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if overwrite:
            ckpt_path.unlink(missing_ok=True)
        ddp.init_from_env(resolve_device(config.device).type)
        yield read_record(out_path) if not overwrite and record_everywhere(out_path, ckpt_path) else None
        return
    if out_path.exists() and not overwrite:
        yield read_record(out_path)
        return
    with run_lock(lock_path(results_dir, config.run_id()), config.run_id()):
        if out_path.exists() and not overwrite:  # it finished while this process waited to start
            yield read_record(out_path)
            return
        if overwrite:
            ckpt_path.unlink(missing_ok=True)
        yield None


def build_run(config: RunConfig, results_dir: Path) -> Run:
    """Everything a run trains with, before any checkpoint is restored: data, model (initialised from its seed),
    optimizer, generators, mixing policy, the training step and the evaluation."""
    device = resolve_device(config.device)
    distributed = ddp.init_from_env(device.type)
    rank, world = ddp.rank(), ddp.world_size()
    if config.finetune_from:
        encoder_source(config.finetune_from, results_dir, config.model)  # before any data is loaded
    if distributed and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank())
    spec = resolve_spec(config.method, config.rate, config.one_sided, config.last_layer)
    train_data, test_data, full_counts = load_data(config)
    input_size = _input_size(config, train_data)
    mean, std = normalization(config, train_data)
    torch.manual_seed(config.seed)
    model = build_model(config.model, train_data.num_classes, train_data.images.shape[1], input_size,
                        **config.model_options)
    source = load_encoder(model, config.finetune_from, results_dir, "cpu", config.model) if config.finetune_from else None
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
    # one process: data order and augmentation from seed + 1; several: the shared order from seed + 1 (the one
    # process's order), each rank's augmentation from a stream of its own (rank 0's did replay the order's numbers)
    rank_offset = 7919 * (rank + 1) if distributed else 0
    device_gen = torch.Generator(device=device).manual_seed(config.seed + 1 + rank_offset)
    shuffle_gen = torch.Generator(device=device).manual_seed(config.seed + 1) if distributed else None
    policy = MixPolicy(spec, alpha=config.alpha, fixed_lambda=config.fixed_lambda, beta=config.beta,
                       train_acc_source=config.train_acc_source, eligible_layers=model.manifold_layers,
                       last_layer_index=model.last_layer, seed=config.seed + 2, pairing_seed=config.seed)
    train_loader = TensorLoader(train_data.images, train_data.labels, config.batch_size, device=device,
                                mean=mean, std=std, train=True, crop_padding=config.crop_padding,
                                flip=config.flip, augmentation=config.augmentation, crop_size=config.crop_size,
                                color_jitter=config.color_jitter, generator=device_gen, shuffle_generator=shuffle_gen,
                                rank=rank, world_size=world)
    test_loader = _test_loader(config, test_data, device)
    autocast = _autocast(device, config.precision)
    batch_sizes = _batch_sizes(config, train_loader)
    batches, forward, objective = train_loader, None, None
    run_evaluation = lambda: evaluate(model, test_loader, autocast)  # noqa: E731
    if distributed:  # DDP averages the gradients; each process weights its loss by its share of the batch
        wrapped = torch.nn.parallel.DistributedDataParallel(
            ddp.MixedForward(model), device_ids=[device.index] if device.type == "cuda" else None)
        forward, objective = wrapped, ddp.share_weighted_objective(batch_sizes, world)
    frozen_features = _uses_frozen_features(config, policy, distributed)
    if frozen_features:
        # the encoder is frozen, the batches unaugmented and unmixed: encode every image once
        # and train the head on the stored features, in the order the image loader would draw
        plain = dict(device=device, mean=mean, std=std, train=False, augmentation=config.augmentation,
                     crop_size=config.crop_size)
        train_feats = encode(model, TensorLoader(train_data.images, train_data.labels, 512, **plain), autocast)
        test_feats = encode(model, TensorLoader(test_data.images, test_data.labels, 512, **plain), autocast)
        batches = _FeatureBatches(train_loader, train_feats, train_loader.labels)
        forward = lambda z, layer, mix: (model.head(z), None)  # noqa: E731
        run_evaluation = lambda: evaluate_features(model, test_feats, test_loader.labels, autocast)  # noqa: E731
    static = None
    if _uses_static_step(config, device, optimizer, distributed, frozen_features):
        static = StaticStep(model, policy, optimizer, batch_size=config.batch_size, device=device,
                            sample_shape=_sample_shape(config, train_data, input_size), precision=config.precision)
    step = TrainStep(model, policy, optimizer.step, autocast=autocast, forward=forward, objective=objective)
    groups = class_groups(config.split_convention, full_counts, config.many_threshold, config.few_threshold)
    return Run(config, device, model, optimizer, policy, device_gen, shuffle_gen, batches, step, static,
               run_evaluation, groups, batch_sizes, source, (train_data, test_data, full_counts), rank, world)


def _finish(run: Run, evaluation, out_path: Path, overwrite: bool, provenance: dict) -> dict:
    """Write the run's record (rank 0) and return it on every process."""
    if run.world > 1:
        in_sync = _parameters_in_sync(run.model)
    if run.rank != 0:
        return ddp.broadcast_object(None)
    if evaluation is None:  # resumed from a checkpoint of the last epoch
        evaluation = run.evaluate()
    train_data, test_data, full_counts = run.data
    record = _final_record(run.config, run.model, evaluation, train_data, test_data, run.groups, run.history,
                           run.seconds, run.device, run.encoder_source, provenance)
    record["data"]["full_train_counts"] = full_counts
    record["environment"]["step"] = run.static.kind if run.static is not None else "eager"
    if run.world > 1:
        record["distributed"] = {"world_size": run.world, "backend": torch.distributed.get_backend(),
                                 "ranks_in_sync": in_sync}
    write_record(record, out_path, overwrite=overwrite)
    return ddp.broadcast_object(record)


def _evaluates(config: RunConfig, epoch: int) -> bool:
    return (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs


def _saves(config: RunConfig, epoch: int) -> bool:
    """Whether ``epoch`` ends with a checkpoint: every ``checkpoint_every`` epochs, and the last one always."""
    return (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs


def _test_metrics(evaluation, groups) -> dict:
    """The history entry's test accuracies (all, many, median, few) of an evaluation's logits."""
    logits, _, labels = evaluation
    return {f"test_{k}": v for k, v in split_accuracy(logits.argmax(1), labels, groups).items()}


def _postfix(entry: dict) -> dict:
    postfix = {"loss": f"{entry['train_loss']:.3f}", "acc": f"{entry['train_acc_mixed']:.3f}",
               "test": f"{entry.get('test_all', float('nan')):.1f}"}
    if entry["lambda"] is not None:
        postfix["lam"] = f"{entry['lambda']:.3f}"
    return postfix


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


def normalization(config: RunConfig, data: "datasets.ImageData") -> tuple:
    """Per-channel (mean, std) of a run's images: ``config.normalization`` where it is given, else the
    dataset's statistics; a ``ValueError`` when its channels are not the images' channels."""
    if not config.normalization:
        return datasets.normalization(config.dataset)
    mean, std = tuple(config.normalization["mean"]), tuple(config.normalization["std"])
    if len(mean) != data.images.shape[1]:
        raise ValueError(f"normalization has {len(mean)} channel(s) but the images of {config.dataset!r} have "
                         f"{data.images.shape[1]}")
    return mean, std


def _test_loader(config: RunConfig, test_data, device) -> TensorLoader:
    mean, std = normalization(config, test_data)
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
