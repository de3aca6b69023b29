"""Physical profile features: hand-computed values on simple recipes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crystalloop.digital_twin.features import (
    PROFILE_FEATURES,
    SOLUBILITY_FEATURES,
    ProfileFeatures,
    SolubilityCurve,
    profile_features,
)
from crystalloop.errors import ConfigError, SchemaError
from crystalloop.profiles import Segment, ThermocycleProfile, profiles_to_frame

SOL = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))  # the default compound, mg/g, °C


def _x(*profiles):
    return profiles_to_frame(list(profiles), 4)


def test_linear_cooling_by_hand():
    p = ThermocycleProfile(45.0, 0.1, 60.0, [Segment(10.0, 0.25)])
    f = profile_features(_x(p), solubility=SOL).iloc[0]
    assert f["batch_time_min"] == pytest.approx(200.0)
    assert f["cooling_span_c"] == pytest.approx(50.0)
    assert f["heating_time_min"] == 0 and f["heat_amplitude_sum_c"] == 0
    assert f["T_final_c"] == 10.0 and f["T_top_c"] == 60.0
    tsat = float(SOL.saturation_temperature(45.0))
    assert f["T_sat_c"] == pytest.approx(tsat)
    assert 49.9 < tsat < 50.0
    # below T_sat for (T_sat - 10) / 0.25 min; ∫(T_sat - T) dt = ΔT² / (2 r) °C·min
    assert f["time_supersat_min"] == pytest.approx((tsat - 10.0) / 0.25)
    assert f["undercooling_integral_c_h"] == pytest.approx((tsat - 10.0) ** 2 / (2 * 0.25) / 60.0)
    assert f["yield_theoretical"] == pytest.approx(1 - float(SOL(10.0)) / 45.0)
    # supersaturation generated per hour below T_sat, relative to c0
    gen = (45.0 - float(SOL(10.0))) / 45.0 / ((tsat - 10.0) / 0.25) * 60.0
    assert f["supersat_gen_first"] == pytest.approx(gen)
    assert f["dissolved_frac_max"] == 0 and f["full_dissolution"] == 0


def test_heating_cycle_dissolution_fraction_and_full_dissolution():
    c0 = 45.0
    tsat = float(SOL.saturation_temperature(c0))
    part = ThermocycleProfile(c0, 0.1, 50.0, [Segment(20.0, 0.2), Segment(35.0, 0.5), Segment(10.0, 0.2)])
    full = ThermocycleProfile(c0, 0.1, 50.0, [Segment(20.0, 0.2), Segment(tsat + 3.0, 0.5), Segment(10.0, 0.2)])
    F = profile_features(_x(part, full), solubility=SOL)
    frac = (float(SOL(35.0)) - float(SOL(20.0))) / (c0 - float(SOL(20.0)))
    assert F["dissolved_frac_first"].iloc[0] == pytest.approx(frac)
    assert 0 < frac < 1 and F["full_dissolution"].iloc[0] == 0
    assert F["heat_amplitude_max_c"].iloc[0] == pytest.approx(15.0)
    assert F["full_dissolution"].iloc[1] == 1 and F["dissolved_frac_max"].iloc[1] == 1
    assert F["heat_above_sat_c"].iloc[1] == pytest.approx(3.0)
    assert F["heating_time_min"].iloc[0] == pytest.approx(30.0)
    assert F["batch_time_min"].iloc[0] == pytest.approx(150 + 30 + 125)


def test_without_solubility_only_profile_features():
    p = ThermocycleProfile(30.0, 0.1, 50.0, [Segment(5.0, 0.1)])
    f = profile_features(_x(p))
    assert list(f.columns) == list(PROFILE_FEATURES)
    f2 = profile_features(_x(p), solubility=SOL)
    assert list(f2.columns) == list(PROFILE_FEATURES) + list(SOLUBILITY_FEATURES)


def test_table_curve_matches_polynomial_and_inverts():
    T = np.linspace(0, 70, 15)
    tab = SolubilityCurve(table_t_c=tuple(T), table_mg_g=tuple(SOL(T)))
    assert np.allclose(tab(T), SOL(T))
    assert abs(float(tab(33.3)) - float(SOL(33.3))) < 0.05
    assert float(tab.saturation_temperature(float(SOL(41.0)))) == pytest.approx(41.0, abs=0.05)
    assert SolubilityCurve.from_dict(tab.to_dict()) == tab


def test_curve_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="either coefficients .* or a table"):
        SolubilityCurve()
    with pytest.raises(ConfigError, match="strictly increasing"):
        SolubilityCurve(table_t_c=(0.0, 10.0, 5.0), table_mg_g=(1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match="unknown keys \\['coefs'\\]"):
        SolubilityCurve.from_dict({"coefs": [1, 2]})
    p = tmp_path / "sol.csv"
    pd.DataFrame({"T": [0, 10], "c": [1, 2]}).to_csv(p, index=False)
    with pytest.raises(SchemaError, match=r"sol\.csv: missing column\(s\) \['T_c', 'solubility_mg_g'\]"):
        SolubilityCurve.from_file(p)
    pd.DataFrame({"T_c": [0, 10, 20], "solubility_mg_g": [8, 12, 17]}).to_csv(p, index=False)
    assert float(SolubilityCurve.from_file(p)(10.0)) == pytest.approx(12.0)


def test_transformer_is_sklearn_shaped_and_json_parametrised():
    X = _x(ThermocycleProfile(45.0, 0.1, 60.0, [Segment(10.0, 0.25)]),
           ThermocycleProfile(35.0, 0.05, 55.0, [Segment(20.0, 0.1), Segment(30.0, 0.8), Segment(5.0, 0.2)]))
    X = X.to_numpy(dtype=float)
    t = ProfileFeatures(solubility=SOL.to_dict(), columns=["T_sat_c", "batch_time_min"])
    Z = clone(t).fit(X).transform(X)
    assert Z.shape == (2, 2)
    assert list(t.fit(X).get_feature_names_out()) == ["T_sat_c", "batch_time_min"]
    with pytest.raises(SchemaError, match="need 32 recipe columns"):
        t.fit(X[:, :10])
    with pytest.raises(ConfigError, match="unknown profile feature"):
        ProfileFeatures(columns=["nope"]).fit(X)
