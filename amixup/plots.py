"""Figures computed from run records: 2-D features over the confidence landscape (paper
Figures 2-5), the AM-mixup lambda trajectory, the beta sweep and the data-copy dose-response."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .tables import METHOD_ORDER

LABELS = {"ce": "CE", "mixup": "mixup", "manifold_mixup": "manifold mixup", "am_mixup": "AM-mixup"}


def _method(record) -> str:
    return record["config"]["extra"].get("pretrain_method", record["config"]["method"])


def _ordered(records):
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(records, key=lambda r: (order.get(_method(r), 99), r["config"]["seed"]))


def _finish(fig, path=None):
    """Lay the figure out, save it to ``path`` (folders made) if given, and return it."""
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def confidence_landscape(ax, weight, bias, limits, resolution: int = 200):
    """Max softmax probability of the linear head over a grid of the 2-D feature plane (0 to 1)."""
    (x0, x1), (y0, y1) = limits
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), dtype=torch.float64)
    logits = grid @ torch.tensor(weight, dtype=torch.float64).T + torch.tensor(bias, dtype=torch.float64)
    conf = logits.softmax(1).max(1).values.reshape(resolution, resolution).numpy()
    return ax.imshow(conf, origin="lower", extent=(x0, x1, y0, y1), cmap="gray", vmin=0.0, vmax=1.0,
                     aspect="auto", alpha=0.6)


def feature_panels(records, path=None, max_points: int = 2000, seed: int = 0):
    """One column per method: top, test features over the confidence landscape; bottom, the same
    features projected on the unit circle. A, U and U_1 of each run are printed on its panels."""
    records = [r for r in _ordered(records) if "features" in r]
    if not records:
        raise ValueError("no record holds 2-D features (only models with a feature dim <= 2 store them)")
    fig, axes = plt.subplots(2, len(records), figsize=(3.4 * len(records), 6.6), squeeze=False)
    rng = np.random.default_rng(seed)
    for col, rec in enumerate(records):
        feats = np.asarray(rec["features"]["test"], dtype=float)
        labels = np.asarray(rec["features"]["labels"])
        keep = rng.permutation(len(feats))[:max_points]
        feats, labels = feats[keep], labels[keep]
        classes = rec["data"]["classes"]
        palette = sns.color_palette("tab10", len(classes))
        span = np.abs(feats).max() * 1.15 + 1e-6
        ax = axes[0, col]
        confidence_landscape(ax, rec["features"]["head_weight"], rec["features"]["head_bias"],
                             ((-span, span), (-span, span)))
        for c, name in enumerate(classes):
            pts = feats[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=3, color=palette[c], label=name)
        m = rec["metrics"]
        ax.set_title(f"{LABELS.get(_method(rec), _method(rec))} (seed {rec['config']['seed']})", fontsize=10)
        ax.text(0.02, 0.02, f"A={m['alignment']:.3f}\nU={m['uniformity']:.3f}  U1={m['uniformity_k1']:.3f}\n"
                f"acc={m['last']['acc_all']:.1f}%", transform=ax.transAxes, fontsize=8, va="bottom",
                bbox=dict(facecolor="white", alpha=0.7, lw=0))
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        ax2 = axes[1, col]
        ax2.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8))
        for c in range(len(classes)):
            pts = unit[labels == c]
            jitter = 1.0 + 0.04 * rng.standard_normal((len(pts), 1))
            ax2.scatter(pts[:, 0] * jitter[:, 0], pts[:, 1] * jitter[:, 0], s=3, color=palette[c])
            centre = feats[labels == c].sum(0)
            centre = centre / max(np.linalg.norm(centre), 1e-12)
            ax2.scatter(*centre, s=80, marker="*", color=palette[c], edgecolor="k", lw=0.5)
        ax2.set_xlim(-1.3, 1.3), ax2.set_ylim(-1.3, 1.3), ax2.set_aspect("equal")
        ax2.set_xticks([]), ax2.set_yticks([])
    axes[0, 0].legend(loc="upper left", fontsize=7, markerscale=3)
    return _finish(fig, path)


def lambda_trajectory(records, path=None):
    """lambda_am per epoch (Eq. 6) and the clean training accuracy that drives it."""
    records = [r for r in _ordered(records) if r["config"]["method"] == "am_mixup"
               and any(v is not None for v in r["lambda_trajectory"])]
    if not records:
        raise ValueError("no AM-mixup record with a lambda trajectory")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax2 = ax.twinx()
    for rec in records:
        epochs = [h["epoch"] for h in rec["history"]]
        label = f"{rec['config']['experiment']} seed {rec['config']['seed']}"
        ax.plot(epochs, rec["lambda_trajectory"], lw=1.5, label=f"lambda, {label}")
        ax2.plot(epochs, [h["train_acc_clean"] for h in rec["history"]], lw=1, ls="--", alpha=0.7,
                 label=f"train acc, {label}")
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("epoch"), ax.set_ylabel("lambda_am (solid)"), ax2.set_ylabel("clean training accuracy (dashed)")
    ax.set_ylim(0.45, 1.02), ax2.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="center right")
    return _finish(fig, path)


def accuracy_vs_beta(records, path=None):
    """Last-epoch test accuracy (all, few) of the AM-mixup beta sweep against beta: mean over seeds with
    the std as error bars (none with one seed); the dotted line is beta = ln 2, above which lambda can
    fall below 0.5."""
    from .tables import beta_summary

    summary = beta_summary(records)
    if summary.empty:
        raise ValueError("no beta-sweep record")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for metric, label, marker in (("acc_all", "all classes", "o"), ("acc_few", "few classes", "s")):
        ax.errorbar(summary["beta"], summary[f"{metric}_mean"], yerr=summary[f"{metric}_std"].fillna(0.0),
                    marker=marker, capsize=3, lw=1.5, label=label)
    ax.axvline(np.log(2), color="0.5", lw=0.8, ls=":", label="beta = ln 2")
    seeds = sorted({r["config"]["seed"] for r in records})
    ax.set_xlabel("beta (Eq. 6)"), ax.set_ylabel("test accuracy, last epoch (%)")
    ax.set_title(f"AM-mixup on {records[0]['config']['dataset']}, seeds {seeds}", fontsize=10)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def cost_vs_psnr(copy_rows, path=None):
    """The data-copy dose-response: one more JPEG step's change of last-epoch accuracy (re-encoded minus original,
    mean over paired seeds; all and few classes) against the copy's PSNR from the original, one marker per method
    and profile (``copy_rows``: amixup.report.data_copy_table; copies without a measured PSNR are left out)."""
    rows = copy_rows[(copy_rows["copy"] != "original") & copy_rows["psnr_db"].notna() & (copy_rows["paired_seeds"] > 0)]
    if rows.empty:
        raise ValueError("no re-encoded copy with a measured PSNR and paired seeds")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    for ax, metric, title in zip(axes, ("acc_all", "acc_few"), ("all classes", "few classes")):
        for (profile, method), part in rows.groupby(["profile", "method"], sort=False):
            part = part.sort_values("psnr_db")
            ax.plot(part["psnr_db"], part[f"diff_{metric}"], marker="o", lw=1,
                    label=f"{LABELS.get(method, method)}, {profile} (n {_text_list(part['paired_seeds'])})")
            for r in part.itertuples():
                ax.annotate(r.copy, (r.psnr_db, getattr(r, f"diff_{metric}")), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10), ax.set_xlabel("PSNR of the copy against the copy as it is (dB)")
    axes[0].set_ylabel("accuracy change (points)")
    axes[0].legend(fontsize=7)
    return _finish(fig, path)


def _text_list(values) -> str:
    values = sorted(set(int(v) for v in values))
    return str(values[0]) if len(values) == 1 else "/".join(map(str, values))


def lambda_by_beta(records, path=None):
    """lambda_am per epoch (Eq. 6) of each run of the beta sweep, coloured by beta (one line per seed);
    the dotted line is 0.5, below which the one-sided label flips to the partner's class (Eq. 5)."""
    records = [r for r in records if any(v is not None for v in r["lambda_trajectory"])]
    if not records:
        raise ValueError("no beta-sweep record with a lambda trajectory")
    betas = sorted({float(r["config"]["beta"]) for r in records})
    colours = dict(zip(betas, sns.color_palette("viridis", len(betas))))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labelled = set()
    for rec in sorted(records, key=lambda r: (float(r["config"]["beta"]), r["config"]["seed"])):
        beta = float(rec["config"]["beta"])
        epochs = [h["epoch"] for h in rec["history"]]
        ax.plot(epochs, rec["lambda_trajectory"], lw=1.3, color=colours[beta],
                label=None if beta in labelled else f"beta {beta:g}")
        labelled.add(beta)
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("epoch"), ax.set_ylabel("lambda_am")
    ax.set_ylim(min(0.45, min(min(r["lambda_trajectory"]) for r in records) - 0.03), 1.02)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _finish(fig, path)
