"""The reproduction report: cell mapping, missing reasons, Welch and paired tests, claims, data copy,
and the committed results/REPORT.md being what the committed records give."""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amixup import report

ROOT = Path(__file__).resolve().parents[1]
JPEG_SOURCE = "cache cifar10.pt of imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"


def make_record(experiment, dataset, method, seed, *, imb=None, model="resnet32", profile="paper", beta=0.34,
                extra=None, acc=50.0, few=None, alignment=1.0, device="cpu", device_name="x86_64", best=None):
    run_id = f"{experiment}-{dataset}-{model}-{method}-{profile}-b{beta}-{json.dumps(extra or {}, sort_keys=True)}-s{seed}"
    last = {"acc_all": acc, "acc_many": acc + 10, "acc_median": acc, "acc_few": acc - 10 if few is None else few}
    # the best epoch (highest overall accuracy): by default 1 point above the last on all, 5 above on few
    best = best or {"acc_all": acc + 1, "acc_many": last["acc_many"] - 2, "acc_median": acc + 1,
                    "acc_few": last["acc_few"] + 5, "epoch": 1}
    return {
        "run_id": run_id, "seed": seed, "seconds": 1.0, "git": {"commit": "abc"},
        "config": {"experiment": experiment, "profile": profile, "dataset": dataset, "imb_factor": imb,
                   "model": model, "method": method, "rate": None, "one_sided": None, "last_layer": None,
                   "beta": beta, "seed": seed, "epochs": 1, "precision": "fp32", "extra": extra or {}},
        "metrics": {"last": last, "best": best, "alignment": alignment,
                    "uniformity": 1.0, "uniformity_k1": 0.5},
        "history": [{"train_loss": 1.0}],
        "environment": {"device": device, "device_name": device_name},
        "data": {"source": JPEG_SOURCE},
    }


def write(results: Path, records, folder="runs"):
    for r in records:
        path = results / folder / f"{r['run_id'].replace('/', '_').replace(' ', '')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    return results


def cell(rows, **key):
    hit = rows
    for k, v in key.items():
        hit = hit[hit[k].map(str) == str(v)]
    assert len(hit) == 1, (key, len(hit))
    return hit.iloc[0]


# --------------------------------------------------------------------------- statistics

def test_welch_matches_scipy_and_the_hand_formula():
    m1, s1, n1, m2, s2, n2 = 67.3, 1.2, 3, 75.38, 0.63, 20
    p, verdict = report.welch(m1, s1, n1, m2, s2, n2)
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    t = (m1 - m2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert p == pytest.approx(stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)
    assert verdict == "differs" and p < 0.05
    p, verdict = report.welch(75.0, 0.8, 5, 75.38, 0.63, 20)
    assert verdict == "within noise" and p > 0.05


def test_welch_says_why_it_cannot_test():
    assert report.welch(60, 1.0, 3, 42.5, math.nan, math.nan)[1] == "no test: paper gives no std"
    assert report.welch(60, 1.0, 3, 91.8, 0.1, math.nan)[1] == "no test: paper's seed count not stated"
    assert report.welch(60, math.nan, 1, 71.9, 0.65, 20)[1] == "no test: n too small (ours 1 seed)"


def test_two_seeds_print_no_p_value():
    """The Table 3 AM-mixup cell of the issue: n = 2 and a std of 0.09 gave p = 2.5e-18; now no p, "n too small"."""
    p, verdict = report.welch(67.375, 0.0919, 2, 75.38, 0.63, 20)
    assert math.isnan(p) and verdict == "no test: n too small (ours 2 seeds)"
    p, verdict = report.welch(67.375, 0.5, 5, 75.38, 0.63, 2)
    assert math.isnan(p) and verdict == "no test: n too small (the paper's 2 seeds)"


def test_welch_interval_by_hand():
    # ours 10 +- 2 over 4 seeds, the paper's 8 +- 1 over 9: v = 4/4 + 1/9, df (Welch-Satterthwaite) = 3.6866
    low, high, kind = report.diff_ci(10.0, 2.0, 4, 8.0, 1.0, 9)
    v1, v2 = 1.0, 1 / 9
    df = (v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / 8)
    assert df == pytest.approx(3.68664, abs=1e-5)
    half = 2.872041 * math.sqrt(v1 + v2)  # t(0.975, 3.6866) from a t table, times the standard error 1.05409
    assert kind == "Welch" and (low, high) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    assert (low, high) == (pytest.approx(-1.027397, abs=1e-5), pytest.approx(5.027397, abs=1e-5))
    # the paper gives no std: one-sample t interval of our mean against its number, t(0.975, 2) = 4.302653
    low, high, kind = report.diff_ci(2.0, 1.0, 3, 0.0, math.nan, math.nan)
    assert kind == "one-sample" and (low, high) == (pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5),
                                                    pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-5))
    # with two seeds there is an interval (and no p-value); with one, neither; no paper seed count: no interval
    assert report.diff_ci(67.375, 0.0919, 2, 75.38, 0.63, 20)[2] == "Welch"
    assert report.diff_ci(60, math.nan, 1, 71.9, 0.65, 20)[2] == "no CI: fewer than 2 seeds of ours"
    assert report.diff_ci(60, 1.0, 3, 91.8, 0.1, math.nan)[2] == "no CI: paper's seed count not stated"


def test_paired_test_over_matching_seeds_only():
    a = {0: 40.0, 1: 42.0, 2: 41.0, 7: 99.0}
    b = {0: 30.0, 1: 33.0, 2: 30.5, 5: 0.0}
    n, diff, p = report.paired(a, b)
    assert n == 3 and diff == pytest.approx(np.mean([10, 9, 10.5]))
    assert p == pytest.approx(stats.ttest_rel([40, 42, 41], [30, 33, 30.5]).pvalue)
    assert report.paired({0: 1.0}, {0: 0.5})[:2] == (1, 0.5) and math.isnan(report.paired({0: 1.0}, {0: 0.5})[2])
    assert report.paired({0: 1.0}, {1: 0.5})[0] == 0


# --------------------------------------------------------------------------- mapping and missing reasons

def synthetic_results(tmp_path):
    recs = [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0 + s) for s in range(3)]
    recs += [make_record("table3", "cifar10_lt", "am_mixup", 0, imb=100, acc=67.0),
             make_record("table3", "cifar10_lt", "am_mixup", 0, imb=100, beta=0.5, acc=10.0),  # not the 0.34 cell
             make_record("table3", "cifar10_lt", "mixup", 0, imb=100, profile="quick", acc=27.0),
             make_record("table1", "mini_cifar", "ce", 0, model="cnn_vis2d", extra={"pretrain_method": "mixup"},
                         acc=48.7, alignment=0.5),
             make_record("table1_coarse", "mini_cifar_coarse", "mixup", 0, model="cnn_vis2d"),
             make_record("table2", "mini_cifar_lt", "am_mixup", 0, model="cnn_vis2d", acc=63.0),
             make_record("table6", "mnist", "ce", 0, model="vit", extra={"pretrain_method": "ce"}, acc=98.0),
             make_record("table7", "cifar100_lt", "am_mixup", 0, imb=100, extra={"ablation_row": 3}, acc=41.0),
             make_record("table8", "cifar10", "ce", 0, model="resnet50_cifar", acc=94.0, device="cuda")]
    write(tmp_path, recs)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench.json").write_text(json.dumps({"benchmark": "x", "method": "ce"}))
    return tmp_path


def test_synthetic_records_map_to_the_paper_cells(tmp_path):
    results = synthetic_results(tmp_path)
    runs = report.runs_frame([r for _, r in report.read_run_records(results)])
    rows = report.cells(report.load_paper(), runs, located=["cifar10", "mnist"])
    ce = cell(rows, table=3, dataset="cifar10_lt", imb_factor=100.0, method="ce", source="paper_reproduced",
              metric="acc_all")
    assert (ce["ours_mean"], ce["ours_n"], ce["seeds"]) == (65.0, 3, "0; 1; 2")
    assert ce["ours_std"] == pytest.approx(1.0) and ce["diff"] == pytest.approx(65.0 - 71.86)
    assert ce["p_welch"] == pytest.approx(stats.ttest_ind_from_stats(65, 1, 3, 71.86, 0.65, 20, False).pvalue)
    assert ce["status"] == "differs" and ce["profile"] == "paper" and ce["device"] == "cpu"
    # the cited MiSLAS row is a cell too, compared with the same runs
    assert cell(rows, table=3, dataset="cifar10_lt", imb_factor=100.0, method="ce", source="[10] MiSLAS",
                metric="acc_all")["ours_n"] == 3
    am = cell(rows, table=3, dataset="cifar10_lt", imb_factor=100.0, method="am_mixup", metric="acc_all")
    assert am["ours_mean"] == 67.0 and am["ours_n"] == 1  # the beta 0.5 run is not the paper's beta 0.34 cell
    assert cell(rows, table=1, method="mixup", metric="alignment")["ours_mean"] == 0.5  # by pretrain_method
    assert cell(rows, table=2, method="am_mixup", metric="acc_all")["ours_mean"] == 63.0  # implied imbalance 200
    assert cell(rows, table=6, dataset="mnist", method="ce", source="paper_reproduced")["ours_mean"] == 98.0  # vit
    assert cell(rows, table=7, method="ablation_row3", metric="acc_all")["ours_mean"] == 41.0
    t8 = cell(rows, table=8, dataset="cifar10", network="resnet50", method="ce")  # resnet50_cifar -> resnet50
    assert t8["ours_mean"] == 94.0 and t8["device"] == "x86_64" and t8["status"] == "no test: paper's seed count not stated"
    rest = report.unmapped(report.load_paper(), runs)
    assert rest.to_dict("records") == [
        {"experiment": "table1_coarse", "profile": "paper", "dataset": "mini_cifar_coarse", "runs": 1},
        {"experiment": "table3", "profile": "paper", "dataset": "cifar10_lt", "runs": 1}]


def test_unlike_runs_or_a_seed_twice_are_not_tested_and_seeds_are_counted_once(tmp_path):
    recs = [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0 + s) for s in range(3)]
    again = make_record("table3", "cifar10_lt", "ce", 0, imb=100, acc=60.0)  # seed 0 once more, in bf16
    again["run_id"] += "-bf16"
    again["config"]["precision"] = "bf16"
    write(tmp_path, recs + [again])
    runs = report.runs_frame([r for _, r in report.read_run_records(tmp_path)])
    rows = report.cells(report.load_paper(), runs, located=["cifar10"])
    ce = cell(rows, table=3, dataset="cifar10_lt", imb_factor=100.0, method="ce", source="paper_reproduced",
              metric="acc_all")
    assert ce["ours_n"] == 3 and ce["seeds"] == "0; 1; 2" and math.isnan(ce["p_welch"])  # was n 4 and a test
    assert ce["status"] == "no test: runs differ in precision (bf16; fp32); seed(s) 0 in several runs"
    assert ce["commit"] == "abc"
    md = report.build(tmp_path, report.load_paper(), ["cifar10"], notes=[])["REPORT.md"]
    assert ("Ours: precision bf16; fp32; data " + JPEG_SOURCE.removeprefix("cache cifar10.pt of ")
            + "; device cpu; seeds 0; 1; 2; code abc.") in md


def test_cited_rows_take_no_seed_count_and_am_mixup_rows_without_beta_take_the_default(tmp_path):
    paper = report.load_paper()
    cited = paper[~paper["source"].isin(report.OWN_SOURCES)]
    assert len(cited) == 21 and cited["paper_n"].isna().all()  # e.g. Table 6's [5]: its caption's 5 is the paper's
    assert (paper[(paper["table"] == 3) & (paper["source"] == "paper")]["paper_n"] == 20).all()
    write(tmp_path, [make_record("table2", "mini_cifar_lt", "am_mixup", 0, model="cnn_vis2d", acc=63.0),
                     make_record("table2", "mini_cifar_lt", "am_mixup", 1, model="cnn_vis2d", acc=10.0, beta=0.9)])
    runs = report.runs_frame([r for _, r in report.read_run_records(tmp_path)])
    am = cell(report.cells(paper, runs, located=["cifar10"]), table=2, method="am_mixup", metric="acc_all")
    assert (am["ours_mean"], am["ours_n"]) == (63.0, 1)  # the beta 0.9 run is not the paper's (no beta: 0.34)


def test_a_fine_tuning_run_stands_for_its_encoders_record_method_beta_and_profile(tmp_path):
    encoder = make_record("table1_coarse", "mini_cifar_coarse", "am_mixup", 0, model="cnn_vis2d")
    quick = make_record("table1_coarse", "mini_cifar_coarse", "mixup", 1, model="cnn_vis2d", profile="quick")

    def fine(seed, source, label, acc):
        rec = make_record("table1", "mini_cifar", "ce", seed, model="cnn_vis2d", extra={"pretrain_method": label},
                          acc=acc)
        rec["config"]["finetune_from"] = source["run_id"]
        return rec

    write(tmp_path, [encoder, quick, fine(0, encoder, "mixup", 60.0),  # labelled mixup, its encoder is AM-mixup's
                     fine(1, quick, "mixup", 50.0)])  # a paper-profile fine-tune of a quick encoder
    runs = report.runs_frame([r for _, r in report.read_run_records(tmp_path)])
    rows = report.cells(report.load_paper(), runs, located=["cifar10"])
    assert cell(rows, table=1, method="am_mixup", metric="acc_all")["ours_mean"] == 60.0
    mixup = cell(rows, table=1, method="mixup", metric="acc_all")
    assert mixup["status"] == "missing: profile below paper (paper (encoder quick))", mixup["status"]


def test_best_epoch_is_beside_the_last_labelled_and_compared_like_with_like(tmp_path):
    results = synthetic_results(tmp_path)
    runs = report.runs_frame([r for _, r in report.read_run_records(results)])
    rows = report.cells(report.load_paper(), runs, located=["cifar10", "mnist"])
    key = dict(table=3, dataset="cifar10_lt", imb_factor=100.0, method="ce")
    # MiSLAS [10] reports the best epoch: labelled so, and ours at the best epoch compared with it
    mislas = cell(rows, source="[10] MiSLAS", metric="acc_all", **key)
    assert mislas["paper_epoch"] == "best over epochs ([10] MiSLAS)"
    assert (mislas["ours_mean"], mislas["ours_best_mean"]) == (65.0, 66.0)  # last 64/65/66, best 65/66/67
    assert mislas["diff"] == pytest.approx(65.0 - 70.4) and mislas["diff_best"] == pytest.approx(66.0 - 70.4)
    # the paper's own rows do not say which epoch: no best-vs-? difference, our best epoch still beside the last
    few = cell(rows, source="paper_reproduced", metric="acc_few", **key)
    assert few["paper_epoch"] == "not stated" and math.isnan(few["diff_best"])
    assert (few["ours_mean"], few["ours_best_mean"]) == (55.0, 60.0)  # the few split at the best-overall epoch
    assert math.isnan(cell(rows, table=1, method="mixup", metric="alignment")["ours_best_mean"])  # no best of A
    files = report.build(results, report.load_paper(), ["cifar10", "mnist"], notes=[])
    assert ("| paper_n | paper_epoch | ours_mean | ours_std | ours_best_mean | ours_n | diff | diff_ci | diff_best "
            "| diff_best_ci | p_welch |" in files["REPORT.md"])
    # one-sample intervals (MiSLAS gives no std): -5.4 and -4.4 +- t(0.975, 2) * 1 / sqrt(3) = 2.4841
    assert mislas["ci_low"] == pytest.approx(-5.4 - 2.4841, abs=1e-3) and mislas["ci"] == "one-sample"
    assert mislas["ci_best_high"] == pytest.approx(-4.4 + 2.4841, abs=1e-3)
    assert ("| cifar10_lt | 100 | resnet32 | ce |  | [10] MiSLAS | acc_all | 70.4 |  |  | best over epochs ([10] MiSLAS) "
            "| 65 | 1 | 66 | 3 | -5.4 | [-7.88, -2.92] | -4.4 | [-6.88, -1.92] |  | no test: paper gives no std |"
            ) in files["REPORT.md"]
    assert "the records also hold the best epoch, not used here" not in files["REPORT.md"]
    header = files["REPORT.csv"].splitlines()[0].split(",")
    assert {"paper_epoch", "ours_best_mean", "diff_best"} <= set(header)
    assert header.index("ours_best_mean") == header.index("ours_std") + 1


def test_missing_cells_say_why(tmp_path):
    results = synthetic_results(tmp_path)
    runs = report.runs_frame([r for _, r in report.read_run_records(results)])
    rows = report.cells(report.load_paper(), runs, located=["cifar10", "mnist"])
    status = lambda **k: cell(rows, metric="acc_all", **k)["status"]  # noqa: E731
    assert status(table=3, dataset="cifar10_lt", imb_factor=100.0, method="mixup",
                  source="paper_reproduced") == "missing: profile below paper (quick)"
    assert status(table=3, dataset="cifar10_lt", imb_factor=50.0, method="ce",
                  source="paper_reproduced") == "missing: not run yet"
    assert status(table=3, dataset="cifar100_lt", imb_factor=100.0, method="ce",
                  source="paper_reproduced") == "missing: no data here"
    assert status(table=4, network="resnet50", method="ce") == "missing: no data here"
    assert status(table=8, dataset="tiny_imagenet", network="vgg11", method="ce") == "missing: no data here"
    short = report.shorter_profiles(report.load_paper(), runs)
    assert short[(short["method"] == "mixup") & (short["metric"] == "acc_all")]["ours_mean"].tolist() == [27.0]


def test_located_bases_finds_copies_by_name_without_decoding(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar10-jpeg.tar.gz").write_bytes(b"not read")
    (tmp_path / "data" / "mnist").mkdir()
    (tmp_path / "places").mkdir()
    monkeypatch.setenv("AMIXUP_DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("AMIXUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AMIXUP_PLACES_LT_ROOT", raising=False)
    assert {"cifar10", "mnist"} <= set(report.located_bases())
    assert "places_lt" not in report.located_bases()
    monkeypatch.setenv("AMIXUP_PLACES_LT_ROOT", str(tmp_path / "places"))
    assert "places_lt" in report.located_bases()


# --------------------------------------------------------------------------- claims

CLAIM = [report._claim("test-few", "§3", "The higher precision in the few category", 2, "mini_cifar_lt", "acc_few",
                       "am_mixup > ce, mixup", imb=200)]


def claim_verdict(tmp_path, few, claim=CLAIM):
    recs = [make_record("table2", "mini_cifar_lt", m, s, model="cnn_vis2d", few=v)
            for m, values in few.items() for s, v in enumerate(values)]
    runs = report.runs_frame([r for _, r in report.read_run_records(write(tmp_path, recs))])
    return report.claims(runs, ["cifar10"], claim).iloc[0]


def test_claim_supported_on_consistent_paired_seeds(tmp_path):
    row = claim_verdict(tmp_path, {"am_mixup": [37.0, 36.0, 38.5], "ce": [2.0, 2.5, 3.0], "mixup": [20.0, 21.0, 22.5]})
    assert row["verdict"] == "supported" and row["why"] == ""
    p = stats.ttest_rel([37.0, 36.0, 38.5], [20.0, 21.0, 22.5]).pvalue
    assert f"am_mixup > mixup: +16.00 (3 paired seeds, p {p:.3g}): supported" in row["evidence"]
    assert row["paper_numbers"] == "Table 2: am_mixup 37.3, ce 2.25, mixup 21.8"


def test_claim_refuted_not_significant_and_untested(tmp_path):
    row = claim_verdict(tmp_path / "a", {"am_mixup": [30.0, 25.0, 33.0], "ce": [29.0, 27.0, 30.0],
                                         "mixup": [1.0, 2.0, 3.0]})
    assert row["verdict"] == "not significant"
    # the reverse order, significant over 3 paired seeds: refuted, beside the paper's own numbers for the cells
    row = claim_verdict(tmp_path / "b", {"am_mixup": [10.0, 11.0, 12.5], "ce": [20.0, 21.0, 22.0],
                                         "mixup": [1.0, 2.0, 3.0]})
    p = stats.ttest_rel([10.0, 11.0, 12.5], [20.0, 21.0, 22.0]).pvalue
    assert p < 0.05 and row["verdict"] == "refuted"
    assert f"am_mixup > ce: -9.83 (3 paired seeds, p {p:.3g}): refuted" in row["evidence"]
    assert row["paper_numbers"] == "Table 2: am_mixup 37.3, ce 2.25, mixup 21.8" and row["paper_note"] == ""
    assert row["ours"] == "am_mixup 11.17 (n 3), ce 21.00 (n 3), mixup 2.00 (n 3)"
    row = claim_verdict(tmp_path / "c", {"am_mixup": [10.0], "ce": [20.0]})
    assert row["verdict"] == "untested"
    assert row["why"] == "no paper-profile runs of mixup: not run yet; n too small (1 paired seed, fewer than 3)"
    row = claim_verdict(tmp_path / "d", {"am_mixup": [1.0, 2.0]})
    assert row["verdict"] == "untested" and row["why"] == "no paper-profile runs of ce, mixup: not run yet"
    assert row["evidence"] == "" and row["ours"] == "am_mixup 1.50 (n 2)"
    # a pair without runs does not hide a refutation of another pair
    row = claim_verdict(tmp_path / "e", {"am_mixup": [10.0, 11.0, 12.5], "ce": [20.0, 21.0, 22.0]})
    assert row["verdict"] == "refuted" and row["why"] == ""


def test_a_claim_lower_is_refuted_by_a_significant_higher(tmp_path):
    """§3's "CE exhibits the lowest [...] weakest overall performance": CE above mixup is a refutation."""
    claim = [report._claim("t", "§3", "q", 2, "mini_cifar_lt", "acc_few", "ce < mixup", imb=200)]
    row = claim_verdict(tmp_path, {"ce": [30.0, 31.0, 33.0], "mixup": [20.0, 20.5, 21.0]}, claim)
    assert row["verdict"] == "refuted" and "ce < mixup: +10.83 (3 paired seeds, p " in row["evidence"]
    row = claim_verdict(tmp_path / "b", {"ce": [10.0, 11.0, 13.0], "mixup": [20.0, 20.5, 21.0]}, claim)
    assert row["verdict"] == "supported"


def test_fewer_than_three_paired_seeds_or_no_spread_is_untested_without_a_p_value(tmp_path):
    row = claim_verdict(tmp_path / "a", {"am_mixup": [40.0], "ce": [20.0], "mixup": [30.0]})
    assert row["verdict"] == "untested" and row["why"] == "n too small (1 paired seed, fewer than 3)"
    assert "am_mixup > ce: +20.00 (1 paired seed): n too small" in row["evidence"]
    row = claim_verdict(tmp_path / "b", {"am_mixup": [40.0, 45.0], "ce": [20.0, 22.0], "mixup": [30.0, 31.0]})
    assert row["verdict"] == "untested" and row["why"] == "n too small (2 paired seeds, fewer than 3)"
    assert ", p " not in row["evidence"]  # two pairs: no p-value printed
    # with two pairs a reverse order is not "refuted" either
    row = claim_verdict(tmp_path / "c", {"am_mixup": [10.0, 11.0], "ce": [20.0, 22.0], "mixup": [1.0, 2.5]})
    assert row["verdict"] == "untested"
    row = claim_verdict(tmp_path / "d", {"am_mixup": [40.0, 41.0, 42.0], "ce": [30.0, 31.0, 32.0], "mixup": [1.0, 2.0, 4.0]})
    assert row["verdict"] == "untested" and row["why"] == "paired differences without spread"


def test_orderings_parse_into_pairs():
    assert report.parse_ordering("a > b, c") == (">", [("a", "b"), ("a", "c")])
    assert report.parse_ordering("a < b < c, d") == ("<", [("a", "b"), ("b", "c"), ("b", "d")])
    with pytest.raises(ValueError):
        report.parse_ordering("a > b < c")


def _normal(text: str) -> str:
    for latex, plain in ((r"$\lambda_{am}$", "λam"), (r"$\Downarrow$", "⇓"), (r"$\uparrow$", "↑"), (r"$\beta$", "β"),
                         (r"$\mathbf{A}$", "A"), ("’", "'"), ("*", "")):
        text = text.replace(latex, plain)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # [Table 7](#) -> Table 7
    return " ".join(text.split())


PAPER_TEXT = report.SHARED_PAPER.parent / "am-mixup-paper.md"


def test_the_claims_list_is_data_from_the_papers_text():
    paper = report.load_paper()
    ids = [c["id"] for c in report.CLAIMS]
    assert len(ids) == len(set(ids)) == 80
    keys = [(c["table"], c["dataset"], c["imb_factor"], c["network"], c["metric"], c["ordering"]) for c in report.CLAIMS]
    assert len(keys) == len(set(keys))  # no claim twice
    for c in report.CLAIMS:
        assert c["quote"] and c["section"] and report.parse_ordering(c["ordering"])
        numbers, note = report.paper_check(paper, c)
        assert "has no" not in note, (c["id"], note)  # every method of every ordering has the paper's own number
    # the Section 3 statements the old hand-picked list left out are in
    by_id = {c["id"]: c for c in report.CLAIMS}
    assert by_id["s3-t2-u-ce"]["ordering"] == "ce < mixup, manifold_mixup, am_mixup"
    assert by_id["s3-t2-u1-ce"]["metric"] == "uniformity_k1" and by_id["s3-t2-acc-ce"]["metric"] == "acc_all"
    assert by_id["s3-t2-u-mm"]["ordering"] == "manifold_mixup > am_mixup"
    assert by_id["s3-t1-acc-order"]["ordering"] == "am_mixup > mixup > manifold_mixup"
    # where the paper's own table does not bear its text out, the note says so
    notes = {c["id"]: report.paper_check(paper, c)[1] for c in report.CLAIMS}
    assert {k for k, v in notes.items() if "contradicts" in v} == {
        "s42-t3-best-cifar10_lt-10", "s42-t3-best-cifar100_lt-100", "s44-t7-ll-median-12"}
    assert notes["s42-t3-best-cifar10_lt-10"] == (
        "the paper's own Table 3 contradicts this: am_mixup 88.19 is not above mixup 89.08, manifold_mixup 88.71")
    assert notes["s43-t6-mnist-am"] == ("a cited row of the paper's Table 6 is above am_mixup 98.2: ce 98.7 ([5] "
                                        "Perfectly balanced)")
    assert "mixup 73.1 (best over epochs ([10] MiSLAS))" in report.paper_check(paper, by_id["s42-t3-mixup-ce-cifar10_lt-100"])[0]


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="no ../shared/paper/am-mixup-paper.md here")
def test_every_claims_quote_is_the_papers_text():
    text = _normal(PAPER_TEXT.read_text())
    for c in report.CLAIMS:
        for piece in c["quote"].split("[...]"):
            piece = _normal(piece).strip(" .:")
            assert piece.removeprefix("Table 7: ").removeprefix("Table 8: ") in text, (c["id"], piece)


def test_claims_of_a_table_read_its_cells_network_and_beta(tmp_path):
    """A Table 4 claim takes the runs of its network and of the paper's beta for AM-mixup (0.2 on ResNet152)."""
    recs = [make_record("table4", "imagenet_lt", m, s, model="resnet152", beta=b, few=f + s)
            for m, b, f in (("am_mixup", 0.2, 30.0), ("mixup", 0.34, 10.0), ("manifold_mixup", 0.34, 11.0))
            for s in range(3)]
    recs += [make_record("table4", "imagenet_lt", "am_mixup", s, model="resnet152", beta=0.34, few=0.0) for s in range(3)]
    runs = report.runs_frame([r for _, r in report.read_run_records(write(tmp_path, recs))])
    claim = [c for c in report.CLAIMS if c["id"] == "s42-t4-few-am-resnet152"]
    row = report.claims(runs, ["imagenet_lt"], claim).iloc[0]
    assert row["verdict"] == "untested" and row["why"] == "paired differences without spread"
    assert row["ours"].startswith("am_mixup 31.00 (n 3)")  # not the beta 0.34 runs


# --------------------------------------------------------------------------- data copy and the whole report

def test_data_copy_section_from_records_under_data_copy(tmp_path):
    from amixup.data_copy import expected_source

    paper = report.load_paper()
    write(tmp_path, [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0, few=35.0) for s in range(2)])
    empty = report.build(tmp_path, paper, ["cifar10"], notes=[])
    assert "Not run yet: the data-copy experiment has no records" in empty["REPORT.md"]
    assert "| ce | 64 | 71.86 | -7.86 | 35 | 51.92 | -16.92 |" in empty["REPORT.md"]  # the gap is shown all the same
    q50 = "cache cifar10.pt of " + expected_source("q50")
    recs = [make_record("data_copy", "cifar10_lt", m, s, imb=100, extra={"data_copy": c}, acc=v + shift, few=f)
            for m, shift in (("ce", 0.0), ("am_mixup", 3.0))
            for c, values, few in (("original", [64.0, 63.0, 65.0], [30.0, 31.0, 29.0]),
                                   ("q50", [60.0, 60.5, 62.0], [28.0, 27.0, 28.5]))
            for s, (v, f) in enumerate(zip(values, few))]
    for r in recs:
        if r["config"]["extra"]["data_copy"] == "q50":
            r["data"]["source"] = q50
    # a run labelled q50 that read the original copy is left out, and named
    stray = make_record("data_copy", "cifar10_lt", "ce", 7, imb=100, extra={"data_copy": "q50"}, acc=0.0)
    write(tmp_path, recs + [stray], folder="data_copy")
    rows = report.data_copy(report.read_run_records(tmp_path))
    ce = rows[rows["method"] == "ce"].set_index("copy")
    assert list(rows["method"]) == ["ce", "ce", "am_mixup", "am_mixup"] and list(rows["copy"][:2]) == ["original", "q50"]
    assert ce.loc["q50", "paired_seeds"] == 3 and ce.loc["q50", "runs"] == 3 and ce.loc["q50", "seeds"] == "0; 1; 2"
    assert ce.loc["q50", "diff_acc_all"] == pytest.approx(-3.1666, abs=1e-3)
    assert ce.loc["q50", "p_acc_all"] == pytest.approx(stats.ttest_rel([60, 60.5, 62], [64, 63, 65]).pvalue)
    assert ce.loc["q50", "diff_acc_few"] == pytest.approx(np.mean([-2, -4, -0.5]))
    assert ce.loc["q50", "p_acc_few"] == pytest.approx(stats.ttest_rel([28, 27, 28.5], [30, 31, 29]).pvalue)
    assert ce.loc["original", "acc_few_mean"] == 30.0 and math.isnan(ce.loc["original", "diff_acc_all"])
    assert "JPEG-encoded once more at quality 50" in ce.loc["q50", "data_source"]
    assert rows["psnr_db"].isna().all()  # no distance measured
    files = report.build(tmp_path, paper, ["cifar10"], notes=[])
    assert "ce q50 -3.17 (n 3, p " in files[report.README_KEY]
    # the distance of the q50 copy, as `python -m amixup.data_copy --compare ... --save-as q50` keeps it
    (tmp_path / "data_copy" / "distances.json").write_text(json.dumps({"q50": {"psnr_db": 28.7, "changed": 0.9}}))
    files = report.build(tmp_path, paper, ["cifar10"], notes=[])
    md = files["REPORT.md"]
    assert "Not run yet" not in md and "| paper | cifar10_lt | 100 | ce | original |  | 3 | 0; 1; 2 |" in md
    assert "| paper | cifar10_lt | 100 | ce | q50 | 28.7 | 3 | 0; 1; 2 |" in md
    assert "ce q50 (PSNR 28.7 dB) -3.17 (n 3, p " in files[report.README_KEY]
    assert "ce q50 (PSNR 28.7 dB): -3.17 points (3 paired seeds, p " in md
    # the cost of the extra step beside the gap to the paper (Table 3 CE, paper profile: 64 - 71.86)
    assert "| paper | ce | q50 | 28.7 | 3 | paired t-test | -3.1667 |" in md and "| -7.86 | -16.92 |" in md
    for r in recs:  # the same at the quick profile: its cost is shown, but not beside the full recipe's gap
        r["config"]["profile"], r["run_id"] = "quick", r["run_id"] + "-quick"
    quick = tmp_path / "quick"
    write(quick, [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0, few=35.0) for s in range(2)])
    write(quick, recs, folder="data_copy")
    gap = report.data_copy(report.read_run_records(quick), report.paper_gap(report.cells(
        paper, report.runs_frame([r for p, r in report.read_run_records(quick) if not p.startswith("data_copy")]),
        ["cifar10"])))
    assert gap["profile"].eq("quick").all() and gap["gap_acc_all"].isna().all() and gap["gap_acc_few"].isna().all()
    assert "Left out (the data source is not the copy the run is labelled with)" in md
    assert f"- {stray['run_id']}: the data of copy 'q50' came from " in md
    assert "| data_copy | paper | cifar10_lt |" not in md  # not among the runs no paper cell takes


def test_a_table3_record_of_the_same_training_is_the_original_side_of_a_reencoded_copy(tmp_path):
    """Table 3's CE seed 0 is exactly the data-copy experiment's original CE seed 0 under another name: a q50 run
    pairs with it (not trained twice); a Table 3 record of another recipe (bf16 here) or seed does not pair."""
    from amixup.data_copy import expected_source

    table3 = [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0 + s, few=35.0) for s in range(2)]
    other = make_record("table3", "cifar10_lt", "ce", 0, imb=100, acc=10.0)
    other["config"]["precision"], other["run_id"] = "bf16", other["run_id"] + "-bf16"
    write(tmp_path, table3 + [other], folder="02_imbalanced_lt/paper/table3")
    q50 = make_record("data_copy", "cifar10_lt", "ce", 0, imb=100, extra={"data_copy": "q50"}, acc=61.0, few=30.0)
    q50["data"]["source"] = "cache cifar10.pt of " + expected_source("q50")
    write(tmp_path, [q50], folder="data_copy/paper/data_copy")
    rows = report.data_copy(report.read_run_records(tmp_path)).set_index("copy")
    assert rows.loc["original", "experiment"] == "table3" and rows.loc["original", "seeds"] == "0"
    assert rows.loc["original", "acc_all_mean"] == 64.0  # seed 0 of the same training only
    assert rows.loc["q50", "paired_seeds"] == 1 and rows.loc["q50", "diff_acc_all"] == pytest.approx(-3.0)
    assert rows.loc["q50", "test"] == "n too small" and math.isnan(rows.loc["q50", "p_acc_all"])
    assert rows.loc["q50", "diff_acc_few"] == pytest.approx(-5.0)
    records = report.read_run_records(tmp_path)
    text = report.causes_paragraph(records, report.data_copy(records))
    assert "ce q50: -3.00 points (1 paired seeds, n too small)" in text


def test_data_copy_table_of_a_folder_pairs_with_the_given_originals_and_plots_cost_against_psnr(tmp_path):
    """What notebook 02's data-copy section shows: the records of one data-copy folder, the notebook's Table 3
    records as the originals they may pair with, the PSNR kept beside the folder, and the cost against PSNR."""
    import matplotlib.pyplot as plt

    from amixup import plots
    from amixup.data_copy import expected_source

    table3 = [make_record("table3", "cifar10_lt", "ce", 0, imb=100, acc=64.0, few=35.0)]
    again = []
    for label, acc, few in (("q50", 61.0, 30.0), ("q30", 58.0, 26.0)):
        rec = make_record("data_copy", "cifar10_lt", "ce", 0, imb=100, extra={"data_copy": label}, acc=acc, few=few)
        rec["data"]["source"] = "cache cifar10.pt of " + expected_source(label)
        again.append(rec)
    folder = write(tmp_path / "data_copy" / "paper", again, folder="data_copy")  # results/data_copy/paper/data_copy
    alone = report.data_copy_table(folder)  # without originals: the copies alone, nothing paired
    assert list(alone["copy"]) == ["q30", "q50"] and (alone["paired_seeds"] == 0).all()
    with pytest.raises(ValueError, match="measured PSNR"):
        plots.cost_vs_psnr(report.data_copy_table(folder, table3))  # no distance kept yet
    (tmp_path / "data_copy" / "distances.json").write_text(json.dumps({"q50": {"psnr_db": 28.7},
                                                                        "q30": {"psnr_db": 27.5}}))
    rows = report.data_copy_table(folder, table3).set_index("copy")
    assert list(rows.index) == ["original", "q30", "q50"] and rows.loc["original", "experiment"] == "table3"
    assert rows.loc["q30", "psnr_db"] == 27.5 and rows.loc["q30", "diff_acc_all"] == pytest.approx(-6.0)
    assert rows.loc["q50", "diff_acc_few"] == pytest.approx(-5.0) and math.isnan(rows.loc["original", "psnr_db"])
    fig = plots.cost_vs_psnr(rows.reset_index())
    line = fig.axes[0].get_lines()[0]  # CE at the paper profile, sorted by PSNR: q30 then q50
    assert list(line.get_xdata()) == [27.5, 28.7] and list(line.get_ydata()) == pytest.approx([-6.0, -3.0])
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == pytest.approx([-9.0, -5.0])
    plt.close(fig)


def test_summary_counts_cells_and_claims(tmp_path):
    recs = [make_record("table3", "cifar10_lt", "ce", s, imb=100, acc=64.0 + s, few=40.0 + s) for s in range(3)]
    recs += [make_record("table3", "cifar10_lt", "am_mixup", s, imb=100, acc=67.0 + s, few=50.0 + 2 * s)
             for s in range(2)]
    recs += [make_record("table2", "mini_cifar_lt", m, s, model="cnn_vis2d", acc=a + s * (1 + (m == "ce")))
             for m, a in (("ce", 60.0), ("mixup", 50.0), ("manifold_mixup", 55.0), ("am_mixup", 63.0)) for s in range(3)]
    write(tmp_path, recs)
    files = report.build(tmp_path, report.load_paper(), ["cifar10"], notes=[], figure=False)
    rows = report.cells(report.load_paper(), report.runs_frame([r for _, r in report.read_run_records(tmp_path)]),
                        ["cifar10"])
    table = report.cell_summary(rows).set_index("table")
    # Table 3: CE (3 seeds) against the paper's CE† (20 seeds): 4 metrics Welch-tested; the cited MiSLAS row has no
    # std; AM-mixup has 2 seeds: its 4 cells are compared, not tested ("n too small")
    t3 = table.loc["3"]
    assert (t3["cells"], t3["compared"], t3["missing"]) == (114, 9, 105)
    assert t3["within noise"] + t3["differs"] == 4 and t3["no test"] == 5
    assert (rows[(rows["table"] == 3) & (rows["method"] == "am_mixup")]["status"].dropna()
            .isin(["no test: n too small (ours 2 seeds)"]).sum() == 4)
    assert table.loc["2", "compared"] == 24 and table.loc["2", "no test"] == 24  # the paper gives no std
    assert table.loc["all", "cells"] == 282 and table.loc["all", "compared"] == 33
    assert table.loc["all", "missing"] == 282 - 33
    summary = files["REPORT_summary.csv"].splitlines()
    assert summary[0] == "part,table,what,count" and "cells,3,compared,9" in summary and "cells,all,cells,282" in summary
    claims = report.claims(report.runs_frame([r for _, r in report.read_run_records(tmp_path)]), ["cifar10"])
    counts = report.claim_summary(claims)
    assert sum(counts.values()) == 80 and f"claims,all,refuted,{counts['refuted']}" in summary
    # our CE sits above mixup on Table 2 accuracy (60/62/64 vs 50/51/52, all seeds): "CE [...] weakest" is refuted
    assert claims.set_index("id").loc["s3-t2-acc-ce", "verdict"] == "refuted"
    md = files["REPORT.md"]
    assert md.index("## At a glance") < md.index("## How to read it") < md.index("## Table 1")
    assert f"![Ours against the paper, every compared cell]({report.FIGURE})" in md
    assert "- `s3-t2-acc-ce` (§3, acc_all: ce < mixup, manifold_mixup, am_mixup): Table 2: ce 42.52" in md
    block = files[report.README_KEY]
    assert block.startswith(report.README_START) and block.rstrip().endswith(report.README_END)
    assert "| all | 282 | 33 |" in block and f"{counts['refuted']} refuted" in block


def test_readme_block_is_written_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nFirst paragraph.\n\n{report.README_START}\nold\n{report.README_END}\n\n## Rest\nkept\n")
    block = f"{report.README_START}\nnew block\n{report.README_END}\n"
    assert report.write_readme_block(readme, block)
    assert readme.read_text() == f"# x\n\nFirst paragraph.\n\n{block}\n## Rest\nkept\n"
    assert report.readme_block_of(readme.read_text()) == block
    assert report.write_readme_block(readme, block) and report.readme_block_of(readme.read_text()) == block  # idempotent
    bare = tmp_path / "BARE.md"
    bare.write_text("# x\n")
    assert not report.write_readme_block(bare, block) and bare.read_text() == "# x\n"
    assert report.readme_block_of("# x\n") is None


def test_main_writes_the_report_files_and_the_readme_block(tmp_path, monkeypatch):
    results = synthetic_results(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{report.README_START}\n{report.README_END}\nrest\n")
    monkeypatch.setattr(report, "located_bases", lambda: ["cifar10", "mnist"])
    report.main(["--results-dir", str(results), "--readme", str(readme)])
    for name in report.OUTPUTS:
        assert (results / name).is_file(), name
    assert (results / report.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = readme.read_text()
    assert text.startswith("intro\n\n" + report.README_START) and text.endswith(report.README_END + "\nrest\n")
    assert "**Results at a glance**" in text


def test_figure_is_deterministic_and_carries_the_hash_of_its_points(tmp_path):
    results = synthetic_results(tmp_path)
    rows = report._round(report.cells(report.load_paper(), report.runs_frame(
        [r for _, r in report.read_run_records(results)]), ["cifar10", "mnist"]))
    a, b = report.vs_paper_figure(rows), report.vs_paper_figure(rows)
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.png_text(a)
    assert len(text[report.FIGURE_DATA_KEY]) == 64 and "Software" not in text
    moved = rows.copy()
    moved.loc[moved["ours_mean"].notna().idxmax(), "ours_mean"] += 1
    assert report.png_text(report.vs_paper_figure(moved))[report.FIGURE_DATA_KEY] != text[report.FIGURE_DATA_KEY]
    points = report.vs_paper_points(rows)
    assert len(points) == (~rows["status"].str.startswith("missing")).sum() and set(points["table"]) >= {1, 3, 8}


def test_causes_paragraph_names_the_measurements_not_in_yet(tmp_path):
    write(tmp_path, [make_record("table3", "cifar10_lt", "ce", 0, imb=100)])
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert text.startswith("What the measured causes explain: Not in yet")
    assert "table2_choices" in text and "data-copy dose-response at the paper profile" in text and "LDAM-DRW" in text
    # a quick-profile data copy is not the paper-profile dose-response; a Table 2 choices record is found by its path
    write(tmp_path, [make_record("data_copy", "cifar10_lt", "ce", 0, imb=100, profile="quick",
                                 extra={"data_copy": "original"})], folder="data_copy/quick/data_copy")
    write(tmp_path, [make_record("table2_choices", "mini_cifar_lt", "ce", 0, model="cnn_vis2d")],
          folder="01_motivation/paper/table2_choices")
    found = report.fidelity_records(report.read_run_records(tmp_path))
    assert [len(found[k]) for k in ("table2_choices", "data_copy", "ldam_drw")] == [1, 0, 0]
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert ("The Table 2 choices study (notebook 01; CE at the paper profile, 1 of 16 combinations of augmentation, "
            "batchnorm, feature_activation, pooling, 1 run(s) besides Table 2's own; means over the seeds every "
            "combination has (0)): the paper's CE is 42.52 % "
            "(few 2.25 %); closest is augmentation=True, batchnorm=True, feature_activation=none, pooling=avg") in text
    assert "needs their runs under that combination (none yet)" in text
    assert "the Table 2 choices study (" not in text and "data-copy dose-response at the paper profile" in text
    assert "The data-copy runs here (1, profile quick) are shorter than the paper's recipe" in text


def test_causes_paragraph_says_whether_the_closest_combination_reproduces_the_paper_order(tmp_path):
    """With mixup and manifold mixup runs under the combination closest to the paper's CE, the paragraph shows every
    method there and the plain verdict (both mixups 5+ points above CE, one, or neither)."""
    folder = "01_motivation/paper/table2_choices"
    manifold = make_record("table2_choices", "mini_cifar_lt", "manifold_mixup", 0, model="cnn_vis2d", acc=48.0)
    manifold["metrics"]["per_class_acc"] = [0.0, 100.0, 0.0, 0.0]  # every test image in one class
    write(tmp_path, [make_record("table2_choices", "mini_cifar_lt", "ce", 0, model="cnn_vis2d", acc=45.0, few=2.0),
                     make_record("table2_choices", "mini_cifar_lt", "mixup", 0, model="cnn_vis2d", acc=52.0),
                     manifold], folder=folder)
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert ("Every method under the closest combination: ce 45.00 (few 2.00, 1 seed(s)), mixup 52.00 (few 42.00, 1 seed(s)), manifold_mixup 48.00 "
            "(few 38.00, 1 seed(s), 1 predicting one class). This combination reproduces the paper's pattern in part: CE 45.00 against "
            "mixup 52.00, manifold_mixup 48.00.") in text
    assert "Of the 1 combination(s) with every baseline trained, none reproduces the paper's pattern (1 in part)." in text
    assert "none yet" not in text


def test_closest_combination_is_ranked_on_the_seeds_every_combination_has(tmp_path):
    """A combination with a third seed is ranked on seeds 0 and 1 like the others (with its third seed it would not be
    the closest); the next two are named with their distances, and a closest with only CE runs says so."""
    def choice(seed, acc, few, **options):
        record = make_record("table2_choices", "mini_cifar_lt", "ce", seed, model="cnn_vis2d", acc=acc, few=few,
                             extra=options)
        record["config"]["model_options"] = options
        return record
    write(tmp_path, [choice(s, 60.0, 25.0) for s in (0, 1)], folder="01_motivation/paper/table2")
    write(tmp_path, [choice(0, 42.5, 2.25, feature_activation="relu"), choice(1, 42.5, 2.25, feature_activation="relu"),
                     choice(2, 60.0, 2.25, feature_activation="relu"),
                     choice(0, 45.0, 2.25, pooling="flatten"), choice(1, 45.0, 2.25, pooling="flatten")],
          folder="01_motivation/paper/table2_choices")
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert "means over the seeds every combination has (0, 1)" in text
    assert ("closest is augmentation=True, batchnorm=True, feature_activation=relu, pooling=avg: 42.50 % (few 2.25 %, "
            "2 seed(s); distance 0.02, the sum of the two gaps in points); next: augmentation=True, batchnorm=True, "
            "feature_activation=none, pooling=flatten: 45.00 % (few 2.25 %, distance 2.48); augmentation=True, "
            "batchnorm=True, feature_activation=none, pooling=avg: 60.00 % (few 25.00 %, distance 40.23)") in text
    assert "needs their runs under that combination (none yet)" in text
    assert "CE runs whose model puts every test image in one class: 0 of 6; main effect on their share" in text
    # other methods under a combination that is not the closest: shown as such, and the closest said untested
    for method in ("mixup", "manifold_mixup"):
        other = choice(0, 50.0, 5.0, pooling="flatten")
        other["config"]["method"], other["run_id"] = method, other["run_id"].replace("-ce-", f"-{method}-")
        write(tmp_path, [other], folder="01_motivation/paper/table2_choices")
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert ("Every method under augmentation=True, batchnorm=True, feature_activation=none, pooling=flatten "
            "(notebook 01's pattern_choices; not the closest): ce 45.00 (few 2.25, 2 seed(s)), mixup 50.00 (few 5.00, "
            "1 seed(s)), manifold_mixup 50.00 (few 5.00, 1 seed(s)). This combination reproduces the paper's pattern") in text
    assert ("Under the closest: The paper's pattern (CE far below mixup and manifold mixup) is untested under this "
            "combination: mixup, manifold_mixup have no run under it yet") in text


def test_causes_paragraph_shows_the_ldam_drw_control_against_the_cited_figure_and_table3(tmp_path):
    """The control's best epoch against the cited CE (70.4, [10]) and its change against Table 3's CE on the same seed;
    a control at another profile is named, not compared."""
    write(tmp_path, [make_record("ldam_drw_control", "cifar10_lt", "ce", 0, imb=100, profile="quick")],
          folder="02_imbalanced_lt/quick/ldam_drw_control")
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    assert "The LDAM-DRW control has 1 run(s), none at the paper profile (quick)." in text
    write(tmp_path, [make_record("ldam_drw_control", "cifar10_lt", "ce", 0, imb=100, acc=66.0)],
          folder="02_imbalanced_lt/paper/ldam_drw_control")
    write(tmp_path, [make_record("table3", "cifar10_lt", "ce", 0, imb=100, acc=64.0),
                     make_record("table3", "cifar10_lt", "ce", 1, imb=100, acc=60.0)],
          folder="02_imbalanced_lt/paper/table3")
    text = report.causes_paragraph(report.read_run_records(tmp_path), pd.DataFrame())
    # best = last + 1 (make_record): control 67.00 - 70.40 = -3.40; against Table 3's seed 0 (64, best 65): +2.00, +2.00
    assert ("The LDAM-DRW control (notebook 02, paper profile): LDAM-DRW's ERM recipe on our copy: last epoch 66.00, "
            "best 67.00 (1 seed, fp32) against the cited 70.40 (best epoch): -3.40 points.") in text
    assert ("LDAM-DRW's recipe moves our CE by +2.00 points at the last epoch and +2.00 at the best (few classes "
            "+2.00).") in text
    assert "the LDAM-DRW control (a run" not in text  # no longer listed as not in yet


def test_report_is_deterministic_and_states_its_measured_inputs(tmp_path):
    results = synthetic_results(tmp_path)
    a = report.build(results, report.load_paper(), ["cifar10", "mnist"], notes=["x.tar.gz: quality about 75"])
    b = report.build(results, report.load_paper(), ["cifar10", "mnist"], notes=["x.tar.gz: quality about 75"])
    assert a == b and str(tmp_path) not in a["REPORT.md"]
    assert report.stated_inputs(a["REPORT.md"]) == (["cifar10", "mnist"], ["x.tar.gz: quality about 75"])


@pytest.mark.skipif(not report.SHARED_PAPER.is_file(), reason="no ../shared/paper/paper_results.csv here")
def test_shared_and_committed_paper_csv_give_the_same_report():
    located, notes = report.stated_inputs((ROOT / "results" / "REPORT.md").read_text())
    shared = report.build(ROOT / "results", report.load_paper(report.SHARED_PAPER), located, notes)
    committed = report.build(ROOT / "results", report.load_paper(report.COMMITTED_PAPER), located, notes)
    assert shared == committed


def test_committed_report_is_what_the_committed_records_give():
    """CI check: results/REPORT.md, its CSVs (REPORT_summary.csv included), the README's results-at-a-glance block
    and the figure never drift from the records. The PNG: it carries the hash of the points it plots, checked
    always; its bytes are checked where this matplotlib is the version that drew it (Agg, no date: deterministic)."""
    import matplotlib

    md = (ROOT / "results" / "REPORT.md").read_text()
    located, notes = report.stated_inputs(md)
    fresh = report.build(ROOT / "results", report.load_paper(), located, notes)
    assert set(fresh) == set(report.OUTPUTS) | {report.README_KEY}
    stale = "is out of date with the records: run `python -m amixup.report`"
    for name, text in fresh.items():
        if name == report.README_KEY:
            committed = report.readme_block_of((ROOT / "README.md").read_text())
            assert committed is not None, f"README.md has no {report.README_START} ... {report.README_END} markers"
            assert committed == text, f"README.md's results-at-a-glance block {stale}"
        elif name == report.FIGURE:
            committed = (ROOT / "results" / name).read_bytes()
            drawn = report.png_text(committed)
            assert drawn[report.FIGURE_DATA_KEY] == report.png_text(text)[report.FIGURE_DATA_KEY], f"results/{name} {stale}"
            if drawn.get("matplotlib") == matplotlib.__version__:
                assert committed == text, f"results/{name} {stale}"
        else:
            committed = (ROOT / "results" / name).read_text()
            assert committed == text, f"results/{name} {stale}"


@pytest.mark.skipif("shared/datasets" not in os.environ.get("AMIXUP_DATA_PATH", ""),
                    reason="the committed report states what is located with ../shared/datasets")
def test_committed_report_states_what_is_located_here():
    located, notes = report.stated_inputs((ROOT / "results" / "REPORT.md").read_text())
    assert located == report.located_bases()


def test_shorter_profiles_name_their_device(tmp_path):
    write(tmp_path, [make_record("table8", "cifar10", "ce", 0, model="vgg11", profile="quick", acc=75.0,
                                 device="cuda", device_name="NVIDIA H200"),
                     make_record("table8", "cifar10", "mixup", 0, model="vgg11", profile="quick", acc=62.0)])
    md = report.build(tmp_path, report.load_paper(), ["cifar10"], notes=[])["REPORT.md"]
    section = md.split("## Shorter profiles")[1].split("\n## ")[0]
    assert "| ours_mean | ours_std | ours_best_mean | ours_n | precision | device |" in section
    assert "| 8 | cifar10 |  | vgg11 | ce | acc_all | quick | 75 |  | 76 | 1 | fp32 | NVIDIA H200 |" in section
    assert "| 8 | cifar10 |  | vgg11 | mixup | acc_all | quick | 62 |  | 63 | 1 | fp32 | cpu |" in section


def test_readme_copy_line_says_what_the_ldam_drw_control_leaves_against_the_cited_ce(tmp_path):
    """The README's line on the copy ends with the control's best epoch against the CE figure Table 3 cites (70.40,
    best epoch, as LDAM-DRW reports), or says the control is not in yet; only a paper-profile control counts."""
    write(tmp_path, [make_record("table3", "cifar10_lt", "ce", 0, imb=100, acc=64.0)], folder="02_imbalanced_lt/paper/table3")
    write(tmp_path, [make_record("ldam_drw_control", "cifar10_lt", "ce", 0, imb=100, profile="quick")],
          folder="02_imbalanced_lt/quick/ldam_drw_control")
    block = report.build(tmp_path, report.load_paper(), [], notes=[], figure=False)[report.README_KEY]
    assert "The LDAM-DRW control (what is left against the cited CE) has no paper-profile record yet." in " ".join(
        block.split())
    write(tmp_path, [make_record("ldam_drw_control", "cifar10_lt", "ce", 0, imb=100, acc=66.0)],
          folder="02_imbalanced_lt/paper/ldam_drw_control")
    block = report.build(tmp_path, report.load_paper(), [], notes=[], figure=False)[report.README_KEY]
    # best = last + 1 (make_record): 67.00 - 70.40 = -3.40
    assert ("With LDAM-DRW's own ERM recipe on this copy, CE reaches 67.00 at its best epoch (last 66.00; 1 seed, fp32) "
            "against the 70.40 Table 3 cites for canonical CIFAR-10: -3.40 points left for the copy, the seed and "
            "library versions.") in " ".join(block.split())


def test_readme_copy_line_gives_the_paper_profile_and_leaves_shorter_profiles_to_the_report():
    """Once a re-encoded copy has paper-profile runs, the README's line gives only those (the quick profile's weaker
    evidence is named, in the report); before that it gives the shorter profiles and says the paper's is missing."""
    def row(profile, copy, diff, n):
        return {"profile": profile, "method": "ce", "copy": copy, "psnr_db": 28.7, "diff_acc_all": diff,
                "paired_seeds": n, "test": "paired t-test" if n >= 3 else "n too small", "p_acc_all": 0.01}
    quick = [row("quick", "original", math.nan, 0), row("quick", "q50", -1.5, 2)]
    line = report.copy_line(pd.DataFrame(quick))
    assert "quick profile (shortened runs: weak evidence): ce q50 (PSNR 28.7 dB) -1.50 (n 2); not yet measured at " \
           "the paper profile." in line
    line = report.copy_line(pd.DataFrame(quick + [row("paper", "q50", -1.9, 3)]))
    assert "paper profile (the full recipe): ce q50 (PSNR 28.7 dB) -1.90 (n 3, p 0.01) (quick profile: the report)." \
        in line and "-1.50" not in line and "not yet measured" not in line
