"""Experiment outcomes from image sequences: events, induction time, solubility curve, MSZW."""

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, ModelError, SchemaError
from crystalloop.vision.learn import (
    SolubilityCurve,
    clear_cloud_points,
    detect_events,
    fit_solubility,
    induction_time,
    metastable_zone_width,
    plot_sequence,
    plot_solubility,
    sequence_table,
)

TRUE = SolubilityCurve(a=8.0, b=-3500.0, r2=1.0, n_points=0, t_range_c=(0.0, 0.0))


def _experiment(conc, *, mszw=6.0, heat=0.2, cool=0.5, dt_s=30.0, flicker=False, seed=0):
    """Cool from T_sat+10 to T_sat-15, heat back, twice: particles appear at T_sat - mszw on
    cooling and vanish at T_sat on heating (hysteresis)."""
    ts = float(TRUE.t_sat(conc))
    hi, lo = ts + 10, ts - 15
    T, t = [hi], [0.0]
    for _ in range(2):
        for target, rate in ((lo, cool), (hi, heat)):
            n = int(abs(target - T[-1]) / rate / (dt_s / 60))
            T += list(np.linspace(T[-1], target, n + 1)[1:])
    t = np.arange(len(T)) * dt_s
    T = np.asarray(T)
    present = np.zeros(len(T), bool)
    state = False
    for i in range(len(T)):
        if not state and T[i] <= ts - mszw:
            state = True
        elif state and T[i] >= ts:
            state = False
        present[i] = state
    if flicker:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(T), 6, replace=False)
        present[idx] = ~present[idx]
    return pd.DataFrame({"time_s": t, "T_c": T, "present": present, "score": present.astype(float)}), ts


def test_detect_events_on_ramps():
    tab, ts = _experiment(0.03)
    ev = detect_events(tab)
    assert list(ev["kind"]) == ["cloud", "clear", "cloud", "clear"]
    assert list(ev["direction"]) == ["cooling", "heating", "cooling", "heating"]
    assert ev.loc[ev.kind == "cloud", "T_c"].to_numpy() == pytest.approx(ts - 6.0, abs=0.3)
    assert ev.loc[ev.kind == "clear", "T_c"].to_numpy() == pytest.approx(ts, abs=0.15)
    assert ev.loc[ev.kind == "clear", "rate_c_min"].to_numpy() == pytest.approx(0.2, rel=0.05)


def test_flickering_frames_are_ignored():
    clean = detect_events(_experiment(0.03)[0])
    noisy = detect_events(_experiment(0.03, flicker=True, seed=4)[0], min_consecutive=3)
    assert list(noisy["kind"]) == list(clean["kind"])
    assert noisy["T_c"].to_numpy() == pytest.approx(clean["T_c"].to_numpy(), abs=0.5)


def test_induction_time():
    tab = pd.DataFrame({"time_s": np.arange(10) * 60.0, "present": [0, 0, 1, 0, 0, 1, 1, 1, 1, 1]})
    assert induction_time(tab) == 300.0  # the single frame at 120 s is a flicker
    assert induction_time(tab, min_consecutive=1) == 120.0
    assert induction_time(tab, t0_s=60.0) == 240.0
    assert np.isnan(induction_time(tab.assign(present=0)))
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['present'\]"):
        induction_time(tab.drop(columns="present"))


def test_solubility_and_mszw_from_several_experiments(tmp_path):
    concs = [0.02, 0.03, 0.045, 0.06]
    exps = {c: _experiment(c)[0] for c in concs}
    pts = clear_cloud_points(exps)
    assert set(pts["kind"]) == {"clear", "cloud"} and len(pts) == 16
    curve = fit_solubility(pts)
    assert curve.r2 > 0.999 and curve.n_points == 4
    assert curve.t_sat(concs) == pytest.approx(TRUE.t_sat(concs), abs=0.3)
    assert curve.csat(25.0) == pytest.approx(float(TRUE.csat(25.0)), rel=0.02)
    assert curve.dissolution_enthalpy_j_mol == pytest.approx(3500 * 8.314, rel=0.05)
    mz = metastable_zone_width(pts)
    assert mz["mszw_c"].to_numpy() == pytest.approx(6.0, abs=0.5)
    p1 = plot_solubility(pts, tmp_path / "sol.png", curve=curve, reference=TRUE.csat, units="kg/kg")
    p2 = plot_sequence(exps[0.03], tmp_path / "seq.png")
    assert p1.stat().st_size > 5000 and p2.stat().st_size > 5000


def test_rate_extrapolation_removes_lag():
    # clear point lags by 10 °C·min per °C/min of heating rate: 0.1 → +1 °C, 0.3 → +3 °C
    tabs = {}
    for c in (0.03, 0.05):
        ts = float(TRUE.t_sat(c))
        parts, t0 = [], 0.0
        for rate in (0.1, 0.3):
            tab, _ = _experiment(c, heat=rate)
            # shift the disappearance later on heating by the lag: present until T_sat + 10·rate
            heating = np.gradient(tab["T_c"].to_numpy()) > 0
            lagged = tab["present"].to_numpy() | (heating & (tab["T_c"].to_numpy() < ts + 10 * rate) & (tab["T_c"].to_numpy() >= ts - 0.01))
            parts.append(tab.assign(present=lagged, time_s=tab["time_s"] + t0))
            t0 = parts[-1]["time_s"].iloc[-1] + 30.0
        tabs[c] = pd.concat(parts, ignore_index=True)
    pts = clear_cloud_points(tabs, extrapolate_rate=True)
    z = pts[pts.kind == "clear_0"].set_index("concentration")["T_c"]
    for c in (0.03, 0.05):
        assert z[c] == pytest.approx(float(TRUE.t_sat(c)), abs=0.3)
        raw = pts[(pts.kind == "clear") & (pts.concentration == c)]["T_c"]
        assert raw.max() > float(TRUE.t_sat(c)) + 2.5  # the fast ramp overshoots


def test_sequence_table_with_callable_and_errors():
    imgs = [np.full((16, 16), v, np.uint8) for v in (200, 200, 50, 50)]
    tab = sequence_table(imgs, [0, 60, 120, 180], [30, 29, 28, 27], model=lambda xs: [float(x.mean() < 100) for x in xs])
    assert list(tab["present"]) == [False, False, True, True]
    assert induction_time(tab) == 120.0
    with pytest.raises(SchemaError, match="one time and one temperature per image"):
        sequence_table(imgs, [0, 60], [30, 29, 28, 27], model=lambda xs: [0] * len(xs))
    with pytest.raises(ModelError, match="returned 1 scores for 4 images"):
        sequence_table(imgs, [0, 60, 120, 180], [30, 29, 28, 27], model=lambda xs: [0.0])
    with pytest.raises(ConfigError, match="needs pixel_size_um"):
        sequence_table(imgs, [0, 60, 120, 180], [30, 29, 28, 27])
    with pytest.raises(ModelError, match="at ≥ 2 concentrations"):
        fit_solubility(pd.DataFrame({"concentration": [0.03], "kind": ["clear"], "T_c": [30.0]}))
    with pytest.raises(SchemaError, match="duplicate time_s"):
        detect_events(pd.DataFrame({"time_s": [0, 0], "T_c": [1, 2], "present": [0, 1]}))


def test_sequence_table_classical_detector():
    from crystalloop.vision.render import render_particles

    p = pd.DataFrame({"x_px": [40.0], "y_px": [40.0], "length_um": [30.0], "width_um": [30.0]})
    full, _ = render_particles(p, shape=(80, 80), pixel_size_um=1.0, illumination=0.0, seed=0)
    empty, _ = render_particles(p.iloc[:0], shape=(80, 80), pixel_size_um=1.0, illumination=0.0, seed=1)
    tab = sequence_table([empty, empty, full, full], [0, 1, 2, 3], [5, 4, 3, 2], pixel_size_um=1.0)
    assert list(tab["n_particles"]) == [0, 0, 1, 1]
