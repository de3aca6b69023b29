"""Tests of crystalloop.store writers and DataFrame readers: runs, samples, images, CQAs, events, models."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import PROFILE, raw_sqlite

from crystalloop.errors import ConfigError, StoreError
from crystalloop.profiles import ThermocycleProfile
from crystalloop.store import ExperimentStore


@pytest.fixture
def store(tmp_path):
    """A fresh store ``project.db`` in the test's temporary folder, closed afterwards."""
    s = ExperimentStore(tmp_path / "project.db")
    yield s
    s.close()

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
    with raw_sqlite(store.path) as c:
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
    with raw_sqlite(store.path) as c:  # paths inside the project folder are stored relative to it
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
