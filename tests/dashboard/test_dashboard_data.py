"""Downsampling and the read-only store reader, checked against the store's own readers."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest
from dashboard_helpers import big_run
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.control import tracking_metrics
from crystalloop.dashboard import StoreReader, channel_group, downsample
from crystalloop.errors import ConfigError, StoreError, StoreNotFoundError
from crystalloop.store import ExperimentStore


# ---------------------------------------------------------------- downsampling
def test_downsample_keeps_spikes_and_is_a_subsequence():
    t = np.arange(200_000, dtype=float)
    y = np.sin(t / 7000.0)
    y[123_457], y[5] = 50.0, -50.0
    ts, ys = downsample(t, y, 1000)
    assert len(ts) == 1000
    assert ys.max() == 50.0 and ts[ys.argmax()] == 123_457.0
    assert ys.min() == -50.0 and ts[ys.argmin()] == 5.0
    assert np.all(np.diff(ts) > 0)
    np.testing.assert_array_equal(ys, y[ts.astype(int)])  # points of the series, not averages


def test_downsample_short_series_and_nan():
    t = np.arange(10.0)
    y = t.copy()
    y[3] = np.nan
    ts, ys = downsample(t, y, 100)
    np.testing.assert_array_equal(ts, [0, 1, 2, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(ys, ts)


def test_downsample_is_reproducible():
    rng = np.random.default_rng(4)
    t, y = np.arange(50_000.0), rng.normal(size=50_000)
    a, b = downsample(t, y, 700), downsample(t, y, 700)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_downsample_bad_input():
    with pytest.raises(ConfigError, match="n_out must be a whole number >= 4.*got 2"):
        downsample(np.arange(10.0), np.arange(10.0), 2)
    with pytest.raises(ConfigError, match=r"same length|one length.*\(10,\) and \(9,\)"):
        downsample(np.arange(10.0), np.arange(9.0), 5)
    with pytest.raises(ConfigError, match="non-decreasing; time 3.0 s follows 5.0 s"):
        downsample(np.array([0.0, 5.0, 3.0, 6.0, 7.0, 8.0]), np.arange(6.0), 4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 3000), n_out=st.integers(4, 400), seed=st.integers(0, 10_000))
def test_downsample_invariants(n, n_out, seed):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.1, 2.0, n))
    y = rng.standard_cauchy(n)
    ts, ys = downsample(t, y, n_out)
    assert len(ts) <= max(n_out, 0) or len(ts) == n
    assert ys.max() == y.max() and ys.min() == y.min()  # global extremes are never lost
    idx = np.searchsorted(t, ts)
    np.testing.assert_array_equal(t[idx], ts)
    np.testing.assert_array_equal(y[idx], ys)


def test_channel_groups():
    assert channel_group("T_reactor_c") == ("temperature", "reactor")
    assert channel_group("T_bath_c") == ("temperature", "bath")
    assert channel_group("T_vessel_wall_c") == ("temperature", "vessel wall")
    assert channel_group("csat_kg_kg") == ("concentration", "solubility")
    assert channel_group("transmissivity_pct")[0] == "counts"
    assert channel_group("DoA_pct") == ("other", "DoA_pct")


# ---------------------------------------------------------------- reader
def test_reader_matches_the_store_readers(lab):
    r = StoreReader(lab["store"])
    with ExperimentStore(lab["store"], create=False, recover=False) as db:
        runs = db.runs(with_counts=True)
        wide = db.samples(lab["run_id"], wide=True)
        cq = db.cqas(lab["run_id"])
        images = db.images(lab["run_id"])
        db_recipe = db.run_recipe(lab["run_id"])
    listed = {x["run_id"]: x for x in r.runs()}
    assert sorted(listed) == sorted(runs["run_id"])
    for _, row in runs.iterrows():
        assert listed[row["run_id"]]["n_samples"] == row["n_samples"]
        assert listed[row["run_id"]]["status"] == row["status"]
    rec = r.run(lab["run_id"])
    assert rec["controller"] == "track" and rec["progress"] == 1.0
    assert rec["cqas"] == pytest.approx(dict(zip(cq["name"], cq["value"], strict=True)))
    assert rec["last_time_s"] == wide["time_s"].max()
    s = r.series(lab["run_id"])
    with ExperimentStore(lab["store"], create=False, recover=False) as db:
        long = {ch: db.samples(lab["run_id"], ch) for ch in wide.columns[1:]}
    for ch, raw in long.items():
        assert s["channels"][ch]["n"] == len(raw) > 100  # short run: every point is sent
        np.testing.assert_array_equal(s["channels"][ch]["t"], raw["time_s"].to_numpy())
        np.testing.assert_array_equal(s["channels"][ch]["y"], raw["value"].to_numpy())
    te = s["tracking_error"]
    m = tracking_metrics(wide, db_recipe)  # the runner's own figure
    assert te["reference"] == "recipe"
    assert te["rms_c"] == pytest.approx(m["rms_error_c"], rel=1e-12)
    assert te["max_abs_c"] == pytest.approx(m["max_abs_error_c"], rel=1e-12)
    assert [i["path"] for i in r.images(lab["run_id"])] == images["path"].tolist()
    assert r.run(10_000) is None


def test_series_of_a_long_run_keeps_extremes(tmp_path):
    path = tmp_path / "big.db"
    rid = big_run(path, 30_000, spike_at=20_000)
    s = StoreReader(path).series(rid, n_out=500)
    ch = s["channels"]["T_reactor_c"]
    assert ch["n"] == 30_000 and len(ch["t"]) == 500
    assert max(ch["y"]) == 99.0 and ch["t"][int(np.argmax(ch["y"]))] == 20_000.0
    assert min(ch["y"]) == -20.0 and ch["t"][int(np.argmin(ch["y"]))] == 20_001.0


def test_reader_is_read_only_and_never_blocks_the_writer(live_store):
    path, rid = live_store
    r = StoreReader(path)
    conn = r.open()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM samples")
        cur = conn.execute("SELECT time_s FROM samples")  # a read transaction held open mid-scan
        cur.fetchone()
        with ExperimentStore(path, timeout_s=0.5) as db:  # a writer with a short busy timeout
            t0 = time.perf_counter()
            db.log_samples(rid, [(600.0, "T_reactor_c", 49.0), (600.0, "T_ref_c", 48.8)])
            assert time.perf_counter() - t0 < 0.5
        cur.fetchall()
    finally:
        conn.close()


def test_increment_returns_exactly_the_new_rows_while_a_run_writes(live_store):
    path, rid = live_store
    r = StoreReader(path)
    after = r.series(rid)["after"]
    got: dict[str, list] = {"T_reactor_c": [], "T_ref_c": []}
    stop = threading.Event()

    def writer():
        with ExperimentStore(path) as db:
            other = db.start_run({"name": "other"}, kind="track")  # its rows interleave with ours
            for k in range(40):
                t = 600.0 + 60 * (k + 1)
                db.log_samples(rid, [(t, "T_reactor_c", 40.0 + k), (t, "T_ref_c", 39.0 + k)])
                db.log_samples(other, [(t, "T_reactor_c", -1.0)])
                time.sleep(0.005)
        stop.set()

    th = threading.Thread(target=writer)
    th.start()
    conn = r.open()
    try:
        while True:
            inc, after = r.increment(conn, rid, after)
            for ch, d in inc.items():
                got[ch] += list(zip(d["t"], d["y"], strict=True))
            if stop.is_set():
                inc, after = r.increment(conn, rid, after)
                for ch, d in inc.items():
                    got[ch] += list(zip(d["t"], d["y"], strict=True))
                break
            time.sleep(0.01)
    finally:
        conn.close()
        th.join()
    assert [v for _, v in got["T_reactor_c"]] == [40.0 + k for k in range(40)]
    assert [t for t, _ in got["T_ref_c"]] == [600.0 + 60 * (k + 1) for k in range(40)]


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(StoreNotFoundError, match=r"No experiment store at .*missing\.db"):
        StoreReader(tmp_path / "missing.db").runs()
    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE invoices (id INTEGER)")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match=r"other\.db is an SQLite database but not a crystalloop experiment store "
                                         r"\(no 'meta' table; it has: invoices\)"):
        StoreReader(other).runs()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a text file, not a database\n" * 200)
    with pytest.raises(StoreError, match=r"junk\.db is not a crystalloop experiment store \(not an SQLite database\)"):
        StoreReader(junk).runs()


def test_series_cache_of_finished_runs_follows_the_data(tmp_path):
    path = tmp_path / "big.db"
    rid = big_run(path, 5_000)
    r = StoreReader(path)
    a = r.series(rid, n_out=200)
    assert r.series(rid, n_out=200)["channels"] == a["channels"]  # served from the cache
    with ExperimentStore(path) as db:  # a late correction appended to the finished run
        db.log_samples(rid, [(5_000.0, "T_reactor_c", 123.0)])
    b = r.series(rid, n_out=200)
    assert b["channels"]["T_reactor_c"]["n"] == 5_001 and max(b["channels"]["T_reactor_c"]["y"]) == 123.0
    assert b["after"] > a["after"]


def test_solubility_where_the_backend_knows_it(lab, tmp_path):
    s = StoreReader(lab["store"]).series(lab["run_id"])
    sol, temp = s["channels"]["csat_kg_kg"], s["channels"]["T_reactor_c"]
    assert sol["label"] == "solubility" and sol["group"] == "concentration" and sol["computed"]
    assert sol["t"] == temp["t"]
    order = np.argsort(temp["y"])
    assert np.all(np.diff(np.asarray(sol["y"])[order]) >= 0)  # c* rises with temperature
    recipe = ExperimentStore(lab["store"], create=False, recover=False).run_recipe(lab["run_id"])
    assert sol["y"][0] == pytest.approx(recipe.c0_mg_g / 1000, rel=0.05)  # the recipe starts saturated
    # a real thermostat is never opened by the dashboard: no solubility, no connection attempt
    path = tmp_path / "real.db"
    with ExperimentStore(path) as db:
        rid = db.start_run(recipe, backend="julabo:///dev/ttyUSB-does-not-exist", kind="track")
        db.log_samples(rid, [(0.0, "T_reactor_c", 50.0), (0.0, "conc_kg_kg", 0.045)])
    assert StoreReader(path).solubility(rid) is None
    assert "csat_kg_kg" not in StoreReader(path).series(rid)["channels"]
