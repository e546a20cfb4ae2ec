"""One report of where the reproduction stands: every cell of the paper's Tables 1-8 beside our
paper-profile runs (the difference with its 95 % confidence interval, Welch t-tests from the summary
statistics where both sides have at least 3 seeds), every ordering of methods the paper states tested on our
records (paired over seeds), the data-copy experiment, and a summary at the top (counts per table, claims
per verdict, what the measured causes explain, a figure of ours against the paper).

    python -m amixup.report   # writes results/REPORT.md, REPORT.csv, REPORT_claims.csv, REPORT_summary.csv,
                              # REPORT_vs_paper.png and the README's results-at-a-glance block

The output depends only on the run records, the paper's numbers and the "measured here" lines
(located base data, the copy's JPEG quality), which the report states; CI regenerates it from the
committed records with those lines and fails if the committed report (the README block included) differs.
The PNG is rendered deterministically (Agg, no date) and carries the hash of the points it plots: CI checks
that hash always and the bytes where its matplotlib version is the one the PNG names.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import tables
from .records import REPO_ROOT
from .tables import ACCURACY, METHOD_ORDER, _label, _text, records_frame

LEVEL = 0.05  # two-sided significance level of every test here
MIN_N = 3  # fewer seeds (or paired seeds) than this on a side: no p-value, no verdict ("n too small")
PAPER_PROFILE = "paper"
METRICS = ACCURACY + ["alignment", "uniformity", "uniformity_k1"]
SHARED_PAPER = REPO_ROOT.parent / "shared" / "paper" / "paper_results.csv"
COMMITTED_PAPER = REPO_ROOT / "results" / "paper" / "paper_results.csv"
OUTPUTS = ("REPORT.md", "REPORT.csv", "REPORT_claims.csv", "REPORT_summary.csv", "REPORT_vs_paper.png")
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
                            "ours_best_mean", "ours_n", "seeds", "diff", "ci_low", "ci_high", "ci", "diff_best",
                            "ci_best_low", "ci_best_high", "p_welch", "status", "profile",
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
    (side 1 ours, side 2 the paper's), or (nan, why not) when a side lacks a std or has fewer than MIN_N
    seeds ("n too small": with two seeds a std is one number's worth of spread and the p-value means little)."""
    why = ("paper gives no std" if pd.isna(std2) else "paper's seed count not stated" if pd.isna(n2)
           else f"n too small (ours {_seeds(n1)})" if pd.isna(n1) or n1 < MIN_N
           else f"n too small (the paper's {_seeds(n2)})" if n2 < MIN_N
           else "ours has no std" if pd.isna(std1) else "both std are 0" if std1 == 0 and std2 == 0
           else None)
    if why:
        return math.nan, f"no test: {why}"
    p = float(stats.ttest_ind_from_stats(mean1, std1, int(n1), mean2, std2, int(n2), equal_var=False).pvalue)
    return p, "within noise" if p >= LEVEL else "differs"


def _seeds(n) -> str:
    n = 0 if pd.isna(n) else int(n)
    return f"{n} seed{'s' if n != 1 else ''}"


def diff_ci(mean1, std1, n1, mean2, std2, n2, level: float = 0.95) -> tuple[float, float, str]:
    """(low, high, kind) of the ``level`` confidence interval of mean1 - mean2 (ours - the paper's):

    - "Welch": both sides have n >= 2 and a std: (m1 - m2) +- t(df) * sqrt(s1^2/n1 + s2^2/n2), df by
      Welch-Satterthwaite, t from scipy.stats.t;
    - "one-sample": the paper gives no std (its number is taken as a point) and we have n >= 2 and a std:
      (m1 - m2) +- t(n1 - 1) * s1 / sqrt(n1);
    - else (nan, nan, why not)."""
    q = 0.5 + level / 2
    if pd.isna(n1) or n1 < 2 or pd.isna(std1):
        return math.nan, math.nan, "no CI: fewer than 2 seeds of ours"
    diff = mean1 - mean2
    if pd.isna(std2):
        half = stats.t.ppf(q, int(n1) - 1) * std1 / math.sqrt(n1)
        return diff - half, diff + half, "one-sample"
    if pd.isna(n2) or n2 < 2:
        return math.nan, math.nan, ("no CI: paper's seed count not stated" if pd.isna(n2)
                                    else "no CI: the paper's seeds are fewer than 2")
    v1, v2 = std1 ** 2 / n1, std2 ** 2 / n2
    if v1 + v2 == 0:
        return diff, diff, "Welch"
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    half = stats.t.ppf(q, df) * math.sqrt(v1 + v2)
    return diff - half, diff + half, "Welch"


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
    best epoch minus the paper's where the paper's number is best-over-epochs), each with its 95 % interval
    (:func:`diff_ci`; ``ci`` says which kind, or why none), Welch test on the last epoch (MIN_N seeds a side);
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
            low, high, kind = diff_ci(mean, std, n, cell["mean"], cell["std"], cell["paper_n"])
            mixed = [f"{col} ({_join(ours[col])})" for col in ("precision", "data_source") if ours[col].nunique() > 1]
            twice = sorted(ours.loc[ours["seed"].duplicated(), "seed"].unique())
            if mixed or twice:  # one mean over unlike runs, or a seed counted twice: no test, no interval
                p, verdict = math.nan, "no test: " + "; ".join(
                    [f"runs differ in {', '.join(mixed)}"] * bool(mixed)
                    + [f"seed(s) {', '.join(map(str, twice))} in several runs"] * bool(twice))
                low, high, kind = math.nan, math.nan, "no CI: " + verdict.removeprefix("no test: ")
            best = f"best_{cell['metric']}"
            best_values = ours[best].astype(float) if best in ours else pd.Series(dtype=float)
            best_mean = best_values.mean() if len(best_values) else math.nan
            like = row["paper_epoch"].startswith("best")  # compare best with best only
            best_low = best_high = math.nan
            if like and not (mixed or twice) and len(best_values) > 1:
                best_low, best_high, _ = diff_ci(best_mean, best_values.std(ddof=1), n, cell["mean"], cell["std"],
                                                 cell["paper_n"])
            row |= {"ours_mean": mean, "ours_std": std, "ours_best_mean": best_mean, "ours_n": n,
                    "seeds": _join(ours["seed"]), "diff": mean - cell["mean"],
                    "ci_low": low, "ci_high": high, "ci": kind,
                    "diff_best": best_mean - cell["mean"] if like else math.nan,
                    "ci_best_low": best_low, "ci_best_high": best_high,
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

def _claim(cid, section, quote, table, dataset, metric, ordering, imb=None, network=None, note="") -> dict:
    return {"id": cid, "section": section, "quote": quote, "table": table, "dataset": dataset, "imb_factor": imb,
            "network": network, "metric": metric, "ordering": ordering, "reading": note}


_T1_QUOTE = ("As shown in Table 1, we have quantitatively verified this assumption by observing that CE, which has "
             "the highest alignment, outperforms the other three methods.")
_T1_SIMILAR = "We observe a similar tendency in the other three methods."
_T2_CE = ("As shown in Table 2a, we have quantitatively validated this assumption by finding that CE exhibits the "
          "lowest inter-class uniformity and neighborhood uniformity, resulting in the method's weakest overall "
          "performance among the three.")
_T2_MM = ("While manifold mixup displays higher inter-class uniformity than our method, it is reversed for "
          "neighborhood uniformity, where AM-mixup shows greater test accuracy than manifold mixup.")
_T2_CAPTION = "Table 2: Results of Imbalanced Learning on Mini-CIFAR-LT (imb=200). Best in bold. ↑ means a high value is better."
_T3_BEST = ("As shown in Table 3, AM-mixup attains the best performance in CIFAR10/100-LT, except for imbalance "
            "factors 50 and 10 on CIFAR100-LT.")
_T3_MIXUP = "Mixup shows better performance than CE but not as good as AM-mixup."
_T3_PARTS = ("The improvement of performance in mixup and manifold mixup was primarily achieved by increasing "
             "precision in the many and median parts.")
_T3_FEW = ("It means that they do not obtain enough margin for the tail classes, whereas AM-mixup achieves better "
           "margin balance by improving the precision of the few part.")
_T3_SETTINGS = [(ds, imb) for ds in ("cifar10_lt", "cifar100_lt") for imb in (100, 50, 10)]
_T6_QUOTE = "As shown in Table 6, AM-mixup achieves the second-best test accuracy, and even outperformed all others on MNIST."
_T7_OL = ("when comparing the performance of models under equal conditions (rows 1, 3 and rows 2, 6), the use of "
          "one-sided labels consistently results in superior performance than not using them.")
_T7_LL = ("when comparing the performance of models under identical conditions (rows 1, 2 and rows 3, 6), LL exhibits "
          "worse performance. Nonetheless, it outperforms in the median and few parts, which are critical points in "
          "imbalanced learning.")
_T7_CAPTION = "Table 7: Ablation study on CIFAR100-LT. [...] Best in bold."
_T8_CAPTION = "Table 8: Performance in Image Classification Benchmarks. In AM-mixup, β was set to 0.67. Best in bold"
_ROWS = [f"ablation_row{i}" for i in range(1, 7)]


def _others(best, pool) -> str:
    return ", ".join(m for m in pool if m != best)


_FOUR = ("ce", "mixup", "manifold_mixup", "am_mixup")

#: Every ordering of methods the paper's text states in Sections 3-4, and the orderings its table captions state
#: ("Best in bold", "second best in underline"), as data: an id, the section, the sentence quoted, the table /
#: dataset / imbalance / network / metric it is about, and the ordering ("a > b, c": a above each of b and c;
#: "a > b > c": a chain; "<" where the paper says lower). ``reading`` says how a sentence was read where it is not
#: literal. Statements that state no ordering ("competitive", "comparable", "similar") are not here.
CLAIMS = [
    # ---- Section 3, Table 1 (coarse-to-fine on Mini-CIFAR; A = alignment)
    _claim("s3-t1-align-ce", "§3", _T1_QUOTE, 1, "mini_cifar", "alignment", "ce > mixup, manifold_mixup, am_mixup"),
    _claim("s3-t1-acc-ce", "§3", _T1_QUOTE, 1, "mini_cifar", "acc_all", "ce > mixup, manifold_mixup, am_mixup"),
    _claim("s3-t1-align-order", "§3", _T1_SIMILAR, 1, "mini_cifar", "alignment", "am_mixup > mixup > manifold_mixup",
           note="the other three keep CE's tendency: higher alignment, higher accuracy, in Table 1's order"),
    _claim("s3-t1-acc-order", "§3", _T1_SIMILAR, 1, "mini_cifar", "acc_all", "am_mixup > mixup > manifold_mixup",
           note="the other three keep CE's tendency: higher alignment, higher accuracy, in Table 1's order"),
    _claim("s3-fig2-spread", "§3 (Figure 2 caption)", "Our method shows better spread in the feature space than mixup "
           "and manifold mixup but not enough to CE.", 1, "mini_cifar", "alignment",
           "ce > am_mixup > mixup, manifold_mixup", note="spread read as the alignment A of Table 1"),
    _claim("t1-caption-align", "Table 1 caption", "A refers to the alignment. [...] ⇓ signifies that low alignment is "
           "better, but too low is not optimal. Best in bold and second best in underline.", 1, "mini_cifar",
           "alignment", "manifold_mixup < mixup < ce, am_mixup",
           note="bold (best, lowest A): manifold mixup; underline (second): mixup"),
    # ---- Section 3, Table 2 (imbalanced Mini-CIFAR-LT; U, U1 uniformity)
    *[_claim(f"s3-t2-{name}-ce", "§3", _T2_CE, 2, "mini_cifar_lt", metric, "ce < mixup, manifold_mixup, am_mixup",
             imb=200) for name, metric in (("u", "uniformity"), ("u1", "uniformity_k1"), ("acc", "acc_all"))],
    _claim("s3-t2-u-mm", "§3", _T2_MM, 2, "mini_cifar_lt", "uniformity", "manifold_mixup > am_mixup", imb=200),
    _claim("s3-t2-u1-am", "§3", _T2_MM, 2, "mini_cifar_lt", "uniformity_k1", "am_mixup > manifold_mixup", imb=200),
    _claim("s3-t2-acc-am", "§3", _T2_MM, 2, "mini_cifar_lt", "acc_all", "am_mixup > manifold_mixup", imb=200),
    _claim("s3-t2-few", "§3", "The higher precision in the few category indicates that the model achieved a more "
           "balanced margin in those instances. Therefore, we conclude that our method can be helpful to achieve a "
           "balanced margin in imbalanced learning.", 2, "mini_cifar_lt", "acc_few",
           "am_mixup > ce, mixup, manifold_mixup", imb=200),
    *[_claim(f"t2-caption-{name}", "Table 2 caption", _T2_CAPTION, 2, "mini_cifar_lt", metric,
             f"{best} > {_others(best, _FOUR)}", imb=200, note=f"bold: {best}")
      for name, metric, best in (("u", "uniformity", "manifold_mixup"), ("u1", "uniformity_k1", "am_mixup"),
                                 ("acc", "acc_all", "am_mixup"), ("many", "acc_many", "mixup"),
                                 ("median", "acc_median", "manifold_mixup"))],
    # ---- Section 4.2, Table 3 (CIFAR-10/100-LT)
    *[_claim(f"s42-t3-best-{ds}-{imb}", "§4.2", _T3_BEST, 3, ds, "acc_all", "am_mixup > ce, mixup, manifold_mixup",
             imb=imb) for ds, imb in _T3_SETTINGS if not (ds == "cifar100_lt" and imb in (50, 10))],
    *[_claim(f"s42-t3-mixup-ce-{ds}-{imb}", "§4.2", _T3_MIXUP, 3, ds, "acc_all", "mixup > ce", imb=imb,
             note="AM-mixup above mixup: the best-performance claims") for ds, imb in _T3_SETTINGS],
    *[_claim(f"s42-t3-{part}-{ds}-{imb}", "§4.2", _T3_PARTS, 3, ds, f"acc_{part}", "mixup, manifold_mixup > ce",
             imb=imb, note="the improvement is over CE") for ds, imb in _T3_SETTINGS for part in ("many", "median")],
    *[_claim(f"s42-t3-few-{ds}-{imb}", "§4.2", _T3_FEW, 3, ds, "acc_few", "am_mixup > ce, mixup, manifold_mixup",
             imb=imb) for ds, imb in _T3_SETTINGS],
    # ---- Section 4.2, Table 4 (ImageNet-LT) and Table 5 (Places-LT)
    *[_claim(f"s42-t4-few-ce-{net}", "§4.2", "In the ImageNet-LT dataset, CE exhibits better precision than "
             "interpolation-based methods including AM-mixup in the few part", 4, "imagenet_lt", "acc_few",
             "ce > mixup, manifold_mixup, am_mixup", network=net) for net in ("resnet50", "resnet101", "resnet152")],
    _claim("s42-t4-all-ce-resnet50", "§4.2", "and even in the case of ResNet50, CE shows better performance than the "
           "others, as illustrated in Table 4.", 4, "imagenet_lt", "acc_all", "ce > mixup, manifold_mixup, am_mixup",
           network="resnet50"),
    *[_claim(f"s42-t4-few-am-{net}", "§4.2", "Despite this inferiority, AM-mixup outperforms mixup and manifold mixup "
             "on the few part in ResNet50 and ResNet152", 4, "imagenet_lt", "acc_few",
             "am_mixup > mixup, manifold_mixup", network=net) for net in ("resnet50", "resnet152")],
    *[_claim(f"s42-t5-{part}", "§4.2", "In contrast, the result of experiments on Places-LT shows a similar tendency to "
             "that in CIFAR10/100-LT, as demonstrated in Table 5.", 5, "places_lt", f"acc_{part}",
             "am_mixup > ce, mixup, manifold_mixup", note=f"the CIFAR-LT tendency: AM-mixup best on {part}")
      for part in ("all", "few")],
    # ---- Section 4.3, Table 6 (coarse-to-fine, ViT)
    _claim("s43-t6-mnist-am", "§4.3", _T6_QUOTE, 6, "mnist", "acc_all", "am_mixup > ce, mixup", network="vit_small"),
    _claim("s43-t6-mnist-mixup", "§4.3", "However, mixup exhibits intra-class collapse, as indicated by its low "
           "accuracy.", 6, "mnist", "acc_all", "mixup < ce, am_mixup", network="vit_small",
           note="on CIFAR-10/100: the second-best claims"),
    *[_claim(f"s43-t6-{ds}-order", "§4.3", _T6_QUOTE + " [...] AM-mixup also has intra-class collapse by showing lower "
             "accuracy than the cross entropy without any augmentation, but AM-mixup achieves better than mixup.", 6, ds,
             "acc_all", "ce > am_mixup > mixup", network="vit_small", note="second best: CE first, mixup last")
      for ds in ("cifar10", "cifar100")],
    # ---- Section 4.4, Table 7 (ablation on CIFAR-100-LT, imbalance 100)
    _claim("s44-t7-rate", "§4.4", "As shown in Table 7, the model's performance varies depending on the scheduling of "
           "the mixup rate. The use of λam results in the best performance.", 7, "cifar100_lt", "acc_all",
           "ablation_row6 > ablation_row4, ablation_row5", imb=100, note="rows 4-6: the mixup-rate rows"),
    *[_claim(f"s44-t7-ol-{a[-1]}{b[-1]}", "§4.4", _T7_OL, 7, "cifar100_lt", "acc_all", f"{b} > {a}", imb=100)
      for a, b in (("ablation_row1", "ablation_row3"), ("ablation_row2", "ablation_row6"))],
    *[_claim(f"s44-t7-ll-{metric.removeprefix('acc_')}-{a[-1]}{b[-1]}", "§4.4", _T7_LL, 7, "cifar100_lt", metric,
             f"{a} > {b}" if metric == "acc_all" else f"{b} > {a}", imb=100)
      for metric in ("acc_all", "acc_median", "acc_few")
      for a, b in (("ablation_row1", "ablation_row2"), ("ablation_row3", "ablation_row6"))],
    *[_claim(f"t7-caption-{metric.removeprefix('acc_')}", "Table 7 caption", _T7_CAPTION, 7, "cifar100_lt", metric,
             f"{best} > {_others(best, _ROWS)}", imb=100, note=f"bold: {best}")
      for metric, best in (("acc_many", "ablation_row1"), ("acc_median", "ablation_row6"),
                           ("acc_few", "ablation_row6"), ("acc_all", "ablation_row3"))],
    # ---- Table 8 caption (Appendix B: image classification benchmarks)
    *[_claim(f"t8-caption-{net}-{ds}", "Table 8 caption", _T8_CAPTION, 8, ds, "acc_all",
             "mixup > ce, manifold_mixup, am_mixup", network=net, note="bold: mixup")
      for net in ("vgg11", "resnet50", "densenet_bc_k12") for ds in ("cifar10", "cifar100", "tiny_imagenet")],
]
VERDICTS = ("supported", "refuted", "not significant", "untested")


def parse_ordering(ordering: str) -> tuple[str, list[tuple[str, str]]]:
    """(">" or "<", [(left, right), ...]) of an ordering such as "a > b, c" (a above b and above c) or
    "a < b < c" (a chain): each method of a group against each of the next group."""
    parts = re.split(r"\s*([<>])\s*", ordering.strip())
    groups = [[m.strip() for m in g.split(",")] for g in parts[::2]]
    ops = set(parts[1::2])
    if len(ops) != 1 or len(groups) < 2 or not all(all(g) for g in groups):
        raise ValueError(f"not an ordering: {ordering!r}")
    return ops.pop(), [(a, b) for left, right in zip(groups, groups[1:]) for a in left for b in right]


def _methods(ordering: str) -> list[str]:
    _, pairs = parse_ordering(ordering)
    return list(dict.fromkeys(m for pair in pairs for m in pair))


def _paper_row(paper: pd.DataFrame, claim: dict, method: str):
    """The paper's own row (its number, else its † reproduction) of a method in the claim's cell, or None."""
    rows = paper[(paper["table"] == claim["table"]) & (paper["dataset"] == claim["dataset"])
                 & (paper["metric"] == claim["metric"]) & (paper["method"] == method)]
    if claim["imb_factor"] is not None:
        rows = rows[rows["imb_factor"].map(lambda v: _text(float(v)) if pd.notna(v) else "") == _text(float(claim["imb_factor"]))]
    if claim["network"] is not None:
        rows = rows[rows["network"] == claim["network"]]
    return next((rows[rows["source"] == s].iloc[0] for s in OWN_SOURCES if (rows["source"] == s).any()), None), rows


def _claim_cell(paper: pd.DataFrame, claim: dict, method: str) -> dict:
    """The paper cell our runs of a method are matched to for a claim (its beta and network from the paper's row)."""
    row, _ = _paper_row(paper, claim, method)
    cell = {"table": claim["table"], "dataset": claim["dataset"], "method": method, "metric": claim["metric"],
            "imb_factor": math.nan if claim["imb_factor"] is None else float(claim["imb_factor"]),
            "network": claim["network"] if claim["network"] is not None else math.nan, "beta": math.nan}
    if row is not None:
        cell |= {"network": row["network"], "beta": row["beta"], "imb_factor": row["imb_factor"]}
    return cell


def _values(runs: pd.DataFrame, cell: dict) -> dict:
    """seed -> metric of our paper-profile runs of a claim's cell (mean if a seed was run twice)."""
    if runs.empty:
        return {}
    hit = _matches(runs, cell)
    hit = hit[hit["profile"] == PAPER_PROFILE]
    return hit.groupby("seed")[cell["metric"]].mean().astype(float).to_dict()


def _why_missing(runs: pd.DataFrame, cell: dict, located) -> str:
    """Why a method has no paper-profile runs for a claim: profile below paper, no data here, not run yet."""
    if not runs.empty:
        hit = _matches(runs, cell)
        if len(hit):
            return f"profile below paper ({_join(hit['profile'])})"
    return "no data here" if _base_of(cell["dataset"]) not in located else "not run yet"


def _fmt(x, digits=2) -> str:
    return "nan" if pd.isna(x) else f"{x:.{digits}f}"


def _p(p) -> str:
    return "n/a" if pd.isna(p) else f"{p:.3g}"


def paper_check(paper: pd.DataFrame, claim: dict) -> tuple[str, str]:
    """(paper_numbers, paper_note) of a claim from the paper's own table: each method's number (its own row,
    else its † reproduction), cited rows of other papers after them; the note says where the paper's table
    does not bear its text out (a pair of its own numbers not in the claimed order, a cited row past the
    method it should be behind, a row missing), empty where the table agrees."""
    op, pairs = parse_ordering(claim["ordering"])
    sign, word = (1, "above") if op == ">" else (-1, "below")
    own, cited = {}, []
    for m in _methods(claim["ordering"]):
        mine, rows = _paper_row(paper, claim, m)
        if mine is not None:
            own[m] = float(mine["mean"])
        cited += [(m, float(r.mean), r.source if paper_epoch(r.source) == "not stated" else paper_epoch(r.source))
                  for r in rows[~rows["source"].isin(OWN_SOURCES)].itertuples()]
    table = claim["table"]
    numbers = ", ".join(f"{m} {own[m]:g}" for m in _methods(claim["ordering"]) if m in own)
    if cited:
        numbers += "; cited: " + ", ".join(f"{m} {v:g} ({src})" for m, v, src in cited)
    numbers = f"Table {table}: {numbers}" if numbers else f"Table {table}: no rows"
    notes = []
    absent = [m for m in _methods(claim["ordering"]) if m not in own]
    if absent:
        notes.append(f"the paper's Table {table} has no {', '.join(absent)} row")
    wrong: dict[str, list[str]] = {}
    for a, b in pairs:
        if a in own and b in own and not sign * (own[a] - own[b]) > 0:
            wrong.setdefault(a, []).append(f"{b} {own[b]:g}")
    if wrong:
        notes.append(f"the paper's own Table {table} contradicts this: " + "; ".join(
            f"{a} {own[a]:g} is not {word} {', '.join(bs)}" for a, bs in wrong.items()))
    past: dict[str, list[str]] = {}
    for a, b in pairs:
        for m, v, src in cited:
            if m == b and a in own and not sign * (own[a] - v) > 0:
                past.setdefault(a, []).append(f"{m} {v:g} ({src})")
    for a, rows in past.items():
        notes.append(f"a cited row of the paper's Table {table} is {word} {a} {own[a]:g}: " + ", ".join(rows))
    return numbers, "; ".join(notes)


def _pair_verdict(n, diff, p, sign) -> str:
    if n == 0:
        return "no paired seeds"
    if n < MIN_N:
        return "n too small"
    if pd.isna(p):
        return "paired differences without spread"
    if p >= LEVEL:
        return "not significant"
    return "supported" if sign * diff > 0 else "refuted"


def claims(runs: pd.DataFrame, located, claim_list=None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim one row: its id, section, the paper's sentence, table / dataset / metric, the ordering, the
    paper's own numbers for it and a note where its table does not bear the text out (:func:`paper_check`), our
    evidence per pair of the ordering (our last-epoch means, the paired difference over matching seeds and
    scipy's ttest_rel p, printed only with at least MIN_N pairs) and the verdict:

    - refuted: some pair is in the reverse order, significantly (p < LEVEL, >= MIN_N paired seeds), whatever the
      other pairs say (a pair whose side has no runs included);
    - supported: every pair in the paper's order, each significantly;
    - untested (``why``): some pair has no paper-profile runs on a side (profile below paper, no data here, not
      run yet), fewer than MIN_N paired seeds, or paired differences without spread;
    - not significant: every pair tested, some not significant (none reversed significantly)."""
    paper = load_paper() if paper is None else paper
    claim_list = CLAIMS if claim_list is None else claim_list
    rows = []
    for claim in claim_list:
        digits = 2 if claim["metric"].startswith("acc") else 3
        op, pairs = parse_ordering(claim["ordering"])
        sign = 1 if op == ">" else -1
        numbers, note = paper_check(paper, claim)
        methods = _methods(claim["ordering"])
        cell = {m: _claim_cell(paper, claim, m) for m in methods}
        values = {m: _values(runs, cell[m]) for m in methods}
        row = {"id": claim["id"], "section": claim["section"], "table": claim["table"], "dataset": claim["dataset"],
               "imb_factor": claim["imb_factor"], "network": claim["network"], "metric": claim["metric"],
               "ordering": claim["ordering"], "quote": claim["quote"], "reading": claim["reading"],
               "paper_numbers": numbers, "paper_note": note}
        empty = [m for m in methods if not values[m]]
        ours = ", ".join(f"{m} {_fmt(np.mean(list(values[m].values())), digits)} (n {len(values[m])})"
                         for m in methods if values[m])
        gone = {m: _why_missing(runs, cell[m], located) for m in empty}
        parts, verdicts, counts = [], [], []
        for a, b in pairs:  # a pair with a side without runs is untested; the others are tested all the same
            if a in gone or b in gone:
                verdicts.append("no runs")
                continue
            n, diff, p = paired(values[a], values[b])
            verdict = _pair_verdict(n, diff, p, sign)
            verdicts.append(verdict)
            counts.append(n)
            diff_text = "no paired seeds" if n == 0 else f"{diff:+.{digits}f}"
            p_text = f", p {_p(p)}" if n >= MIN_N and not pd.isna(p) else ""
            parts.append(f"{a} {op} {b}: {diff_text} ({n} paired seed{'s' if n != 1 else ''}{p_text}): {verdict}")
        untested = [v for v in verdicts if v not in VERDICTS]
        verdict = ("refuted" if "refuted" in verdicts else "supported" if all(v == "supported" for v in verdicts)
                   else "untested" if untested else "not significant")
        why = []
        if gone:
            why.append("no paper-profile runs of " + "; ".join(
                f"{', '.join(m for m in empty if gone[m] == w)}: {w}" for w in sorted(set(gone.values()))))
        fewest = min([n for n, v in zip(counts, [v for v in verdicts if v != "no runs"]) if v == "n too small"],
                     default=0)
        why += [f"n too small ({fewest} paired seed{'s' if fewest != 1 else ''}, fewer than {MIN_N})"
                if v == "n too small" else v for v in dict.fromkeys(untested) if v != "no runs"]
        rows.append(row | {"ours": ours, "evidence": "; ".join(parts), "verdict": verdict,
                           "why": "; ".join(why) if verdict == "untested" else ""})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


CLAIM_COLUMNS = ["id", "section", "table", "dataset", "imb_factor", "network", "metric", "ordering", "quote", "reading",
                 "paper_numbers", "paper_note", "ours", "evidence", "verdict", "why"]


# --------------------------------------------------------------------------- data copy

COPY_METRICS = ("acc_all", "acc_few")
GAP_DATASET, GAP_IMB = "cifar10_lt", 100  # the Table 3 cells the data-copy experiment is set beside


#: Config fields that name a run or say how it executes, not what it trains on which images.
_NAMING_FIELDS = ("experiment", "extra", "device", "step_mode", "checkpoint_every", "seed")


def _copy_label(record) -> str:
    """The copy a data-copy record names; a Table 3 record is a run on the copy as it is ("original")."""
    if record["config"].get("experiment") == "table3":
        return "original"
    return str(record["config"].get("extra", {}).get("data_copy", "?"))


def _training(config: dict) -> str | None:
    """What a run trains, as text: its full config (defaults filled in) but for :data:`_NAMING_FIELDS`; None for a
    config this version cannot read."""
    from .config import RunConfig

    try:
        full = RunConfig.from_dict(config).to_dict()
    except (TypeError, ValueError):
        return None
    return json.dumps({k: v for k, v in full.items() if k not in _NAMING_FIELDS}, sort_keys=True)


def data_copy_records(records_with_paths) -> tuple[list[dict], list[str]]:
    """(records under results/data_copy/ whose data source is the copy they are labelled with, "run id: why" of
    those that are not: amixup.data.copies.check_source). Where a re-encoded copy's runs have no original of the
    same training and seed under results/data_copy/, a Table 3 record of exactly that training (the same recipe on
    the copy as it is, under another name) is their original: the same run is not trained twice."""
    from .data.copies import DataCopyError, check_source

    kept, rejected = [], []

    def check(rec):
        try:
            check_source(_copy_label(rec), rec["data"]["source"], "the data")
            kept.append(rec)
        except (DataCopyError, ValueError) as err:
            rejected.append(f"{rec['run_id']}: {str(err).split('. Give each copy')[0]}")

    for path, rec in records_with_paths:
        if path.startswith(DATA_COPY_DIR + "/"):
            check(rec)
    keys = {"original": set(), "again": set()}  # (training, seed) of the copies' runs
    for rec in kept:
        keys["original" if _copy_label(rec) == "original" else "again"].add((_training(rec["config"]),
                                                                             rec["config"]["seed"]))
    wanted = {k for k in keys["again"] - keys["original"] if k[0] is not None}
    for path, rec in records_with_paths:
        if (wanted and not path.startswith(DATA_COPY_DIR + "/") and rec["config"].get("experiment") == "table3"
                and (_training(rec["config"]), rec["config"]["seed"]) in wanted):
            check(rec)
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


def data_copy(records_with_paths, gap: pd.DataFrame | None = None, distances: dict | None = None) -> pd.DataFrame:
    """Runs under results/data_copy/ (config.extra.data_copy labels the copy: "original" or e.g. "q75"),
    one row per profile, dataset, method and copy: last-epoch accuracy (all, few; mean and std over seeds),
    the copy's PSNR against the original where measured (``distances``: amixup.data.copies.read_distances)
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
                   "psnr_db": (distances or {}).get(copy, {}).get("psnr_db", math.nan),
                   "runs": len(sub), "seeds": _join(sub["seed"]), "experiment": _join(sub["experiment"])}
            for m in COPY_METRICS:
                values = sub[m].astype(float)
                row |= {f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=1) if len(values) > 1 else math.nan}
            row["paired_seeds"] = 0
            for m in COPY_METRICS:
                n, diff, p = (paired(sub.groupby("seed")[m].mean().to_dict(), per_seed[m]) if copy != "original"
                              else (0, math.nan, math.nan))
                row |= {"paired_seeds": n, f"diff_{m}": diff, f"p_{m}": p if n >= MIN_N else math.nan}
            row["test"] = ("" if copy == "original" else "paired t-test" if row["paired_seeds"] >= MIN_N
                           else "n too small")
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


def data_copy_table(data_copy_dir, originals=(), distances_path=None) -> pd.DataFrame:
    """:func:`data_copy` of the records under ``data_copy_dir`` (e.g. results/data_copy/paper), with ``originals``
    (e.g. a notebook's Table 3 records) as the runs a re-encoded copy may pair with and each copy's PSNR from
    ``distances_path`` (default: distances.json beside that folder); no gap to the paper."""
    from .data.copies import DISTANCES_FILE, read_distances

    data_copy_dir = Path(data_copy_dir)
    with_paths = [(f"{DATA_COPY_DIR}/{p}", r) for p, r in read_run_records(data_copy_dir)]
    with_paths += [(f"originals/{i}", r) for i, r in enumerate(originals)]
    distances = read_distances(distances_path if distances_path is not None else data_copy_dir.parent / DISTANCES_FILE)
    return data_copy(with_paths, distances=distances)


# --------------------------------------------------------------------------- at a glance

SUMMARY_COLUMNS = ["cells", "compared", "within noise", "differs", "no test", "missing", "CI excludes 0"]
CI_COLUMN = "CI excludes 0"  # compared cells whose 95 % interval of the difference (diff_ci) lies on one side of 0
README_START, README_END = "<!-- results-at-a-glance:start -->", "<!-- results-at-a-glance:end -->"
FIGURE = "REPORT_vs_paper.png"
README_KEY = "README.md block"  # build()'s entry for the README's results-at-a-glance block (not a file of its own)
FIGURE_DATA_KEY = "amixup-figure-data-sha256"  # PNG text chunk: the hash of the plotted points (see vs_paper_points)
#: The fidelity study's records, looked for by path (relative to results/) or by run: the Table 2 choices study,
#: the data-copy dose-response at the paper profile, the LDAM-DRW control.
TABLE2_CHOICES = re.compile(r"^01_motivation/[^/]+/table2_choices")
LDAM = re.compile(r"ldam", re.I)


def cell_summary(cell_rows: pd.DataFrame) -> pd.DataFrame:
    """Per table (and "all"): cells, compared (our paper-profile runs), within noise / differs (Welch, at least
    MIN_N seeds a side), no test (compared, not tested: why in the cell's status), missing."""
    kind = cell_rows["status"].map(lambda s: "missing" if s.startswith("missing") else "no test"
                                   if s.startswith("no test") else s)
    counts = pd.crosstab(cell_rows["table"].astype(int), kind).reindex(columns=SUMMARY_COLUMNS[2:-1], fill_value=0)
    counts.insert(0, "compared", counts[["within noise", "differs", "no test"]].sum(axis=1))
    counts.insert(0, "cells", counts["compared"] + counts["missing"])
    outside = (cell_rows["ci_low"] > 0) | (cell_rows["ci_high"] < 0)
    counts[CI_COLUMN] = outside.groupby(cell_rows["table"].astype(int)).sum().reindex(counts.index, fill_value=0)
    counts.loc["all"] = counts.sum()
    counts.index = counts.index.map(str)
    return counts.rename_axis("table").reset_index()


def claim_summary(claim_rows: pd.DataFrame) -> dict[str, int]:
    return {v: int((claim_rows["verdict"] == v).sum()) for v in VERDICTS}


def summary_frame(cell_rows, claim_rows) -> pd.DataFrame:
    """REPORT_summary.csv: the cell counts per table, then the claims per verdict (long form: part, table, what, count)."""
    cells_long = cell_summary(cell_rows).melt(id_vars="table", var_name="what", value_name="count")
    cells_long.insert(0, "part", "cells")
    cells_long["order"] = cells_long["what"].map(SUMMARY_COLUMNS.index)
    cells_long = cells_long.sort_values(["order"], kind="stable").drop(columns="order")
    cells_long = cells_long.sort_values("table", key=lambda s: s.map(lambda t: (t == "all", t)), kind="stable")
    claim_long = pd.DataFrame([{"part": "claims", "table": "all", "what": v, "count": n}
                               for v, n in claim_summary(claim_rows).items()])
    by_table = claim_rows.groupby(["table", "verdict"]).size()
    claim_long = pd.concat([pd.DataFrame([{"part": "claims", "table": str(t), "what": v, "count": int(by_table.get((t, v), 0))}
                                          for t in sorted(claim_rows["table"].unique()) for v in VERDICTS]), claim_long])
    return pd.concat([cells_long, claim_long], ignore_index=True)


def fidelity_records(records_with_paths) -> dict[str, list[dict]]:
    """The fidelity study's records found: "table2_choices" (results/01_motivation/*/table2_choices*), "data_copy"
    (paper-profile data-copy runs), "ldam_drw" (runs whose experiment, method or extra names LDAM)."""
    found = {"table2_choices": [], "data_copy": [], "ldam_drw": []}
    for path, rec in records_with_paths:
        config = rec["config"]
        if TABLE2_CHOICES.match(path):
            found["table2_choices"].append(rec)
        elif path.startswith(DATA_COPY_DIR + "/"):
            if config.get("profile") == PAPER_PROFILE:
                found["data_copy"].append(rec)
        elif LDAM.search(" ".join([str(config.get("experiment")), str(config.get("method")),
                                   json.dumps(config.get("extra", {}), sort_keys=True)])):
            found["ldam_drw"].append(rec)
    return found


def choices_sentence(choice_records, records_with_paths, paper: pd.DataFrame) -> str:
    """What the Table 2 choices study measured (notebook 01): CE per combination of the silent choices at the paper
    profile against the paper's CE, the combination closest to it by the means over the seeds every combination has
    (the next two beside it: a near tie is visible), and each choice's main effect on few-class accuracy, from the
    records (our own combination: Table 2's CE records)."""
    ours = [r for p, r in records_with_paths if p.startswith("01_motivation/paper/table2/")
            and r["config"]["method"] == "ce" and r["config"]["profile"] == PAPER_PROFILE]
    recs = [r for r in choice_records if r["config"]["profile"] == PAPER_PROFILE and r["config"]["method"] == "ce"]
    if not recs:
        return f"The Table 2 choices study has {len(choice_records)} run(s), none of CE at the paper profile yet."
    compared, seeds = tables.common_seeds(tables.choice_frame(ours + recs))
    summary = tables.choice_summary(compared)
    ce = paper[(paper["table"] == 2) & (paper["method"] == "ce")].set_index("metric")["mean"]
    ranked = tables.nearest(summary, {"acc_all": ce["acc_all"], "acc_few": ce["acc_few"]})
    closest = ranked.iloc[0]
    name = lambda row: ", ".join(f"{c}={row[c]!s}" for c in tables.CHOICES)  # noqa: E731
    over = (f"means over the seeds every combination has ({', '.join(map(str, seeds))})" if seeds
            else "means over each combination's own seeds (none is shared)")
    runners_up = "; ".join(f"{name(row)}: {row.acc_all:.2f} % (few {row.acc_few:.2f} %, distance {row.distance:.2f})"
                           for _, row in ranked.iloc[1:3].iterrows())
    collapsed = summary[summary["acc_few"] < 5]
    effects = tables.choice_effects(summary).sort_values("acc_few")
    return (f"The Table 2 choices study (notebook 01; CE at the paper profile, {len(summary)} of "
            f"{2 ** len(tables.CHOICES)} combinations of {', '.join(tables.CHOICES)}, "
            f"{len(recs)} run(s) besides Table 2's own; {over}): the paper's CE is {ce['acc_all']:.2f} % (few "
            f"{ce['acc_few']:.2f} %); closest is {name(closest)}: {closest['acc_all']:.2f} % (few "
            f"{closest['acc_few']:.2f} %, {int(closest['seeds'])} seed(s); distance {closest['distance']:.2f}, the sum "
            f"of the two gaps in points)" + (f"; next: {runners_up}" if runners_up else "") + ". Few-class accuracy "
            f"below 5 % (the minority collapse of the paper's CE) under {len(collapsed)} of {len(summary)} "
            f"combinations; main effect on few-class accuracy (changed minus kept, over the combinations present): "
            + "; ".join(f"{r.choice} -> {r.changed_to}: {r.acc_few:+.1f}" for r in effects.itertuples())
            + f". CE runs whose model puts every test image in one class: {int(compared['predicts_one_class'].sum())} "
            f"of {len(compared)}; main effect on their share (changed minus kept): "
            + "; ".join(f"{r.choice} -> {r.changed_to}: {r.predicts_one_class:+.2f}"
                        for r in effects.sort_values("predicts_one_class", ascending=False).itertuples())
            + ". " + _pattern_sentence(choice_records, closest))


def _pattern_sentence(choice_records, closest) -> str:
    """Every method at the paper profile under each combination that has runs besides CE (notebook 01's pattern
    runs), all their seeds: their accuracies (with the seeds whose model predicts one class only) and whether the
    paper's order (CE far below both mixups) holds there, then how many combinations reproduce it. A combination other
    than ``closest`` is named as such; where ``closest`` has no runs besides CE, that is said."""
    frame = tables.choice_frame([r for r in choice_records if r["config"]["profile"] == PAPER_PROFILE])
    others = frame[frame["method"] != "ce"] if not frame.empty else frame
    if others.empty:
        return ("Whether mixup and manifold mixup then beat CE, as Section 3 says, needs their runs under that "
                "combination (none yet).")
    out, closest_shown, outcomes = [], False, []
    for _, combo in others[list(tables.CHOICES)].drop_duplicates().iterrows():
        runs = tables.under_choices(frame, combo)
        collapsed = runs[runs["predicts_one_class"]].groupby("method")["seed"].nunique()
        summary = tables.choice_summary(runs)
        shown = ", ".join(f"{r.method} {r.acc_all:.2f} (few {r.acc_few:.2f}, {r.seeds} seed(s)"
                          + (f", {collapsed[r.method]} predicting one class" if r.method in collapsed else "") + ")"
                          for r in summary.itertuples())
        if all(combo[name] == closest[name] for name in tables.CHOICES):
            where, closest_shown = "Every method under the closest combination", True
        else:
            where = ("Every method under " + ", ".join(f"{name}={combo[name]!s}" for name in tables.CHOICES)
                     + " (notebook 01's pattern_choices; not the closest)")
        out.append(f"{where}: {shown}. " + tables.table2_pattern_verdict(summary, combo))
        outcomes.append(tables.table2_pattern_outcome(summary, combo))
    if not closest_shown:
        out.append("Under the closest: " + tables.table2_pattern_verdict(
            tables.choice_summary(tables.under_choices(frame, closest)), closest))
    out.append(tables.pattern_tally(outcomes))
    return " ".join(o for o in out if o)


def control_comparison(control_records, records_with_paths, paper: pd.DataFrame) -> pd.DataFrame | None:
    """The LDAM-DRW control's paper-profile runs beside Table 3's CE on the same seeds and the cited CE figure
    (``tables.ldam_control_comparison``); None without a paper-profile control run."""
    paper_runs = [r for r in control_records if r["config"]["profile"] == PAPER_PROFILE]
    if not paper_runs:
        return None
    table3 = [r for _, r in records_with_paths if r["config"].get("experiment") == "table3"]
    return tables.ldam_control_comparison(paper_runs, table3, paper)


def control_sentence(control_records, records_with_paths, paper: pd.DataFrame) -> str:
    """What the LDAM-DRW control (notebook 02) measured at the paper profile, beside Table 3's CE on the same seeds
    and the cited CE figure (``tables.ldam_control_verdict``)."""
    comparison = control_comparison(control_records, records_with_paths, paper)
    if comparison is None:
        return (f"The LDAM-DRW control has {len(control_records)} run(s), none at the paper profile "
                f"({_join(r['config']['profile'] for r in control_records)}).")
    return "The LDAM-DRW control (notebook 02, paper profile): " + tables.ldam_control_verdict(comparison)


def causes_paragraph(records_with_paths, copy_rows: pd.DataFrame, paper: pd.DataFrame | None = None) -> str:
    """What the measured causes of the differences explain, from the records: each study of the fidelity work
    that has records is summarised (the data-copy cost beside the gap), the ones without records are named.
    ``paper``: the paper's numbers the report compares with (default: tables.load_paper_results)."""
    paper = tables.load_paper_results() if paper is None else paper
    found = fidelity_records(records_with_paths)
    names = {"table2_choices": "the Table 2 choices study (`results/01_motivation/*/table2_choices*`)",
             "data_copy": "the data-copy dose-response at the paper profile (`results/data_copy/`, profile `paper`)",
             "ldam_drw": "the LDAM-DRW control (a run whose experiment or method names LDAM-DRW)"}
    absent = [names[k] for k, v in found.items() if not v]
    out = []
    if found["table2_choices"]:
        out.append(choices_sentence(found["table2_choices"], records_with_paths, paper))
    if found["data_copy"] and not copy_rows.empty:
        again = copy_rows[(copy_rows["profile"] == PAPER_PROFILE) & (copy_rows["copy"] != "original")]
        parts = []
        for r in again.itertuples():
            p = f", p {_p(r.p_acc_all)}" if r.paired_seeds >= MIN_N else ", n too small"
            gap = f" against a gap to the paper of {r.gap_acc_all:+.2f}" if pd.notna(r.gap_acc_all) else ""
            parts.append(f"{r.method} {r.copy}{_psnr(r.psnr_db)}: {r.diff_acc_all:+.2f} points ({r.paired_seeds} "
                         f"paired seeds{p}){gap}")
        out.append("One more JPEG step (data copy, paper profile, acc_all, re-encoded minus original): "
                   + ("; ".join(parts) if parts else "no re-encoded copy has paper-profile runs yet") + ".")
    if found["ldam_drw"]:
        out.append(control_sentence(found["ldam_drw"], records_with_paths, paper))
    if absent:
        out.append("Not in yet, so none of the differences above is explained by a measurement here: "
                   + "; ".join(absent) + ".")
    shorter = [r for p, r in records_with_paths if p.startswith(DATA_COPY_DIR + "/")
               and r["config"].get("profile") != PAPER_PROFILE]
    if shorter and not found["data_copy"]:
        out.append(f"The data-copy runs here ({len(shorter)}, profile {_join(r['config']['profile'] for r in shorter)}) "
                   "are shorter than the paper's recipe: their cost of one more JPEG step (data-copy section) cannot "
                   "size the paper-profile gap.")
    return "What the measured causes explain: " + " ".join(out)


def vs_paper_points(cell_rows: pd.DataFrame) -> pd.DataFrame:
    """The compared cells the figure plots: table, metric, the paper's number, our last-epoch mean and std."""
    have = cell_rows[~cell_rows["status"].str.startswith("missing")]
    cols = ["table", "dataset", "imb_factor", "network", "method", "source", "metric", "paper_mean", "ours_mean",
            "ours_std"]
    return have[cols].reset_index(drop=True)


def vs_paper_figure(cell_rows: pd.DataFrame) -> bytes:
    """PNG: ours (last-epoch mean, bar: our std over seeds) against the paper for every compared cell, the y = x
    line, one colour per table; accuracies (%) on the left, alignment / uniformity on the right. Rendered with
    Agg and without a date, so the same points and matplotlib give the same bytes; the PNG carries the hash of its
    points (FIGURE_DATA_KEY) and the matplotlib version."""
    import hashlib
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = vs_paper_points(cell_rows)
    digest = hashlib.sha256(points.to_csv(index=False, lineterminator="\n").encode()).hexdigest()
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    panels = (("accuracy (%)", points["metric"].isin(ACCURACY)), ("alignment / uniformity", ~points["metric"].isin(ACCURACY)))
    for ax, (title, mask) in zip(axes, panels):
        part = points[mask]
        for table, sub in part.groupby("table", sort=True):
            ax.errorbar(sub["paper_mean"], sub["ours_mean"], yerr=sub["ours_std"].fillna(0), fmt="o", ms=4,
                        capsize=2, color=colours((int(table) - 1) % 10), label=f"Table {table} ({len(sub)} cells)")
        values = pd.concat([part["paper_mean"], part["ours_mean"]]).astype(float)
        low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", lw=1, ls="--", label="y = x")
        ax.set(xlabel="paper", ylabel="ours (last epoch, paper profile)", title=title,
               xlim=(low - pad, high + pad), ylim=(low - pad, high + pad))
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Ours against the paper: {len(points)} compared cells (bars: our std over seeds)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None, FIGURE_DATA_KEY: digest,
                                                     "matplotlib": matplotlib.__version__})
    plt.close(fig)
    return buf.getvalue()


def png_text(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG (e.g. FIGURE_DATA_KEY), read without decoding the image."""
    import struct
    import zlib

    out, pos = {}, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        pos += 12 + length
    return out


def _glance_table(cell_rows) -> str:
    return _md_table(cell_summary(cell_rows))


def _claims_line(claim_rows) -> str:
    counts = claim_summary(claim_rows)
    return (f"{len(claim_rows)} claims (every ordering of methods the paper's Sections 3-4 and its table captions "
            "state): " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS))


def readme_block(cell_rows, claim_rows, copy_rows: pd.DataFrame | None = None,
                 control: pd.DataFrame | None = None) -> str:
    """The README's results-at-a-glance block, markers included (``copy_rows``: :func:`data_copy`, ``control``:
    :func:`control_comparison`, for the line on what the CIFAR-10 copy costs and what is left against the cited CE)."""
    s = cell_summary(cell_rows).set_index("table").loc["all"]
    refuted = claim_rows.loc[claim_rows["verdict"] == "refuted", "id"].tolist()
    return "\n".join([
        README_START,
        "<!-- generated by `python -m amixup.report` from the run records: do not edit between these markers -->",
        *textwrap.wrap(  # lines a screen wide, as the README's
        f"**Results at a glance** ([report](results/REPORT.md), [figure](results/{FIGURE})): of the paper's "
        f"{s['cells']} numbers (Tables 1-8), {s['compared']} have our paper-profile runs: {s['within noise']} within "
        f"noise, {s['differs']} differ (Welch, at least {MIN_N} seeds a side), {s['no test']} without a test (the "
        f"report gives each cell's reason), {s[CI_COLUMN]} with a 95 % interval of ours - paper that excludes 0; "
        f"{s['missing']} are missing. {_claims_line(claim_rows)}"
        + (f"; refuted on our records: {', '.join(f'`{i}`' for i in refuted)}" if len(refuted) else "") + ".",
            width=115, break_on_hyphens=False),
        "",
        *textwrap.wrap(copy_line(pd.DataFrame() if copy_rows is None else copy_rows, control), width=115,
                       break_on_hyphens=False),
        "",
        _glance_table(cell_rows),
        README_END,
    ]) + "\n"


def _psnr(db) -> str:
    """" (PSNR 28.7 dB)" for a copy whose distance from the original is measured, else ""."""
    return "" if pd.isna(db) else f" (PSNR {db:.1f} dB)"


def copy_line(copy_rows: pd.DataFrame, control: pd.DataFrame | None = None) -> str:
    """The README's sentence on what the CIFAR-10 JPEG copy costs, from the data-copy records: one more compression
    step's effect on accuracy per profile (paper first), method and copy, with its paired seeds and p (from MIN_N);
    then what the LDAM-DRW control (``control``: :func:`control_comparison`) leaves against the cited CE."""
    lead = "**The CIFAR-10 copy** here is a lossy third-party JPEG re-encoding; "
    again = copy_rows[copy_rows["copy"] != "original"] if not copy_rows.empty else copy_rows
    if again.empty:
        return lead + "what it costs is not measured yet (no data-copy records)." + _control_clause(control)
    measured = (again["profile"] == PAPER_PROFILE).any()
    if measured:  # the shorter profiles' weaker evidence stays in the report
        shorter = sorted(set(again["profile"]) - {PAPER_PROFILE})
        again = again[again["profile"] == PAPER_PROFILE]
    parts = []
    for profile, sub in sorted(again.groupby("profile"), key=lambda kv: (kv[0] != PAPER_PROFILE, kv[0])):
        label = {PAPER_PROFILE: "the full recipe"}.get(profile, "shortened runs: weak evidence")
        cells = [f"{r.method} {r.copy}{_psnr(r.psnr_db)} {r.diff_acc_all:+.2f} (n {r.paired_seeds}"
                 + (f", p {_p(r.p_acc_all)})" if r.test == "paired t-test" else ")") for r in sub.itertuples()]
        parts.append(f"{profile} profile ({label}): " + ", ".join(cells))
    if measured and shorter:
        parts[-1] += f" ({_join(shorter)} profile: the report)"
    missing = "" if measured else "; not yet measured at the paper profile"
    return (lead + f"one more compression step changes accuracy by (points, re-encoded minus original, n paired "
            f"seeds, p from {MIN_N}; report, data copy) " + "; ".join(parts) + missing + "." + _control_clause(control))


def _control_clause(control: pd.DataFrame | None) -> str:
    """" With LDAM-DRW's own ERM recipe ... left against the cited CE" (the control's best epoch, as LDAM-DRW
    reports), or the control's absence."""
    row = tables.CONTROL_ROWS["control"]
    if control is None or row not in control.index:
        return " The LDAM-DRW control (what is left against the cited CE) has no paper-profile record yet."
    c, cited = control.loc[row], control.loc[tables.CONTROL_ROWS["cited"], "best_acc_all"]
    seeds = int(c["seeds"])
    return (f" With LDAM-DRW's own ERM recipe on this copy, CE reaches {c['best_acc_all']:.2f} at its best epoch "
            f"(last {c['acc_all']:.2f}; {seeds} seed{'s' if seeds > 1 else ''}, {c['precision']}) against the "
            f"{cited:.2f} Table 3 cites for canonical CIFAR-10: {c['best_minus_cited']:+.2f} points left for the copy, "
            "the seed and library versions.")


def write_readme_block(path: Path, block: str) -> bool:
    """Replace the README's block between the markers (markers included) with ``block``; False (README left alone)
    where the markers are not there."""
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    path.write_text(text[:start] + block.rstrip("\n") + text[end + len(README_END):])
    return True


def readme_block_of(text: str) -> str | None:
    """The block between the markers (markers included) of a README's text, or None."""
    start, end = text.find(README_START), text.find(README_END)
    return None if start < 0 or end < start else text[start:end + len(README_END)] + "\n"


def _ci_text(low, high) -> str:
    return "" if pd.isna(low) else f"[{low:.2f}, {high:.2f}]"


def _glance(cell_rows, claim_rows, causes) -> list[str]:
    counts = cell_summary(cell_rows)
    out = ["## At a glance", "",
           f"![Ours against the paper, every compared cell]({FIGURE})", "",
           f"Cells per table: compared = with our paper-profile runs; within noise / differs = Welch's t-test at "
           f"level {LEVEL} with at least {MIN_N} seeds a side; no test = compared, without a test (the cell's status "
           "says why: the paper gives no std, n too small, ...); missing = no paper-profile runs (why: per table below); "
           f"{CI_COLUMN} = compared cells whose 95 % interval of ours - paper (`diff_ci`) does not hold 0 (a one-sample "
           "interval where the paper gives no std treats its number as exact).",
           "", _md_table(counts), "", f"Claims: {_claims_line(claim_rows)}."]
    refuted = claim_rows[claim_rows["verdict"] == "refuted"]
    if len(refuted):
        out += ["", "Refuted on our records (the reverse order, significant), beside the paper's own numbers:", ""]
        out += [f"- `{r.id}` ({r.section}, {r.metric}: {r.ordering}): {r.paper_numbers}; ours: {r.ours}"
                for r in refuted.itertuples()]
    out += ["", causes, ""]
    return out


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


def _markdown(cell_rows, short, rest, claim_rows, copy_rows, located, notes, gap=None, rejected=(), causes="") -> str:
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
        "when it differs. Rows as CSV: `REPORT.csv` (cells), `REPORT_claims.csv` (claims), `REPORT_summary.csv` "
        f"(the counts below); the figure: `{FIGURE}`.",
        "",
        *_glance(cell_rows, claim_rows, causes),
        "## How to read it",
        "",
        "- Ours: runs at the `paper` profile only (shorter profiles are listed apart, not compared); `ours_mean`, "
        "`ours_std` and `diff` (ours - paper) are the last epoch's accuracy; std is the sample std over seeds, and "
        "seeds are counted once each (`ours_n`).",
        "- Best epoch, labelled, beside it: `ours_best_mean` is the mean over seeds of each run's accuracy at its best "
        "epoch (the epoch of highest overall test accuracy; its many/median/few are that epoch's). `paper_epoch` says "
        "which epoch the paper's number is: `best over epochs` for the rows it cites from LDAM-DRW or MiSLAS ([10]), "
        "which report the best epoch, compared like with like in `diff_best` (ours_best_mean - paper); `not stated` "
        "elsewhere (the paper does not say).",
        f"- Welch's t-test (`scipy.stats.ttest_ind_from_stats`, two-sided) where both sides have a std and at least "
        f"{MIN_N} seeds: \"within noise\" if p >= {LEVEL}, \"differs\" if p < {LEVEL}. With fewer than {MIN_N} seeds "
        "on a side no p-value is printed (\"n too small\": two seeds give a std, not a p-value to trust). The paper's "
        "seed counts are those its captions state (Tables 3-7); Tables 1 and 2 give no std, Table 8 no seed count.",
        "- `diff_ci`: the 95 % confidence interval of `diff`: Welch-Satterthwaite t interval (`scipy.stats.t`) where "
        "both sides have a std and n >= 2; where the paper gives no std, the one-sample t interval of our mean "
        "(n >= 2) against the paper's number taken as a point; none otherwise (`ci` in `REPORT.csv` says which). "
        "`diff_best_ci`: the same for `diff_best` (one-sample: the rows cited from MiSLAS give no std).",
        f"- Claims: every ordering of methods the paper's text states in Sections 3-4 and its table captions, each "
        "with its id, section, the sentence quoted (below the table) and the ordering (\"a > b, c\": a above b and "
        "above c; \"a > b > c\": a chain; \"<\": lower). Each pair of the ordering is tested with a paired t-test "
        f"over matching seeds (`scipy.stats.ttest_rel`, two-sided, level {LEVEL}) of the last epoch, with at least "
        f"{MIN_N} pairs. Verdict: \"refuted\" where some pair is in the reverse order significantly; \"supported\" "
        "where every pair is in the paper's order significantly; \"untested\" (`why`) where a pair has no "
        f"paper-profile runs on a side or fewer than {MIN_N} paired seeds; else \"not significant\". "
        "`paper_numbers` are the paper's own numbers for the claim's cells (cited rows after them) and `paper_note` "
        "says where its table does not bear its text out. \"supported\" says our runs order the methods as the "
        "paper does, not that our numbers are near the paper's (the cells say that).",
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
             "paper_n", "paper_epoch", "ours_mean", "ours_std", "ours_best_mean", "ours_n", "diff", "diff_ci",
             "diff_best", "diff_best_ci", "p_welch", "status"]
    cell_rows = cell_rows.assign(
        diff_ci=[_ci_text(lo, hi) for lo, hi in zip(cell_rows["ci_low"], cell_rows["ci_high"])],
        diff_best_ci=[_ci_text(lo, hi) for lo, hi in zip(cell_rows["ci_best_low"], cell_rows["ci_best_high"])])
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
    out += ["", "## The paper's claims on our runs", "", _claims_line(claim_rows) + ".", "",
            _md_table(claim_rows[["id", "section", "table", "metric", "ordering", "paper_numbers", "paper_note", "ours",
                                  "evidence", "verdict", "why"]])]
    out += ["", "The paper's sentences (and how a sentence was read where it is not literal):", ""]
    for quote, part in claim_rows.groupby("quote", sort=False):
        readings = list(dict.fromkeys(r for r in part["reading"] if r))
        readings = "; ".join(readings if len(readings) < 2 else
                             [f"`{i}`: {r}" for i, r in zip(part["id"], part["reading"]) if r])
        out.append(f"- {', '.join(f'`{i}`' for i in part['id'])} ({_join(part['section'])}): \"{quote}\""
                   + (f" (read: {readings})" if readings else ""))
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
        out += ["Per copy (mean and std over seeds, last epoch; `psnr_db`: the copy's pixels against the copy as it "
                f"is, kept in `results/{DATA_COPY_DIR}/distances.json` by `python -m amixup.data_copy --compare ... "
                "--save-as LABEL`, blank where not measured):", "",
                _md_table(copy_rows[["profile", "dataset", "imb_factor", "method", "copy", "psnr_db", "runs",
                                     "seeds", "experiment", "acc_all_mean", "acc_all_std", "acc_few_mean",
                                     "acc_few_std", "data_source"]]),
                *(["", "(`experiment` table3: the original side is Table 3's record of exactly that training, the "
                   "same recipe on the copy as it is, not trained twice.)"]
                  if copy_rows["experiment"].str.contains("table3").any() else []),
                "", "The measured cost of one more compression step (re-encoded minus original, paired over matching "
                f"seeds, `scipy.stats.ttest_rel`, two-sided, with at least {MIN_N} pairs; fewer: n too small, no p) "
                "beside the method's gap to the paper (`gap_*` only for paper-profile runs: a shorter profile's cost "
                "cannot say how much of the full recipe's gap the copy explains; and it measures one more "
                "compression, an estimate of the first one's cost):", ""]
        again = copy_rows[copy_rows["copy"] != "original"]
        out.append("no re-encoded copy has runs yet" if again.empty else _md_table(
            again[["profile", "method", "copy", "psnr_db", "paired_seeds", "test", "diff_acc_all", "p_acc_all",
                   "diff_acc_few", "p_acc_few", "gap_acc_all", "gap_acc_few"]]))
    if rejected:
        out += ["", "Left out (the data source is not the copy the run is labelled with):", ""]
        out += [f"- {r}" for r in rejected]
    return "\n".join(out) + "\n"


def build(results_dir, paper: pd.DataFrame, located, notes=None, figure: bool = True) -> dict[str, str | bytes]:
    """The report's files (name -> text, bytes for the PNG) from the records under results_dir, and the README's
    results-at-a-glance block under README_KEY."""
    with_paths = read_run_records(results_dir)
    records = [r for p, r in with_paths if not p.startswith(DATA_COPY_DIR + "/")]
    runs = runs_frame(records)
    notes = measured_notes(records) if notes is None else list(notes)
    cell_rows = cells(paper, runs, located)
    short, rest = shorter_profiles(paper, runs), unmapped(paper, runs)
    gap = paper_gap(cell_rows)
    from .data.copies import DISTANCES_FILE, read_distances

    distances = read_distances(Path(results_dir) / DATA_COPY_DIR / DISTANCES_FILE)
    claim_rows, copy_rows = claims(runs, located, paper=paper), data_copy(with_paths, gap, distances)
    rejected = data_copy_records(with_paths)[1]
    if not short.empty:
        short = _order(short).sort_values(["table", "dataset", "imb_factor", "network", "_m", "metric", "profile"],
                                          na_position="first").drop(columns="_m")
    cell_rows, short, copy_rows, gap = _round(cell_rows), _round(short), _round(copy_rows), _round(gap)
    causes = causes_paragraph(with_paths, copy_rows, paper)
    control = control_comparison(fidelity_records(with_paths)["ldam_drw"], with_paths, paper)
    md = _markdown(cell_rows, short, rest, claim_rows, copy_rows, list(located), notes, gap, rejected, causes)
    files = {"REPORT.md": md, "REPORT.csv": cell_rows.to_csv(index=False, lineterminator="\n"),
             "REPORT_claims.csv": claim_rows.to_csv(index=False, lineterminator="\n"),
             "REPORT_summary.csv": summary_frame(cell_rows, claim_rows).to_csv(index=False, lineterminator="\n"),
             README_KEY: readme_block(cell_rows, claim_rows, copy_rows, control)}
    if figure:
        files[FIGURE] = vs_paper_figure(cell_rows)
    return files


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
    parser.add_argument("--readme", default=str(REPO_ROOT / "README.md"),
                        help="README whose results-at-a-glance block (between its markers) is rewritten; '' for none")
    args = parser.parse_args(argv)
    files = build(args.results_dir, load_paper(args.paper), located_bases())
    out = Path(args.out or args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    block = files.pop(README_KEY)
    for name, content in files.items():
        (out / name).write_bytes(content) if isinstance(content, bytes) else (out / name).write_text(content)
        print(out / name)
    readme = Path(args.readme) if args.readme else None
    if readme is not None:
        if write_readme_block(readme, block):
            print(f"{readme} (results at a glance)")
        else:
            print(f"{readme}: no {README_START} ... {README_END} markers, left alone")


if __name__ == "__main__":
    main()
