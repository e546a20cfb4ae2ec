"""Tables computed from run records, and their comparison with the paper's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .records import REPO_ROOT

PAPER_RESULTS = REPO_ROOT / "results" / "paper" / "paper_results.csv"
METHOD_ORDER = ["ce", "mixup", "manifold_mixup", "am_mixup"]
ACCURACY = ["acc_many", "acc_median", "acc_few", "acc_all"]


def records_frame(records) -> pd.DataFrame:
    """One row per record: identifying config fields, last-epoch metrics, best-epoch accuracy."""
    rows = []
    for r in records:
        c, m = r["config"], r["metrics"]
        rows.append({
            "experiment": c["experiment"], "profile": c["profile"], "dataset": c["dataset"],
            "imb_factor": c["imb_factor"], "model": c["model"],
            # a fine-tuning run is labelled by the method its encoder was pre-trained with
            "method": c["extra"].get("pretrain_method", c["method"]),
            "rate": c["rate"], "one_sided": c["one_sided"], "last_layer": c["last_layer"],
            "beta": c["beta"], "seed": c["seed"], "epochs": c["epochs"],
            **m["last"],
            "best_acc_all": m["best"]["acc_all"], "best_epoch": m["best"]["epoch"],
            "alignment": m.get("alignment"), "uniformity": m.get("uniformity"),
            "uniformity_k1": m.get("uniformity_k1"),
            "seconds": r["seconds"], "device": r["environment"]["device_name"],
            "commit": (r["git"].get("commit") or "")[:10], "data_source": r["data"]["source"],
            "run_id": r["run_id"],
        })
    frame = pd.DataFrame(rows)
    if not frame.empty:
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        frame = frame.sort_values(["method", "seed"], key=lambda s: s.map(order) if s.name == "method" else s)
    return frame.reset_index(drop=True)


def summarize(frame: pd.DataFrame, metrics, by=("method",)) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds of each metric, and the number of seeds."""
    grouped = frame.groupby(list(by), sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["seeds"] = grouped.size()
    return out


def load_paper_results(path=None) -> pd.DataFrame:
    """The paper's Tables 1-8 in long form (table, dataset, method, source, metric, mean, std, ...)."""
    return pd.read_csv(Path(path) if path else PAPER_RESULTS)


def compare_with_paper(summary: pd.DataFrame, paper: pd.DataFrame, table: int, metrics,
                       source: str = "paper", **where) -> pd.DataFrame:
    """Per method and metric: our mean and std, the paper's value and ours minus the paper's.

    ``where`` narrows the paper rows (e.g. ``dataset="cifar10_lt", imb_factor=100``).
    """
    rows = paper[(paper["table"] == table) & (paper["source"] == source)]
    for key, value in where.items():
        rows = rows[rows[key] == value]
    out = []
    for method in summary.index:
        for metric in metrics:
            ref = rows[(rows["method"] == method) & (rows["metric"] == metric)]
            paper_mean = float(ref["mean"].iloc[0]) if len(ref) else float("nan")
            ours = summary.loc[method, f"{metric}_mean"]
            out.append({"method": method, "metric": metric, "ours": ours,
                        "ours_std": summary.loc[method, f"{metric}_std"], "seeds": summary.loc[method, "seeds"],
                        "paper": paper_mean, "diff": ours - paper_mean})
    return pd.DataFrame(out)


def side_by_side(comparison: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Wide view: one row per method, 'ours', 'paper' and 'diff' per metric, rounded for printing."""
    wide = comparison.pivot(index="method", columns="metric", values=["ours", "ours_std", "paper", "diff"])
    wide = wide.swaplevel(axis=1)
    metrics = list(dict.fromkeys(comparison["metric"]))
    wide = wide[[(m, k) for m in metrics for k in ("ours", "ours_std", "paper", "diff")]]
    order = [m for m in METHOD_ORDER if m in wide.index] + [m for m in wide.index if m not in METHOD_ORDER]
    return wide.loc[order].round(decimals)


def data_note(records) -> str:
    """Which data the records were trained on, with the caveat for the lossy CIFAR-10 JPEG copy."""
    # where the images came from, whether this run read them from the prepared cache or not
    sources = sorted({re.sub(r"^cache \S+ of ", "", r["data"]["source"]) for r in records})
    note = "data: " + "; ".join(sources) if sources else "data: no records"
    if any("lossy JPEG" in s for s in sources):
        note += ("\nThese images are a lossy JPEG re-encoding of CIFAR-10: accuracies run a little below "
                 "those on canonical CIFAR-10.")
    return note
