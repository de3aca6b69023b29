"""Population balance: analytic solutions (DOMAIN.md §3), conservation, convergence order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crystalloop.errors import ConfigError
from crystalloop.hardware.sim import load_kinetics
from crystalloop.hardware.sim.pbm import PopulationBalance

T_K = 298.15


def kin(**over) -> dict:
    """A test compound with constant solubility 0.05 kg/kg and no kinetics unless given."""
    d = {
        "name": "test", "basis": "kg/kg",
        "solubility": {"coefficients": [0.05], "temperature_unit": "C"},
        "physical": {"crystal_density_kg_m3": 1300.0, "shape_factor": 0.5, "solvent_density_kg_m3": 1000.0},
        "seeds": {"d50_um": 50.0, "sigma_ln": 0.15},
        "grid": {"l_max_um": 200.0, "n_classes": 200},
    }
    d.update(over)
    return d


def advance(pbm: PopulationBalance, t_end: float, dt_max: float = 20.0) -> None:
    t = 0.0
    while t < t_end - 1e-9:
        t += pbm.step(T_K, min(dt_max, t_end - t))


def test_constant_nucleation_and_growth_from_empty_matches_moments():
    # sigma = 1 (c0 = 2 c*) stays constant: nuclei carry ~1e-5 of the solute
    B0, G = 1.0e4, 0.05  # #/m3/s, um/s
    k = load_kinetics(kin(nucleation={"primary": {"k": B0, "n": 1}}, growth={"k_um": G, "n": 1},
                          grid={"l_max_um": 120.0, "n_classes": 240}))
    pbm = PopulationBalance(k, volume_L=1.0)
    pbm.initialize(0.10, 0.0)
    t = 2000.0
    advance(pbm, t)
    N = pbm.number() / pbm.V_m3
    for j in range(4):
        mu = float(N @ pbm.L**j)
        exact = B0 * G**j * t ** (j + 1) / (j + 1)
        assert mu == pytest.approx(exact, rel=0.02 if j else 1e-4), f"moment {j}"
    assert pbm.mass_balance_error() < 1e-13


def _lognormal(L, d50, s):
    return np.exp(-0.5 * (np.log(L / d50) / s) ** 2) / L


def _translation_error(n_classes: int, limiter: str) -> float:
    G, t = 0.1, 500.0
    k = load_kinetics(kin(growth={"k_um": G, "n": 1}, grid={"l_max_um": 200.0, "n_classes": n_classes}))
    pbm = PopulationBalance(k, volume_L=1.0, limiter=limiter)
    pbm.initialize(0.10, 1e-6)  # a trace of seeds: sigma stays 1, G constant
    n0 = pbm.Np.copy()
    advance(pbm, t)
    L = pbm.L
    exact = _lognormal(np.clip(L - G * t, 1e-9, None), 50.0, 0.15) * (L - G * t > 0)
    exact *= n0.sum() / exact.sum()
    return float(np.abs(pbm.Np - exact).sum() / exact.sum())


def test_seeded_growth_translates_the_psd():
    err = _translation_error(200, "vanleer")
    assert err < 0.03
    k = load_kinetics(kin(growth={"k_um": 0.1, "n": 1}))
    pbm = PopulationBalance(k)
    pbm.initialize(0.10, 1e-6)
    n_before = pbm.number().sum()
    mean0 = float(pbm.Np @ pbm.L / pbm.Np.sum())
    advance(pbm, 300.0)
    assert pbm.number().sum() == pytest.approx(n_before, rel=1e-12)  # growth keeps the number
    assert float(pbm.Np @ pbm.L / pbm.Np.sum()) == pytest.approx(mean0 + 30.0, abs=0.3)


def test_grid_convergence_order_of_the_limited_scheme():
    # 50 classes (ΔL = 4 µm) leave the seed peak (width ≈ 7.5 µm) unresolved; the asymptotic
    # range starts at ΔL ≈ 2 µm
    ns = [100, 200, 400, 800]
    e_vl = [_translation_error(n, "vanleer") for n in ns]
    e_up = [_translation_error(n, "upwind") for n in ns]
    order_vl = -np.polyfit(np.log(ns), np.log(e_vl), 1)[0]
    order_up = -np.polyfit(np.log(ns), np.log(e_up), 1)[0]
    assert order_vl > 1.4, e_vl
    assert order_up < 1.1, e_up
    assert e_vl[-1] < e_up[-1] / 5


def test_dissolution_shrinks_and_removes_particles_at_zero_returning_their_mass():
    D = 0.5  # um/s at sigma = -0.5... D = k |sigma|
    k = load_kinetics(kin(dissolution={"k_um": 1.0, "n": 1}, seeds={"d50_um": 50.0, "sigma_ln": 0.3}))
    pbm = PopulationBalance(k)
    pbm.initialize(0.025, 1e-6)  # sigma = -0.5, seeds negligible
    N0 = pbm.Np.copy()
    m_sol0, m_cry0 = pbm.M_solute, pbm.crystal_mass()
    advance(pbm, 60.0)  # shift 30 um to the left
    shift = D * 60.0
    below = N0[pbm.L < shift].sum() / N0.sum()
    removed = 1 - pbm.Np.sum() / N0.sum()
    assert removed == pytest.approx(below, abs=0.02)
    assert pbm.ledger.dissolved_out_number == pytest.approx(N0.sum() - pbm.Np.sum(), rel=1e-9)
    # every kg that left the crystals is back in solution
    assert pbm.M_solute - m_sol0 == pytest.approx(m_cry0 - pbm.crystal_mass(), rel=1e-9)
    mean = float(pbm.Np @ pbm.L / pbm.Np.sum())
    mean_exact = float(N0[pbm.L > shift] @ (pbm.L[pbm.L > shift] - shift) / N0[pbm.L > shift].sum())
    assert mean == pytest.approx(mean_exact, abs=1.5)


def test_constant_kernel_aggregation_matches_analytic_number():
    beta0 = 1e-12  # m3/s
    k = load_kinetics(kin(agglomeration={"beta0_m3_s": beta0, "n": 0.0}, seeds={"d50_um": 20.0, "sigma_ln": 0.1}))
    pbm = PopulationBalance(k, agg_interval_s=20.0)
    pbm.initialize(0.06, 1e-4)  # supersaturated (kernel active), no growth, no nucleation
    N0 = pbm.number().sum() / pbm.V_m3
    m0 = pbm.crystal_mass()
    t = 2.0 / (beta0 * N0)  # N falls to N0/2
    advance(pbm, t, dt_max=5.0)
    pbm.flush_agglomeration()
    N = pbm.number().sum() / pbm.V_m3
    assert N == pytest.approx(2 * N0 / (2 + beta0 * N0 * t), rel=0.02)
    assert pbm.crystal_mass() == pytest.approx(m0, rel=1e-12)  # fixed pivots keep the volume
    assert pbm.Na.sum() > 0


@pytest.mark.parametrize("n_classes", [35, 100, 300])
def test_mass_closes_at_any_grid_size(n_classes, make_cycles):
    from crystalloop.hardware.sim import simulate

    r = simulate(make_cycles(1, cool=0.3, heat=1.0), n_classes=n_classes, sample_interval_s=600.0)
    assert r.mass_balance_error < 1e-12
    led = r.stats["ledger"]
    assert led["nucleated_number"] > 0 and led["dissolved_out_kg"] > 0 and led["agglomeration_events"] > 0
    ts = r.timeseries
    total = (ts["conc_kg_kg"] + (ts["crystal_mass_kg"] + ts["amorphous_mass_kg"]) / 0.85).to_numpy()
    # seeds (10 % of c0) are charged once the reactor is 0.5 °C below saturation
    seeded = ts["time_s"].to_numpy() > r.stats["seed_time_s"]
    assert total[0] == pytest.approx(0.045, rel=1e-12)
    assert np.ptp(total[seeded]) / total[-1] < 1e-12
    assert total[-1] == pytest.approx(0.045 * 1.1, rel=1e-6)


def test_bad_numerics_options():
    k = load_kinetics(kin())
    with pytest.raises(ConfigError, match="limiter must be one of"):
        PopulationBalance(k, limiter="superbee")
    with pytest.raises(ConfigError, match=r"cfl must be in \(0, 1\], got 1.5"):
        PopulationBalance(k, cfl=1.5)
    with pytest.raises(ConfigError, match=r"n_classes must be a whole number >= 10, got 5"):
        PopulationBalance(k, n_classes=5)
    pbm = PopulationBalance(k)
    with pytest.raises(ConfigError, match="initial concentration must be > 0"):
        pbm.initialize(-1.0)
    assert math.isfinite(pbm.grid.dL_um)
