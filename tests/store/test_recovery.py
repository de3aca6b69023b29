"""Tests of crystalloop.store concurrency, writer liveness and crash recovery (SIGKILL mid-run)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from store_helpers import raw_sqlite

from crystalloop.errors import StoreError
from crystalloop.store import ExperimentStore


@pytest.fixture
def store(tmp_path):
    """A fresh store ``project.db`` in the test's temporary folder, closed afterwards."""
    s = ExperimentStore(tmp_path / "project.db")
    yield s
    s.close()

# ---- concurrency -----------------------------------------------------------------------------


def test_reader_thread_while_writer_thread_writes(tmp_path):
    path = tmp_path / "c.db"
    writer = ExperimentStore(path, synchronous="normal")
    reader = ExperimentStore(path)  # its own connections
    run = writer.start_run()
    batch, n_batches = 20, 60
    seen, errors = [], []

    def write():
        try:
            for i in range(n_batches):
                writer.log_samples(run, [(float(i * batch + j), "x", float(j)) for j in range(batch)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def read(store):
        try:
            while True:  # read at least once, even when the writer is already done
                alive = t.is_alive()
                seen.append(len(store.samples(run)))
                if not alive:
                    break
        except Exception as e:  # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    readers = [threading.Thread(target=read, args=(s,)) for s in (reader, writer)]  # shared object too
    for r in readers:
        r.start()
    t.join()
    for r in readers:
        r.join()
    assert not errors
    assert seen and all(n % batch == 0 for n in seen)  # never half a batch
    assert len(writer.samples(run)) == batch * n_batches
    writer.close()
    reader.close()


def test_threads_writing_different_runs(store):
    runs = [store.start_run() for _ in range(4)]

    def work(run):
        for i in range(25):
            store.log_samples(run, [(float(i), "x", float(run)), (float(i), "y", -1.0)])
            store.log_event(run, float(i), "debug", f"batch {i}")

    threads = [threading.Thread(target=work, args=(r,)) for r in runs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in runs:
        w = store.samples(r, wide=True)
        assert len(w) == 25 and (w["x"] == r).all() and len(store.events(r)) == 25


def _forked_writer(store, run):
    store.log_samples(run, [(1.0, "child", float(os.getpid()))])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_uses_its_own_connection(store):
    import multiprocessing

    run = store.start_run()
    store.log_samples(run, [(0.0, "parent", 1.0)])  # the parent has an open connection
    p = multiprocessing.get_context("fork").Process(target=_forked_writer, args=(store, run))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    store.log_samples(run, [(2.0, "parent", 2.0)])  # the parent's connection still works
    df = store.samples(run)
    assert df["channel"].tolist() == ["parent", "child", "parent"] and df["value"][1] == p.pid
    store.check()


# ---- crash recovery --------------------------------------------------------------------------


def _set_writer(path, run, pid, host, start, beat=None):
    with raw_sqlite(path) as c:
        c.execute("UPDATE runs SET writer_pid=?, writer_host=?, writer_start=?, heartbeat=coalesce(?, heartbeat) "
                  "WHERE id=?", (pid, host, start, beat, run))


def test_recover_distinguishes_dead_and_live_writers(tmp_path):
    path = tmp_path / "r.db"
    with ExperimentStore(path) as s:
        mine = s.start_run()
        dead = s.start_run()
        reused = s.start_run()
        remote_stale = s.start_run()
        remote_fresh = s.start_run()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a PID that no longer runs
    host = socket.gethostname()
    _set_writer(path, dead, proc.pid, host, "12345")
    _set_writer(path, reused, os.getpid(), host, "not-my-start-time")  # PID now belongs to another process
    _set_writer(path, remote_stale, 1, "other-host", None, "2020-01-01T00:00:00+00:00")
    _set_writer(path, remote_fresh, 1, "other-host", None)
    dead_beat = pd.Timestamp(raw_sqlite(path).execute("SELECT heartbeat FROM runs WHERE id=?", (dead,)).fetchone()[0])
    with ExperimentStore(path, stale_after_s=3600) as s:
        status = s.runs().set_index("run_id")["status"]
        assert status[[mine, remote_fresh]].tolist() == ["running", "running"]
        assert status[[dead, reused, remote_stale]].tolist() == ["interrupted"] * 3
        assert f"writer process {proc.pid} on {host} ended without finishing" in s.run(dead)["reason"]
        assert "no heartbeat from writer process 1 on other-host" in s.run(remote_stale)["reason"]
        assert s.run(dead)["ended"] == dead_beat  # ended = the writer's last sign of life
        assert s.recover() == []  # idempotent
        with pytest.raises(StoreError, match=f"Run {dead} .* already finished with status 'interrupted'"):
            s.finish_run(dead)
        with raw_sqlite(path) as c:  # e.g. another host judged this process dead from a stale heartbeat
            c.execute("UPDATE runs SET status='interrupted' WHERE id=?", (mine,))
        s.finish_run(mine)  # the live writer can still finish its own run
        assert s.run(mine)["status"] == "completed"


_WRITER = r"""
import sys
from crystalloop.store import ExperimentStore
store = ExperimentStore(sys.argv[1])
batch = int(sys.argv[2])
run = store.start_run({"test": "sigkill"}, backend="sim://", seed=1, kind="test")
print("run", run, flush=True)
i = 0
while True:
    store.log_samples(run, [(float(i * batch + j), "ch%d" % (j % 3), (i * batch + j) * 0.25) for j in range(batch)])
    i += 1
    print(i * batch, flush=True)
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("batch", "n_batches"), [(50, 40), (10_000, 2)])  # large batches: killed mid-transaction
def test_sigkill_mid_run_keeps_every_committed_sample(tmp_path, batch, n_batches):
    path = tmp_path / "kill.db"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("run "), proc.stderr.read()
        run = int(first.split()[1])
        reported = 0
        reader = ExperimentStore(path)  # a concurrent reader in another process; must not interrupt the run
        while reported < n_batches * batch:
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read()}"
            reported = int(line)
            n = len(reader.samples(run))
            assert n % batch == 0 and n >= reported
        assert reader.run(run)["status"] == "running"
        reader.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for line in out.split():
        reported = max(reported, int(line))  # counts printed before the kill

    with raw_sqlite(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ExperimentStore(path) as s:
        s.check()
        r = s.run(run)
        assert r["status"] == "interrupted" and f"writer process {proc.pid}" in r["reason"]
        df = s.samples(run)
    n = len(df)
    assert reported <= n <= reported + batch and n % batch == 0  # at most the batch in flight is lost
    k = np.arange(n)
    np.testing.assert_array_equal(df["time_s"], k.astype(float))
    np.testing.assert_array_equal(df["value"], k * 0.25)
    assert df["channel"].tolist() == [f"ch{j % 3}" for j in k % batch]
