"""Alignment and uniformity of features (Eqs. 1-3) and many/median/few accuracy."""

from __future__ import annotations

import torch


def _classes(labels: torch.Tensor) -> list[int]:
    return sorted(int(c) for c in torch.unique(labels))


def alignment(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Eq. 1, intra-class alignment on raw features:
    ``A = 1/C * sum_i 1/|F_i|^2 * sum_{v_j, v_k in F_i} ||v_j - v_k||_2``
    (all ordered pairs of a class, the zero self-pairs included, as the 1/|F_i|^2 says)."""
    features = features.double()
    total = 0.0
    classes = _classes(labels)
    for c in classes:
        f = features[labels == c]
        total += torch.cdist(f, f).sum().item() / len(f) ** 2
    return total / len(classes)


def class_centres(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Centres on the unit hypersphere: ``sum(v) / ||sum(v)||`` per class, in label order; NaN where a class's
    features sum to zero (a collapsed feature at the origin has no direction)."""
    features = features.double()
    sums = torch.stack([features[labels == c].sum(0) for c in _classes(labels)])
    return sums / sums.norm(dim=1, keepdim=True)


def uniformity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Eq. 2, inter-class uniformity: mean distance between distinct normalised class centres."""
    centres = class_centres(features, labels)
    c = len(centres)
    if c < 2:
        raise ValueError("uniformity needs at least two classes")
    return torch.cdist(centres, centres).sum().item() / (c * (c - 1))


def neighborhood_uniformity(features: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Eq. 3: mean over classes of the summed distances to the ``k`` nearest other centres; NaN where a centre
    is undefined (like Eq. 2's :func:`uniformity`)."""
    centres = class_centres(features, labels)
    c = len(centres)
    if not 1 <= k < c:
        raise ValueError(f"k must lie in [1, {c - 1}] for {c} classes, got {k!r}")
    if torch.isnan(centres).any():
        return float("nan")
    d = torch.cdist(centres, centres)
    d.fill_diagonal_(float("inf"))
    return d.topk(k, dim=1, largest=False).values.sum(1).mean().item()


#: MiSLAS / Zhong et al. class-index splits for CIFAR-LT (classes ordered head to tail).
INDEX_SPLITS = {
    10: {"many": range(0, 3), "median": range(3, 7), "few": range(7, 10)},
    100: {"many": range(0, 36), "median": range(36, 71), "few": range(71, 100)},
}


def groups_by_counts(train_counts, many_threshold: int = 100, few_threshold: int = 20) -> dict[str, list[int]]:
    """many: more than ``many_threshold`` training images; few: fewer than ``few_threshold``;
    median: the rest (ImageNet-LT: 100 / 20; Mini-CIFAR-LT: 1000 / 200). ``ValueError`` unless
    ``few_threshold < many_threshold`` (otherwise a class could be both many and few)."""
    if not few_threshold < many_threshold:
        raise ValueError(f"few_threshold must be < many_threshold (few: fewer than few_threshold training images, "
                         f"many: more than many_threshold), got few_threshold={few_threshold!r}, "
                         f"many_threshold={many_threshold!r}")
    counts = [int(n) for n in train_counts]
    return {
        "many": [c for c, n in enumerate(counts) if n > many_threshold],
        "median": [c for c, n in enumerate(counts) if few_threshold <= n <= many_threshold],
        "few": [c for c, n in enumerate(counts) if n < few_threshold],
    }


def groups_by_index(num_classes: int, dataset: str | None = None) -> dict[str, list[int]]:
    """The fixed class-index ranges the paper inherits from MiSLAS for CIFAR-10/100-LT; a ``ValueError`` naming
    ``split_convention`` (and ``dataset`` where given) for another class count."""
    if num_classes not in INDEX_SPLITS:
        which = "this one" if dataset is None else repr(dataset)
        raise ValueError(f"split_convention='index' (the MiSLAS CIFAR-LT class-index splits) needs a dataset of "
                         f"{' or '.join(map(str, sorted(INDEX_SPLITS)))} classes, but {which} has {num_classes}; "
                         "use split_convention='counts' (groups by many_threshold and few_threshold)")
    return {name: list(r) for name, r in INDEX_SPLITS[num_classes].items()}


def class_groups(convention: str, train_counts, many_threshold: int = 100, few_threshold: int = 20):
    if convention == "counts":
        return groups_by_counts(train_counts, many_threshold, few_threshold)
    if convention == "index":
        return groups_by_index(len(train_counts))
    raise ValueError(f"split_convention must be one of ['counts', 'index'], got {convention!r}")


def split_accuracy(predictions: torch.Tensor, labels: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float | None]:
    """Accuracy in % over all test samples and over the test samples of each class group
    (``None`` for an empty group)."""
    correct = (predictions == labels).double()
    out = {"all": 100.0 * correct.mean().item()}
    for name, classes in groups.items():
        mask = torch.isin(labels, torch.as_tensor(classes, dtype=labels.dtype, device=labels.device))
        out[name] = 100.0 * correct[mask].mean().item() if mask.any() else None
    return out


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    correct = (predictions == labels).double()
    return [100.0 * correct[labels == c].mean().item() if (labels == c).any() else None for c in range(num_classes)]
