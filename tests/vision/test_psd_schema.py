"""One PSD class-table schema: the simulator's PSD goes straight into the vision PSD functions."""

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import SchemaError
from crystalloop.hardware.sim.cqa import psd_frame, volume_percentiles
from crystalloop.vision import compare_psd, mean_size, percentile, psd_summary, psd_table
from crystalloop.vision.psd import PSD_CLASS_COLUMNS, is_psd_table


def _sim_psd(x50=60.0, s=0.35, n_classes=200):
    edges = np.geomspace(1.0, 1000.0, n_classes + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    # number per class of a log-normal number distribution (exact class integrals)
    from scipy.stats import lognorm

    cdf = lognorm(s, scale=x50).cdf(edges)
    n = np.diff(cdf) * 1e9
    return psd_frame(edges, centres, n * 0.8, n * 0.2, volume_m3=1e-3), edges


def test_sim_psd_has_the_shared_schema():
    t, _ = _sim_psd()
    assert set(PSD_CLASS_COLUMNS) <= set(t.columns) and is_psd_table(t)
    assert is_psd_table(psd_table(np.array([10.0, 20.0])))
    assert not is_psd_table(pd.DataFrame({"ecd_um": [1.0]}))


def test_sim_psd_percentiles_match_the_simulator_and_the_analytic_log_normal():
    t, edges = _sim_psd(x50=60.0, s=0.35)
    # number median of a log-normal is x50; volume median x50·exp(3 s²) (Hatch–Choate)
    assert percentile(t, 50, r=0) == pytest.approx(60.0, rel=0.01)
    x50_3 = 60.0 * np.exp(3 * 0.35**2)
    assert percentile(t, 50, r=3) == pytest.approx(x50_3, rel=0.01)
    ref = volume_percentiles(edges, t["number_per_m3"].to_numpy() * t["size_um"].to_numpy() ** 3)
    assert percentile(t, (10, 50, 90), r=3) == pytest.approx(ref, rel=1e-6)
    s = psd_summary(t)
    assert s["x50_3_um"] == pytest.approx(x50_3, rel=0.01)
    assert np.isnan(s["n_particles"])  # the simulator's table has no counts
    # number mean of a log-normal: x50·exp(s²/2)
    assert mean_size(t, 1, 0) == pytest.approx(60.0 * np.exp(0.35**2 / 2), rel=0.01)


def test_compare_psd_takes_the_simulator_table_on_either_side():
    t, _ = _sim_psd(x50=60.0, s=0.35)
    rng = np.random.default_rng(3)
    sample = rng.lognormal(np.log(60.0), 0.35, 20000)
    for r in (0, 3):
        c = compare_psd(sample, t, r=r)
        assert abs(c["x50_err_pct"]) < 2.0 and c["ks"] < 0.03, c
    c = compare_psd(t, sample, r=3)
    assert abs(c["x50_err_pct"]) < 2.0
    # table against table: identical
    same = compare_psd(t, t, r=3)
    assert same["ks"] == 0 and same["wasserstein_um"] == 0
    # a vision class table against the simulator's
    vt = psd_table(sample, edges=np.geomspace(5, 500, 60))
    assert abs(compare_psd(vt, t, r=3)["x50_err_pct"]) < 3.0
    # 10 % larger crystals: +10 % on every percentile
    big = t.assign(size_lower_um=t.size_lower_um * 1.1, size_upper_um=t.size_upper_um * 1.1,
                   size_um=t.size_um * 1.1)
    c = compare_psd(big, t, r=3)
    assert c["x50_err_pct"] == pytest.approx(10.0, abs=0.05)


def test_bad_psd_tables_say_what_is_wrong():
    t, _ = _sim_psd()
    with pytest.raises(SchemaError, match="contiguous and increasing"):
        percentile(t.iloc[::-1], 50)
    empty = t.assign(Q3=0.0, Q0=0.0, number_per_m3=0.0)
    with pytest.raises(SchemaError, match="never rises above 0"):
        compare_psd(np.array([10.0, 20.0]), empty, r=3)
    with pytest.raises(SchemaError, match="no size column"):
        compare_psd(np.array([10.0]), pd.DataFrame({"Q3": [0.5, 1.0]}))
