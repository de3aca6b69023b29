"""End to end: the control runner drives the real drivers over a pseudo-terminal.

The recipe runs on a virtual clock against fake units from :mod:`crystalloop.hardware.testing`
(the full-featured family of each brand, the bath lagging the setpoint as in the virtual
crystallizer's thermal model); a unit that vanishes mid-run ends the run as ``failed``
through the watchdog with every sample read before the fault kept in the store.
"""

import numpy as np
import pytest

from crystalloop.hardware.base import VirtualClock
from crystalloop.hardware.testing import start_fake
from crystalloop.profiles import Segment, ThermocycleProfile

runner = pytest.importorskip("crystalloop.control.runner")
store_mod = pytest.importorskip("crystalloop.store")

RECIPE = ThermocycleProfile(40.0, 0.1, 40.0, [Segment(30.0, 0.5), Segment(35.0, 1.0), Segment(28.0, 0.5)])
#: bath lag of the units, s (tau_bath_s of the virtual crystallizer's thermal model)
TAU_S = 60.0


def _fake(family, clock):
    return start_fake(family, clock=clock, setpoint_c=40.0, tau_s=TAU_S)


@pytest.mark.parametrize("family", ["julabo/magio", "huber/pilot_one", "lauda/integral"])
def test_recipe_runs_over_pty_and_bath_tracks_setpoint(tmp_path, family):
    clock = VirtualClock()
    unit, url = _fake(family, clock)
    with unit:
        result = runner.run(RECIPE, backend=f"{url}?timeout_s=0.2", controller="track",
                            clock=clock, sample_interval_s=30.0, store=tmp_path / "runs.sqlite")
    assert result.status == "completed", result.reason
    ts = result.timeseries.dropna(subset=["T_set_c", "T_jacket_c"])
    assert ts["time_s"].iloc[-1] == pytest.approx(RECIPE.batch_time_s, abs=31)
    # the commanded setpoint follows the recipe, the bath lags it by about rate x tau (<= 1 °C)
    ref = np.array([RECIPE.setpoint_at(t) for t in ts["time_s"]])
    assert np.max(np.abs(ts["T_set_c"].to_numpy() - ref)) < 0.6
    assert np.max(np.abs(ts["T_jacket_c"].to_numpy() - ts["T_set_c"].to_numpy())) < 1.5
    reactor = result.samples.loc[result.samples["channel"] == "T_reactor_c", "value"]
    assert reactor.min() > 27.0 and ts["T_jacket_c"].min() == pytest.approx(28.0, abs=1.0)
    db = store_mod.ExperimentStore(tmp_path / "runs.sqlite")
    logged = db.samples(result.run_id)
    assert set(logged["channel"]) >= {"T_jacket_c", "T_reactor_c", "T_set_c"}
    # the last setpoint the driver wrote is the one the unit holds
    assert unit.bath.setpoint_c == pytest.approx(ts["T_set_c"].iloc[-1], abs=0.01)


def test_device_vanishing_mid_run_fails_safely_and_keeps_samples(tmp_path):
    clock = VirtualClock()
    fault_at = 900.0
    unit, url = _fake("julabo/magio", clock)
    gone = []
    with unit:
        def on_tick(tick):
            if tick["time_s"] >= fault_at and not gone:
                gone.append(tick["time_s"])
                unit.inject("disconnect")

        result = runner.run(RECIPE, backend=f"{url}?timeout_s=0.2", controller="track",
                            clock=clock, sample_interval_s=30.0, store=tmp_path / "runs.sqlite",
                            on_tick=on_tick)
    assert result.status == "failed"
    assert "DeviceDisconnected" in result.reason
    db = store_mod.ExperimentStore(tmp_path / "runs.sqlite")
    runs = db.runs()
    assert runs.loc[runs["run_id"] == result.run_id, "status"].item() == "failed"
    logged = db.samples(result.run_id)
    bath = logged[logged["channel"] == "T_jacket_c"]
    # every sample read before the device vanished is in the store
    assert bath["time_s"].max() >= fault_at and len(bath) >= fault_at / 30.0
    assert result.events["message"].str.contains("safe state").any()


@pytest.mark.parametrize("fault, error", [("silent", "DeviceTimeout"), ("garble", "ProtocolError"),
                                          ("wrong", "ProtocolError"), ("partial", "DeviceTimeout")])
def test_transient_fault_mid_run_is_retried_and_the_run_completes(tmp_path, fault, error):
    clock = VirtualClock()
    unit, url = _fake("lauda/integral", clock)
    hit = []
    with unit:
        def on_tick(tick):
            if tick["time_s"] >= 600.0 and not hit:
                hit.append(tick["time_s"])
                unit.inject(fault, when="IN_PV_00")

        result = runner.run(RECIPE, backend=f"{url}?timeout_s=0.2", controller="track",
                            clock=clock, sample_interval_s=30.0, on_tick=on_tick)
    assert result.status == "completed", result.reason
    warnings = result.events[result.events["level"] == "warning"]["message"]
    assert len(warnings) == 1 and f"failed (1/3): {error}" in warnings.iloc[0]
