"""PSD tables, percentiles, mean sizes, log-normal fit, comparisons and chord lengths."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision import (
    chord_length_distribution,
    chord_lengths,
    compare_psd,
    fit_lognormal,
    lognormal_q3,
    mean_size,
    percentile,
    psd_summary,
    psd_table,
    size_classes,
)


def test_percentiles_number_and_volume():
    x = np.array([10.0, 20.0, 30.0, 40.0])
    assert percentile(x, 50) == pytest.approx(25.0)
    assert percentile([7.0], 50) == 7.0
    # volume weighting (mid-point rule): cumulative mid-points 0.5, 5, 22.5, 68 % at 10..40 µm
    assert percentile(x, 50, r=3) == pytest.approx(30.0 + 10 * (50 - 22.5) / (68 - 22.5), rel=1e-9)
    assert np.isnan(percentile(np.array([]), 50))


def test_mean_sizes():
    x = np.array([1.0, 2.0, 3.0])
    assert mean_size(x, 1, 0) == pytest.approx(2.0)
    assert mean_size(x, 3, 2) == pytest.approx(36 / 14)
    assert mean_size(x, 4, 3) == pytest.approx(98 / 36)


def test_lognormal_fit_recovers_parameters():
    rng = np.random.default_rng(0)
    x = rng.lognormal(np.log(50.0), 0.4, 20000)  # number distribution
    x50_0, s0 = fit_lognormal(x, r=0)
    assert x50_0 == pytest.approx(50.0, rel=0.01) and s0 == pytest.approx(0.4, rel=0.02)
    x50_3, s3 = fit_lognormal(x, r=3)  # Hatch–Choate: x50,3 = x50,0 exp(3 s²)
    assert x50_3 == pytest.approx(50.0 * np.exp(3 * 0.16), rel=0.03) and s3 == pytest.approx(0.4, rel=0.05)
    assert lognormal_q3(x50_3, x50_3, s3) == pytest.approx(0.5)
    s = psd_summary(x)
    assert s["x50_0_um"] == pytest.approx(50, rel=0.02) and s["x50_3_um"] == pytest.approx(x50_3, rel=0.05)
    assert s["span_0"] == pytest.approx((np.exp(1.2816 * 0.4) - np.exp(-1.2816 * 0.4)), rel=0.05)


def test_compare_identical_and_shifted():
    rng = np.random.default_rng(1)
    x = rng.lognormal(np.log(40.0), 0.3, 3000)
    same = compare_psd(x, x)
    assert same["ks"] == 0 and same["wasserstein_um"] == 0 and same["x50_err_pct"] == 0
    c = compare_psd(1.1 * x, x, r=3)
    for k in ("x10_err_pct", "x50_err_pct", "x90_err_pct"):
        assert c[k] == pytest.approx(10.0, abs=0.01)
    assert 0.1 < c["ks"] < 0.4 and c["wasserstein_um"] > 0
    # a reference given as a class table
    table = psd_table(x, edges=np.geomspace(5, 200, 80))
    ct = compare_psd(x, table, r=3)
    assert abs(ct["x50_err_pct"]) < 3 and ct["ks"] < 0.05
    with pytest.raises(ConfigError, match="empty"):
        compare_psd(np.array([]), x)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=500.0), min_size=1, max_size=60),
       st.sampled_from(["log", "linear"]))
def test_psd_table_is_normalised_and_monotone(sizes, spacing):
    t = psd_table(np.array(sizes), n_classes=12, spacing=spacing)
    assert t["count"].sum() == len(sizes)
    for q in ("Q0", "Q3"):
        assert t[q].iloc[-1] == pytest.approx(1.0)
        assert np.all(np.diff(t[q]) >= -1e-12)
    widths = t.size_upper_um - t.size_lower_um
    assert (t.q3 * widths).sum() == pytest.approx(1.0)


def test_size_classes_fixed_width_and_any_size_column():
    e = size_classes(np.array([3.0, 57.0]), width_um=10)
    assert e[0] == 0 and np.allclose(np.diff(e), 10) and e[-1] >= 57
    parts = pd.DataFrame({"feret_max_um": [10.0, 20.0], "ecd_um": [5.0, 6.0]})
    assert percentile(parts, 50, size="feret_max_um") == pytest.approx(15.0)
    with pytest.raises(SchemaError, match="no size column"):
        psd_table(parts, size="length_um")


def test_chord_lengths_of_a_rectangle():
    lab = np.zeros((30, 40), np.int32)
    lab[5:10, 5:25] = 1  # 5 × 20 px
    c2 = chord_lengths(lab, pixel_size_um=2.0, n_directions=2)
    assert sorted(set(c2)) == [10.0, 40.0]
    assert np.sum(c2 == 40.0) == 5 and np.sum(c2 == 10.0) == 20
    c4 = chord_lengths(lab, pixel_size_um=1.0)
    assert c4.max() == 20.0 and np.isclose(c4, 5 * np.sqrt(2)).sum() > 0 and len(c4) > len(c2)
    edge = np.zeros((30, 40), np.int32)
    edge[0:5, 0:5] = 1
    assert chord_lengths(edge, pixel_size_um=1.0).size == 0
    d = chord_length_distribution(c4, n_classes=5)
    assert d["count"].sum() == len(c4) and d["Q0"].iloc[-1] == pytest.approx(1.0)
