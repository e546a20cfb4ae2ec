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
    assert set(saved["phases"]) == {"eager", "static", "concurrent_2"}
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
    assert [r["step"] for r in conc["runs"]] == ["static_eager"] * 2
    targets = saved["targets"]
    assert targets["run_200_epochs_s"]["target_max"] == 30 and targets["runs_per_hour"]["target_min"] == 240
    assert isinstance(targets["run_200_epochs_s"]["met"], bool) and isinstance(targets["runs_per_hour"]["met"], bool)
    assert "projected_200_s" in saved["formulas"]
    assert "target: one 200-epoch run <= 30 s" in capsys.readouterr().out


def test_gpu_throughput_records_a_phase_that_runs_out_of_time_and_goes_on(data_env, tmp_path):
    bench = load_benchmark("gpu_throughput")
    out = tmp_path / "gpu_throughput.json"
    result = bench.main(["--device", "cpu", "--tiny", "--out", str(out), "--no-eager", "--concurrent", "none",
                         "--phase-timeout", "1", "--bf16"])
    assert [(p["name"], p["status"]) for p in result["phases"].values()] == [("static", "timeout"),
                                                                             ("static_bf16", "timeout")]
    assert result["targets"]["run_200_epochs_s"]["met"] is None
    assert json.loads(out.read_text())["phases"]["static"]["timeout_s"] == 1


def test_gpu_throughput_plans_the_static_and_concurrent_phases():
    bench = load_benchmark("gpu_throughput")
    args = bench.build_parser().parse_args(["--concurrent", "8", "--no-eager"])
    phases = bench.plan_phases(args, "cpu", 10, 10, 10, [8])
    assert [p["name"] for p in phases] == ["static", "concurrent_8"]
    for phase in phases:
        assert bench.make_run_config(phase, 0).step_mode == "static"
    for removed in (["--packed", "2"], ["--compile"]):  # packing and compile_step left the engine (benchmarks/README.md)
        with pytest.raises(SystemExit):
            bench.build_parser().parse_args(removed)
    planned = r"--only: packed_99 not among the planned phases \['static', 'concurrent_8'\]"
    with pytest.raises(ValueError, match=planned):
        bench.select_phases(phases, "static,packed_99")
