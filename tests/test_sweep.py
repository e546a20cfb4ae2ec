from pathlib import Path

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


def test_the_sweep_bar_counts_epochs_of_finished_resumed_and_new_runs_across_worker_processes(data_env, tmp_path,
                                                                                             capsys):
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, seeds=(0, 1, 2),
                                **{**SMOKE, "epochs": 2, "checkpoint_every": 1})
    engine.train(configs[0], tmp_path, progress=False)  # finished: 2 epochs

    class Stop(Exception):
        pass

    def stop(epoch, entry):
        raise Stop

    with pytest.raises(Stop):  # interrupted after its first epoch's checkpoint
        engine.train(configs[1], tmp_path, progress=False, on_epoch_end=stop)
    assert engine.epochs_done(configs[1], tmp_path) == 1 and engine.epochs_done(configs[2], tmp_path) == 0
    capsys.readouterr()
    sweep.run_sweep(configs, tmp_path, workers=2, progress=True)
    shown = [part.strip() for part in capsys.readouterr().err.replace("\n", "\r").split("\r") if part.strip()]
    assert shown[0].startswith("sweep: 1/3 runs") and " 3/6 " in shown[0], shown  # trained before: 2 + 1 epochs
    assert shown[-1].startswith("sweep: 3/3 runs: 100%") and " 6/6 " in shown[-1], shown
    assert any(line.startswith("sweep: 1/3 runs") and (" 4/6 " in line or " 5/6 " in line)
               for line in shown), shown  # epochs the workers reported while their runs trained


def test_a_worker_reports_its_epochs_and_keeps_a_long_stderr_and_none_starts_once_the_sweep_stops(tmp_path):
    import os
    import sys

    script = ("import sys\nsys.stderr.write('x' * 200000)\n"
              f"print('{sweep.EPOCH_LINE} run-a 1', flush=True)\nprint('other output')\n"
              f"print('{sweep.EPOCH_LINE} run-a 2', flush=True)\nsys.exit(3)\n")
    seen, workers = [], sweep._Workers()
    returncode, stderr = workers.run([sys.executable, "-c", script], dict(os.environ),
                                     lambda run_id, epoch: seen.append((run_id, epoch)))
    assert (returncode, len(stderr), seen) == (3, 200000, [("run-a", 1), ("run-a", 2)])
    workers.stop()  # (a Ctrl-C) then a thread that had taken a run before it: its worker never starts
    started = tmp_path / "started"
    assert workers.run([sys.executable, "-c", f"open({str(started)!r}, 'w')"], dict(os.environ),
                       lambda *_: None) == (None, "")
    assert not started.exists()


def test_a_failing_worker_is_reported(data_env, tmp_path):
    config = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, **SMOKE)[0]
    bad = config.__class__.from_dict({**config.to_dict(), "device": "cuda:7"})
    with pytest.raises(RuntimeError, match=r"runs failed[\s\S]*its output: .*logs/.*\.log"):
        sweep.run_sweep([bad, bad.__class__.from_dict({**bad.to_dict(), "seed": 1})], tmp_path, workers=2,
                        mps="off", progress=False)  # (two runs on one GPU: MPS is tested below)


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


# --------------------------------------------------------------------------- CUDA MPS (a fake control binary)

FAKE_MPS_CONTROL = """#!/bin/sh
# a stand-in for nvidia-cuda-mps-control: logs every call with the MPS variables; the "daemon" is a
# file in the pipe folder ("-d" creates it, "quit" removes it, "get_server_list" fails without it)
pipe="${CUDA_MPS_PIPE_DIRECTORY:-/nonexistent}"
if [ "$1" = "-d" ]; then
    echo "start $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY" >> "%(log)s"
    if [ -z "$FAKE_MPS_NEVER_UP" ]; then touch "$pipe/daemon"; fi
    exit 0
fi
read command
echo "$command $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY" >> "%(log)s"
if [ ! -f "$pipe/daemon" ]; then echo "Cannot find MPS control daemon process" >&2; exit 1; fi
if [ "$command" = "quit" ]; then rm "$pipe/daemon"; fi
exit 0
"""


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    """A fake nvidia-cuda-mps-control first on PATH, and worker processes that log their MPS variables;
    returns a function reading the log as (call, pipe folder, log folder) tuples."""
    import os
    import stat

    log = tmp_path / "mps-calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / sweep.MPS_CONTROL
    script.write_text(FAKE_MPS_CONTROL % {"log": log})
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    _isolate_mps(monkeypatch, tmp_path)
    _log_worker_env(monkeypatch, log)

    def calls():
        lines = log.read_text().splitlines() if log.exists() else []
        return [tuple((line.split(" ") + ["", ""])[:3]) for line in lines]
    return calls


def _isolate_mps(monkeypatch, tmp_path):
    for name in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "FAKE_MPS_NEVER_UP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sweep, "MPS_DEFAULT_PIPE_DIRECTORY", str(tmp_path / "no-default-daemon"))


def _log_worker_env(monkeypatch, log):
    real = sweep._worker_command

    def command(config, results_dir, threads):  # log the worker's MPS variables, then run the real worker
        return ["/bin/sh", "-c", f'echo "worker $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY" >> "{log}"; '
                'exec "$@"', "sh", *real(config, results_dir, threads)]
    monkeypatch.setattr(sweep, "_worker_command", command)


def _smoke_pair(device="cpu"):
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, seeds=(0, 1), **SMOKE)
    return [c.__class__.from_dict({**c.to_dict(), "device": device}) for c in configs]


def test_mps_daemon_is_started_checked_given_to_the_workers_and_stopped_when_runs_fail(data_env, tmp_path,
                                                                                      fake_mps):
    # two runs on one GPU: "auto" wants MPS; on this CPU-only machine the runs then fail ("cuda:7")
    with pytest.raises(RuntimeError, match="2 of 2 runs failed"):
        sweep.run_sweep(_smoke_pair(), tmp_path / "results", workers=2, devices=["cuda:7"], progress=False)
    calls = fake_mps()
    assert [c[0] for c in calls] == ["start", "get_server_list", "worker", "worker", "quit"]
    pipe, log = calls[0][1:]
    assert pipe and log and pipe != log
    assert all(c[1:] == (pipe, log) for c in calls)  # the same folders for the daemon, the check and the workers
    assert not Path(pipe).exists()  # the temporary folders are removed with the daemon


def test_mps_on_trains_the_runs_as_usual_and_honours_the_given_folders(data_env, tmp_path, fake_mps, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "pipe"))
    monkeypatch.setenv("CUDA_MPS_LOG_DIRECTORY", str(tmp_path / "log"))
    configs = _smoke_pair()
    engine.load_data(configs[0])  # decode the images once (session cache), not in both workers at once
    records = sweep.run_sweep(configs, tmp_path / "results", workers=2, mps="on", progress=False)
    assert [r["run_id"] for r in records] == [c.run_id() for c in configs]
    assert {r["config"]["seed"] for r in records} == {0, 1}
    calls = fake_mps()
    # the given pipe folder is probed first (no daemon there yet), then the daemon started, checked, used, stopped
    assert [c[0] for c in calls] == ["get_server_list", "start", "get_server_list", "worker", "worker", "quit"]
    assert all(c[1:] == (str(tmp_path / "pipe"), str(tmp_path / "log")) for c in calls)


def test_a_daemon_already_running_is_used_and_left_running(data_env, tmp_path, fake_mps, monkeypatch):
    pipe = tmp_path / "running"
    pipe.mkdir()
    (pipe / "daemon").touch()  # the fake daemon is up
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipe))
    with pytest.raises(RuntimeError, match="runs failed"):
        sweep.run_sweep(_smoke_pair(), tmp_path / "results", workers=2, devices=["cuda:7"], progress=False)
    calls = fake_mps()
    assert [c[0] for c in calls] == ["get_server_list", "worker", "worker"]  # neither started nor stopped
    assert all(c[1] == str(pipe) for c in calls)
    assert (pipe / "daemon").exists()


def test_mps_auto_falls_back_with_one_warning_and_on_raises_without_the_binary(data_env, tmp_path, monkeypatch):
    import warnings

    _isolate_mps(monkeypatch, tmp_path)
    log = tmp_path / "workers.log"
    _log_worker_env(monkeypatch, log)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-cuda-mps-control anywhere
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="runs failed"):  # the workers ran (and failed on cuda:7)
            sweep.run_sweep(_smoke_pair(), tmp_path / "results", workers=2, devices=["cuda:7"], progress=False)
    mps_warnings = [w for w in caught if issubclass(w.category, sweep.MPSWarning)]
    assert len(mps_warnings) == 1 and "nvidia-cuda-mps-control is not on PATH" in str(mps_warnings[0].message)
    assert log.read_text().split("\n")[:2] == ["worker  ", "worker  "]  # no MPS variables
    with pytest.raises(RuntimeError, match="mps='on' but CUDA MPS cannot be used: nvidia-cuda-mps-control is not"):
        sweep.run_sweep(_smoke_pair(), tmp_path / "results-on", workers=2, mps="on", progress=False)
    assert not (tmp_path / "results-on").exists() or not any((tmp_path / "results-on").rglob("*.json"))


def test_a_daemon_that_does_not_come_up_is_stopped_then_auto_warns_and_on_raises(data_env, tmp_path, fake_mps,
                                                                                 monkeypatch):
    monkeypatch.setenv("FAKE_MPS_NEVER_UP", "1")
    monkeypatch.setattr(sweep, "_MPS_START_TIMEOUT", 0.3)
    with pytest.raises(RuntimeError, match="did not answer 'get_server_list'"):
        sweep.run_sweep(_smoke_pair(), tmp_path / "results", workers=2, mps="on", progress=False)
    calls = [c[0] for c in fake_mps()]
    assert calls[0] == "start" and calls[-1] == "quit" and "worker" not in calls
    with pytest.warns(sweep.MPSWarning, match="did not answer"):
        with pytest.raises(RuntimeError, match="runs failed"):
            sweep.run_sweep(_smoke_pair(), tmp_path / "results", workers=2, devices=["cuda:7"], progress=False)


def test_ctrl_c_while_the_daemon_comes_up_stops_it_before_its_folders_go(tmp_path, fake_mps, monkeypatch):
    def interrupt(env):  # Ctrl-C while the sweep waits for the started daemon to answer
        raise KeyboardInterrupt
    monkeypatch.setattr(sweep, "_mps_answers", interrupt)
    with pytest.raises(KeyboardInterrupt):
        sweep._start_mps()
    calls = fake_mps()
    assert [c[0] for c in calls] == ["start", "quit"]  # the daemon we started is told to quit
    assert not Path(calls[0][1]).parent.exists()  # then its temporary folders are removed


def test_slurm_from_the_command_line_asks_submitit_for_slurm_not_its_local_fallback(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(sweep, "submit_slurm", lambda configs, results_dir, **kw: seen.append(kw["cluster"]) or [])
    argv = ["--profile", "smoke", "--results-dir", str(tmp_path), "--slurm", "timeout_min=5"]
    assert sweep.main(argv) == 0 and sweep.main([*argv, "--slurm", "cluster=local"]) == 0
    assert seen == ["slurm", "local"]

    def no_slurm(*args, **kwargs):  # what submitit raises where there is no SLURM
        raise RuntimeError('Could not detect "srun", are you indeed on a slurm cluster?')
    monkeypatch.setattr(sweep, "submit_slurm", no_slurm)
    with pytest.raises(SystemExit):
        sweep.main(argv)
    assert "--slurm: Could not detect \"srun\"" in capsys.readouterr().err


def test_sigterm_stops_the_sweep_and_its_workers_whose_runs_resume_later(data_env, tmp_path):
    """kill, timeout or a scheduler's signal: the sweep exits 143, its workers are stopped (they held their runs'
    locks: the locks are free at once), and each run resumes from its checkpoint in the next sweep."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from amixup.checkpoints import lock_path
    from amixup.records import run_lock

    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce", "mixup"]}, seeds=(0,),
                                **{**SMOKE, "epochs": 200})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(sweep.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "amixup.sweep", "--profile", "smoke", "--grid", "method=ce,mixup",
                             "--set", "train_subset=200", "--set", "test_subset=100", "--set", "epochs=200",
                             "--experiment", "sweep-test", "--workers", "2", "--results-dir", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = [tmp_path / "checkpoints" / f"{c.run_id()}.pt" for c in configs]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in checkpoints):  # both workers are training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(1.0)  # the workers' exits
    for config in configs:  # no worker holds its run any longer
        with run_lock(lock_path(tmp_path, config.run_id()), config.run_id()):
            pass
    assert sweep.pending(configs, tmp_path) == configs  # unfinished, each with its checkpoint to resume from


def test_workers_auto_is_per_gpu_times_the_gpus_and_one_on_a_cpu(monkeypatch):
    cpu = _smoke_pair("cpu")
    assert sweep._resolve_workers("auto", cpu, None, 8) == (1, None)
    assert sweep._resolve_workers(3, cpu, None, 8) == (3, None)
    assert sweep._resolve_workers("auto", cpu, ["cuda:0", "cuda:1", "cuda:0"], 8) == (16, ["cuda:0", "cuda:1", "cuda:0"])
    assert sweep._resolve_workers("auto", _smoke_pair("cuda:1"), None, 5) == (5, None)
    monkeypatch.setattr(sweep.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sweep.torch.cuda, "device_count", lambda: 2)
    assert sweep._resolve_workers("auto", _smoke_pair("auto"), None, 4) == (8, ["cuda:0", "cuda:1"])
    for bad in (0, "many", 1.5):
        with pytest.raises(ValueError, match="workers must be"):
            sweep._resolve_workers(bad, cpu, None, 8)
    assert not sweep._wants_mps("auto", ["cuda:0", "cuda:1"]) and sweep._wants_mps("auto", ["cuda:0", "cuda", "cpu"])
    assert sweep._wants_mps("on", ["cpu"]) and not sweep._wants_mps("off", ["cuda:0", "cuda:0"])


def test_mps_on_with_a_single_in_process_worker_is_an_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="mps='on'"):
        sweep.run_sweep(_smoke_pair(), tmp_path, workers=1, mps="on", progress=False)
    with pytest.raises(ValueError, match="mps must be one of"):
        sweep.run_sweep(_smoke_pair(), tmp_path, workers=2, mps="yes", progress=False)
    with pytest.raises(SystemExit):
        sweep.main(["--workers", "1", "--mps", "on", "--results-dir", str(tmp_path)])
    assert "--mps on" in capsys.readouterr().err


def test_submit_slurm_submits_one_job_per_pending_run(data_env, tmp_path):
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, seeds=(0, 1), **SMOKE)
    jobs = sweep.submit_slurm(configs, tmp_path / "slurm", folder=tmp_path / "logs", cluster="debug")
    assert len(jobs) == 2
    for job in jobs:
        job.result()
    assert sweep.pending(configs, tmp_path / "slurm") == []


# --------------------------------------------------------------------------- devices, run ids, the command line

def _stub_training(monkeypatch, duration=lambda config: 0.0):
    """Worker launches and in-process runs that only note the device of each run while it is active;
    returns ``(devices of every run, most runs active at once per device)``."""
    import json
    import threading
    import time

    lock, active, peak, seen = threading.Lock(), {}, {}, []

    def fake_train(config, *args, **kwargs):
        with lock:
            seen.append(config.device)
            active[config.device] = active.get(config.device, 0) + 1
            peak[config.device] = max(peak.get(config.device, 0), active[config.device])
        time.sleep(duration(config))
        with lock:
            active[config.device] -= 1

    def fake_worker(self, command, env, on_epoch):
        fake_train(sweep.RunConfig.from_dict(json.loads(command[command.index("--worker") + 1])[0]))
        return 0, ""

    monkeypatch.setattr(sweep, "train", fake_train)
    monkeypatch.setattr(sweep._Workers, "run", fake_worker)
    monkeypatch.setattr(sweep, "read_record", lambda path: {"run_id": Path(path).stem,
                                                            "metrics": {"last": {"acc_all": 0.0}}})
    return seen, peak


@pytest.mark.parametrize("workers, share", [(2, 1), (4, 2)])
def test_a_run_takes_a_free_device_slot_so_no_gpu_has_more_runs_at_once_than_its_share(tmp_path, monkeypatch,
                                                                                      workers, share):
    import contextlib

    # long and short runs alternate: giving the i-th run devices[i % 2] put two long runs on cuda:0 at once
    seen, peak = _stub_training(monkeypatch, lambda c: 0.5 if c.seed % 2 == 0 else 0.0)
    mps = []
    monkeypatch.setattr(sweep, "cuda_mps", lambda **kw: mps.append(kw) or contextlib.nullcontext({}))
    configs = sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, seeds=range(2 * workers), **SMOKE)
    sweep.run_sweep(configs, tmp_path, workers=workers, devices=["cuda:0", "cuda:1"], progress=False)
    assert len(seen) == len(configs) and set(seen) == {"cuda:0", "cuda:1"}
    assert max(peak.values()) <= share, peak
    assert bool(mps) == (share > 1)  # MPS ("auto") only where a GPU has several runs at once


def test_devices_apply_with_one_worker_too(tmp_path, monkeypatch, capsys):
    seen, _ = _stub_training(monkeypatch)
    sweep.run_sweep(_smoke_pair("auto"), tmp_path, workers=1, devices=["cpu"], progress=False)
    assert seen == ["cpu", "cpu"]
    seen.clear()
    sweep.run_sweep(_smoke_pair("auto"), tmp_path, workers=1, devices=["cuda:0", "cuda:1"], progress=False)
    assert seen == ["cuda:0", "cuda:1"]  # in turn
    seen.clear()
    # --workers auto with --devices cpu: one worker, in this process, on the CPU (not the config's "auto")
    assert sweep.main(["--profile", "smoke", "--set", "device=auto", "--seeds", "0,1", "--devices", "cpu",
                       "--results-dir", str(tmp_path)]) == 0
    assert seen == ["cpu", "cpu"]


def test_configs_sharing_a_run_id_are_an_error_before_any_training(tmp_path, monkeypatch, capsys):
    seen, _ = _stub_training(monkeypatch)
    with pytest.raises(ValueError, match=r"2 configs have run id sweep-test-\S+-s0-\w+ \(identical"):
        sweep.expand_grid("motivation", "smoke", {"method": ["ce"]}, seeds=(0, 0), **SMOKE)
    with pytest.raises(ValueError, match="differ only in checkpoint_every, which the run id leaves out"):
        sweep.expand_grid("motivation", "smoke", {"checkpoint_every": [1, 2]}, **SMOKE)
    config = _smoke_pair()[0]
    on_gpu = config.__class__.from_dict({**config.to_dict(), "device": "cuda:0"})
    for run in (lambda: sweep.run_sweep([config, on_gpu], tmp_path, workers=2, progress=False),
                lambda: sweep.run_sweep([config, config], tmp_path, workers=1, progress=False),
                lambda: sweep.submit_slurm([config, on_gpu], tmp_path, folder=tmp_path / "logs", cluster="debug")):
        with pytest.raises(ValueError, match=f"2 configs have run id {config.run_id()}"):
            run()
    for argv, what in ((["--seeds", "0,0"], "identical"), (["--grid", "step_mode=eager,static"], "step_mode")):
        with pytest.raises(SystemExit):
            sweep.main(["--profile", "smoke", "--results-dir", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert "must have distinct run ids" in err and what in err
    assert seen == [] and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("argv, error", [
    (["--seeds", "0,x"], "argument --seeds: expected comma-separated integers, e.g. 0,1,2, got '0,x'"),
    (["--seeds", "0,,1"], "argument --seeds: expected comma-separated integers"),
    (["--devices", "cpu,gpu"], "argument --devices: expected comma-separated devices, e.g. cpu or cuda:0,cuda:1, "
                               "got 'cpu,gpu'"),
    (["--devices", "cpu,"], "argument --devices: expected comma-separated devices"),
    (["--devices", "cuda:0", "--slurm", "cluster=debug"], "with --slurm each job gets the GPUs SLURM gives it"),
    (["--grid", "method=ce", "--grid", "method=mixup"], "--grid gives method twice (method=['ce'] and 'method=mixup'); "
                                                        "list every value once: FIELD=V1,V2"),
    (["--set", "lr=0.1", "--set", "lr=0.2"], "--set gives lr twice"),
    (["--slurm", "timeout_min=5", "--workers", "2", "--mps", "on"], "--workers, --mps shape the runs on this machine"),
])
def test_a_bad_comma_list_is_a_usage_error_naming_the_option(tmp_path, monkeypatch, capsys, argv, error):
    seen, _ = _stub_training(monkeypatch)
    with pytest.raises(SystemExit):
        sweep.main(["--profile", "smoke", "--results-dir", str(tmp_path), *argv])
    assert error in capsys.readouterr().err and seen == []
