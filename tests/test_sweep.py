import pytest

from amixup import engine, sweep

SMOKE = dict(train_subset=200, test_subset=100, epochs=1, experiment="sweep-test")


def test_expand_grid_makes_every_combination_and_seed():
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce", "am_mixup"], "beta": [0.34, 0.5]},
                                seeds=(0, 1), **SMOKE)
    assert len(configs) == 8 and len({c.run_id() for c in configs}) == 8
    assert [(c.method, c.beta, c.seed) for c in configs[:3]] == [("ce", 0.34, 0), ("ce", 0.34, 1), ("ce", 0.5, 0)]
    with pytest.raises(ValueError, match="method must be one of"):
        sweep.expand_grid("motivation", "smoke", {"method": ["ce", "cutmix"]}, **SMOKE)


def test_sweep_runs_in_parallel_processes_and_skips_finished_runs_on_restart(data_env, tmp_path, monkeypatch):
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce", "mixup"]}, seeds=(0,), **SMOKE)
    engine.train(configs[0], tmp_path, progress=False)  # one run already finished
    assert sweep.pending(configs, tmp_path) == configs[1:]
    records = sweep.run_sweep(configs, tmp_path, workers=2, progress=False)
    assert [r["run_id"] for r in records] == [c.run_id() for c in configs]
    assert sweep.pending(configs, tmp_path) == []
    monkeypatch.setattr(engine, "load_data", lambda *_: pytest.fail("a finished run was retrained"))
    assert sweep.run_sweep(configs, tmp_path, workers=1, progress=False) == records


def test_a_failing_worker_is_reported(data_env, tmp_path):
    config = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, **SMOKE)[0]
    bad = config.__class__.from_dict({**config.to_dict(), "device": "cuda:7"})
    with pytest.raises(RuntimeError, match="runs failed"):
        sweep.run_sweep([bad, bad.__class__.from_dict({**bad.to_dict(), "seed": 1})], tmp_path, workers=2,
                        progress=False)


def test_submitit_submission_trains_the_pending_runs_and_skips_them_after(data_env, tmp_path):
    # the same code path as a SLURM cluster, with submitit's in-process "debug" executor
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce", "am_mixup"]}, seeds=(0,), **SMOKE)
    jobs = sweep.submit_slurm(configs, tmp_path / "results", folder=tmp_path / "logs", cluster="debug",
                              timeout_min=10)
    assert len(jobs) == 2
    records = [job.result() for job in jobs]
    assert sorted(r["run_id"] for r in records) == sorted(c.run_id() for c in configs)
    assert sweep.pending(configs, tmp_path / "results") == []
    assert sweep.submit_slurm(configs, tmp_path / "results", folder=tmp_path / "logs", cluster="debug") == []
