"""Tests of ExperimentStore.export: CSV and Parquet files read back equal to the store's frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from store_helpers import PROFILE

from crystalloop.errors import ConfigError, StoreError
from crystalloop.profiles import ThermocycleProfile
from crystalloop.store import ExperimentStore


@pytest.fixture
def store(tmp_path):
    """A fresh store ``project.db`` in the test's temporary folder, closed afterwards."""
    s = ExperimentStore(tmp_path / "project.db")
    yield s
    s.close()

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
    with pytest.raises(ConfigError, match=r"export format must be 'csv' or 'parquet', got 'xlsx'"):
        store.export(run, tmp_path, fmt="xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"Cannot create export directory .*file/run_1"):
        store.export(run, tmp_path / "file", fmt="csv")
