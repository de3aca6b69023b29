"""The design's validity domain: distance to measured recipes, structures run, dissolution (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_design import AnalyticTwin

from crystalloop.digital_twin.design import (
    DesignSpace,
    ValidityDomain,
    optimize_design,
    solubility_polynomial,
    solubility_table,
)
from crystalloop.errors import ConfigError, OptimizationError
from crystalloop.profiles import (
    DEFAULT_BOUNDS,
    Segment,
    ThermocycleProfile,
    feature_names,
    profiles_to_frame,
)

SOL = solubility_polynomial([8.0e-3, 2.83e-4, 9.17e-6])  # the default kinetic set (kg/kg, °C)


def _measured(n=24, seed=0, cycles=(1, 2)):
    """Measured recipes: a random sample of the 1- and 2-cycle design spaces (no heating above the start)."""
    rng = np.random.default_rng(seed)
    rows = []
    for nc in cycles:
        space = DesignSpace(nc, bounds=DEFAULT_BOUNDS)
        X = space.sample(n // len(cycles), rng)
        rows.append(space.features(X, 4))
    F = pd.DataFrame(np.vstack(rows), columns=feature_names(4))
    F.insert(0, "run_id", [f"M{i:02d}" for i in range(len(F))])
    return F


def test_distance_is_zero_on_a_measured_recipe_and_scales_with_the_bounds():
    F = _measured()
    dom = ValidityDomain.from_frame(F, 4, max_distance=0.2)
    A = F[feature_names(4)].to_numpy()
    d, near = dom.distance(A)
    np.testing.assert_allclose(d, 0.0, atol=1e-12)
    assert list(near) == list(range(len(F)))
    # move c0 of a 1-cycle recipe (3 segments: 3 + 3*3 = 12 active variables) by 10 % of its bound width
    B = A[:1].copy()
    B[0, 0] += 0.1 * (DEFAULT_BOUNDS.c0_mg_g[1] - DEFAULT_BOUNDS.c0_mg_g[0])
    d1, _ = dom.distance(B)
    others = ValidityDomain(np.delete(A, 0, axis=0), 4, max_distance=None).distance(B)[0]
    assert d1[0] == pytest.approx(min(0.1 / np.sqrt(12), others[0]))
    # a structure never measured (0 cycles: one segment) has no neighbour and violates the structure column
    p0 = ThermocycleProfile(40, 0.1, 60, [Segment(10, 0.2)])
    d0, n0 = dom.distance(p0.to_features(4)[None, :])
    assert np.isinf(d0[0]) and n0[0] == -1
    G = dom.constraints(p0.to_features(4)[None, :])
    assert G[0, 0] > 0 and G[0, 1] == 1.0
    assert dom.labels()[1] == "number of segments among those measured [3, 5]"


def test_auto_distance_is_the_spread_of_the_measured_recipes():
    F = _measured(40, seed=1)
    dom = ValidityDomain.from_frame(F, 4)
    loo = dom._loo_distances()
    assert dom.max_distance_ == pytest.approx(np.quantile(loo, 0.9)) and 0 < dom.max_distance_ < 1


def test_dissolution_temperature_and_the_measured_excess():
    p = ThermocycleProfile(50.0, 0.1, 62.0, [Segment(30, 0.2), Segment(61.5, 0.8), Segment(20, 0.2)])
    f = p.to_features(4)[None, :]
    dom = ValidityDomain(f, 4, solubility=SOL, max_distance=None)
    T = dom.dissolution_temperature_c(f)[0]
    assert float(SOL(T)) == pytest.approx(50.0 * 1.1, rel=1e-6)  # all solute incl. seeds dissolved at T
    assert dom.peak_excess_c(f)[0] == pytest.approx(61.5 - T)
    assert T < 61.5 and dom.dissolving_seen_ and dom.excess_allowed_c_[3] == pytest.approx(61.5 - T)
    # a recipe of that structure heating further than the measured one violates the dissolution column
    hot = ThermocycleProfile(50.0, 0.1, 62.0, [Segment(30, 0.2), Segment(68.0, 0.8), Segment(20, 0.2)])
    g = dom.constraints(hot.to_features(4)[None, :])[0]
    assert g[-1] == pytest.approx(68.0 - 61.5)
    # without a solubility curve, the start temperature stands in
    plain = ValidityDomain(f, 4, max_distance=None)
    assert plain.dissolution_temperature_c(f)[0] == 62.0 and not plain.dissolving_seen_
    tab = plain.table(hot.to_features(4)[None, :])
    assert bool(tab.loc[0, "dissolves"]) and not bool(tab.loc[0, "dissolution_seen"])
    assert not bool(tab.loc[0, "inside_domain"])


def test_solubility_helpers_and_bad_input():
    c = solubility_table([10, 30, 50], [15, 30, 55])
    np.testing.assert_allclose(c(np.array([20.0, 60.0, 0.0])), [22.5, 67.5, 7.5])
    assert float(solubility_polynomial([45.0], unit="mg/g")(12.0)) == 45.0
    with pytest.raises(ConfigError, match=r"a solubility table needs >= 2 finite"):
        solubility_table([10], [15])
    with pytest.raises(ConfigError, match=r"solubility unit must be 'kg/kg' or 'mg/g', got 'g/L'"):
        solubility_polynomial([1.0], unit="g/L")
    with pytest.raises(OptimizationError, match=r"max_distance must be > 0"):
        ValidityDomain(_measured()[feature_names(4)].to_numpy(), 4, max_distance=-1)
    with pytest.raises(OptimizationError, match=r"lack feature column"):
        ValidityDomain.from_frame(pd.DataFrame({"c0_mg_g": [40.0]}), 4)


def test_design_stays_inside_the_domain_and_reports_extrapolation():
    measured = _measured(24, seed=3)
    kw = dict(cycles="1-2", pop_size=16, n_gen=12, seed=2)
    free = optimize_design(AnalyticTwin(), "max:D50,min:DoA", domain=None, **kw)
    assert "distance_to_doe" not in free.front
    kept = optimize_design(AnalyticTwin(), "max:D50,min:DoA", domain=measured, max_distance=0.12, **kw)
    f = kept.front
    for col in ("distance_to_doe", "nearest_run", "structure_seen", "heating_peak_excess_c", "inside_domain"):
        assert col in f
    assert f["inside_domain"].all() and (f["distance_to_doe"] <= 0.12 + 1e-9).all()
    assert set(f["nearest_run"]) <= set(measured["run_id"])
    assert {"D50_um_mean", "D50_um_std"} <= set(f.columns)  # prediction ± std per recipe
    # the unconstrained front runs to the corners, far from every measured recipe
    dom = ValidityDomain.from_frame(measured, 4, max_distance=0.12)
    Ff = profiles_to_frame(free.profiles, 4).to_numpy()
    assert dom.distance(Ff)[0].max() > 0.12
    assert kept.settings["domain"]["max_distance"] == 0.12


class _TrainedTwin(AnalyticTwin):
    def __init__(self, data):
        super().__init__()
        self.training_data_ = data


def test_auto_domain_from_the_twin_and_no_unseen_dissolution():
    sol = solubility_polynomial([0.0, 1.0], unit="mg/g")  # c* = T: dissolution at c0 (1 + seed) °C
    pool = _measured(60, seed=5)
    probe = ValidityDomain.from_frame(pool, 4, solubility=sol, max_distance=None)
    keep = probe.peak_excess_c(pool[feature_names(4)].to_numpy()) < 0  # runs that never dissolved
    measured = pool[keep].reset_index(drop=True)
    dom = ValidityDomain.from_frame(measured, 4, solubility=sol, max_distance=None)
    assert not dom.dissolving_seen_ and set(dom.excess_allowed_c_.values()) == {0.0}
    kw = dict(cycles="1-2", pop_size=20, n_gen=12, seed=1, solubility=sol, max_distance=None)
    free = optimize_design(AnalyticTwin(), "max:D50,min:DoA", domain=None, **kw)
    ex_free = dom.peak_excess_c(profiles_to_frame(free.profiles, 4).to_numpy())
    assert (ex_free > 0).any()  # left alone, the optimizer designs recipes that dissolve their product
    r = optimize_design(_TrainedTwin(measured), "max:D50,min:DoA", **kw)  # domain="auto": the twin's data
    assert (r.front["heating_peak_excess_c"] <= 1e-6).all() and not r.front["dissolves"].any()
    assert r.settings["domain"]["n_runs"] == len(measured) and r.settings["domain"]["solubility"] is True
