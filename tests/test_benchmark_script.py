"""benchmarks/loader_vs_engine.py runs end to end on a few hundred images and writes its JSON."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loader_vs_engine.py"


def load_script():
    spec = importlib.util.spec_from_file_location("loader_vs_engine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_benchmark_writes_consistent_json(data_env, tmp_path, capsys):
    bench = load_script()
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
    bench = load_script()
    with pytest.raises(SystemExit):
        bench.main(["--method", "cutmix"])
    err = capsys.readouterr().err
    assert "cutmix" in err and all(m in err for m in ("ce", "mixup", "manifold_mixup", "am_mixup"))
