"""sim:// devices: protocols, lazy integration on the clock, limits, URL options."""

from __future__ import annotations

import numpy as np
import pytest

from crystalloop.errors import BackendError, DeviceDisconnected, LimitError
from crystalloop.hardware import (
    Camera,
    ConcentrationSensor,
    ParticleCounter,
    Stirrer,
    Thermostat,
    ThermostatLimits,
    TransmissivitySensor,
    VirtualClock,
    connect,
)
from crystalloop.hardware.sim import VirtualCrystallizer
from crystalloop.profiles import Segment, ThermocycleProfile


def test_devices_implement_the_protocols():
    cr = connect("sim://?seed=3&kinetics=default&n_classes=120")
    assert isinstance(cr.thermostat, Thermostat)
    assert isinstance(cr.camera, Camera)
    assert isinstance(cr.transmissivity, TransmissivitySensor)
    assert isinstance(cr.concentration, ConcentrationSensor)
    assert isinstance(cr.counter, ParticleCounter)
    assert isinstance(cr.stirrer, Stirrer)
    assert isinstance(cr.plant, VirtualCrystallizer)
    assert isinstance(cr.clock, VirtualClock)
    assert cr.plant.pbm.grid.n == 120 and cr.plant.seed == 3


def test_plant_integrates_lazily_to_the_clock():
    cr = connect("sim://?seed=1&c0_mg_g=45&t_start_c=50")
    th = cr.thermostat
    assert cr.plant.t_s == 0.0
    th.set_setpoint(20.0)
    cr.clock.sleep(1800.0)
    assert cr.plant.t_s == 0.0  # nothing happens until a device is used
    r = th.read_process()
    assert r.time_s == 1800.0 and cr.plant.t_s == 1800.0
    assert r.channel == "T_reactor_c" and r.unit == "°C"
    assert 20.0 < r.value < 50.0
    bath = th.read_bath()
    assert bath.channel == "T_jacket_c" and bath.value < r.value  # cooling: bath below reactor
    cr.clock.sleep(4 * 3600.0)
    assert th.read_process().value == pytest.approx(20.0, abs=0.3)
    c = cr.concentration.read()
    assert c.channel == "conc_kg_kg" and c.value < 0.045  # crystallized
    assert 0 < cr.transmissivity.read().value < 100
    assert cr.counter.read().value > 0
    assert th.get_setpoint() == 20.0


def test_readings_match_ground_truth_within_noise():
    cr = connect("sim://?seed=2")
    cr.clock.sleep(600)
    vals = [cr.thermostat.read_process().value for _ in range(200)]
    assert np.mean(vals) == pytest.approx(cr.plant.T_reactor_c, abs=0.01)
    assert 0.01 < np.std(vals) < 0.04
    quiet = connect("sim://?seed=2&noise=false")
    quiet.clock.sleep(600)
    assert quiet.concentration.read().value == quiet.plant.pbm.concentration_kg_kg()


def test_setpoint_limits_raise_limit_error():
    cr = connect("sim://", limits=ThermostatLimits(0.0, 60.0, 2.0))
    with pytest.raises(LimitError, match=r"Setpoint 65.00 °C exceeds the upper limit 60.00 °C of thermostat 'sim-thermostat'"):
        cr.thermostat.set_setpoint(65.0)
    with pytest.raises(LimitError, match=r"below the lower limit 0.00 °C"):
        cr.thermostat.set_setpoint(-5.0)
    with pytest.raises(LimitError, match=r"exceed the unit's working range"):
        connect("sim://", limits=ThermostatLimits(-50.0, 60.0))
    with pytest.raises(LimitError, match=r"stirrer speed 2000 rpm outside 0..1000 rpm"):
        cr.stirrer.set_speed_rpm(2000)
    cr.stirrer.set_speed_rpm(400)
    assert cr.stirrer.get_speed_rpm() == 400


def test_stop_lets_the_bath_drift_to_ambient_and_status_reports_it():
    cr = connect("sim://?t_start_c=50&noise=0")
    cr.thermostat.stop()
    assert not cr.thermostat.status().running
    cr.clock.sleep(3 * 3600)
    assert cr.thermostat.read_bath().value == pytest.approx(cr.plant.thermal.T_ambient_c, abs=0.5)
    cr.thermostat.start()
    st = cr.thermostat.status()
    assert st.running and st.ok and st.message == "03 REMOTE START"


def test_camera_frames_come_from_the_population():
    recipe = ThermocycleProfile(45.0, 0.1, 50.0, [Segment(30.0, 0.3)])
    cr = connect("sim://?seed=4", recipe=recipe)
    cr.thermostat.set_setpoint(42.0)
    cr.clock.sleep(3600)
    f = cr.camera.grab()
    assert f.time_s == 3600 and f.image.shape == (960, 1280) and f.image.dtype == np.uint8
    assert f.pixel_size_um == cr.camera.pixel_size_um
    assert len(f.truth) > 0
    cr.close()
    with pytest.raises(DeviceDisconnected, match="closed"):
        cr.thermostat.read_process()


def test_url_errors():
    with pytest.raises(BackendError, match=r"unknown option 'speed' in backend URL 'sim://\?speed=3'"):
        connect("sim://?speed=3")
    with pytest.raises(BackendError, match=r"option seed='x' in backend URL .* must be an integer"):
        connect("sim://?seed=x")
    with pytest.raises(BackendError, match=r"option noise='maybe' .* must be a boolean"):
        connect("sim://?noise=maybe")
    with pytest.raises(BackendError, match=r"sim:// takes no target, got 'host'"):
        connect("sim://host")
    with pytest.raises(BackendError, match=r"Unknown backend URL scheme 'simulator'"):
        connect("simulator://")
