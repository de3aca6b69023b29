"""ThermocycleProfile: trajectory, features, feasibility and I/O."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.errors import ProfileError
from crystalloop.hardware.base import ThermostatLimits
from crystalloop.profiles import (
    DEFAULT_BOUNDS,
    ProfileBounds,
    Segment,
    ThermocycleProfile,
    feature_names,
    profiles_from_frame,
    profiles_to_frame,
)


def three_cycle() -> ThermocycleProfile:
    return ThermocycleProfile(
        40.0, 0.1, 60.0,
        [Segment(40, 0.2), Segment(50, 0.8), Segment(30, 0.2, 15), Segment(40, 0.6),
         Segment(20, 0.1), Segment(28, 0.5), Segment(5, 0.1, 30)],
        name="three",
    )


@st.composite
def profiles(draw, max_cycles: int = 4):
    n_seg = draw(st.integers(1, 2 * max_cycles + 1))
    t = draw(st.floats(20, 70))  # temperature before segment 1 (the start is set above it below)
    segs = []
    for k in range(n_seg):
        if k % 2 == 0:  # cooling
            step = draw(st.floats(0.5, 30))
            t = t - step
            rate = draw(st.floats(0.05, 0.3))
        else:
            step = draw(st.floats(0.5, 30))
            t = t + step
            rate = draw(st.floats(0.5, 1.0))
        hold = draw(st.one_of(st.just(0.0), st.floats(0, 120)))
        segs.append(Segment(t, rate, hold))
    t_start = segs[0].target_c + draw(st.floats(0.5, 30))
    return ThermocycleProfile(draw(st.floats(24.8, 55.2)), draw(st.floats(0.05, 0.15)), t_start, segs)


@given(profiles())
@settings(max_examples=200, deadline=None)
def test_features_round_trip(p):
    x = p.to_features(4)
    assert x.shape == (len(feature_names(4)),)
    q = ThermocycleProfile.from_features(x, 4)
    np.testing.assert_array_equal(q.to_features(4), x)
    assert q.segments == p.segments
    assert q.batch_time_s == pytest.approx(p.batch_time_s)


@given(profiles())
@settings(max_examples=100, deadline=None)
def test_dict_round_trip_and_trajectory_bounds(p):
    q = ThermocycleProfile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q == p
    traj = p.trajectory(dt_s=300)
    temps = [p.t_start_c] + [s.target_c for s in p.segments]
    assert traj.setpoint_c.min() >= min(temps) - 1e-9
    assert traj.setpoint_c.max() <= max(temps) + 1e-9
    assert traj.time_s.iloc[-1] == pytest.approx(p.batch_time_s)
    assert float(p.setpoint_at(p.batch_time_s + 1e5)) == p.end_temperature_c


def test_unused_slots_are_explicit_not_zero_sentinel():
    p = ThermocycleProfile(30.0, 0.1, 50.0, [Segment(0.0, 0.1)])  # 0 °C is a legal target
    x = dict(zip(feature_names(4), p.to_features(4), strict=True))
    assert x["n_segments"] == 1 and x["n_cycles"] == 0
    assert x["T1_c"] == 0.0 and x["rate1_c_min"] == 0.1
    # unused slots repeat the last temperature with rate 0: the 0 °C target stays distinguishable
    assert x["T2_c"] == 0.0 and x["rate2_c_min"] == 0.0
    assert ThermocycleProfile.from_features(p.to_features(4)) == p


def test_setpoint_trajectory_values():
    p = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(30.0, 0.2), Segment(45.0, 0.8, 10), Segment(10.0, 0.1)])
    # 60 -> 30 at 0.2 °C/min = 150 min; -> 45 at 0.8 = 18.75 min; hold 10; -> 10 at 0.1 = 350 min
    assert p.batch_time_min == pytest.approx(150 + 18.75 + 10 + 350)
    assert float(p.setpoint_at(75 * 60)) == pytest.approx(45.0)
    assert float(p.setpoint_at((150 + 18.75 + 5) * 60)) == pytest.approx(45.0)  # in the hold
    assert p.n_cycles == 1 and p.directions() == ["cool", "heat", "cool"]
    np.testing.assert_array_equal(p.segment_at(np.array([-1, 10, 150 * 60 + 1, 1e9])), [0, 1, 2, 4])


def test_alternation_errors_name_segment():
    with pytest.raises(ProfileError, match="segment 2 must heat"):
        ThermocycleProfile(40, 0.1, 60, [Segment(40, 0.2), Segment(30, 0.8)])
    with pytest.raises(ProfileError, match="segment 1 must cool"):
        ThermocycleProfile(40, 0.1, 20, [Segment(40, 0.2)])
    with pytest.raises(ProfileError, match="segment 1 .* does not change"):
        ThermocycleProfile(40, 0.1, 20, [Segment(20, 0.2)])
    with pytest.raises(ProfileError, match="rate_c_min must be > 0"):
        ThermocycleProfile(40, 0.1, 60, [Segment(20, -0.2)])
    with pytest.raises(ProfileError, match="at least one"):
        ThermocycleProfile(40, 0.1, 60, [])
    with pytest.raises(ProfileError, match="must be finite"):
        ThermocycleProfile(float("nan"), 0.1, 60, [Segment(20, 0.2)])


def test_bounds_and_limits_violations_are_named():
    p = ThermocycleProfile(60.0, 0.2, 75.0, [Segment(40, 0.5), Segment(50, 0.3), Segment(-5, 0.1)])
    v = p.violations()
    text = " | ".join(v)
    assert "c0_mg_g 60 mg/g exceeds the upper bound 55.2" in text
    assert "seed_loading 0.2" in text
    assert "segment 1 (cooling) rate 0.5 °C/min exceeds the upper bound 0.3" in text
    assert "segment 2 (heating) rate 0.3 °C/min is below the lower bound 0.5" in text
    assert "segment 3 (cooling) target -5 °C is below the lower bound 0" in text
    with pytest.raises(ProfileError, match="infeasible"):
        p.validate()
    lim = ThermostatLimits(min_c=0.0, max_c=70.0, max_rate_c_min=0.4)
    lv = " | ".join(p.violations(bounds=None, limits=lim))
    assert "start temperature 75 °C exceeds the upper limit 70 °C" in lv
    assert "segment 1 rate 0.5 °C/min exceeds the ramp limit 0.4" in lv
    assert three_cycle().is_feasible()
    assert not three_cycle().is_feasible(bounds=ProfileBounds(max_cycles=2))


def test_feature_frame_round_trip_and_errors():
    ps = [three_cycle(), ThermocycleProfile(30, 0.05, 50, [Segment(10, 0.3)])]
    df = profiles_to_frame(ps)
    assert list(df.columns) == feature_names(4)
    assert profiles_from_frame(df) == [p.with_(name="") for p in ps]  # names are not features
    bad = df.copy()
    bad.loc[1, "n_segments"] = 12
    with pytest.raises(ProfileError, match=r"row 1 .*n_segments=12"):
        profiles_from_frame(bad)
    with pytest.raises(ProfileError, match="missing column"):
        profiles_from_frame(pd.DataFrame({"c0_mg_g": [1.0]}))
    with pytest.raises(ProfileError, match="holds at most 3 segments"):
        three_cycle().to_features(max_cycles=1)
    with pytest.raises(ProfileError, match="expected 32"):
        ThermocycleProfile.from_features(np.zeros(10), 4)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    p = three_cycle()
    path = p.to_file(tmp_path / f"r{suffix}")
    assert ThermocycleProfile.from_file(path) == p


def test_file_errors_name_file_and_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("c0_mg_g: 40\nseed_loading: 0.1\nt_start_c: 60\nsegments:\n  - {target_c: 30}\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: segment 1: missing field\(s\) \['rate_c_min'\]"):
        ThermocycleProfile.from_file(f)
    f.write_text("c0_mg_g: 40\nseed_loading: 0.1\nsegments: []\n")
    with pytest.raises(ProfileError, match=r"missing field\(s\) \['t_start_c'\]"):
        ThermocycleProfile.from_file(f)
    f.write_text("c0_mg_g: forty\nseed_loading: 0.1\nt_start_c: 60\nsegments: [{target_c: 30, rate_c_min: 0.1}]\n")
    with pytest.raises(ProfileError, match="c0_mg_g must be a number, got 'forty'"):
        ThermocycleProfile.from_file(f)
    f.write_text("c0_mg_g: 40\nfoo: 1\nseed_loading: 0.1\nt_start_c: 60\nsegments: []\n")
    with pytest.raises(ProfileError, match=r"unknown field\(s\) \['foo'\]"):
        ThermocycleProfile.from_file(f)
    f.write_text("c0_mg_g: [40\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        ThermocycleProfile.from_file(f)
    with pytest.raises(ProfileError, match="does not exist"):
        ThermocycleProfile.from_file(tmp_path / "nope.yaml")
    with pytest.raises(ProfileError, match="unsupported extension"):
        three_cycle().to_file(tmp_path / "x.txt")


def test_bounds_validation():
    with pytest.raises(ProfileError, match="temperature_c"):
        ProfileBounds(temperature_c=(70.0, 0.0))
    assert ProfileBounds.from_dict(DEFAULT_BOUNDS.to_dict()) == DEFAULT_BOUNDS
    with pytest.raises(ProfileError, match="Unknown bound"):
        ProfileBounds.from_dict({"speed": (0, 1)})
