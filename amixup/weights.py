"""Weights a run starts from (``finetune_from``): a finished run's checkpoint, a checkpoint or state-dict file,
or torchvision's pretrained weights (``torchvision:NAME``), loaded into a model's encoder stages."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import checkpoint_path, load_checkpoint, run_record_path
from .data import WeightsNotFoundError
from .models import TORCHVISION_ARCH, SplitModel, from_torchvision_state, torchvision_prefixes

#: ``finetune_from="torchvision:NAME"``: torchvision's pretrained weights NAME (e.g. IMAGENET1K_V1) of the model's
#: torchvision network (models.TORCHVISION_ARCH), from torch's hub cache (downloaded there once).
TORCHVISION_WEIGHTS = "torchvision:"


def encoder_source(source: str, results_dir: Path, model_name: str | None = None) -> Path:
    """The checkpoint ``finetune_from`` names: a file, taken as it is, torchvision's weights ``torchvision:NAME``
    for ``model_name`` (:func:`torchvision_weights_file`), or the checkpoint of a finished run (one with a record)
    of ``results_dir``; a ``ValueError`` naming ``finetune_from`` otherwise."""
    if Path(source).is_file():
        return Path(source)
    if source.startswith(TORCHVISION_WEIGHTS):
        return torchvision_weights_file(source, model_name)
    path = checkpoint_path(results_dir, source)
    usage = (f"finetune_from takes the run id of a finished run in {results_dir}, the path of a checkpoint or "
             "state-dict file, or torchvision:NAME (torchvision's pretrained weights, e.g. IMAGENET1K_V1)")
    if not path.exists():
        raise ValueError(f"finetune_from={source!r}: there is no such file and no checkpoint {path}; {usage}")
    if run_record_path(results_dir, source) is None:
        done = load_checkpoint(path, "cpu", mmap=True).get("epoch")
        raise ValueError(f"finetune_from={source!r}: that run is not finished (its checkpoint {path} is at epoch "
                         f"{done} and it has no record); finish it first (train it again: it resumes)")
    return path


def torchvision_weights_file(source: str, model_name: str) -> Path:
    """The file of torchvision's weights ``source`` for ``model_name`` in torch's hub cache, downloaded there if
    missing; a ``ValueError`` naming ``finetune_from`` where the name does not exist or the download fails."""
    path, url = torchvision_weights_location(source, model_name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as exc:  # offline, refused, interrupted: torch raises many kinds
            raise WeightsNotFoundError(
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


def load_encoder(model: SplitModel, source: str, results_dir: Path, device, model_name: str | None = None) -> str:
    """Load the encoder stages of ``source`` (see :func:`encoder_source`) into ``model``; returns the file's path."""
    path = encoder_source(source, Path(results_dir), model_name)
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
