"""benchmarks/loader_vs_engine.py runs end to end on a few hundred images and writes its JSON."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The script benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_benchmark_writes_consistent_json(data_env, tmp_path, capsys):
    bench = load_benchmark("loader_vs_engine")
    out = tmp_path / "bench.json"
    result = bench.main(["--epochs", "1", "--warmup", "0", "--train-subset", "256", "--test-subset", "200",
                         "--workers", "0", "--device", "cpu", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["epochs"] == 1 and saved["workers"] == 0 and saved["device"] == "cpu"
    assert saved["method"] == saved["canonical_method"] == "ce"
    assert 0 < saved["train_images"] <= 256
    for side in ("engine", "canonical"):
        assert saved[side]["images_per_s"] > 0 and saved[side]["seconds"] > 0
        assert saved[side]["images_per_s"] == pytest.approx(saved["train_images"] / saved[side]["seconds"])
        assert 0 <= saved[side]["test_acc"] <= 100
    assert saved["ratio"] == pytest.approx(saved["engine"]["images_per_s"] / saved["canonical"]["images_per_s"])
    assert "ratio engine/canonical" in capsys.readouterr().out


def test_unknown_method_is_rejected_with_the_allowed_values(capsys):
    bench = load_benchmark("loader_vs_engine")
    with pytest.raises(SystemExit):
        bench.main(["--method", "cutmix"])
    err = capsys.readouterr().err
    assert "cutmix" in err and all(m in err for m in ("ce", "mixup", "manifold_mixup", "am_mixup"))


# --------------------------------------------------------------------------- benchmarks/gpu_throughput.py

def test_gpu_throughput_tiny_cpu_run_writes_every_phase(data_env, tmp_path, capsys):
    bench = load_benchmark("gpu_throughput")
    out = tmp_path / "gpu_throughput.json"
    before = set((bench.ROOT / "results").rglob("*"))
    result = bench.main(["--device", "cpu", "--tiny", "--out", str(out), "--deadline", "300"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert set((bench.ROOT / "results").rglob("*")) == before  # runs go to temporary folders, never results/
    assert saved["device"] == "cpu" and saved["device_name"] and saved["torch"] and "commit" in saved
    assert saved["arguments"]["epochs"] == 2 and saved["arguments"]["concurrent"] == [2]
    assert 0 < saved["train_images"] <= 256
    recipe = saved["recipe"]
    assert (recipe["dataset"], recipe["imb_factor"], recipe["method"], recipe["model"]) == \
        ("cifar10_lt", 100, "am_mixup", "resnet32")
    assert recipe["milestones"] == [160, 180]  # the paper's, not rescaled to 2 epochs
    assert saved["arguments"]["packed"] == [[2, 1]]
    assert set(saved["phases"]) == {"eager", "static", "concurrent_2", "packed_2"}
    for name, phase in saved["phases"].items():
        assert phase["status"] == "ok", phase.get("stderr_tail")
        assert phase["wall_s"] > 0 and phase["first_epoch_s"] > 0 and phase["steady_epoch_s"] > 0
        assert phase["runs_per_hour"] > 0 and 0 <= phase["test_acc"] <= 100
        assert phase["config"]["milestones"] == [160, 180]
    eager, static, conc = (saved["phases"][n] for n in ("eager", "static", "concurrent_2"))
    assert eager["config"]["step_mode"] == "eager" and static["config"]["step_mode"] == "static"
    assert static["projected_200_s"] == pytest.approx(
        static["first_epoch_s"] + 199 * static["steady_epoch_s"] + 200 * static["checkpoint_s"])
    assert static["projected_speedup_vs_eager"] == pytest.approx(eager["projected_200_s"] / static["projected_200_s"])
    assert static["first_loss_abs_diff_vs_eager"] >= 0
    assert conc["k"] == 2 and sorted(r["seed"] for r in conc["runs"]) == [0, 1]
    assert conc["runs_per_hour"] == pytest.approx(conc["epochs_done"] / conc["sweep_wall_s"] * 3600 / 200)
    assert conc["mps"] is False  # a CPU: no MPS
    packed = saved["phases"]["packed_2"]
    assert (packed["k"], packed["pack"], packed["processes"]) == (2, 2, 1)
    assert [r["step"] for r in packed["runs"]] == ["packed_static_eager"] * 2
    assert [r["step"] for r in conc["runs"]] == ["static_eager"] * 2
    assert packed["runs_per_hour_projected"] == pytest.approx(2 * 3600 / packed["projected_200_s"])
    targets = saved["targets"]
    assert targets["run_200_epochs_s"]["target_max"] == 30 and targets["runs_per_hour"]["target_min"] == 240
    assert isinstance(targets["run_200_epochs_s"]["met"], bool) and isinstance(targets["runs_per_hour"]["met"], bool)
    assert "projected_200_s" in saved["formulas"]
    assert "target: one 200-epoch run <= 30 s" in capsys.readouterr().out


def test_gpu_throughput_records_a_phase_that_runs_out_of_time_and_goes_on(data_env, tmp_path):
    bench = load_benchmark("gpu_throughput")
    out = tmp_path / "gpu_throughput.json"
    result = bench.main(["--device", "cpu", "--tiny", "--out", str(out), "--no-eager", "--concurrent", "none", "--packed", "none",
                         "--phase-timeout", "1", "--bf16"])
    assert [(p["name"], p["status"]) for p in result["phases"].values()] == [("static", "timeout"),
                                                                             ("static_bf16", "timeout")]
    assert result["targets"]["run_200_epochs_s"]["met"] is None
    assert json.loads(out.read_text())["phases"]["static"]["timeout_s"] == 1


def test_a_packed_phase_leaves_its_finished_epochs_for_a_time_limit_to_keep(data_env, tmp_path):
    """A one-process packed phase writes a progress line per run and epoch, so a phase cut by its time limit
    still gives its figures (the one GPU call must not come back empty for its slowest candidate)."""
    bench = load_benchmark("gpu_throughput")
    phase = dict(name="packed_2", kind="concurrent", k=2, pack=2, workers=1, epochs=2, device="cpu",
                 train_subset=128, test_subset=64, seed=0, overrides={"step_mode": "static"}, mps="off",
                 results_dir=str(tmp_path / "runs"), progress=str(tmp_path / "progress.jsonl"))
    bench.run_phase(phase, tmp_path / "raw.json")
    lines = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert sorted((line["run"], line["epoch"]) for line in lines) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    cut = bench.summarise(phase, bench._progress_runs(tmp_path / "progress.jsonl"), wall=99.0)  # as after a timeout
    done = bench.summarise(phase, json.loads((tmp_path / "raw.json").read_text()), wall=99.0)
    assert cut["epochs_done"] == done["epochs_done"] == 4
    assert cut["steady_epoch_s"] == pytest.approx(done["steady_epoch_s"])
    assert cut["sweep_wall_s"] == pytest.approx(max(line["wall"] for line in lines)) and cut["runs_per_hour"] > 0


# --------------------------------------------------------------------------- benchmarks/packing_step.py

def test_packing_step_benchmark_times_alone_and_packed_steps(tmp_path, capsys):
    bench = load_benchmark("packing_step")
    out = tmp_path / "packing.json"
    result = bench.main(["--device", "cpu", "--models", "cnn_vis2d", "--packs", "1,2", "--steps", "2",
                         "--warmup", "1", "--streams", "--eval-images", "40", "--data-batches", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(r["model"], r["packs"], r["step"]) for r in result["rows"]] == [("cnn_vis2d", 1, "static_eager"),
                                                                            ("cnn_vis2d", 2, "static_eager")]
    for row in result["rows"]:
        assert row["alone_ms"] > 0 and row["packed_ms"] > 0
        assert row["speedup"] == pytest.approx(row["alone_ms"] / row["packed_ms"])
        # StreamSteps trains the same runs with the same draws: on a CPU (one after the other) the very same weights
        assert row["streams_ms"] > 0 and row["streams_max_rel_diff"] == 0.0
        assert row["checkpoint_ms"] > 0 and row["eval_alone_ms"] > 0 and row["eval_packed_ms"] > 0
    data = result["data_rows"]  # K loaders against pack_batches: the K batches' operators, per step
    assert [(r["packs"], r["pass_batches"]) for r in data] == [(1, 3), (2, 3)]
    for suffix in ("", "_per_batch"):
        assert data[1][f"alone{suffix}_ops"] == pytest.approx(2 * data[0][f"alone{suffix}_ops"])
        assert data[1][f"packed{suffix}_ops"] < data[1][f"alone{suffix}_ops"]
    assert all(r["packed_ops"] <= r["packed_per_batch_ops"] and r["chunk_bytes"] > 0 for r in data)  # in chunks
    one, two = result["rows"]
    assert two["alone_ops"] == 2 * one["alone_ops"]  # two runs alone: twice the operators of one
    assert one["packed_ops"] <= two["packed_ops"] < two["alone_ops"]  # packed: about one run's, whatever K
    assert result["device_name"] and "commit" in result
    with pytest.raises(SystemExit):
        bench.main(["--models", "vit", "--out", str(out)])
    assert "is a _PatchEmbedding" in capsys.readouterr().err


def test_the_prepared_packed_gpu_session_runs_its_cpu_path(data_env, tmp_path):
    """benchmarks/gpu_session_packed.sh with TINY=1, both parts: what two GPU calls run, on the CPU, end to end."""
    import os
    import subprocess
    import sys
    import tarfile

    root = BENCHMARKS.parent

    def session(part):
        out = tmp_path / f"out{part}"
        env = {**os.environ, "TINY": "1", "PY": sys.executable, "COMMIT": "0" * 40, "DEADLINE": "400", "PART": part}
        done = subprocess.run(["bash", "benchmarks/gpu_session_packed.sh", str(out)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not (out / "logs").exists()  # the logs come back as one archive (a device call returns <= 8 files)
        with tarfile.open(out / "logs.tgz") as archive:
            return out, archive.extractfile("logs/phases.txt").read().decode()

    out, phases = session("1")
    assert all(f"{name} rc=0" in phases for name in ("cache", "check", "packing_step", "packing_step_streams",
                                                      "packing_step_contiguous", "packing_step_cudnn_benchmark",
                                                      "gpu_throughput")), phases
    check = json.loads((out / "packed_check.json").read_text())
    assert [run["step"] for run in check["runs"]] == [["static_eager", "packed_static_eager"]] * 2
    for run in check["runs"]:  # the same draws: the same lambda, losses equal to float rounding
        assert [h["lambda"] for h in run["alone"]] == [h["lambda"] for h in run["packed"]]
        assert run["alone"][0]["train_loss"] == pytest.approx(run["packed"][0]["train_loss"], rel=1e-4)
    step = json.loads((out / "packing_step.json").read_text())
    assert len(step["rows"]) == 2 and [r["packs"] for r in step["data_rows"]] == [1, 2]
    contiguous = json.loads((out / "packing_step_contiguous.json").read_text())
    assert contiguous["packed_layout"] == "contiguous" and contiguous["data_rows"] == []
    assert json.loads((out / "packing_step_cudnn_benchmark.json").read_text())["cudnn_benchmark"] is True
    assert json.loads((out / "packing_step_streams.json").read_text())["rows"][0]["streams_max_rel_diff"] == 0.0
    bench = json.loads((out / "gpu_throughput.json").read_text())
    assert bench["commit"] == "0" * 40
    assert {name: p["status"] for name, p in bench["phases"].items()} == {"static": "ok", "packed_2": "ok",
                                                                          "packed_2x2": "ok"}
    assert bench["phases"]["packed_2x2"]["k"] == 4
    with tarfile.open(out / "logs.tgz") as archive:
        assert "logs/gpu_throughput.txt" in archive.getnames()
    assert len(list(out.iterdir())) <= 8

    out, phases = session("2")
    assert all(f"{name} rc=0" in phases for name in ("drawn_layers_check", "gpu_throughput_compiled",
                                                      "loader_vs_engine")), phases
    drawn = json.loads((out / "drawn_layers_check.json").read_text())["runs"]
    assert [run.get("step", run.get("error")) for run in drawn] == ["eager", "static_eager"]
    assert list(json.loads((out / "gpu_throughput_compiled.json").read_text())["phases"]) == ["static"]
    assert (out / "loader_vs_engine.json").exists() and (out / "logs.tgz").exists()


def test_gpu_throughput_plans_compiled_twins_of_the_static_and_packed_phases():
    bench = load_benchmark("gpu_throughput")
    args = bench.build_parser().parse_args(["--packed", "16,8x2", "--compile", "--concurrent", "8", "--no-eager"])
    phases = bench.plan_phases(args, "cpu", 10, 10, 10, [8])
    assert [p["name"] for p in phases] == ["static", "concurrent_8", "packed_16", "packed_8x2",  # compiled twins last
                                           "static_compiled", "packed_16_compiled", "packed_8x2_compiled"]
    by_name = {p["name"]: p for p in phases}
    assert by_name["packed_8x2_compiled"]["k"] == 16 and by_name["packed_8x2_compiled"]["workers"] == 2
    for phase in phases:
        config = bench.make_run_config(phase, 0)
        assert config.compile_step is phase["name"].endswith("_compiled")
        assert config.step_mode == "static"
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--packed", "8y2"])
    chosen = bench.select_phases(phases, "packed_16_compiled,static")
    assert [p["name"] for p in chosen] == ["static", "packed_16_compiled"]  # the planned order
    planned = r"--only: packed_99 not among the planned phases \['static', 'concurrent_8', 'packed_16'"
    with pytest.raises(ValueError, match=planned):
        bench.select_phases(phases, "static,packed_99")
