"""Tests of crystalloop.store: round trips, queries, export, concurrency, crash safety, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crystalloop.errors import ConfigError, StoreError
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import SCHEMA_VERSION, ExperimentStore, default_store_path

PROFILE = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(30.0, 0.2), Segment(45.0, 0.8), Segment(10.0, 0.1, 30.0)],
                             name="one cycle")


@pytest.fixture
def store(tmp_path):
    s = ExperimentStore(tmp_path / "project.db")
    yield s
    s.close()


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


# ---- opening and schema ----------------------------------------------------------------------


def test_new_store_has_schema_wal_and_identity(tmp_path):
    path = tmp_path / "sub" / "dir" / "p.db"  # parent directories are created
    with ExperimentStore(path) as s:
        assert s.path == path and s.schema_version == SCHEMA_VERSION
    c = _raw(path)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA application_id").fetchone()[0] == 0x43524C50
    meta = dict(c.execute("SELECT key, value FROM meta"))
    assert meta["application"] == "crystalloop" and meta["schema_version"] == str(SCHEMA_VERSION)
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "runs", "samples", "images", "cqas", "events", "models"} <= tables


def test_directory_path_means_default_file_and_env_default(tmp_path, monkeypatch):
    with ExperimentStore(tmp_path) as s:
        assert s.path == tmp_path / "crystalloop.db"
    monkeypatch.setenv("CRYSTALLOOP_STORE", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"
    monkeypatch.delenv("CRYSTALLOOP_STORE")
    assert default_store_path() == Path("crystalloop.db")


def test_data_persists_across_reopen(tmp_path):
    path = tmp_path / "p.db"
    with ExperimentStore(path) as s:
        run = s.start_run(PROFILE, seed=7)
        s.log_samples(run, [(1.0, "T_reactor_c", 55.5)])
        s.finish_run(run)
    with ExperimentStore(path, create=False) as s:
        assert s.run(run)["status"] == "completed"
        assert s.samples(run)["value"].tolist() == [55.5]
        assert s.run_recipe(run) == PROFILE


# ---- runs ----------------------------------------------------------------------------------


def test_run_round_trip_with_profile(store):
    run = store.start_run(PROFILE, backend="sim://?seed=3&kinetics=default", seed=3, kind="simulation",
                          meta={"operator": "ana", "n": np.int64(4), "x": np.array([1.5, 2.0])})
    r = store.run(run)
    assert r["run_id"] == run and r["kind"] == "simulation" and r["status"] == "running"
    assert r["backend"] == "sim://?seed=3&kinetics=default" and r["seed"] == 3
    assert r["recipe"] == PROFILE.to_dict() and r["recipe_type"] == "ThermocycleProfile"
    assert r["meta"] == {"operator": "ana", "n": 4, "x": [1.5, 2.0]}
    assert r["writer_pid"] == os.getpid() and r["writer_host"] == socket.gethostname()
    assert pd.isna(r["ended"]) and r["started"].tzname() == "UTC"
    back = store.run_recipe(run)
    assert isinstance(back, ThermocycleProfile) and back == PROFILE
    assert back.batch_time_s == PROFILE.batch_time_s
    store.finish_run(run, "failed", reason="thermostat alarm E03")
    r = store.run(run)
    assert r["status"] == "failed" and r["reason"] == "thermostat alarm E03" and r["ended"] >= r["started"]


def test_dict_and_missing_recipes_round_trip(store):
    a = store.start_run({"controller": "pid", "kp": 2.5, "gains": [1, 2]}, seed=None)
    b = store.start_run(None, backend="julabo:///dev/ttyUSB0", kind="calibration")
    assert store.run_recipe(a) == {"controller": "pid", "kp": 2.5, "gains": [1, 2]}
    assert store.run_recipe(b) is None
    runs = store.runs()
    assert runs["run_id"].tolist() == [a, b] and runs["seed"].isna().all()
    assert runs["kind"].tolist() == ["recipe", "calibration"]
    assert store.runs(kind="calibration")["run_id"].tolist() == [b]
    store.finish_run(a)
    assert store.runs(status="running")["run_id"].tolist() == [b]


def test_runs_with_counts_and_delete_cascades(store):
    a = store.start_run()
    b = store.start_run()
    store.log_samples(a, [(0.0, "x", 1.0), (1.0, "x", 2.0)])
    store.log_image(a, 0.0, "img.png", 2.0)
    store.log_event(a, 0.0, "info", "start")
    store.log_cqas(a, {"D50_um": 100.0})
    counts = store.runs(with_counts=True).set_index("run_id")
    assert counts.loc[a, ["n_samples", "n_images", "n_events", "n_cqas"]].tolist() == [2, 1, 1, 1]
    assert counts.loc[b, ["n_samples", "n_images", "n_events", "n_cqas"]].tolist() == [0, 0, 0, 0]
    with pytest.raises(StoreError, match=f"Run {a} .* is still running"):
        store.delete_run(a)
    store.finish_run(a, "aborted", "operator stop")
    store.delete_run(a)
    assert store.runs()["run_id"].tolist() == [b]
    with _raw(store.path) as c:
        assert c.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM cqas").fetchone()[0] == 0


# ---- samples ----------------------------------------------------------------------------------


def test_samples_long_wide_filters(store):
    run = store.start_run()
    n = store.log_samples(run, [(60.0, "T_reactor_c", 59.8), (0.0, "T_reactor_c", 60.0),
                                (0.0, "T_jacket_c", 59.5), (30.0, "conc_kg_kg", float("nan")),
                                (60.0, "T_jacket_c", None)])
    assert n == 5
    long = store.samples(run)
    assert long.columns.tolist() == ["time_s", "channel", "value"]
    assert long["time_s"].tolist() == [0.0, 0.0, 30.0, 60.0, 60.0]  # sorted by time, ties in logging order
    assert long["channel"].tolist() == ["T_reactor_c", "T_jacket_c", "conc_kg_kg", "T_reactor_c", "T_jacket_c"]
    assert np.isnan(long["value"].iloc[2]) and np.isnan(long["value"].iloc[4])

    wide = store.samples(run, wide=True)
    assert wide.columns.tolist() == ["time_s", "T_jacket_c", "T_reactor_c", "conc_kg_kg"]
    assert wide["time_s"].tolist() == [0.0, 30.0, 60.0]
    np.testing.assert_array_equal(wide["T_reactor_c"], [60.0, np.nan, 59.8])
    np.testing.assert_array_equal(wide["T_jacket_c"], [59.5, np.nan, np.nan])

    sub = store.samples(run, ["T_reactor_c", "missing"], wide=True)
    assert sub.columns.tolist() == ["time_s", "T_reactor_c", "missing"]
    assert sub["time_s"].tolist() == [0.0, 60.0] and sub["missing"].isna().all()
    assert store.samples(run, "T_jacket_c", start_s=10.0)["time_s"].tolist() == [60.0]
    assert store.samples(run, start_s=0.0, end_s=30.0)["time_s"].tolist() == [0.0, 0.0, 30.0]
    assert store.channels(run) == ["T_jacket_c", "T_reactor_c", "conc_kg_kg"]


def test_wide_last_value_wins_and_empty_run(store):
    run = store.start_run()
    store.log_samples(run, [(0.0, "a", 1.0), (0.0, "a", 2.0)])
    assert store.samples(run, wide=True)["a"].tolist() == [2.0]
    empty = store.start_run()
    assert store.samples(empty).empty and store.samples(empty).dtypes["value"] == np.float64
    w = store.samples(empty, ["a", "b"], wide=True)
    assert w.columns.tolist() == ["time_s", "a", "b"] and len(w) == 0


def test_log_samples_accepts_long_and_wide_frames(store):
    run = store.start_run()
    wide_in = pd.DataFrame({"time_s": [0.0, 10.0], "T_c": [20.0, 21.0], "counts": [5.0, np.nan]})
    assert store.log_samples(run, wide_in) == 3  # NaN cells of a wide frame are not samples
    out = store.samples(run, wide=True)
    assert out.columns.tolist() == ["time_s", "T_c", "counts"]
    np.testing.assert_array_equal(out.to_numpy(), wide_in.to_numpy())
    long_in = pd.DataFrame({"time_s": [20.0], "channel": ["T_c"], "value": [22.0]})
    assert store.log_samples(run, long_in) == 1
    assert store.samples(run, "T_c")["value"].tolist() == [20.0, 21.0, 22.0]


def test_bad_batch_writes_nothing(store):
    run = store.start_run()
    store.log_samples(run, [(0.0, "a", 1.0)])
    with pytest.raises(ConfigError, match=r"sample 2: time_s must be finite, got nan"):
        store.log_samples(run, [(1.0, "a", 1.0), (2.0, "a", 2.0), (float("nan"), "a", 3.0)])
    with pytest.raises(ConfigError, match=r"sample 1: channel must be a non-empty string.*got ''"):
        store.log_samples(run, [(1.0, "a", 1.0), (2.0, "", 2.0)])
    with pytest.raises(ConfigError, match=r"sample 0 \('a'\): value must be a number, got 'hot'"):
        store.log_samples(run, [(1.0, "a", "hot")])
    with pytest.raises(ConfigError, match=r"sample 0: expected a \(time_s, channel, value\) tuple, got \(1.0, 'a'\)"):
        store.log_samples(run, [(1.0, "a")])
    with pytest.raises(ConfigError, match="samples must be an iterable"):
        store.log_samples(run, {"a": 1.0})
    with pytest.raises(ConfigError, match="needs a 'time_s' column"):
        store.log_samples(run, pd.DataFrame({"t": [1.0]}))
    assert len(store.samples(run)) == 1


# ---- images, CQAs, events, models --------------------------------------------------------------


def test_images_round_trip_and_paths(store, tmp_path, monkeypatch):
    run = store.start_run()
    inside = tmp_path / "images" / "f001.png"
    outside = Path(tempfile.gettempdir()) / "elsewhere" / "f002.tif"
    monkeypatch.chdir(tmp_path / "")
    i1 = store.log_image(run, 300.0, inside, 1.8, meta={"frame": 1, "exposure_ms": 2.5})
    i2 = store.log_image(run, 0.0, str(outside), 2.0)
    i3 = store.log_image(run, 600.0, "images/f003.png", 1.8)  # relative to the working directory
    df = store.images(run)
    assert df["image_id"].tolist() == [i2, i1, i3]  # time order
    assert df["time_s"].tolist() == [0.0, 300.0, 600.0] and df["pixel_size_um"].tolist() == [2.0, 1.8, 1.8]
    assert df["path"].tolist() == [str(outside), str(inside), str(tmp_path / "images" / "f003.png")]
    assert df["meta"].tolist() == [{}, {"frame": 1, "exposure_ms": 2.5}, {}]
    with _raw(store.path) as c:  # paths inside the project folder are stored relative to it
        assert c.execute("SELECT path FROM images WHERE id=?", (i1,)).fetchone()[0] == "images/f001.png"
    with pytest.raises(ConfigError, match=r"pixel_size_um must be > 0 µm, got -1.0"):
        store.log_image(run, 0.0, "x.png", -1.0)
    with pytest.raises(ConfigError, match="time_s must be finite"):
        store.log_image(run, float("inf"), "x.png", 1.0)


def test_cqas_upsert_and_wide_table(store):
    a, b = store.start_run(), store.start_run()
    store.log_cqas(a, {"D50_um": 150.0, "DoA_pct": 20.0})
    store.log_cqas(a, pd.Series({"D50_um": 152.5, "crystallinity_pct": np.float64(97.0)}))  # replaces D50
    store.log_cqas(b, {"D50_um": 90.0, "yield_pct": None})
    long = store.cqas(a)
    assert long.to_dict("list") == {"run_id": [a, a, a], "name": ["D50_um", "DoA_pct", "crystallinity_pct"],
                                    "value": [152.5, 20.0, 97.0]}
    wide = store.cqas(wide=True)
    assert wide.columns.tolist() == ["run_id", "D50_um", "DoA_pct", "crystallinity_pct", "yield_pct"]
    assert wide["D50_um"].tolist() == [152.5, 90.0] and np.isnan(wide.loc[1, "DoA_pct"])
    assert store.cqas(wide=True).equals(wide)
    with pytest.raises(ConfigError, match=r"CQA 'D90_um' must be a number, got 'big'"):
        store.log_cqas(a, {"D90_um": "big"})


def test_events_round_trip(store):
    run = store.start_run()
    store.log_event(run, 120.0, "WARNING", "bath 0.5 °C behind setpoint")
    store.log_event(run, 0.0, "info", "started")
    ev = store.events(run)
    assert ev[["time_s", "level", "message"]].values.tolist() == [
        [0.0, "info", "started"], [120.0, "warning", "bath 0.5 °C behind setpoint"]]
    with pytest.raises(ConfigError, match=r"level must be one of \['debug', .*\], got 'loud'"):
        store.log_event(run, 0.0, "loud", "x")


def test_models_round_trip(store, tmp_path):
    m1 = store.save_model("twin", tmp_path / "models" / "twin_v1", {"cqas": ["D50_um"], "r2": 0.91})
    m2 = store.save_model("twin", tmp_path / "models" / "twin_v2", {"cqas": ["D50_um"], "r2": 0.94})
    store.save_model("unet", "/opt/models/unet.pt")
    df = store.models()
    assert df["model_id"].tolist() == [m1, m2, m2 + 1] and df["name"].tolist() == ["twin", "twin", "unet"]
    assert df["path"].tolist()[:2] == [str(tmp_path / "models" / "twin_v1"), str(tmp_path / "models" / "twin_v2")]
    latest = store.latest_model("twin")
    assert latest["model_id"] == m2 and latest["metadata"] == {"cqas": ["D50_um"], "r2": 0.94}
    with pytest.raises(StoreError, match=r"No model named 'nn'.*models: \['twin', 'unet'\]"):
        store.latest_model("nn")


# ---- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_and_read_back(store, tmp_path, fmt):
    run = store.start_run(PROFILE, seed=5, meta={"note": "export"})
    rng = np.random.default_rng(0)
    t = np.arange(50) * 10.0
    store.log_samples(run, pd.DataFrame({"time_s": t, "T_c": 60 - t / 100 + rng.normal(size=50) / 3,
                                         "counts": rng.integers(0, 500, 50).astype(float)}))
    store.log_image(run, 10.0, tmp_path / "a.png", 1.75, {"k": 1})
    store.log_cqas(run, {"D50_um": 1 / 3, "DoA_pct": 12.5})
    store.log_event(run, 5.0, "info", "hello, \"world\"\nsecond line")
    store.finish_run(run)
    files = store.export(run, tmp_path / "out", fmt=fmt)
    assert set(files) == {"run", "samples", "samples_wide", "images", "cqas", "events"}
    assert all(p.parent == tmp_path / "out" / f"run_{run}" and p.is_file() for p in files.values())

    def read(name):
        if fmt == "csv":
            return pd.read_csv(files[name], float_precision="round_trip")
        return pd.read_parquet(files[name])

    pd.testing.assert_frame_equal(read("samples"), store.samples(run))
    pd.testing.assert_frame_equal(read("samples_wide"), store.samples(run, wide=True))
    pd.testing.assert_frame_equal(read("cqas"), store.cqas(run)[["name", "value"]])
    pd.testing.assert_frame_equal(read("events"), store.events(run))
    img = read("images")
    assert img["path"].tolist() == [str(tmp_path / "a.png")] and json.loads(img["meta"][0]) == {"k": 1}
    record = json.loads(files["run"].read_text())
    assert record["run_id"] == run and record["status"] == "completed" and record["seed"] == 5
    assert ThermocycleProfile.from_dict(record["recipe"]) == PROFILE


def test_export_errors(store, tmp_path):
    run = store.start_run()
    with pytest.raises(ConfigError, match=r"fmt must be 'csv' or 'parquet', got 'xlsx'"):
        store.export(run, tmp_path, fmt="xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"Cannot create export directory .*file/run_1"):
        store.export(run, tmp_path / "file", fmt="csv")


# ---- error paths -----------------------------------------------------------------------------


def test_not_a_database(tmp_path):
    p = tmp_path / "notes.db"
    p.write_bytes(b"this is a lab notebook, not a database" * 200)
    with pytest.raises(StoreError, match=r"notes\.db is not a crystalloop experiment store \(not an SQLite database\)"):
        ExperimentStore(p)


def test_foreign_sqlite_database(tmp_path):
    p = tmp_path / "other.db"
    with _raw(p) as c:
        c.execute("CREATE TABLE measurements (x REAL)")
    with pytest.raises(StoreError, match=r"other\.db is an SQLite database but not a crystalloop .*measurements"):
        ExperimentStore(p)


def test_newer_schema_refused(tmp_path):
    p = tmp_path / "future.db"
    ExperimentStore(p).close()
    with _raw(p) as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=rf"future\.db has schema version {SCHEMA_VERSION + 1}, newer .* upgrade"):
        ExperimentStore(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "broken.db"
    with ExperimentStore(p) as s:
        s.log_samples(s.start_run(), [(float(i), "x", float(i)) for i in range(2000)])
    with _raw(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(p.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the schema page
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"broken\.db is corrupt .*\.recover"):
        ExperimentStore(p)


def test_integrity_check_reports_damage(tmp_path):
    p = tmp_path / "damaged.db"
    with ExperimentStore(p) as s:
        s.log_samples(s.start_run(), [(float(i), "x", float(i)) for i in range(5000)])
        s.check()
    with _raw(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = c.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(p.read_bytes())
    data[-3 * page:-page] = b"\x00\xff" * page  # trash two pages of sample/index data
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged\.db (failed the integrity check|is corrupt)"):
        with ExperimentStore(p) as s:
            s.check()


def test_unwritable_or_missing_locations(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"Cannot create the directory .*a_file/sub for experiment store"):
        ExperimentStore(blocker / "sub" / "p.db")
    with pytest.raises(StoreError, match=r"No experiment store at .*missing\.db \(create=False\)"):
        ExperimentStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory(tmp_path):  # pragma: no cover - CI runs as a normal user
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=r"ro/p\.db"):
            ExperimentStore(ro / "p.db")
    finally:
        ro.chmod(0o700)


def test_bad_arguments(store):
    run = store.start_run()
    with pytest.raises(StoreError, match=rf"Run 99 not found in experiment store .*project\.db \(it has runs 1\.\.{run}\)"):
        store.log_samples(99, [(0.0, "a", 1.0)])
    with pytest.raises(StoreError, match="Run 99 not found"):
        store.samples(99)
    with pytest.raises(ConfigError, match=r"run_id must be an integer, got 1\.5"):
        store.samples(1.5)
    with pytest.raises(ConfigError, match=r"status must be one of \['completed', 'failed', 'aborted', 'interrupted'\], got 'done'"):
        store.finish_run(run, "done")
    with pytest.raises(ConfigError, match="recipe must be a ThermocycleProfile, a dict or None, got list"):
        store.start_run([1, 2])
    with pytest.raises(ConfigError, match=r"seed must be a 64-bit integer or None, got 1\.5"):
        store.start_run(seed=1.5)
    with pytest.raises(ConfigError, match="meta cannot be stored as JSON: object value"):
        store.start_run(meta={"x": object()})
    with pytest.raises(ConfigError, match="synchronous must be one of"):
        ExperimentStore(store.path, synchronous="sometimes")
    store.finish_run(run)
    with pytest.raises(StoreError, match=rf"Run {run} .* has already finished with status 'completed'"):
        store.finish_run(run, "failed")
    assert store.run(str(run))["status"] == "completed"  # CLI passes ids as text
    store.close()
    with pytest.raises(StoreError, match=r"project\.db is closed"):
        store.runs()


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
            while t.is_alive():
                seen.append(len(store.samples(run)))
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
    with _raw(path) as c:
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
    dead_beat = pd.Timestamp(_raw(path).execute("SELECT heartbeat FROM runs WHERE id=?", (dead,)).fetchone()[0])
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
        with _raw(path) as c:  # e.g. another host judged this process dead from a stale heartbeat
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

    with _raw(path) as c:
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


# ---- properties ------------------------------------------------------------------------------

_channel = st.text(min_size=1, max_size=8).filter(lambda s: s.strip() and "\x00" not in s)
_sample = st.tuples(st.floats(allow_nan=False, allow_infinity=False), _channel,
                    st.floats(allow_nan=True, allow_infinity=True) | st.none())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_sample, max_size=20), max_size=6))
def test_any_batches_round_trip_exactly(batches):
    with tempfile.TemporaryDirectory() as d, ExperimentStore(Path(d) / "h.db", synchronous="off") as s:
        run = s.start_run()
        for b in batches:
            assert s.log_samples(run, b) == len(b)
        flat = [x for b in batches for x in b]
        expected = sorted(flat, key=lambda x: x[0])  # stable: ties keep logging order
        got = s.samples(run)
        assert got["time_s"].tolist() == [x[0] for x in expected]
        assert got["channel"].tolist() == [x[1] for x in expected]
        np.testing.assert_array_equal(got["value"].to_numpy(),
                                      np.array([np.nan if x[2] is None else x[2] for x in expected], dtype=float))


# ---- plot ------------------------------------------------------------------------------------


def test_plot_samples_writes_png(tmp_path):
    from crystalloop.store import plot_samples

    wide = pd.DataFrame({"time_s": np.arange(10) * 60.0, "T_c": np.linspace(60, 20, 10), "counts": np.arange(10.0)})
    out = plot_samples(wide, tmp_path / "s.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"plot_samples needs a 'time_s' column, got columns \['t'\]"):
        plot_samples(pd.DataFrame({"t": [1.0]}), tmp_path / "x.png")
