"""The reproduction report: cell mapping, missing reasons, Welch and paired tests, claims, data copy,
and the committed results/REPORT.md being what the committed records give."""

import json
import math
import os
from pathlib import Path

import numpy as np
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
    assert report.welch(60, math.nan, 1, 71.9, 0.65, 20)[1] == "no test: one seed of ours"


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
    assert ("| paper_n | paper_epoch | ours_mean | ours_std | ours_best_mean | ours_n | diff | diff_best | p_welch |"
            in files["REPORT.md"])
    assert ("| cifar10_lt | 100 | resnet32 | ce |  | [10] MiSLAS | acc_all | 70.4 |  |  | best over epochs ([10] MiSLAS) "
            "| 65 | 1 | 66 | 3 | -5.4 | -4.4 |  | no test: paper gives no std |") in files["REPORT.md"]
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

CLAIM = [("AM-mixup has the best Few accuracy on Mini-CIFAR-LT", 2, "mini_cifar_lt", None, "acc_few",
          "am_mixup", ("ce", "mixup"))]


def claim_verdict(tmp_path, few):
    recs = [make_record("table2", "mini_cifar_lt", m, s, model="cnn_vis2d", few=v)
            for m, values in few.items() for s, v in enumerate(values)]
    runs = report.runs_frame([r for _, r in report.read_run_records(write(tmp_path, recs))])
    return report.claims(runs, ["cifar10"], CLAIM).iloc[0]


def test_claim_supported_on_consistent_paired_seeds(tmp_path):
    row = claim_verdict(tmp_path, {"am_mixup": [37.0, 36.0, 38.5], "ce": [2.0, 2.5, 3.0], "mixup": [20.0, 21.0, 22.5]})
    assert row["verdict"] == "supported"
    p = stats.ttest_rel([37.0, 36.0, 38.5], [20.0, 21.0, 22.5]).pvalue
    assert f"vs mixup 21.17: +16.00 (3 paired seeds, p {p:.3g})" in row["evidence"]


def test_claim_direction_only_contradicted_and_untestable(tmp_path):
    row = claim_verdict(tmp_path / "a", {"am_mixup": [30.0, 25.0, 33.0], "ce": [29.0, 27.0, 30.0],
                                         "mixup": [1.0, 2.0, 3.0]})
    assert row["verdict"] == "direction agrees, not significant"
    row = claim_verdict(tmp_path / "b", {"am_mixup": [10.0, 11.0, 12.5], "ce": [20.0, 21.0, 22.0],
                                         "mixup": [1.0, 2.0, 3.0]})
    assert row["verdict"] == "contradicted"
    row = claim_verdict(tmp_path / "c", {"am_mixup": [10.0], "ce": [20.0]})
    assert row["verdict"] == "not testable" and "mixup: not run yet" in row["evidence"]


def test_one_paired_seed_or_no_spread_is_no_test(tmp_path):
    row = claim_verdict(tmp_path / "a", {"am_mixup": [40.0], "ce": [20.0], "mixup": [30.0]})
    assert row["verdict"] == "direction agrees; one seed: no test" and "(1 paired seed, p n/a)" in row["evidence"]
    row = claim_verdict(tmp_path / "b", {"am_mixup": [10.0], "ce": [20.0], "mixup": [5.0]})
    assert row["verdict"] == "direction disagrees; one seed: no test"
    row = claim_verdict(tmp_path / "c", {"am_mixup": [40.0, 41.0], "ce": [30.0, 31.0], "mixup": [1.0, 2.0]})
    assert row["verdict"] == "direction agrees; paired differences without spread: no test"


def test_claims_say_what_the_paper_says_and_where_its_table_disagrees(tmp_path):
    paper = report.load_paper()
    # §4.3: "AM-mixup achieves the second-best test accuracy, and even outperformed all others on MNIST"
    table6 = {(c[2], c[5]): set(c[6]) for c in report.CLAIMS if c[1] == 6}
    assert table6 == {("mnist", "am_mixup"): {"ce", "mixup"}, ("cifar10", "ce"): {"mixup", "am_mixup"},
                      ("cifar10", "am_mixup"): {"mixup"}, ("cifar100", "ce"): {"mixup", "am_mixup"},
                      ("cifar100", "am_mixup"): {"mixup"}}
    numbers, note = report.paper_check(paper, 6, "mnist", None, "acc_all", "am_mixup", ("ce", "mixup"))
    assert numbers == "Table 6: am_mixup 98.2, ce 98.12, mixup 97.07; cited: ce 98.7 ([5] Perfectly balanced)"
    assert note == "a cited row of the paper's Table 6 is above am_mixup 98.2: ce 98.7 ([5] Perfectly balanced)"
    # a claim the paper's own table contradicts is flagged (the old MNIST claim "CE transfers best" would be)
    assert "contradicts" in report.paper_check(paper, 6, "mnist", None, "acc_all", "ce", ("mixup", "am_mixup"))[1]
    # every claim agrees with the paper's own table except the one its text makes against Table 3
    notes = {c[0]: report.paper_check(paper, *c[1:])[1] for c in report.CLAIMS}
    imb10 = "AM-mixup beats mixup and manifold mixup overall on CIFAR-10-LT (imbalance 10)"
    assert {k for k, v in notes.items() if "contradicts" in v} == {imb10}
    assert notes[imb10] == ("the paper's own Table 3 contradicts this: am_mixup 88.19 is not above mixup 89.08, "
                            "manifold_mixup 88.71")
    # the cited MiSLAS numbers are labelled best-over-epochs where they are shown
    assert "mixup 87.1 (best over epochs ([10] MiSLAS))" in report.paper_check(paper, *report.CLAIMS[6][1:])[0]
    files = report.build(synthetic_results(tmp_path), paper, ["cifar10", "mnist"], notes=[])
    claims_csv = files["REPORT_claims.csv"]
    assert claims_csv.splitlines()[0] == "claim,table,metric,paper_numbers,paper_note,evidence,verdict"
    assert f"{imb10},3,acc_all," in claims_csv and notes[imb10] in claims_csv
    assert "CE transfers best in coarse-to-fine (MNIST" not in claims_csv + files["REPORT.md"]
    assert "| AM-mixup transfers best in coarse-to-fine (MNIST, ViT) | 6 | acc_all |" in files["REPORT.md"]


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
    files = report.build(tmp_path, paper, ["cifar10"], notes=[])
    md = files["REPORT.md"]
    assert "Not run yet" not in md and "| paper | cifar10_lt | 100 | ce | q50 | 3 | 0; 1; 2 |" in md
    # the cost of the extra step beside the gap to the paper (Table 3 CE, paper profile: 64 - 71.86)
    assert "| paper | ce | q50 | 3 | -3.1667 |" in md and "| -7.86 | -16.92 |" in md
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
    assert "| data_copy |" not in md  # not among the runs compared with (or left out of) the paper


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
    """CI check: results/REPORT.md and its CSVs never drift from the records."""
    md = (ROOT / "results" / "REPORT.md").read_text()
    located, notes = report.stated_inputs(md)
    fresh = report.build(ROOT / "results", report.load_paper(), located, notes)
    for name, text in fresh.items():
        committed = (ROOT / "results" / name).read_text()
        assert committed == text, f"results/{name} is out of date with the records: run `python -m amixup.report`"


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
