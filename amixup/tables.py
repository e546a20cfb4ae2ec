"""Tables computed from run records, and their comparison with the paper's numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
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
            "imb_factor": c["imb_factor"], "model": c["model"], "network": c["model"],
            "precision": c.get("precision", "fp32"),
            # a fine-tuning run is labelled by the method its encoder was pre-trained with
            "method": _label(c),
            "rate": c["rate"], "one_sided": c["one_sided"], "last_layer": c["last_layer"],
            "beta": c["beta"], "seed": c["seed"], "epochs": c["epochs"],
            **m["last"],
            "best_acc_all": m["best"]["acc_all"], "best_epoch": m["best"]["epoch"],
            "train_loss": r["history"][-1]["train_loss"],
            "alignment": m.get("alignment"), "uniformity": m.get("uniformity"),
            "uniformity_k1": _undefined_as_nan(m.get("uniformity_k1")),
            "seconds": r["seconds"], "device": r["environment"]["device_name"],
            "commit": (r["git"].get("commit") or "")[:10], "data_source": r["data"]["source"],
            "run_id": r["run_id"],
        })
    frame = pd.DataFrame(rows)
    if not frame.empty:
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        frame = frame.sort_values(["method", "seed"], key=lambda s: s.map(order) if s.name == "method" else s)
    return frame.reset_index(drop=True)


def _undefined_as_nan(value):
    """U1 of a record: NaN where it is undefined (records written before metrics.neighborhood_uniformity returned
    NaN for a class centre without direction hold inf there)."""
    return math.nan if isinstance(value, float) and math.isinf(value) else value


def _label(config: dict) -> str:
    """The row name of a run in the paper's tables: its method, the method its encoder was
    pre-trained with (fine-tuning runs), or its Table 7 row."""
    extra = config.get("extra", {})
    if "ablation_row" in extra:
        return f"ablation_row{extra['ablation_row']}"
    return extra.get("pretrain_method", config["method"])


def summarize(frame: pd.DataFrame, metrics, by=("method",)) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds of each metric, and the number of seeds."""
    grouped = frame.groupby(list(by), sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["seeds"] = grouped["seed"].nunique() if "seed" in frame else grouped.size()
    return out


def load_paper_results(path=None) -> pd.DataFrame:
    """The paper's Tables 1-8 in long form (table, dataset, method, source, metric, mean, std, ...)."""
    return pd.read_csv(Path(path) if path else PAPER_RESULTS)


def _text(value) -> str:
    """A comparable spelling of a table key (100, 100.0 and "100" are the same imbalance factor)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compare_with_paper(summary: pd.DataFrame, paper: pd.DataFrame, table: int, metrics,
                       source: str = "paper", **where) -> pd.DataFrame:
    """Per summary row and metric: our mean and std, the paper's value and ours minus the paper's.

    The summary's index levels (e.g. ``method``, or ``dataset, imb_factor, method``) are matched
    against the paper's columns of the same names; ``where`` narrows the paper rows further.
    """
    sources = [source] if isinstance(source, str) else list(source)
    rows = paper[paper["table"] == table]
    for key, value in where.items():
        rows = rows[rows[key].map(_text) == _text(value)]
    names = list(summary.index.names)
    out = []
    for key in summary.index:
        key = key if isinstance(key, tuple) else (key,)
        ref = rows
        for name, value in zip(names, key):
            ref = ref[ref[name].map(_text) == _text(value)]
        # the first source that reports this row (e.g. "paper", then "paper_reproduced" for baselines)
        ref = next((ref[ref["source"] == s] for s in sources if (ref["source"] == s).any()), ref.iloc[:0])
        for metric in metrics:
            hit = ref[ref["metric"] == metric]
            if hit["mean"].nunique() > 1:  # the keys do not say which of the paper's rows this is
                differ = [c for c in ("dataset", "imb_factor", "network", "method", "beta")
                          if c in hit and hit[c].nunique(dropna=False) > 1]
                raise ValueError(f"Table {table}, {dict(zip(names, key))}, {metric}: {len(hit)} rows of the paper "
                                 f"match, differing in {differ}: summarize by them too, or narrow with where=")
            paper_mean = float(hit["mean"].iloc[0]) if len(hit) else float("nan")
            ours = summary.loc[key if len(key) > 1 else key[0], f"{metric}_mean"]
            std = summary.loc[key if len(key) > 1 else key[0], f"{metric}_std"]
            seeds = summary.loc[key if len(key) > 1 else key[0], "seeds"]
            out.append({**dict(zip(names, key)), "metric": metric, "ours": ours, "ours_std": std,
                        "seeds": seeds, "paper": paper_mean, "diff": ours - paper_mean})
    return pd.DataFrame(out)


def side_by_side(comparison: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Wide view: one row per run group, 'ours', 'ours_std', 'paper' and 'diff' per metric, rounded."""
    keys = [c for c in comparison.columns if c not in ("metric", "ours", "ours_std", "seeds", "paper", "diff")]
    wide = comparison.pivot(index=keys, columns="metric", values=["ours", "ours_std", "paper", "diff"])
    wide = wide.swaplevel(axis=1)
    metrics = list(dict.fromkeys(comparison["metric"]))
    wide = wide[[(m, k) for m in metrics for k in ("ours", "ours_std", "paper", "diff")]]
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rank = comparison.drop_duplicates(keys)[keys]
    rank = rank.assign(_o=rank["method"].map(lambda m: order.get(m, len(order)))).sort_values(
        [k for k in keys if k != "method"] + ["_o", "method"])
    index = [tuple(r) if len(keys) > 1 else r[0] for r in rank[keys].itertuples(index=False)]
    return wide.loc[index].round(decimals)


def data_note(records) -> str:
    """Which data the records were trained on, with the caveat for the lossy CIFAR-10 JPEG copy."""
    # where the images came from, whether this run read them from the prepared cache or not
    sources = sorted({re.sub(r"^cache \S+ of ", "", r["data"]["source"]) for r in records})
    note = "data: " + "; ".join(sources) if sources else "data: no records"
    if any("lossy JPEG" in s for s in sources):
        note += ("\nThese images are a lossy JPEG re-encoding of CIFAR-10; what it costs is measured in "
                 "results/REPORT.md (data-copy section), not assumed.")
        from .jpegquality import located_copy_note

        for s in sources:
            if "lossy JPEG" in s:
                measured = located_copy_note(s)
                note += ("\nJPEG quality from the quantisation tables of "
                         + (measured or f"{s}: not measured (the copy is not here)"))
    return note


def beta_summary(records) -> pd.DataFrame:
    """The beta sweep per beta: mean and (sample) std over seeds of the last-epoch test accuracy (all,
    few), the mean best-epoch accuracy (all) beside it, the seeds, and lambda: its last-epoch value (mean
    over seeds) and its lowest over training and seeds; ``can_cross`` says whether Eq. 6 allows lambda < 0.5
    at all (beta > ln 2), ``crossed`` whether a run's lambda went below 0.5 (then the one-sided label is the
    partner's, Eq. 5)."""
    rows = [{"beta": float(r["config"]["beta"]), "seed": r["config"]["seed"],
             "acc_all": r["metrics"]["last"]["acc_all"], "acc_few": r["metrics"]["last"]["acc_few"],
             "best_acc_all": r["metrics"]["best"]["acc_all"],
             "lambda_last": r["lambda_trajectory"][-1], "lambda_min": min(r["lambda_trajectory"])}
            for r in records]
    columns = ["beta", "seeds", "acc_all_mean", "acc_all_std", "best_acc_all_mean", "acc_few_mean", "acc_few_std",
               "lambda_last", "lambda_min", "can_cross", "crossed"]
    if not rows:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(rows).groupby("beta", sort=True)
    out = grouped.agg(seeds=("seed", "size"), acc_all_mean=("acc_all", "mean"), acc_all_std=("acc_all", "std"),
                      best_acc_all_mean=("best_acc_all", "mean"), acc_few_mean=("acc_few", "mean"),
                      acc_few_std=("acc_few", "std"),
                      lambda_last=("lambda_last", "mean"), lambda_min=("lambda_min", "min")).reset_index()
    out["can_cross"] = out["beta"] > math.log(2)
    out["crossed"] = out["lambda_min"] < 0.5
    return out[columns]


#: Table 2's choices where the paper is silent, each a factor of the choices study (notebook 01): its values, the
#: first being ours (the Table 2 records). ``augmentation``: RandomCrop(32, padding 4) + flip, or none; the others
#: are CNN-Vis2D's options (``models.cnn_vis2d``, whose defaults are ours: BatchNorm after each conv, an activation
#: on the 2-D feature, global average pooling or flattening of the last map).
TABLE2_CHOICES = {
    "augmentation": (True, False),
    "batchnorm": (True, False),
    "feature_activation": ("none", "relu"),
    "pooling": ("avg", "flatten"),
}
#: Our value of each choice, and the choices in order.
CHOICE_DEFAULTS = {name: values[0] for name, values in TABLE2_CHOICES.items()}
CHOICES = list(TABLE2_CHOICES)


def choice_frame(records) -> pd.DataFrame:
    """:func:`records_frame` of Table 2's silent-choices runs with a column per choice
    (:data:`TABLE2_CHOICES`: augmentation, batchnorm, feature_activation, pooling), read from each
    record's config (CNN-Vis2D's defaults where its ``model_options`` leave one out), and
    ``predicts_one_class`` (:func:`predicts_one_class`)."""
    frame = records_frame(records)
    if frame.empty:
        return frame
    by_id = {r["run_id"]: r["config"] for r in records}
    defaults = CHOICE_DEFAULTS
    for name in CHOICES:
        frame[name] = [
            (by_id[i].get("crop_padding", 4) > 0 or by_id[i].get("flip", True)) if name == "augmentation"
            else by_id[i].get("model_options", {}).get(name, defaults[name])
            for i in frame["run_id"]]
    one_class = {r["run_id"] for r in records if predicts_one_class(r)}
    frame["predicts_one_class"] = frame["run_id"].isin(one_class)
    return frame


def predicts_one_class(record) -> bool:
    """Whether a run's last-epoch model puts every test image in one class: per-class accuracy 100 on one class and
    0 on every other (exact: each is 100 x a mean of 0s and 1s). A total collapse, e.g. of a 2-D feature whose ReLU
    units all died; classes without test images are left out."""
    accuracy = sorted(a for a in record["metrics"].get("per_class_acc") or [] if a is not None)
    return len(accuracy) > 1 and accuracy[-1] == 100.0 and not any(accuracy[:-1])


def under_choices(frame: pd.DataFrame, combination: dict) -> pd.DataFrame:
    """The rows of ``frame`` (a :func:`choice_frame` or :func:`choice_summary`) trained under ``combination``
    (a value for some of :data:`CHOICES`; the others are ours)."""
    full = {**CHOICE_DEFAULTS, **{name: combination[name] for name in CHOICES if name in combination}}
    keep = np.ones(len(frame), dtype=bool)
    for name, value in full.items():
        keep &= (frame[name] == value).to_numpy()
    return frame[keep]


def common_seeds(frame: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """The rows of ``frame`` (a :func:`choice_frame`) whose seed every combination (and method) has, and those seeds:
    means over the same seeds compare like with like (a combination with one more seed is otherwise ranked on another
    sample). Where no seed is shared, ``frame`` unchanged and an empty list."""
    keys = CHOICES + (["method"] if "method" in frame else [])
    seeds = [set(group) for _, group in frame.groupby(keys)["seed"]]
    shared = sorted(set.intersection(*seeds)) if seeds else []
    return (frame[frame["seed"].isin(shared)], shared) if shared else (frame, [])


#: What the choices study summarises per combination; the mean of ``predicts_one_class`` over seeds is the share of
#: seeds whose model puts every test image in one class.
CHOICE_METRICS = ("acc_all", "acc_few", "uniformity", "uniformity_k1", "predicts_one_class")


def choice_summary(frame: pd.DataFrame, metrics=CHOICE_METRICS) -> pd.DataFrame:
    """Per combination of the choices (and method): the mean of each metric over seeds (NaN where a seed's is
    undefined, e.g. U of collapsed features) and the seeds."""
    keys = CHOICES + (["method"] if "method" in frame else [])
    grouped = frame.groupby(keys, sort=False)
    out = grouped[list(metrics)].agg(lambda values: values.mean(skipna=False))
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def choice_effects(summary: pd.DataFrame, metrics=CHOICE_METRICS, defaults=None) -> pd.DataFrame:
    """Each choice's main effect on each metric: the mean over the combinations that differ from ours in that
    choice minus the mean over those that keep ours (a balanced factorial's main effect; with part of the
    factorial, the means over the combinations present), with how many combinations are on each side."""
    defaults = defaults or CHOICE_DEFAULTS
    rows = []
    for name in CHOICES:
        changed = summary[summary[name] != defaults[name]]
        kept = summary[summary[name] == defaults[name]]
        row = {"choice": name, "ours": defaults[name], "changed_to": ", ".join(sorted({str(v) for v in changed[name]})),
               "combinations_changed": len(changed), "combinations_kept": len(kept)}
        for metric in metrics:  # (a metric undefined in some runs, e.g. U of all-zero features, gives NaN)
            with np.errstate(invalid="ignore"):
                row[metric] = changed[metric].mean() - kept[metric].mean() if len(changed) and len(kept) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def nearest(summary: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """The combinations of ``summary`` ordered by their distance to ``targets`` (e.g. the paper's CE:
    ``{"acc_all": 42.52, "acc_few": 2.25}``): the sum of absolute differences, in a column ``distance``."""
    out = summary.copy()
    out["distance"] = sum((summary[m] - v).abs() for m, v in targets.items()) if len(summary) else []
    return out.sort_values("distance", kind="stable")


def write_csv(frame: pd.DataFrame, path, decimals: int = 4) -> None:
    """``frame`` as CSV at ``path`` with floats rounded to ``decimals`` (no float noise such as
    34.150000000000006)."""
    frame.round(decimals).to_csv(Path(path), index=False)


def table2_pattern_outcome(summary, closest, margin: float = 5.0) -> str:
    """Whether Table 2's baseline pattern (CE far below mixup and manifold mixup: the paper has 42.5 against 59.4
    and 65.4) holds under the choices of ``closest`` (a row of ``tables.choice_summary``): "reproduced" (both mixups
    above CE by at least ``margin`` points), "in part" (one), "not reproduced" (neither), or "untested" (a run is
    missing)."""
    return _outcome(_pattern_accuracies(summary, closest), margin)


def pattern_tally(outcomes) -> str:
    """One sentence over the ``table2_pattern_outcome`` of several combinations: how many of those with every
    baseline trained reproduce the paper's pattern, or that none does ("" when none is tested)."""
    tested = [o for o in outcomes if o != "untested"]
    if not tested:
        return ""
    reproduced = tested.count("reproduced")
    return (f"Of the {len(tested)} combination(s) with every baseline trained, "
            + (f"{reproduced} reproduce(s) the paper's pattern" if reproduced else "none reproduces the paper's pattern")
            + f" ({tested.count('in part')} in part).")


def _pattern_accuracies(summary, closest) -> dict:
    same = under_choices(summary, closest)
    accuracy = {m: same.loc[same["method"] == m, "acc_all"] for m in ("ce", "mixup", "manifold_mixup")}
    return {m: None if acc.empty else float(acc.iloc[0]) for m, acc in accuracy.items()}


def _outcome(accuracy: dict, margin: float) -> str:
    if any(acc is None for acc in accuracy.values()):
        return "untested"
    above = [m for m in ("mixup", "manifold_mixup") if accuracy[m] >= accuracy["ce"] + margin]
    return {2: "reproduced", 1: "in part", 0: "not reproduced"}[len(above)]


def table2_pattern_verdict(summary, closest, margin: float = 5.0) -> str:
    """``table2_pattern_outcome`` said plainly, with CE's and both mixups' accuracies, or, where runs are missing,
    the call that trains them."""
    accuracy = _pattern_accuracies(summary, closest)
    outcome = _outcome(accuracy, margin)
    if outcome == "untested":
        combo = {name: closest[name].item() if hasattr(closest[name], "item") else closest[name] for name in CHOICES}
        missing = [m for m, acc in accuracy.items() if acc is None]
        return (f"The paper's pattern (CE far below mixup and manifold mixup) is untested under this combination: "
                f"{', '.join(missing)} have no run under it yet (experiments.table2_choice_configs(profile, "
                f"methods=experiments.METHODS, seeds=[0, 1, 2], combinations=[{combo}])).")
    ce = accuracy["ce"]
    scores = ", ".join(f"{m} {accuracy[m]:.2f}" for m in ("mixup", "manifold_mixup"))
    if outcome == "reproduced":
        return f"This combination reproduces the paper's pattern: CE {ce:.2f} lies {margin:g}+ points below {scores}."
    if outcome == "in part":
        return f"This combination reproduces the paper's pattern in part: CE {ce:.2f} against {scores}."
    return f"This combination does not reproduce the paper's pattern: CE {ce:.2f} against {scores}."


#: The LDAM-DRW control (notebook 02): its rows, and the cited CE figure it is compared with (Table 3's CE on
#: CIFAR-10-LT at imbalance 100, cited from MiSLAS [10], which takes it from LDAM-DRW's ERM: best over epochs).
CONTROL_ROWS = {"control": "LDAM-DRW's ERM recipe (ours)", "table3": "Table 3's recipe, CE (ours)",
                "cited": "cited in Table 3 ([10], best epoch, canonical CIFAR-10)"}


def ldam_control_comparison(control_records, table3_records, paper: pd.DataFrame) -> pd.DataFrame:
    """The LDAM-DRW control beside Table 3's CE runs of the same dataset, imbalance, profile and seeds, and the
    figure Table 3 cites for that cell ([10]): per row the seeds, precision, last-epoch and best-epoch accuracy
    (means over seeds) and the best epoch's gap to the cited figure (LDAM-DRW reports the best epoch)."""
    control = records_frame(control_records)
    columns = ["seeds", "precision", "acc_all", "best_acc_all", "acc_many", "acc_median", "acc_few", "best_minus_cited"]
    if control.empty:
        return pd.DataFrame(columns=columns).rename_axis("run").astype({"seeds": "Int64"})
    cells = set(zip(control["dataset"], control["imb_factor"]))
    ours = records_frame([r for r in table3_records if r["config"]["method"] == "ce"
                          and (r["config"]["dataset"], r["config"]["imb_factor"]) in cells])
    if not ours.empty:
        ours = ours[ours["seed"].isin(control["seed"]) & ours["profile"].isin(control["profile"])]
    in_cells = pd.Series([(d, i) in cells for d, i in zip(paper["dataset"], paper["imb_factor"])], index=paper.index)
    cited = paper[in_cells & (paper["table"] == 3) & (paper["method"] == "ce") & paper["source"].str.startswith("[10]")
                  & (paper["metric"] == "acc_all")]["mean"]
    cited_value = float(cited.iloc[0]) if len(cited) else math.nan
    rows = {}
    for key, frame in (("control", control), ("table3", ours)):
        if frame.empty:
            continue
        means = frame[["acc_all", "best_acc_all", "acc_many", "acc_median", "acc_few"]].mean()
        rows[CONTROL_ROWS[key]] = {"seeds": int(frame["seed"].nunique()),
                                   "precision": ", ".join(sorted(frame["precision"].unique())), **means.to_dict(),
                                   "best_minus_cited": means["best_acc_all"] - cited_value}
    rows[CONTROL_ROWS["cited"]] = {"seeds": math.nan, "precision": "", "best_acc_all": cited_value}
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).rename_axis("run")
    return out.astype({"seeds": "Int64"})


def ldam_control_verdict(comparison: pd.DataFrame) -> str:
    """What the LDAM-DRW control says, in words: the control's best epoch against the cited figure, and how much
    LDAM-DRW's recipe moves our CE against Table 3's recipe on the same seeds (last and best epoch)."""
    control, table3, cited = (comparison.loc[CONTROL_ROWS[k]] if CONTROL_ROWS[k] in comparison.index else None
                              for k in ("control", "table3", "cited"))
    if control is None:
        return "The LDAM-DRW control has no record yet (experiments.ldam_drw_control_configs)."
    seeds = int(control["seeds"])
    out = (f"LDAM-DRW's ERM recipe on our copy: last epoch {control['acc_all']:.2f}, best "
           f"{control['best_acc_all']:.2f} ({seeds} seed{'s' if seeds > 1 else ''}, {control['precision']}) against "
           f"the cited {cited['best_acc_all']:.2f} (best epoch): {control['best_minus_cited']:+.2f} points. "
           "Between that run and LDAM-DRW's stand the data copy, the seed"
           + (" (one seed: its noise is not measured here)" if seeds < 2 else "")
           + " and the library versions; the recipe is theirs, and so are the images where the copy numbers each "
             "class's files in the canonical order (its README does not say).")
    if table3 is not None:
        out += (f" Against Table 3's recipe on the same seed(s) ({table3['precision']}), LDAM-DRW's recipe moves "
                f"our CE by {control['acc_all'] - table3['acc_all']:+.2f} points at the last epoch and "
                f"{control['best_acc_all'] - table3['best_acc_all']:+.2f} at the best "
                f"(few classes {control['acc_few'] - table3['acc_few']:+.2f}).")
    return out
