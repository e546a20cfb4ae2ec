"""One report of where the reproduction stands: every cell of the paper's Tables 1-8 beside our
paper-profile runs, Welch t-tests from the summary statistics, the paper's claims tested on our
records (paired over seeds), and the data-copy experiment.

    python -m amixup.report            # writes results/REPORT.md, REPORT.csv, REPORT_claims.csv

The output depends only on the run records, the paper's numbers and the "measured here" lines
(located base data, the copy's JPEG quality), which the report states; CI regenerates it from the
committed records with those lines and fails if the committed report differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .records import REPO_ROOT
from .tables import ACCURACY, METHOD_ORDER, _label, _text, records_frame

LEVEL = 0.05  # two-sided significance level of every test here
PAPER_PROFILE = "paper"
METRICS = ACCURACY + ["alignment", "uniformity", "uniformity_k1"]
SHARED_PAPER = REPO_ROOT.parent / "shared" / "paper" / "paper_results.csv"
COMMITTED_PAPER = REPO_ROOT / "results" / "paper" / "paper_results.csv"
OUTPUTS = ("REPORT.md", "REPORT.csv", "REPORT_claims.csv")
DATA_COPY_DIR = "data_copy"  # records under results/data_copy/ feed the data-copy section only

# our model / dataset names -> the paper CSV's (only where they differ)
NETWORK_ALIASES = {"vit": "vit_small", "resnet50_cifar": "resnet50", "densenet_bc": "densenet_bc_k12"}
DATASET_ALIASES: dict[str, str] = {}
# base data each dataset is built from, for datasets the registry (amixup.data.DATASETS) does not know
EXTRA_BASES = {"tiny_imagenet": "tiny_imagenet"}
BASES = ("cifar10", "cifar100", "mnist", "tiny_imagenet", "imagenet_lt", "places_lt")
#: The paper's own numbers (its runs, and its runs of the baselines); other sources are cited from other papers.
OWN_SOURCES = ("paper", "paper_reproduced")
#: AM-mixup's beta where a row of the paper gives none (Tables 1 and 2: the paper's default, Eq. 6).
DEFAULT_BETA = 0.34
CELL_KEYS = ["table", "dataset", "imb_factor", "network", "method", "beta", "source", "metric"]
# The paper's numbers cited from these sources are best-over-epochs: LDAM-DRW and MiSLAS report the best test
# accuracy over training (project rule; the paper's CSV names the source of each row, e.g. "[10] MiSLAS").
# Where the paper itself reports (last or best epoch) it does not say: "not stated".
BEST_EPOCH_SOURCES = re.compile(r"MiSLAS|LDAM", re.I)
CELL_COLUMNS = CELL_KEYS + ["paper_mean", "paper_std", "paper_n", "paper_epoch", "ours_mean", "ours_std",
                            "ours_best_mean", "ours_n", "seeds", "diff", "diff_best", "p_welch", "status", "profile",
                            "precision", "data_source", "device", "commit"]


# --------------------------------------------------------------------------- inputs

def paper_csv_path() -> Path:
    """../shared/paper/paper_results.csv when present, else the committed copy (they are identical)."""
    return SHARED_PAPER if SHARED_PAPER.is_file() else COMMITTED_PAPER


def load_paper(path=None) -> pd.DataFrame:
    paper = pd.read_csv(path or paper_csv_path())
    paper["paper_n"] = paper["notes"].fillna("").str.extract(r"(\d+) seeds", expand=False).astype(float)
    # a caption's seed count is the paper's own runs', not that of the rows it cites from other papers
    paper.loc[~paper["source"].isin(OWN_SOURCES), "paper_n"] = math.nan
    return paper


def read_run_records(results_dir) -> list[tuple[str, dict]]:
    """(path relative to results_dir, record) of every run record (run_id, config, metrics), sorted."""
    out = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and {"run_id", "config", "metrics"} <= rec.keys():
            out.append((path.relative_to(results_dir).as_posix(), rec))
    return out


def _base_of(dataset: str) -> str:
    from .data import DATASETS

    return DATASETS[dataset].base if dataset in DATASETS else EXTRA_BASES.get(dataset, dataset)


def located_bases() -> list[str]:
    """Base datasets with a copy here (prepared cache, ImageFolder tree/archive, torchvision files, or
    an image root for the list datasets), found by name as amixup.data looks for them, without decoding."""
    from . import data

    found = []
    for base in BASES:
        if base in ("imagenet_lt", "places_lt"):
            root = os.environ.get(f"AMIXUP_{base.upper()}_ROOT")
            hit = bool(root) and Path(root).is_dir()
        else:
            cache = Path(os.environ.get("AMIXUP_CACHE_DIR") or data.REPO_DATA_DIR / "cache").expanduser()
            names = [f"{base}-jpeg", base, f"{base}-jpeg.tar.gz", f"{base}.tar.gz", f"{base}-jpeg.tar",
                     {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}.get(base, base)]
            hit = (cache / f"{base}.pt").is_file() or any(
                (folder / n).exists() for folder in data.search_paths() for n in names)
        if hit:
            found.append(base)
    return found


def measured_notes(records) -> list[str]:
    """The JPEG quality of every lossy copy the records name, measured where the copy is here."""
    from .jpegquality import located_copy_note

    sources = sorted({_source(r) for r in records if "lossy JPEG" in r["data"]["source"]})
    return [located_copy_note(s) or f"{s}: not here to measure" for s in sources]


# --------------------------------------------------------------------------- our runs

def _source(record) -> str:
    """Where the images came from, whether this run read them through the prepared cache or not."""
    return re.sub(r"^cache \S+ of ", "", record["data"]["source"])


def _device(record) -> str:
    env = record["environment"]
    return env.get("device_name", env["device"]) if str(env.get("device", "")).startswith("cuda") else env["device"]


def runs_frame(records) -> pd.DataFrame:
    """tables.records_frame plus the paper's keys of each run (table, dataset, imb_factor, network)."""
    frame = records_frame(records)
    if frame.empty:
        return frame
    from .data import DATASETS

    by_id = {r["run_id"]: r for r in records}
    table = frame["experiment"].str.extract(r"^table(\d+)$", expand=False)
    frame["table"] = pd.to_numeric(table).astype("Int64")
    frame["paper_dataset"] = frame["dataset"].map(lambda d: DATASET_ALIASES.get(d, d))
    frame["paper_network"] = frame["model"].map(lambda m: NETWORK_ALIASES.get(m, m))
    implied = frame["dataset"].map(lambda d: DATASETS[d].default_imb if d in DATASETS else None)
    frame["paper_imb"] = frame["imb_factor"].astype(float).fillna(implied.astype(float))
    # a fine-tuning run stands for its encoder's method: where the encoder's record is among these, its method and
    # beta are the run's (not the pretrain_method label), and an encoder of another profile makes the pair neither's
    for i, run_id in frame["run_id"].items():
        encoder = by_id.get(str(by_id[run_id]["config"].get("finetune_from")))
        if encoder is not None:
            frame.at[i, "method"], frame.at[i, "beta"] = _label(encoder["config"]), encoder["config"]["beta"]
            if encoder["config"]["profile"] != frame.at[i, "profile"]:
                frame.at[i, "profile"] = f"{frame.at[i, 'profile']} (encoder {encoder['config']['profile']})"
    frame["data_source"] = frame["run_id"].map(lambda i: _source(by_id[i]))
    frame["device"] = frame["run_id"].map(lambda i: _device(by_id[i]))
    # accuracy at the best epoch (the epoch of highest overall test accuracy; its splits are that epoch's)
    for metric in ACCURACY:
        frame[f"best_{metric}"] = frame["run_id"].map(
            lambda i, m=metric: by_id[i]["metrics"].get("best", {}).get(m, math.nan)).astype(float)
    return frame


def paper_epoch(source) -> str:
    """Which epoch a paper number is: "best over epochs (SOURCE)" for rows cited from LDAM-DRW / MiSLAS,
    else "not stated" (the paper does not say whether it reports the last or the best epoch)."""
    return f"best over epochs ({source})" if BEST_EPOCH_SOURCES.search(str(source)) else "not stated"


def _matches(runs: pd.DataFrame, cell) -> pd.DataFrame:
    """Our runs of a paper cell: same table, dataset, method, and imbalance / network / beta where the
    paper's row states them."""
    hit = runs[(runs["table"] == cell["table"]) & (runs["paper_dataset"] == cell["dataset"])
               & (runs["method"] == cell["method"])]
    if pd.notna(cell["imb_factor"]):
        hit = hit[hit["paper_imb"].map(_text) == _text(float(cell["imb_factor"]))]
    if pd.notna(cell["network"]):
        hit = hit[hit["paper_network"] == cell["network"]]
    if pd.notna(cell["beta"]):
        hit = hit[np.isclose(hit["beta"].astype(float), float(cell["beta"]))]
    elif cell["method"] == "am_mixup":  # the paper's default where its row gives none
        hit = hit[np.isclose(hit["beta"].astype(float), DEFAULT_BETA)]
    return hit[hit[cell["metric"]].notna()] if cell["metric"] in hit else hit.iloc[:0]


def _join(values) -> str:
    return "; ".join(sorted({str(v) for v in values}))


# --------------------------------------------------------------------------- statistics

def welch(mean1, std1, n1, mean2, std2, n2) -> tuple[float, str]:
    """(two-sided p, "within noise" / "differs" at LEVEL) of Welch's t-test from summary statistics
    (side 1 ours, side 2 the paper's), or (nan, why not) when a side lacks a std or two seeds."""
    why = ("paper gives no std" if pd.isna(std2) else "paper's seed count not stated" if pd.isna(n2)
           else "one seed of ours" if pd.isna(n1) or n1 < 2 else "ours has no std" if pd.isna(std1)
           else "the paper's seeds are fewer than 2" if n2 < 2 else "both std are 0" if std1 == 0 and std2 == 0
           else None)
    if why:
        return math.nan, f"no test: {why}"
    p = float(stats.ttest_ind_from_stats(mean1, std1, int(n1), mean2, std2, int(n2), equal_var=False).pvalue)
    return p, "within noise" if p >= LEVEL else "differs"


def paired(a: dict, b: dict) -> tuple[int, float, float]:
    """(pairs, mean of a - b, two-sided p of scipy's ttest_rel) over the seeds both dicts hold
    (seed -> value); p is nan below two pairs or when the differences have no spread."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return 0, math.nan, math.nan
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    diff = float(np.mean(x - y))
    if len(seeds) < 2 or np.ptp(x - y) == 0:
        return len(seeds), diff, math.nan
    return len(seeds), diff, float(stats.ttest_rel(x, y).pvalue)


# --------------------------------------------------------------------------- cells

def cells(paper: pd.DataFrame, runs: pd.DataFrame, located) -> pd.DataFrame:
    """One row per cell of the paper (a number of Tables 1-8): the paper's mean/std/seeds and which epoch it
    is (:func:`paper_epoch`), ours from paper-profile runs (last-epoch mean, std, seeds; the best-epoch mean
    beside it; profile, precision, data source, device), difference (last epoch minus the paper's; ``diff_best``
    best epoch minus the paper's where the paper's number is best-over-epochs), Welch test on the last epoch;
    cells without paper-profile runs carry the reason (profile below paper, no data here, not run yet)."""
    rows = []
    for _, cell in paper.iterrows():
        row = {k: cell[k] for k in CELL_KEYS} | {
            "paper_mean": cell["mean"], "paper_std": cell["std"], "paper_n": cell["paper_n"],
            "paper_epoch": paper_epoch(cell["source"])}
        hit = _matches(runs, cell) if not runs.empty else runs
        ours = hit[hit["profile"] == PAPER_PROFILE] if not hit.empty else hit
        if len(ours):
            values = ours[cell["metric"]].astype(float)
            mean, std, n = values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan, ours["seed"].nunique()
            p, verdict = welch(mean, std, n, cell["mean"], cell["std"], cell["paper_n"])
            mixed = [f"{col} ({_join(ours[col])})" for col in ("precision", "data_source") if ours[col].nunique() > 1]
            twice = sorted(ours.loc[ours["seed"].duplicated(), "seed"].unique())
            if mixed or twice:  # one mean over unlike runs, or a seed counted twice: no test
                p, verdict = math.nan, "no test: " + "; ".join(
                    [f"runs differ in {', '.join(mixed)}"] * bool(mixed)
                    + [f"seed(s) {', '.join(map(str, twice))} in several runs"] * bool(twice))
            best = f"best_{cell['metric']}"
            best_mean = ours[best].astype(float).mean() if best in ours else math.nan
            like = row["paper_epoch"].startswith("best")  # compare best with best only
            row |= {"ours_mean": mean, "ours_std": std, "ours_best_mean": best_mean, "ours_n": n,
                    "seeds": _join(ours["seed"]), "diff": mean - cell["mean"],
                    "diff_best": best_mean - cell["mean"] if like else math.nan,
                    "p_welch": p, "status": verdict, "profile": PAPER_PROFILE,
                    "precision": _join(ours["precision"]), "data_source": _join(ours["data_source"]),
                    "device": _join(ours["device"]), "commit": _join(ours["commit"])}
        else:
            base = _base_of(cell["dataset"])
            if len(hit):
                status = f"missing: profile below paper ({_join(hit['profile'])})"
            elif base not in located:
                status = "missing: no data here"
            else:
                status = "missing: not run yet"
            row |= {"status": status, "profile": _join(hit["profile"]) if len(hit) else ""}
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in CELL_COLUMNS:
        if col not in out:
            out[col] = math.nan
    out = out[CELL_COLUMNS]
    for col in ("ours_n", "paper_n"):
        out[col] = out[col].astype("Int64")
    return out


def shorter_profiles(paper: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Our runs below the paper profile that belong to a paper cell: last-epoch mean/std, best-epoch mean,
    seeds, precision, data source and device per metric, not compared."""
    if runs.empty:
        return pd.DataFrame()
    short = runs[(runs["profile"] != PAPER_PROFILE) & runs["table"].notna()]
    keys = paper.drop_duplicates(["table", "dataset", "imb_factor", "network", "method", "beta", "metric"])
    rows = []
    for _, cell in keys.iterrows():
        hit = _matches(short, cell)
        for profile, part in hit.groupby("profile", sort=True):
            values = part[cell["metric"]].astype(float)
            best = f"best_{cell['metric']}"
            rows.append({k: cell[k] for k in CELL_KEYS if k != "source"} | {
                "profile": profile, "ours_mean": values.mean(),
                "ours_std": values.std(ddof=1) if len(values) > 1 else math.nan,
                "ours_best_mean": part[best].astype(float).mean() if best in part else math.nan,
                "ours_n": len(values),
                "seeds": _join(part["seed"]), "precision": _join(part["precision"]),
                "data_source": _join(part["data_source"]), "device": _join(part["device"])})
    return pd.DataFrame(rows)


def unmapped(paper: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that no paper cell takes (e.g. the coarse pre-training stage of Tables 1 and 6), counted."""
    if runs.empty:
        return pd.DataFrame(columns=["experiment", "profile", "dataset", "runs"])
    used = set()
    for _, cell in paper.iterrows():
        used |= set(_matches(runs, cell)["run_id"])
    rest = runs[~runs["run_id"].isin(used)]
    return (rest.groupby(["experiment", "profile", "dataset"]).size().rename("runs").reset_index()
            .sort_values(["experiment", "profile", "dataset"]).reset_index(drop=True))


# --------------------------------------------------------------------------- claims

def _values(runs: pd.DataFrame, table, dataset, method, metric, imb=None) -> dict:
    """seed -> metric of our paper-profile runs of a method (mean if a seed was run twice)."""
    if runs.empty:
        return {}
    hit = runs[(runs["profile"] == PAPER_PROFILE) & (runs["table"] == table)
               & (runs["paper_dataset"] == dataset) & (runs["method"] == method) & runs[metric].notna()]
    if imb is not None:
        hit = hit[hit["paper_imb"].map(_text) == _text(float(imb))]
    return hit.groupby("seed")[metric].mean().to_dict()


def _why_missing(runs, table, dataset, method, imb, located) -> str:
    """Why a method has no paper-profile runs for a claim: profile below paper, no data here, not run yet."""
    if not runs.empty:
        hit = runs[(runs["table"] == table) & (runs["paper_dataset"] == dataset) & (runs["method"] == method)]
        if imb is not None:
            hit = hit[hit["paper_imb"].map(_text) == _text(float(imb))]
        if len(hit):
            return f"profile below paper ({_join(hit['profile'])})"
    return "no data here" if _base_of(dataset) not in located else "not run yet"


# (claim, table, dataset, imbalance or None, metric, winner, losers); "winner beats every loser". Each claim is
# one the paper's text makes (quoted above it); the paper's own table is checked against it (paper_numbers, paper_note).
CLAIMS = [
    # §3 on Table 2b: "The higher precision in the few category indicates that the model achieved a more balanced
    # margin in those instances. Therefore, we conclude that our method can be helpful to achieve a balanced margin"
    ("AM-mixup has the best Few accuracy on Mini-CIFAR-LT", 2, "mini_cifar_lt", None, "acc_few",
     "am_mixup", ("ce", "mixup", "manifold_mixup")),
    # §4.2: "The improvement of performance in mixup and manifold mixup was primarily achieved by increasing
    # precision in the many and median parts. [...] whereas AM-mixup achieves better margin balance by improving
    # the precision of the few part."
    *[(f"AM-mixup has the best Few accuracy on CIFAR-10-LT (imbalance {imb})", 3, "cifar10_lt", imb, "acc_few",
       "am_mixup", ("ce", "mixup", "manifold_mixup")) for imb in (100, 50, 10)],
    # §4.2: "As shown in Table 3, AM-mixup attains the best performance in CIFAR10/100-LT, except for imbalance
    # factors 50 and 10 on CIFAR100-LT. Mixup shows better performance than CE but not as good as AM-mixup."
    # (Table 3 itself has mixup† 89.08 and manifold mixup† 88.71 above AM-mixup's 88.19 at imbalance 10: the
    # claim row's paper_note says so, computed from the paper's numbers.)
    *[(f"AM-mixup beats mixup and manifold mixup overall on CIFAR-10-LT (imbalance {imb})", 3, "cifar10_lt", imb,
       "acc_all", "am_mixup", ("mixup", "manifold_mixup")) for imb in (100, 50, 10)],
    # §3: "we have quantitatively verified this assumption by observing that CE, which has the highest
    # alignment, outperforms the other three methods."
    ("CE has the highest alignment in coarse-to-fine (Mini-CIFAR)", 1, "mini_cifar", None, "alignment",
     "ce", ("mixup", "manifold_mixup", "am_mixup")),
    ("CE transfers best in coarse-to-fine (Mini-CIFAR)", 1, "mini_cifar", None, "acc_all",
     "ce", ("mixup", "manifold_mixup", "am_mixup")),
    # §4.3 (Table 6), per dataset: "As shown in Table 6, AM-mixup achieves the second-best test accuracy, and
    # even outperformed all others on MNIST. [...] AM-mixup also has intra-class collapse by showing lower
    # accuracy than the cross entropy without any augmentation, but AM-mixup achieves better than mixup."
    # Table 6 bolds AM-mixup on MNIST (98.20 vs CE† 98.12) and CE† on CIFAR-10 / CIFAR-100, AM-mixup second.
    ("AM-mixup transfers best in coarse-to-fine (MNIST, ViT)", 6, "mnist", None, "acc_all",
     "am_mixup", ("ce", "mixup")),
    *[claim for ds, name in (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")) for claim in (
        (f"CE transfers best in coarse-to-fine ({name}, ViT)", 6, ds, None, "acc_all", "ce", ("mixup", "am_mixup")),
        (f"AM-mixup is second: it beats mixup in coarse-to-fine ({name}, ViT)", 6, ds, None, "acc_all",
         "am_mixup", ("mixup",)))],
    # §4.4: "when comparing the performance of models under equal conditions (rows 1, 3 and rows 2, 6), the use
    # of one-sided labels consistently results in superior performance than not using them."
    ("One-sided labels help: row 3 beats row 1 (all layers)", 7, "cifar100_lt", 100, "acc_all",
     "ablation_row3", ("ablation_row1",)),
    ("One-sided labels help: row 6 beats row 2 (last layer)", 7, "cifar100_lt", 100, "acc_all",
     "ablation_row6", ("ablation_row2",)),
]
OWN_SOURCES = ("paper", "paper_reproduced")  # the paper's own rows (its † reproductions second), not cited ones


def _fmt(x, digits=2) -> str:
    return "nan" if pd.isna(x) else f"{x:.{digits}f}"


def _p(p) -> str:
    return "n/a" if pd.isna(p) else f"{p:.3g}"


def paper_check(paper: pd.DataFrame, table, dataset, imb, metric, winner, losers) -> tuple[str, str]:
    """(paper_numbers, paper_note) of a claim from the paper's own table: each method's number (its own row,
    else its † reproduction), cited rows of other papers after them; the note says where the paper's table
    does not bear its text out (a method of its own at or above the winner, a cited row above it, a row missing),
    empty where the table agrees."""
    rows = paper[(paper["table"] == table) & (paper["dataset"] == dataset) & (paper["metric"] == metric)]
    if imb is not None:
        rows = rows[rows["imb_factor"].map(lambda v: _text(float(v)) if pd.notna(v) else "") == _text(float(imb))]
    own, cited = {}, []
    for m in (winner, *losers):
        hit = rows[rows["method"] == m]
        mine = next((hit[hit["source"] == s] for s in OWN_SOURCES if (hit["source"] == s).any()), hit.iloc[:0])
        if len(mine):
            own[m] = float(mine["mean"].iloc[0])
        cited += [(m, float(r.mean), r.source if paper_epoch(r.source) == "not stated" else paper_epoch(r.source))
                  for r in hit[~hit["source"].isin(OWN_SOURCES)].itertuples()]
    numbers = ", ".join(f"{m} {own[m]:g}" for m in (winner, *losers) if m in own)
    if cited:
        numbers += "; cited: " + ", ".join(f"{m} {v:g} ({src})" for m, v, src in cited)
    numbers = f"Table {table}: {numbers}" if numbers else f"Table {table}: no rows"
    notes = []
    if winner not in own:
        return numbers, f"the paper's Table {table} has no {winner} row"
    absent = [m for m in losers if m not in own]
    if absent:
        notes.append(f"the paper's Table {table} has no {', '.join(absent)} row")
    above = [m for m in losers if m in own and own[m] >= own[winner]]
    if above:
        notes.append(f"the paper's own Table {table} contradicts this: {winner} {own[winner]:g} is not above "
                     + ", ".join(f"{m} {own[m]:g}" for m in above))
    higher = [(m, v, src) for m, v, src in cited if m != winner and v >= own[winner]]
    if higher:
        notes.append(f"a cited row of the paper's Table {table} is above {winner} {own[winner]:g}: "
                     + ", ".join(f"{m} {v:g} ({src})" for m, v, src in higher))
    return numbers, "; ".join(notes)


def claims(runs: pd.DataFrame, located, claim_list=CLAIMS, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim one row: the claim, its table, the paper's own numbers for it and a note where its table does
    not bear the text out (:func:`paper_check`), our evidence (last-epoch means, paired differences over
    matching seeds, ttest_rel p) and the verdict:
    supported (winner ahead of every other, each paired test p < LEVEL); direction agrees, not significant;
    contradicted (another ahead with p < LEVEL); not supported (another ahead, not significant);
    "direction agrees; <why>: no test" / "direction disagrees; <why>: no test" where a comparison could not be
    tested (one paired seed, no paired seeds, paired differences without spread) and no other decides it;
    not testable (a side has no paper-profile runs: why)."""
    paper = load_paper() if paper is None else paper
    rows = []
    for claim, table, dataset, imb, metric, winner, losers in claim_list:
        digits = 2 if metric.startswith("acc") else 3
        numbers, note = paper_check(paper, table, dataset, imb, metric, winner, losers)
        won = _values(runs, table, dataset, winner, metric, imb)
        lost = {m: _values(runs, table, dataset, m, metric, imb) for m in losers}
        empty = [m for m in (winner, *losers) if not (won if m == winner else lost[m])]
        row = {"claim": claim, "table": table, "metric": metric, "paper_numbers": numbers, "paper_note": note}
        if empty:
            why = {m: _why_missing(runs, table, dataset, m, imb, located) for m in empty}
            text = "; ".join(f"{', '.join(m for m in empty if why[m] == w)}: {w}" for w in sorted(set(why.values())))
            rows.append(row | {"evidence": f"no paper-profile runs of {text}", "verdict": "not testable"})
            continue
        parts, ahead, significant, against = [f"{winner} {_fmt(np.mean(list(won.values())), digits)}"], True, True, False
        untested = []  # why a comparison has no p
        for m in losers:
            n, diff, p = paired(won, lost[m])
            if n == 0:  # no matching seeds: compare means, no test
                diff = np.mean(list(won.values())) - np.mean(list(lost[m].values()))
            parts.append(f"vs {m} {_fmt(np.mean(list(lost[m].values())), digits)}: {diff:+.{digits}f} "
                         f"({n} paired seed{'s' if n != 1 else ''}, p {_p(p)})")
            ahead &= diff > 0
            significant &= not pd.isna(p) and p < LEVEL
            against |= diff < 0 and not pd.isna(p) and p < LEVEL
            if pd.isna(p):
                untested.append("no paired seeds" if n == 0 else "one seed" if n == 1
                                else "paired differences without spread")
        why = ", ".join(dict.fromkeys(untested))
        if ahead:
            verdict = ("supported" if significant else f"direction agrees; {why}: no test" if untested
                       else "direction agrees, not significant")
        else:
            verdict = ("contradicted" if against else f"direction disagrees; {why}: no test" if untested
                       else "not supported")
        rows.append(row | {"evidence": "; ".join(parts), "verdict": verdict})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- data copy

COPY_METRICS = ("acc_all", "acc_few")
GAP_DATASET, GAP_IMB = "cifar10_lt", 100  # the Table 3 cells the data-copy experiment is set beside


def _copy_label(record) -> str:
    return str(record["config"].get("extra", {}).get("data_copy", "?"))


def data_copy_records(records_with_paths) -> tuple[list[dict], list[str]]:
    """(records under results/data_copy/ whose data source is the copy they are labelled with,
    "run id: why" of those that are not: amixup.data_copy.check_source)."""
    from .data_copy import DataCopyError, check_source

    kept, rejected = [], []
    for path, rec in records_with_paths:
        if not path.startswith(DATA_COPY_DIR + "/"):
            continue
        try:
            check_source(_copy_label(rec), rec["data"]["source"], "the data")
            kept.append(rec)
        except (DataCopyError, ValueError) as err:
            rejected.append(f"{rec['run_id']}: {str(err).split('. Give each copy')[0]}")
    return kept, rejected


def paper_gap(cell_rows: pd.DataFrame, dataset: str = GAP_DATASET, imb: float = GAP_IMB) -> pd.DataFrame:
    """Per method, our paper-profile Table 3 mean, the paper's and the difference (the gap) of each
    COPY_METRICS on ``dataset`` at imbalance ``imb``: the paper's own row, else its reproduction of the baseline."""
    part = cell_rows[(cell_rows["table"] == 3) & (cell_rows["dataset"] == dataset)
                     & (cell_rows["imb_factor"].map(lambda v: _text(float(v)) if pd.notna(v) else "") == _text(float(imb)))]
    rows = []
    for method, sub in part.groupby("method", sort=False):
        row = {"method": method}
        for metric in COPY_METRICS:
            hit = sub[sub["metric"] == metric]
            hit = next((hit[hit["source"] == s] for s in ("paper", "paper_reproduced") if (hit["source"] == s).any()),
                       hit.iloc[:0])
            if len(hit):
                row |= {f"ours_{metric}": hit["ours_mean"].iloc[0], f"paper_{metric}": hit["paper_mean"].iloc[0],
                        f"gap_{metric}": hit["diff"].iloc[0]}
        rows.append(row)
    out = pd.DataFrame(rows)
    return _order(out).sort_values("_m").drop(columns="_m").reset_index(drop=True) if len(out) else out


def data_copy(records_with_paths, gap: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs under results/data_copy/ (config.extra.data_copy labels the copy: "original" or e.g. "q75"),
    one row per profile, dataset, method and copy: last-epoch accuracy (all, few; mean and std over seeds)
    and, for a re-encoded copy, the paired difference to the original over matching seeds with
    scipy's ttest_rel (the measured cost of one more JPEG compression step), beside the method's
    CIFAR-10-LT gap to the paper (``gap``: :func:`paper_gap`). Records whose data source is not their
    copy are left out (:func:`data_copy_records`)."""
    recs, _ = data_copy_records(records_with_paths)
    if not recs:
        return pd.DataFrame()
    runs = runs_frame(recs)
    runs["copy"] = runs["run_id"].map({r["run_id"]: _copy_label(r) for r in recs})
    gaps = gap.set_index("method") if gap is not None and len(gap) else pd.DataFrame()
    rows = []
    keys = ["profile", "dataset", "paper_imb", "method"]
    for (profile, dataset, imb, method), part in runs.groupby(keys, sort=False, dropna=False):
        per_seed = {m: part[part["copy"] == "original"].groupby("seed")[m].mean().to_dict() for m in COPY_METRICS}
        for copy, sub in part.groupby("copy", sort=True):
            row = {"profile": profile, "dataset": dataset, "imb_factor": imb, "method": method, "copy": copy,
                   "runs": len(sub), "seeds": _join(sub["seed"])}
            for m in COPY_METRICS:
                values = sub[m].astype(float)
                row |= {f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=1) if len(values) > 1 else math.nan}
            row["paired_seeds"] = 0
            for m in COPY_METRICS:
                n, diff, p = (paired(sub.groupby("seed")[m].mean().to_dict(), per_seed[m]) if copy != "original"
                              else (0, math.nan, math.nan))
                row |= {"paired_seeds": n, f"diff_{m}": diff, f"p_{m}": p}
            for m in COPY_METRICS:
                row[f"gap_{m}"] = (gaps.loc[method, f"gap_{m}"] if method in gaps.index and f"gap_{m}" in gaps
                                   and dataset == GAP_DATASET and _text(float(imb)) == _text(float(GAP_IMB))
                                   and profile == PAPER_PROFILE else math.nan)  # a shorter run says nothing of it
            row["data_source"] = _join(sub["data_source"])
            rows.append(row)
    out = pd.DataFrame(rows)
    out["_copy"] = out["copy"] != "original"
    out = _order(out).sort_values(["profile", "dataset", "imb_factor", "_m", "_copy", "copy"])
    return out.drop(columns=["_m", "_copy"]).reset_index(drop=True)


# --------------------------------------------------------------------------- output

def _round(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: v if pd.isna(v) else float(f"{v:.4g}") if col.startswith("p_")
                                    else round(float(v), 4))
    return out


def _md_table(frame: pd.DataFrame) -> str:
    def cell(v, col):
        if isinstance(v, (float, np.floating)):
            if pd.isna(v):
                return ""
            return f"{v:.3g}" if col.startswith("p_") else f"{v:.4f}".rstrip("0").rstrip(".")
        return "" if v is pd.NA else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, frame.columns)) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(_m=frame["method"].map(lambda m: (_rank(m), m)))


def _markdown(cell_rows, short, rest, claim_rows, copy_rows, located, notes, gap=None, rejected=()) -> str:
    gap = pd.DataFrame() if gap is None else gap
    status = cell_rows["status"].map(lambda s: s if s.startswith("missing") else "compared")
    counts = pd.crosstab(cell_rows["table"], status)
    counts.insert(0, "cells", counts.sum(axis=1))
    tested = cell_rows["p_welch"].notna().sum()
    out = [
        "# Where the reproduction stands",
        "",
        "Generated by `python -m amixup.report` from the run records under `results/` and the paper's numbers "
        "(`results/paper/paper_results.csv`). Do not edit: CI regenerates it from the committed records and fails "
        "when it differs. Rows as CSV: `REPORT.csv` (cells), `REPORT_claims.csv` (claims).",
        "",
        "- Ours: runs at the `paper` profile only (shorter profiles are listed apart, not compared); `ours_mean`, "
        "`ours_std` and `diff` (ours - paper) are the last epoch's accuracy; std is the sample std over seeds.",
        "- Best epoch, labelled, beside it: `ours_best_mean` is the mean over seeds of each run's accuracy at its best "
        "epoch (the epoch of highest overall test accuracy; its many/median/few are that epoch's). `paper_epoch` says "
        "which epoch the paper's number is: `best over epochs` for the rows it cites from LDAM-DRW or MiSLAS ([10]), "
        "which report the best epoch, compared like with like in `diff_best` (ours_best_mean - paper); `not stated` "
        "elsewhere (the paper does not say).",
        f"- Welch's t-test (`scipy.stats.ttest_ind_from_stats`, two-sided) where both sides have a std and at least "
        f"2 seeds: \"within noise\" if p >= {LEVEL}, \"differs\" if p < {LEVEL}. The paper's seed counts are those "
        "its captions state (Tables 3-7); Tables 1 and 2 give no std, Table 8 no seed count.",
        f"- Claims: paired t-test over matching seeds (`scipy.stats.ttest_rel`, two-sided, level {LEVEL}) of the "
        "last epoch; with one paired seed there is no test (\"one seed: no test\"). `paper_numbers` are the paper's "
        "own numbers for the claim (cited rows after them) and `paper_note` says where its table does not bear its "
        "text out. A claim is an ordering of methods: \"supported\" says our runs order them as the paper does, "
        "not that our numbers are near the paper's (the cells say that).",
        "- A cell whose runs differ in precision or data source, or hold a seed twice, is averaged but not tested; "
        "each table's `Ours:` lines give the precision, data, device, seeds and code (commit) of its runs.",
        "- Measured here when generated (`python -m amixup.report` measures again; the CI check reuses these lines):",
        f"  - base data located: {', '.join(located) or 'none'}",
        *[f"  - data copy: {n}" for n in notes],
        "",
        f"## Cells by table ({len(cell_rows)} cells, {int((status == 'compared').sum())} with our paper-profile "
        f"runs, {int(tested)} Welch-tested)",
        "",
        _md_table(counts.reset_index()),
    ]
    shown = ["dataset", "imb_factor", "network", "method", "beta", "source", "metric", "paper_mean", "paper_std",
             "paper_n", "paper_epoch", "ours_mean", "ours_std", "ours_best_mean", "ours_n", "diff", "diff_best",
             "p_welch", "status"]
    for table, part in cell_rows.groupby("table", sort=True):
        out += ["", f"## Table {table}", ""]
        have = part[~part["status"].str.startswith("missing")]
        if len(have):
            out += [_md_table(have[shown]), ""]
            union = lambda joined: _join(v for text in joined for v in text.split("; "))  # noqa: E731
            prov = have.groupby(["precision", "data_source", "device"], sort=True)[["seeds", "commit"]].agg(union)
            out += [f"Ours: precision {precision}; data {data}; device {device}; seeds {r.seeds}; code {r.commit}."
                    for (precision, data, device), r in prov.iterrows()] + [""]
        missing = part[part["status"].str.startswith("missing")]
        if len(missing):
            groups = missing.assign(imb=missing["imb_factor"].map(lambda v: "" if pd.isna(v) else f" imb {_text(v)}"),
                                    net=missing["network"].fillna(""))
            out.append("Missing:")
            for (ds, imb, net, st), g in groups.groupby(["dataset", "imb", "net", "status"], sort=True):
                methods = ", ".join(sorted(set(g["method"]), key=lambda m: (_rank(m), m)))
                out.append(f"- {ds}{imb} {net}: {methods} ({len(g)} cells): {st.removeprefix('missing: ')}")
    out += ["", "## Shorter profiles (not compared with the paper)", ""]
    if short.empty:
        out.append("none")
    else:
        out.append(_md_table(short[["table", "dataset", "imb_factor", "network", "method", "metric", "profile",
                                    "ours_mean", "ours_std", "ours_best_mean", "ours_n", "precision", "device"]]))
    out += ["", "## Runs that no paper cell takes", "", "none" if rest.empty else _md_table(rest)]
    out += ["", "## The paper's claims on our runs", "", _md_table(claim_rows[
        ["claim", "table", "metric", "paper_numbers", "paper_note", "evidence", "verdict"]])]
    out += ["", "## Data copy: does the JPEG re-encoding explain the CIFAR-10-LT gap?", ""]
    out += [f"The CIFAR-10 copy here: {n}" for n in notes if "cifar10" in n] or ["The CIFAR-10 copy: not measured."]
    out += ["", f"The gap: our paper-profile Table 3 runs on CIFAR-10-LT (imbalance {GAP_IMB}) minus the paper's "
            "(last-epoch accuracy; `gap_*` = ours - paper):", ""]
    out.append("none of our runs is in those cells yet" if gap.empty else _md_table(gap))
    out.append("")
    if copy_rows.empty:
        out += ["Not run yet: the data-copy experiment has no records under `results/data_copy/`. It trains CE and "
                f"AM-mixup on {GAP_DATASET} (imbalance {GAP_IMB}, the Table 3 recipe) with the same seeds on the copy "
                "as it is (`original`) and on the copy JPEG-encoded once more at its quality (`q75`, made with "
                "`python -m amixup.jpegquality reencode`): `python -m amixup.data_copy --profile paper --copy original "
                "--data DIR --cache CACHE` and `--copy q75 --data DIR-q75 --cache CACHE-q75` (README, \"Data-copy "
                "experiment\")."]
    else:
        out += ["Per copy (mean and std over seeds, last epoch):", "",
                _md_table(copy_rows[["profile", "dataset", "imb_factor", "method", "copy", "runs", "seeds",
                                     "acc_all_mean", "acc_all_std", "acc_few_mean", "acc_few_std", "data_source"]]),
                "", "The measured cost of one more compression step (re-encoded minus original, paired over matching "
                "seeds, `scipy.stats.ttest_rel`, two-sided) beside the method's gap to the paper (`gap_*` only for "
                "paper-profile runs: a shorter profile's cost cannot say how much of the full recipe's gap the "
                "copy explains; and it measures one more compression, an estimate of the first one's cost):", ""]
        again = copy_rows[copy_rows["copy"] != "original"]
        out.append("no re-encoded copy has runs yet" if again.empty else _md_table(
            again[["profile", "method", "copy", "paired_seeds", "diff_acc_all", "p_acc_all", "diff_acc_few",
                   "p_acc_few", "gap_acc_all", "gap_acc_few"]]))
    if rejected:
        out += ["", "Left out (the data source is not the copy the run is labelled with):", ""]
        out += [f"- {r}" for r in rejected]
    return "\n".join(out) + "\n"


def build(results_dir, paper: pd.DataFrame, located, notes=None) -> dict[str, str]:
    """The report's files (name -> text) from the records under results_dir."""
    with_paths = read_run_records(results_dir)
    records = [r for p, r in with_paths if not p.startswith(DATA_COPY_DIR + "/")]
    runs = runs_frame(records)
    notes = measured_notes(records) if notes is None else list(notes)
    cell_rows = cells(paper, runs, located)
    short, rest = shorter_profiles(paper, runs), unmapped(paper, runs)
    gap = paper_gap(cell_rows)
    claim_rows, copy_rows = claims(runs, located, paper=paper), data_copy(with_paths, gap)
    rejected = data_copy_records(with_paths)[1]
    if not short.empty:
        short = _order(short).sort_values(["table", "dataset", "imb_factor", "network", "_m", "metric", "profile"],
                                          na_position="first").drop(columns="_m")
    cell_rows, short, copy_rows, gap = _round(cell_rows), _round(short), _round(copy_rows), _round(gap)
    md = _markdown(cell_rows, short, rest, claim_rows, copy_rows, list(located), notes, gap, rejected)
    return {"REPORT.md": md, "REPORT.csv": cell_rows.to_csv(index=False, lineterminator="\n"),
            "REPORT_claims.csv": claim_rows.to_csv(index=False, lineterminator="\n")}


def stated_inputs(md: str) -> tuple[list[str], list[str]]:
    """(located base data, data copy notes) as a REPORT.md states them."""
    located = re.search(r"^  - base data located: (.*)$", md, re.M).group(1)
    notes = re.findall(r"^  - data copy: (.*)$", md, re.M)
    return ([] if located == "none" else located.split(", ")), notes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m amixup.report", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    parser.add_argument("--out", default=None, help="folder for the report (default: the results dir)")
    parser.add_argument("--paper", default=None, help="paper_results.csv (default: ../shared/paper, else results/paper)")
    args = parser.parse_args(argv)
    files = build(args.results_dir, load_paper(args.paper), located_bases())
    out = Path(args.out or args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        print(out / name)


if __name__ == "__main__":
    main()
