"""The notebooks run end to end under papermill (smoke profile) and write records, tables and figures."""

import json
from pathlib import Path

import pandas as pd
import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebook_01_smoke_writes_records_tables_and_figures(data_env, tmp_path):
    out = tmp_path / "results"
    papermill.execute_notebook(
        str(NOTEBOOKS / "01_motivation.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
        parameters={"profile": "smoke", "methods": ["ce", "am_mixup"], "seeds": [0, 1], "table1_seeds": [0],
                    "results_dir": str(out)},
        progress_bar=False, cwd=str(NOTEBOOKS),
    )
    table2 = sorted((out / "table2").glob("*.json"))
    assert len(table2) == 4  # 2 methods x 2 seeds
    assert len(list((out / "table1_coarse").glob("*.json"))) == len(list((out / "table1").glob("*.json"))) == 2
    rec = json.loads(table2[0].read_text())
    assert rec["config"]["profile"] == "smoke" and rec["config"]["dataset"] == "mini_cifar_lt"
    t2 = pd.read_csv(out / "table2.csv")
    assert set(t2["method"]) == {"ce", "am_mixup"} and set(t2["seeds"]) == {2}
    assert t2.loc[(t2.method == "am_mixup") & (t2.metric == "acc_all"), "paper"].item() == 66.9
    t1 = pd.read_csv(out / "table1.csv")
    assert set(t1["metric"]) == {"alignment", "acc_all"}
    # every method under each combination of pattern_choices (two by default, both with ReLU on the 2-D feature)
    pattern = pd.read_csv(out / "table2_pattern.csv")
    assert set(zip(pattern["augmentation"], pattern["method"])) == {
        (aug, m) for aug in (True, False) for m in ("ce", "am_mixup")} and set(pattern["feature_activation"]) == {"relu"}
    for name in ("fig_features_mini_cifar_lt", "fig_features_coarse_to_fine", "fig_features_mini_cifar_coarse",
                 "fig_lambda_trajectory"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    # a second execution trains nothing: it reads the records back
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    papermill.execute_notebook(
        str(NOTEBOOKS / "01_motivation.ipynb"), str(tmp_path / "01b.ipynb"), kernel_name="python3",
        parameters={"profile": "smoke", "methods": ["ce", "am_mixup"], "seeds": [0, 1], "table1_seeds": [0],
                    "results_dir": str(out)},
        progress_bar=False, cwd=str(NOTEBOOKS),
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
def test_notebook_parameters_cell_is_tagged_and_uses_the_shared_names(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    source = "".join(params[0]["source"])
    for name in ("profile", "methods", "seeds", "beta", "device", "results_dir"):
        assert f"\n{name} =" in "\n" + source
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "commit the notebook executed (nbval compares it)"


def test_notebook_03_smoke_pretrains_transfers_and_tabulates(data_env, tmp_path):
    out = tmp_path / "results"
    params = {"profile": "smoke", "methods": ["ce", "am_mixup"], "seeds": [0], "results_dir": str(out),
              "datasets": ["mnist_coarse", "cifar100_coarse"] if data_env["kind"] == "real" else ["cifar100_coarse"]}
    papermill.execute_notebook(str(NOTEBOOKS / "03_coarse_to_fine.ipynb"), str(tmp_path / "03.ipynb"),
                               kernel_name="python3", parameters=params, progress_bar=False, cwd=str(NOTEBOOKS))
    executed = (tmp_path / "03.ipynb").read_text()
    assert "data not found" in executed  # no CIFAR-100 copy here: reported per run, the notebook finishes
    if data_env["kind"] != "real":
        return
    fine = sorted((out / "table6").glob("*.json"))
    coarse = sorted((out / "table6_coarse").glob("*.json"))
    assert len(fine) == len(coarse) == 2
    rec = json.loads(fine[0].read_text())
    assert rec["config"]["model"] == "vit" and rec["config"]["freeze_encoder"] and rec["config"]["dataset"] == "mnist"
    assert rec["finetuned_from"].endswith(".pt") and len(rec["data"]["classes"]) == 10
    t6 = pd.read_csv(out / "table6.csv")
    assert set(t6["method"]) == {"ce", "am_mixup"} and set(t6["dataset"]) == {"mnist"}
    assert t6.loc[t6.method == "am_mixup", "paper"].item() == 98.2 and t6["alignment_mean"].notna().all()
    assert (out / "fig_table6.png").stat().st_size > 5_000
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    papermill.execute_notebook(str(NOTEBOOKS / "03_coarse_to_fine.ipynb"), str(tmp_path / "03b.ipynb"),
                               kernel_name="python3", parameters=params, progress_bar=False, cwd=str(NOTEBOOKS))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before  # the second execution trains nothing


def test_notebook_05_smoke_trains_what_has_data_and_reports_the_rest(data_env, tmp_path):
    out = tmp_path / "results"
    params = {"profile": "smoke", "methods": ["ce", "am_mixup"], "datasets": '["cifar10", "tiny_imagenet"]',
              "networks": ["vgg11"], "results_dir": str(out)}
    nb = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "05_benchmarks.ipynb"), str(nb), kernel_name="python3",
                               parameters=params, progress_bar=False, cwd=str(NOTEBOOKS))
    records = sorted((out / "table8").glob("*.json"))
    assert [p.name.split("-")[:4] for p in records] == [["table8", "cifar10", "vgg11", "am_mixup"],
                                                        ["table8", "cifar10", "vgg11", "ce"]]
    rec = json.loads(records[0].read_text())
    assert (rec["config"]["profile"], rec["config"]["beta"], rec["config"]["lr_schedule"]) == ("smoke", 0.67, "step")
    t8 = pd.read_csv(out / "table8.csv")
    assert len(t8) == 4 and set(t8["dataset"]) == {"cifar10", "tiny_imagenet"}
    ours = t8[t8["dataset"] == "cifar10"].set_index("method")
    assert ours.loc["ce", "paper"] == 91.77 and ours.loc["am_mixup", "paper"] == 92.68
    assert (ours["seeds"] == 1).all() and ours["ours"].between(0, 100).all()
    assert (t8.loc[t8["dataset"] == "tiny_imagenet", "seeds"] == 0).all()
    assert (out / "fig_lambda_trajectory.png").stat().st_size > 10_000
    text = "".join("".join(o.get("text", "")) for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", []))
    assert "2 of 4 runs have a record" in text
    assert "table8-tiny_imagenet-vgg11-ce-s0-" in text and "data not found: dataset 'tiny_imagenet' not found" in text
    # a second execution trains nothing: it reads the records back
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    papermill.execute_notebook(str(NOTEBOOKS / "05_benchmarks.ipynb"), str(tmp_path / "05b.ipynb"),
                               kernel_name="python3", parameters={**params, "train_missing": False},
                               progress_bar=False, cwd=str(NOTEBOOKS))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before


def test_notebook_05_parameters_and_committed_smoke_outputs():
    nb = json.loads((NOTEBOOKS / "05_benchmarks.ipynb").read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    source = "\n" + "".join(params[0]["source"])
    for name in ("profile", "methods", "seeds", "beta", "device", "results_dir", "train_missing", "datasets",
                 "networks", "precision", "note"):
        assert f"\n{name} =" in source
    assert all(c["execution_count"] is not None for c in nb["cells"] if c["cell_type"] == "code")
    # CI's smoke outputs: VGG11 on CIFAR-10 for the four methods, CIFAR-100 / Tiny-ImageNet reported missing
    assert nb["metadata"]["papermill"]["parameters"] == {"networks": '["vgg11"]'}
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "4 of 12 runs have a record" in text and "data not found: dataset 'cifar100' not found" in text


def test_notebook_04_paper_profile_tabulates_existing_beta_sweep_records_and_trains_nothing(data_env, tmp_path):
    from amixup import experiments
    from amixup.engine import record_path, train

    out = tmp_path / "results"
    # a paper-profile record of the sweep (beta 0.34, seed 0), made from a smoke run: only its config is the paper's
    [smoke] = experiments.beta_sweep_configs("smoke", [0.34], [0], train_subset=400, test_subset=200)
    rec = train(smoke, tmp_path / "smoke", progress=False)
    paper = experiments.beta_sweep_configs("paper", [0.34], [0])[0]
    rec = {**rec, "run_id": paper.run_id(), "config": paper.to_dict()}
    record_path(paper, out).parent.mkdir(parents=True)
    record_path(paper, out).write_text(json.dumps(rec))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    nb = tmp_path / "04.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "04_ablation.ipynb"), str(nb), kernel_name="python3",
                               parameters={"profile": "paper", "train_missing": False, "results_dir": str(out)},
                               progress_bar=False, cwd=str(NOTEBOOKS))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before  # nothing trained
    text = "".join("".join(o.get("text", "")) for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", []))
    assert "beta sweep: 16 runs (beta [0.0, 0.1, 0.2, 0.34, 0.5, 0.67, 1.0, 1.5], seeds [0, 1]), 100 epochs" in text
    assert "1 of 16 beta-sweep runs have a record" in text and "beta_sweep-mini_cifar_lt-cnn_vis2d-am_mixup-s1-" in text
    assert "not started" in text
    table = pd.read_csv(out / "beta_sweep.csv")
    assert table["beta"].tolist() == [0.34] and table["acc_all_mean"].item() == rec["metrics"]["last"]["acc_all"]
    assert (out / "fig_beta_accuracy.png").stat().st_size > 5_000 and (out / "fig_beta_lambda.png").stat().st_size > 5_000


COMMITTED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted(
    (NOTEBOOKS.parent / "results").glob("*/*/[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(NOTEBOOKS.parent)))
def test_committed_notebooks_carry_no_stderr_output(path):
    """What a reader opens in JupyterLab: no progress-bar fragments or warnings (re-execute with
    AMIXUP_PROGRESS=off, docs/testing.md)."""
    nb = json.loads(path.read_text())
    stderr = [(i, "".join(o.get("text", ""))[:80]) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{len(stderr)} stderr outputs, first in cell {stderr[0][0]}: {stderr[0][1]!r}"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
def test_committed_notebooks_say_their_profile_first(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    assert "outputs stored in `notebooks/` come from the **smoke** profile" in "".join(nb["cells"][0]["source"])
    shown = [o["data"]["text/markdown"] for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
             if "text/markdown" in o.get("data", {})]
    assert shown and "These outputs come from the smoke profile" in "".join(shown[0])


def test_a_committed_notebook_renders_as_html_with_tables(tmp_path):
    """The headless render a reader gets (nbconvert's HTML, as JupyterLab shows it): tables as HTML tables, no
    stderr block."""
    import nbconvert
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "02_imbalanced_lt.ipynb", 4)
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    (tmp_path / "02.html").write_text(html)
    assert html.count("<table") >= 1 and "dataframe" in html
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
