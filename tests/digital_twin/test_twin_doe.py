"""DoE tables: reading, recipes, schema errors that name file/row/column, quality warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _twin_data import make_doe

from crystalloop.digital_twin.doe import DoEWarning, read_doe, resolve_cqa
from crystalloop.errors import SchemaError
from crystalloop.profiles import Segment, ThermocycleProfile, feature_names


@pytest.fixture
def doe_csv(tmp_path):
    p = tmp_path / "doe.csv"
    make_doe(12).to_csv(p, index=False)
    return p


def test_read_csv_counts_and_views(doe_csv):
    t = read_doe(doe_csv)
    assert t.n_runs == 12 and t.max_cycles == 4
    assert t.feature_names == feature_names(4)
    assert t.cqa_names == ["D50_um", "DoA_pct", "crystallinity_pct"]
    assert t.n_measured().to_dict() == {"D50_um": 12, "DoA_pct": 8, "crystallinity_pct": 6}
    X, y, ids = t.xy("DoA")
    assert X.shape == (8, 32) and len(y) == 8 and "R03" not in set(ids)
    assert np.isfinite(y).all()


def test_parquet_and_dataframe_agree(tmp_path):
    df = make_doe(8)
    df.to_parquet(tmp_path / "d.parquet")
    a, b = read_doe(tmp_path / "d.parquet"), read_doe(df)
    assert a.data_hash() == b.data_hash()
    df.loc[3, "D50_um"] += 0.01
    assert read_doe(df).data_hash() != a.data_hash()


def test_recipe_column(tmp_path):
    p1 = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, 0.2)])
    p2 = ThermocycleProfile(30.0, 0.08, 55.0, [Segment(30.0, 0.1), Segment(45.0, 0.8), Segment(10.0, 0.2)])
    (tmp_path / "r").mkdir()
    p1.to_file(tmp_path / "r" / "a.yaml")
    p2.to_file(tmp_path / "r" / "b.json")
    pd.DataFrame({"run_id": ["a", "b"], "recipe": ["r/a.yaml", "r/b.json"], "D50_um": [50.0, np.nan]}).to_csv(
        tmp_path / "doe.csv", index=False)
    t = read_doe(tmp_path / "doe.csv")
    np.testing.assert_allclose(t.features.loc["b"].to_numpy(), p2.to_features(4))
    assert t.profiles[0] == p1 and t.n_measured()["D50_um"] == 1


def test_missing_recipe_file_names_row(tmp_path):
    pd.DataFrame({"run_id": ["x"], "recipe": ["nope.yaml"], "D50_um": [1.0]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(SchemaError, match=r"d\.csv, row 1 \(run_id 'x'\), column 'recipe': recipe file .*nope\.yaml does not exist"):
        read_doe(tmp_path / "d.csv")


def test_non_numeric_value_names_file_row_column(tmp_path):
    df = make_doe(6)
    df["seed_loading"] = df["seed_loading"].astype(object)
    df.loc[4, "seed_loading"] = "high"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SchemaError, match=r"bad\.csv, row 5 \(run_id 'R05'\), column 'seed_loading': expected a number, got 'high'"):
        read_doe(tmp_path / "bad.csv")


def test_non_numeric_cqa(tmp_path):
    df = make_doe(6)
    df["D50_um"] = df["D50_um"].astype(object)
    df.loc[1, "D50_um"] = "n/a?"
    with pytest.raises(SchemaError, match=r"row 2 .*column 'D50_um': expected a number"):
        read_doe(df)


def test_nan_input(tmp_path):
    df = make_doe(6)
    df.loc[2, "c0_mg_g"] = np.nan
    with pytest.raises(SchemaError, match=r"row 3 .*column 'c0_mg_g': input value is missing"):
        read_doe(df)


def test_missing_and_unknown_columns():
    df = make_doe(6)
    with pytest.raises(SchemaError, match=r"missing feature column\(s\) \['hold9_min'\]"):
        read_doe(df.drop(columns=["hold9_min"]), max_cycles=4)
    with pytest.raises(SchemaError, match=r"unknown column\(s\) \['operator'\]"):
        read_doe(df.assign(operator="jd"))
    assert read_doe(df.assign(operator="jd"), extra_columns="ignore").n_runs == 6
    with pytest.raises(SchemaError, match="no profile columns found"):
        read_doe(pd.DataFrame({"D50_um": [1.0]}))


def test_infeasible_profile_names_row_and_bound():
    df = make_doe(6)
    df.loc[1, "rate1_c_min"] = 0.9  # cooling faster than 0.3 °C/min
    with pytest.raises(SchemaError, match=r"row 2 \(run_id 'R02'\): infeasible profile: segment 1 \(cooling\) rate 0.9 °C/min exceeds the upper bound 0.3"):
        read_doe(df)
    assert read_doe(df, bounds=None).n_runs == 6


def test_non_alternating_and_inconsistent_slots():
    df = make_doe(6)
    i = int(np.flatnonzero(df["n_segments"] >= 3)[0])
    df2 = df.copy()
    df2.loc[i, "T2_c"] = df2.loc[i, "T1_c"] - 1.0  # a "heating" segment that cools
    with pytest.raises(SchemaError, match=r"segment 2 must heat"):
        read_doe(df2)
    df3 = df.copy()
    j = int(np.flatnonzero(df["n_segments"] == 1)[0])
    df3.loc[j, "rate5_c_min"] = 0.2  # an unused slot must be empty
    with pytest.raises(SchemaError, match=r"column 'rate5_c_min': got 0.2, but the profile .* implies 0"):
        read_doe(df3)


def test_duplicate_run_id():
    df = make_doe(4)
    df.loc[2, "run_id"] = "R01"
    with pytest.raises(SchemaError, match=r"row 3, column 'run_id': 'R01' already used in row 1"):
        read_doe(df)


def test_replicates_warn_error_mean():
    df = make_doe(6)
    rep = df.iloc[[1]].copy()
    rep["run_id"] = "R99"
    rep["D50_um"] = df.loc[1, "D50_um"] + 2.0
    df = pd.concat([df, rep], ignore_index=True)
    with pytest.warns(DoEWarning, match=r"identical inputs \(replicates\): R02, R99.*duplicates='mean'"):
        t = read_doe(df)
    assert t.n_runs == 7
    with pytest.raises(SchemaError, match="replicates"):
        read_doe(df, duplicates="error")
    with pytest.warns(DoEWarning, match="averaged 2 replicate rows into 1"):
        t = read_doe(df, duplicates="mean")
    assert t.n_runs == 6
    assert t.cqas.loc["R02", "D50_um"] == pytest.approx(df.loc[1, "D50_um"] + 1.0)


def test_constant_input_and_empty_cqa_warn():
    df = make_doe(6)
    df["seed_loading"] = 0.1
    df["crystallinity_pct"] = np.nan
    with pytest.warns(DoEWarning) as rec:
        read_doe(df)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "['seed_loading'] are constant" in msgs
    assert "'crystallinity_pct' has no measured values (all NaN)" in msgs


def test_resolve_cqa():
    assert resolve_cqa("D50") == "D50_um"
    assert resolve_cqa("doa") == "DoA_pct"
    assert resolve_cqa("batch_time") == "batch_time_min"
    with pytest.raises(SchemaError, match="Unknown CQA 'D55'"):
        resolve_cqa("D55")
