import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.control.dnc import DirectNucleationController, dnc_mode
from crystalloop.control.pid import Observation
from crystalloop.errors import ConfigError


@pytest.mark.parametrize("n, mode", [(121, "heat"), (120, "hold"), (100, "hold"), (80, "hold"), (79, "cool")])
def test_law_switching_at_band_edges(n, mode):
    assert dnc_mode(n, 100, 20) == mode


def _ctrl(**kw):
    kw = {"t_min_c": 10.0, "t_max_c": 50.0, "heating_rate_c_min": 0.5, "cooling_rate_c_min": 0.2,
          "filter_window": 1, "final_hold_min": 10.0, **kw}
    return DirectNucleationController(100.0, 20.0, **kw)


def _drive(ctrl, counts, t0=0.0, dt=60.0, sp0=40.0):
    ctrl.reset(Observation(t0, sp0, sp0, sp0, counts[0]))
    out = []
    for k, n in enumerate(counts):
        out.append(ctrl.setpoint(Observation(t0 + k * dt, sp0, sp0, sp0, n)))
    return out


def test_heats_cools_and_holds_at_the_documented_rates():
    ctrl = _ctrl()
    sp = _drive(ctrl, [200, 200, 200, 100, 100, 50, 50, 50])
    # step k applies the mode decided at step k-1 over one minute
    assert sp == pytest.approx([40.0, 40.5, 41.0, 41.5, 41.5, 41.5, 41.3, 41.1])
    assert [h[2] for h in ctrl.history_] == ["heat"] * 3 + ["hold"] * 2 + ["cool"] * 3


def test_temperature_limits_are_respected():
    ctrl = _ctrl(t_max_c=41.0)
    sp = _drive(ctrl, [500] * 20)
    assert max(sp) == pytest.approx(41.0)
    ctrl = _ctrl(t_min_c=39.0)
    sp = _drive(ctrl, [0] * 20)
    assert min(sp) == pytest.approx(39.0)


def test_filter_averages_counts():
    ctrl = _ctrl(filter_window=3)
    _drive(ctrl, [0, 0, 500])  # mean 166 > 120 → heat
    assert ctrl.mode_ == "heat"
    ctrl = _ctrl(filter_window=3)
    _drive(ctrl, [100, 100, 160])  # mean 120 → hold
    assert ctrl.mode_ == "hold"


def test_finishes_after_final_hold_at_minimum():
    ctrl = _ctrl(t_min_c=39.0, final_hold_min=5.0)
    counts = [0] * 30
    ctrl.reset(Observation(0.0, 40, 40, 40, 0))
    done_at = None
    for k, n in enumerate(counts):
        obs = Observation(k * 60.0, 40, 40, 40, n)
        ctrl.setpoint(obs)
        if ctrl.finished(obs):
            done_at = k
            break
    # reaches 39 °C after 5 min of cooling (decided at k=0), then 5 min hold
    assert done_at == 10


def test_no_counts_means_hold():
    ctrl = _ctrl()
    sp = _drive(ctrl, [float("nan")] * 5)
    assert sp == pytest.approx([40.0] * 5)


@pytest.mark.parametrize("kw, match", [
    (dict(t_min_c=50.0, t_max_c=10.0), "t_min_c < t_max_c"),
    (dict(heating_rate_c_min=0.0), "heating_rate_c_min must be > 0"),
    (dict(filter_window=0), "filter_window"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ConfigError, match=match):
        _ctrl(**kw)


def test_hold_times_out_into_cooling():
    ctrl = _ctrl(max_hold_min=3.0)
    sp = _drive(ctrl, [100] * 7)  # always in band
    assert [h[2] for h in ctrl.history_] == ["hold"] * 3 + ["cool"] * 4
    assert sp[-1] == pytest.approx(40.0 - 0.2 * 3)
    pure = _ctrl(max_hold_min=float("inf"))
    assert _drive(pure, [100] * 7) == pytest.approx([40.0] * 7)


class _BlobCamera:
    """A camera whose frames show ``n`` dark 12×12 px squares on a bright background."""

    name = "blobs"
    pixel_size_um = 2.0

    def __init__(self, clock, n):
        self.clock, self.n = clock, n

    def grab(self):
        import numpy as np

        from crystalloop.hardware.base import Frame

        img = np.full((120, 160), 200, np.uint8)
        for k in range(self.n):
            r, c = 15 + 30 * (k // 5), 15 + 30 * (k % 5)
            img[r:r + 12, c:c + 12] = 40
        return Frame(img, self.clock.now(), self.pixel_size_um)

    def close(self):
        pass


def test_image_counter_counts_particles_in_frames(clock):
    from crystalloop.control.dnc import ImageCounter

    cam = _BlobCamera(clock, 7)
    r = ImageCounter(cam).read()
    assert r.value == 7 and r.channel == "image_counts"
    assert ImageCounter(cam, min_size_um=40.0).read().value == 0  # 12 px × 2 µm squares: ECD ≈ 27 µm
    with pytest.raises(ConfigError, match="needs a Camera"):
        ImageCounter(object())


def test_dnc_on_image_counts(clock, thermostat, short_recipe):
    from crystalloop.control.runner import run
    from crystalloop.hardware.base import Crystallizer

    cz = Crystallizer("fake://", clock, thermostat, camera=_BlobCamera(clock, 9))
    res = run(short_recipe, crystallizer=cz, controller="dnc", counts_from="camera", duration_s=1200.0,
              controller_options={"counts_setpoint": 3.0, "band": 1.0, "filter_window": 1, "t_max_c": 65.0})
    assert (res.timeseries["image_counts"] == 9).all()
    sp = res.timeseries["T_set_c"].to_numpy()
    assert sp[-1] > sp[1]  # 9 > 3 + 1: DNC heats


def test_dnc_without_any_counter_is_refused(clock, thermostat, short_recipe):
    from crystalloop.control.runner import run
    from crystalloop.hardware.base import Crystallizer

    cz = Crystallizer("fake://", clock, thermostat)
    with pytest.raises(ConfigError, match="needs a particle counter.*counts_from='camera'"):
        run(short_recipe, crystallizer=cz, controller="dnc", controller_options={"counts_setpoint": 3.0})
    with pytest.raises(ConfigError, match="needs a camera"):
        run(short_recipe, crystallizer=cz, controller="dnc", counts_from="camera",
            controller_options={"counts_setpoint": 3.0})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(1.0, 600.0)), min_size=1, max_size=40))
def test_dnc_setpoint_stays_in_range_and_rate(steps):
    ctrl = _ctrl(max_hold_min=5.0)
    ctrl.reset(Observation(0.0, 40.0, 40.0, 40.0))
    t, prev = 0.0, 40.0
    for n, dt in steps:
        t += dt
        sp = ctrl.setpoint(Observation(t, 40.0, 40.0, prev, n))
        assert ctrl.t_min_c <= sp <= ctrl.t_max_c
        assert abs(sp - prev) <= max(ctrl.heating_rate_c_min, ctrl.cooling_rate_c_min) * dt / 60.0 + 1e-9
        prev = sp
