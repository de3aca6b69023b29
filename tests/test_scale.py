"""Tests of crystalloop.scale: in-process default, identical results on a Dask LocalCluster, faults."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, SchedulerError
from crystalloop.scale import joblib_backend, map_simulations, map_tasks, parse_scheduler

ROOT = Path(__file__).resolve().parents[1]

distributed = pytest.importorskip("distributed")


def _square_slow(x: int, delay_s: float) -> tuple[int, int]:
    time.sleep(delay_s)
    return x * x, os.getpid()


@pytest.fixture(scope="module")
def threads_cluster():
    """A light LocalCluster: 2 workers as threads of this process (no process start-up)."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


# ---- addresses and the default ----------------------------------------------------------------


def test_parse_scheduler():
    assert parse_scheduler(None) == ("inprocess", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert parse_scheduler("head-node:8786") == ("address", "tcp://head-node:8786")
    with pytest.raises(ConfigError, match=r"--scheduler must be 'local:N' .* got 'local:two'"):
        parse_scheduler("local:two")
    with pytest.raises(ConfigError, match=r"local:N needs N >= 1 worker, got 'local:0'"):
        parse_scheduler("local:0")


def test_default_runs_in_process_without_importing_dask(tmp_path):
    """Importing crystalloop, mapping tasks and running `crystalloop psd` without --scheduler start no Dask."""
    code = f"""
import sys
import numpy as np, cv2
from crystalloop.vision.render import render_particles, sample_particles
parts = sample_particles(np.geomspace(20, 200, 8), np.full(8, 2.0), shape=(200, 240), pixel_size_um=1.5, seed=0)
img, _ = render_particles(parts, shape=(200, 240), pixel_size_um=1.5, seed=0)
cv2.imwrite({str(tmp_path / "a.png")!r}, img)
import crystalloop, crystalloop.scale
assert crystalloop.scale.map_tasks(abs, [-1, 2]) == [1, 2]
from crystalloop.cli import main
sys.argv = ["crystalloop", "psd", {str(tmp_path / "a.png")!r}, "--pixel-size-um", "1.5", "--out",
            {str(tmp_path / "out")!r}]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "particles.csv").is_file()


def test_map_tasks_argument_errors():
    with pytest.raises(ConfigError, match="at least one iterable"):
        map_tasks(abs)
    with pytest.raises(ConfigError, match=r"different lengths \[2, 1\]"):
        map_tasks(pow, [1, 2], [3])


# ---- identical results ---------------------------------------------------------------------------


def test_map_tasks_on_cluster_equals_in_process(threads_cluster):
    got, ticks = {}, []
    local = map_tasks(_square_slow, range(6), [0.0] * 6)
    remote = map_tasks(_square_slow, range(6), [0.01] * 6, scheduler=threads_cluster,
                       on_result=lambda i, r: got.setdefault(i, r), progress=lambda k, n: ticks.append((k, n)))
    assert [r[0] for r in remote] == [r[0] for r in local] == [0, 1, 4, 9, 16, 25]
    assert sorted(got) == list(range(6)) and all(got[i] == remote[i] for i in got)
    assert ticks[-1] == (6, 6) and len(ticks) == 6


def test_task_errors_are_raised_as_themselves(threads_cluster):
    with pytest.raises(ValueError, match="math domain error"):
        map_tasks(math.sqrt, [4.0, -1.0], scheduler=threads_cluster)


def _sim_cqas(job):
    from crystalloop.hardware.sim import simulate

    profile, seed = job
    return simulate(profile, seed=seed).cqas


def test_map_simulations_identical_on_cluster(threads_cluster):
    from crystalloop.profiles import Segment, ThermocycleProfile

    jobs = [(ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, rate)]), seed)
            for seed, rate in enumerate([0.2, 0.3, 0.5])]
    assert map_simulations(_sim_cqas, jobs, scheduler=threads_cluster) == map_simulations(_sim_cqas, jobs)


def test_psd_on_cluster_identical_to_in_process(threads_cluster, tmp_path):
    import cv2

    from crystalloop.vision.render import render_particles, sample_particles
    from crystalloop.vision.report import measure_psd

    for k in range(4):
        parts = sample_particles(np.geomspace(20, 200, 10), np.full(10, 3.0), shape=(240, 320), pixel_size_um=1.5,
                                 seed=k)
        img, _ = render_particles(parts, shape=(240, 320), pixel_size_um=1.5, seed=k)
        cv2.imwrite(str(tmp_path / f"img_{k}.png"), img)
    files = sorted(str(p) for p in tmp_path.glob("img_*.png"))
    local = measure_psd(files, pixel_size_um=1.5)
    remote = measure_psd(files, pixel_size_um=1.5, scheduler=threads_cluster)
    assert len(local.particles) > 20
    pd.testing.assert_frame_equal(remote.particles, local.particles)
    pd.testing.assert_frame_equal(remote.psd, local.psd)


def test_twin_fit_on_cluster_identical(threads_cluster):
    from crystalloop.digital_twin import fit_twin

    kw = dict(cqas=["D50_um"], families=["xgb"], grid="fast", n_splits=3, augment=False, random_state=0)  # seeded column sampling
    local = fit_twin(ROOT / "examples/doe/doe.csv", n_jobs=1, **kw)
    with joblib_backend(threads_cluster) as client:
        assert client is threads_cluster
        remote = fit_twin(ROOT / "examples/doe/doe.csv", n_jobs=-1, **kw)
    holdout = pd.read_csv(ROOT / "examples/doe/holdout.csv")
    mean_l, std_l = local.predict(holdout, return_std=True)
    mean_r, std_r = remote.predict(holdout, return_std=True)
    assert np.isfinite(mean_l).all() and (np.asarray(std_l) > 0).any()
    np.testing.assert_array_equal(mean_r, mean_l)
    np.testing.assert_array_equal(std_r, std_l)


# ---- faults -----------------------------------------------------------------------------------


def test_killed_worker_tasks_are_rerun():
    """Two worker processes; one is SIGKILLed while busy; every task still returns its result."""
    import logging

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        killed = []

        def kill_one(i, result):
            if not killed:  # first result: both workers are busy with the next tasks
                victim = next(p for p in pids if p != result[1]) if len(pids) > 1 else next(iter(pids))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        res = map_tasks(_square_slow, range(8), [1.0] * 8, scheduler=client, on_result=kill_one)
    assert [r[0] for r in res] == [x * x for x in range(8)]
    assert killed and killed[0] not in {pid for _, pid in res[2:]}  # its tasks ran elsewhere


def test_lost_scheduler_is_a_clear_error_and_stored_results_stay(tmp_path):
    import logging

    from crystalloop.store import ExperimentStore

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                                       silence_logs=logging.CRITICAL)
    store = ExperimentStore(tmp_path / "p.db")
    run = store.start_run(kind="test")

    def keep(i, result):
        store.log_samples(run, [(float(i), "square", float(result[0]))])
        if i == 2:
            threading.Thread(target=cluster.close, daemon=True).start()  # the scheduler goes away

    with pytest.raises(SchedulerError, match=r"Lost the Dask scheduler at .* after (\d+) of 40 results .* kept") as e:
        map_tasks(_square_slow, range(40), [0.05] * 40, scheduler=cluster.scheduler_address, on_result=keep)
    done = int(str(e.value).split(" after ")[1].split()[0])
    samples = store.samples(run)
    assert len(samples) == done >= 3 and "\n" not in str(e.value)
    assert samples["value"].tolist() == [float(int(t) ** 2) for t in samples["time_s"]]
    store.check()
    store.close()


def test_unreachable_scheduler(monkeypatch):
    import crystalloop.scale as scale

    monkeypatch.setattr(scale, "CONNECT_TIMEOUT_S", 2.0)
    with pytest.raises(SchedulerError, match=r"Cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 within 2 s"):
        map_tasks(abs, [1], scheduler="127.0.0.1:9")


# ---- command line ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_psd_command_scheduler_local_gives_identical_tables(tmp_path):
    import cv2

    from crystalloop.vision.render import render_particles, sample_particles

    for k in range(2):
        parts = sample_particles(np.geomspace(20, 200, 10), np.full(10, 3.0), shape=(240, 320), pixel_size_um=1.5,
                                 seed=10 + k)
        img, _ = render_particles(parts, shape=(240, 320), pixel_size_um=1.5, seed=k)
        cv2.imwrite(str(tmp_path / f"img_{k}.png"), img)
    exe = [str(Path(sys.executable).parent / "crystalloop")]  # the console script of this environment
    common = [str(tmp_path / "img_*.png"), "--pixel-size-um", "1.5", "--no-overlays", "--no-label-images"]
    a = subprocess.run([*exe, "psd", *common, "--out", str(tmp_path / "a")], capture_output=True, text=True,
                       timeout=300)
    b = subprocess.run([*exe, "psd", *common, "--out", str(tmp_path / "b"), "--scheduler", "local:2"],
                       capture_output=True, text=True, timeout=300)
    assert a.returncode == 0 and b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    for name in ("particles.csv", "psd.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_psd_and_twin_commands_refuse_a_bad_scheduler_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from crystalloop.cli import app

    expected = ("--scheduler must be 'local:N' (a local cluster of N workers) or a Dask scheduler address "
                "such as 'tcp://10.0.0.5:8786', got 'local:two'")
    for args in (["psd", str(tmp_path / "missing*.png"), "--pixel-size-um", "1.5", "--out", str(tmp_path / "o")],
                 ["twin", "fit", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "t")]):
        res = CliRunner().invoke(app, [*args, "--scheduler", "local:two"])
        assert res.exit_code == 2, res.output
        assert expected in res.output
        assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


def _pid_after(delay_s: float) -> int:
    time.sleep(delay_s)
    return os.getpid()


def test_lost_scheduler_during_joblib_work_is_a_scheduler_error(monkeypatch):
    import logging

    import dask
    from joblib import Parallel, delayed

    import crystalloop.scale as scale

    monkeypatch.setattr(scale, "CONNECT_TIMEOUT_S", 2.0)  # the client's reconnect time-out

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                                       silence_logs=logging.CRITICAL)
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(SchedulerError, match=r"Lost the Dask scheduler at .* during the parallel work .* "
                                                 r"restart the scheduler"):
            with joblib_backend(cluster.scheduler_address):
                first = Parallel(n_jobs=-1)(delayed(_pid_after)(0.0) for _ in range(4))
                cluster.close()
                Parallel(n_jobs=-1)(delayed(_pid_after)(0.0) for _ in range(4))
    assert len(first) == 4
