"""Qualitative behaviour of the default compound (seed 003), on fixed seeds with variability on."""

from __future__ import annotations

import pytest

from crystalloop.hardware.sim import simulate

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def runs(make_cycles):
    cycles = make_cycles
    out = {}
    for seed in SEEDS:
        out[("slow", seed)] = simulate(cycles(0, cool=0.05), seed=seed, sample_interval_s=300.0)
        out[("fast", seed)] = simulate(cycles(0, cool=0.3), seed=seed, sample_interval_s=300.0)
        out[("linear", seed)] = simulate(cycles(0, cool=0.25), seed=seed, sample_interval_s=300.0)
        out[("2-cycle", seed)] = simulate(cycles(2, cool=0.25), seed=seed, sample_interval_s=300.0)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_faster_cooling_nucleates_more_and_gives_smaller_d50(runs, seed):
    slow, fast = runs[("slow", seed)], runs[("fast", seed)]
    assert fast.stats["ledger"]["nucleated_number"] > 10 * slow.stats["ledger"]["nucleated_number"]
    assert fast.timeseries["supersaturation"].max() > slow.timeseries["supersaturation"].max()
    assert fast.cqas["D50_um"] < slow.cqas["D50_um"] - 5.0
    assert fast.cqas["D10_um"] < slow.cqas["D10_um"]


@pytest.mark.parametrize("seed", SEEDS)
def test_thermocycles_give_larger_d50_lower_doa_higher_crystallinity(runs, seed):
    lin, cyc = runs[("linear", seed)], runs[("2-cycle", seed)]
    assert lin.profile.end_temperature_c == cyc.profile.end_temperature_c
    assert cyc.cqas["D50_um"] > lin.cqas["D50_um"] + 3.0
    assert cyc.cqas["DoA_pct"] < lin.cqas["DoA_pct"] - 2.0
    assert cyc.cqas["crystallinity_pct"] > lin.cqas["crystallinity_pct"] + 2.0


def test_d50_doa_batch_time_trade_off(runs):
    """No recipe wins everything: the Pareto set of (max D50, min DoA, min batch time) has several members."""
    pts = {k: (r.cqas["D50_um"], r.cqas["DoA_pct"], r.cqas["batch_time_min"]) for k, r in runs.items() if k[1] == 0}

    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2] and a != b

    pareto = [k for k, v in pts.items() if not any(dominates(w, v) for w in pts.values())]
    assert len(pareto) >= 3, pts
    # the slowest recipe has the best D50 and DoA but the longest batch; cycles buy quality with time
    slow, fast, cyc = pts[("slow", 0)], pts[("fast", 0)], pts[("2-cycle", 0)]
    assert slow[0] > cyc[0] > fast[0] and slow[1] < cyc[1] < fast[1] and slow[2] > cyc[2] > fast[2]


def test_realistic_numbers(runs):
    for r in runs.values():
        c = r.cqas
        assert 10 < c["D50_um"] < 500
        assert 0 <= c["DoA_pct"] < 60
        assert 55 < c["crystallinity_pct"] <= 100
        assert 60 < c["yield_pct"] < 90
    assert runs[("fast", 0)].cqas["DoA_pct"] > 15  # tens of % at fast cooling
    assert runs[("fast", 0)].cqas["crystallinity_pct"] < 85
