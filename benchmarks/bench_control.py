"""Control benchmark: NMPC solve time and closed-loop quality on the virtual crystallizer.

Usage::

    python benchmarks/bench_control.py            # full (≈ 1–2 min on a quiet core)
    python benchmarks/bench_control.py --quick    # shorter profile, fewer cases
    taskset -c 0 python benchmarks/bench_control.py   # pin to one core

Prints four tables, each with its baseline measured in the same run:

1. NMPC solve time per step (horizon 20) inside a ~10 h virtual run with NMPC in the loop,
   warm-started (ours) vs cold-started (baseline), plus the per-step cost of the cascade
   PID and of plain tracking.
2. Solve time against horizon (thermal plant only, so only the solver is timed).
3. Reactor tracking on a 4-cycle profile: plain tracking (baseline) vs cascade PID vs NMPC
   (RMS error, max error, overshoot), and wall time of the whole virtual run.
4. Direct nucleation control vs linear cooling (baseline) to the same end temperature:
   fines volume fraction (< 20 µm), D10, D50, batch time.

Writes ``benchmarks/results/control_tracking.png`` and ``control_dnc.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from crystalloop.control import CascadePID, NMPCController, Observation, ProfileTracker
from crystalloop.control.runner import run
from crystalloop.hardware import connect
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal
from crystalloop.profiles import Segment, ThermocycleProfile

RESULTS = Path(__file__).resolve().parent / "results"


def four_cycles_10h() -> ThermocycleProfile:
    """A 4-cycle profile of about 10 h (cooling 0.3 °C/min, heating 0.8 °C/min)."""
    return ThermocycleProfile(40.0, 0.1, 60.0, [
        Segment(40.0, 0.3, 30), Segment(55.0, 0.8), Segment(35.0, 0.3, 30), Segment(50.0, 0.8),
        Segment(30.0, 0.3, 30), Segment(45.0, 0.8), Segment(25.0, 0.3, 30), Segment(40.0, 0.8),
        Segment(15.0, 0.3, 55)], name="4 cycles, 10 h")


def short_profile() -> ThermocycleProfile:
    return ThermocycleProfile(40.0, 0.1, 60.0, [Segment(40.0, 0.3, 10), Segment(55.0, 0.8),
                                                Segment(30.0, 0.3, 10)], name="1 cycle")


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def bench_solve_times(profile: ThermocycleProfile, url: str) -> dict:
    out = {}
    for label, warm in (("NMPC warm-started (ours)", True), ("NMPC cold-started (baseline)", False)):
        t0 = time.perf_counter()
        res = run(profile, backend=url, controller="nmpc", controller_options={"warm_start": warm})
        wall = time.perf_counter() - t0
        st = np.asarray(res.solve_times_s) * 1e3
        out[label] = (st, wall, res)
    # per-step cost of the cheap controllers, on the same observations
    obs = [Observation(t, 40.0 + np.sin(t / 900.0), 40.0, 40.0) for t in np.arange(0.0, profile.batch_time_s, 60.0)]
    for label, ctrl in (("cascade PID step", CascadePID(profile)), ("plain tracking step", ProfileTracker(profile))):
        ctrl.reset(obs[0])
        t0 = time.perf_counter()
        for o in obs:
            ctrl.setpoint(o)
        per = (time.perf_counter() - t0) / len(obs) * 1e3
        out[label] = (np.array([per]), None, None)
    return out


def bench_horizon(profile: ThermocycleProfile, horizons: list[int]) -> list[list[str]]:
    rows = []
    p = ThermalParams()
    for n in horizons:
        c = NMPCController(profile, p, horizon=n)
        x = (profile.t_start_c,) * 3
        sp = profile.t_start_c
        c.reset(Observation(0.0, x[2], x[0], sp))
        iters = []
        for k in range(int(min(profile.batch_time_s, 6 * 3600) // 60)):
            sp = c.setpoint(Observation(k * 60.0, x[2], x[0], sp))
            iters.append(c._solver.stats()["iter_count"])
            x = advance_thermal(x, sp, k * 60.0, (k + 1) * 60.0, p)
        st = np.asarray(c.solve_times_s_) * 1e3
        rows.append([str(n), f"{np.median(st):.1f}", f"{np.percentile(st, 95):.1f}", f"{st.max():.1f}",
                     f"{np.mean(iters):.1f}"])
    return rows


def bench_tracking(profile: ThermocycleProfile, url: str, solve: dict) -> tuple[list[list[str]], dict]:
    rows, runs = [], {}
    for c in ("track", "pid", "nmpc"):
        if c == "nmpc":
            res, wall = solve["NMPC warm-started (ours)"][2], solve["NMPC warm-started (ours)"][1]
        else:
            t0 = time.perf_counter()
            res = run(profile, backend=url, controller=c)
            wall = time.perf_counter() - t0
        runs[c] = res
        m = res.metrics()
        rows.append([{"track": "plain tracking (baseline)", "pid": "cascade PID", "nmpc": "NMPC"}[c],
                     f"{m['rms_error_c']:.3f}", f"{m['max_abs_error_c']:.3f}", f"{m['overshoot_c']:.3f}",
                     f"{res.cqas.get('D50_um', float('nan')):.1f}", f"{wall:.1f}"])
    base = runs["track"].metrics()["rms_error_c"]
    for r, c in zip(rows, ("track", "pid", "nmpc"), strict=True):
        r.insert(2, f"{runs[c].metrics()['rms_error_c'] / base:.3f}")
    return rows, runs


def _fines(psd, cut_um: float = 20.0) -> float:
    m = psd["size_upper_um"] <= cut_um
    return float(psd.loc[m, "Q3"].max()) if m.any() else 0.0


def bench_dnc(url: str, settings: list[tuple[float, float]]) -> tuple[list[list[str]], dict]:
    """DNC with N_sp = k × (seed count at the start) and cooling rate r_c, against linear cooling
    at 0.3 °C/min and linear cooling over the same batch time as each DNC run."""
    start, end = 44.0, 10.0
    lin = ThermocycleProfile(40.0, 0.1, start, [Segment(end, 0.3, 30)], name="linear 44→10 °C")
    with connect(url, recipe=lin) as cz:
        n0 = cz.counter.read().value
    rows, runs = [], {}

    def one(label, profile, ctrl, opts):
        cz = connect(url, recipe=profile)
        res = run(profile, crystallizer=cz, controller=ctrl, controller_options=opts, recipe_margin_c=10.0)
        psd = cz.ground_truth.psd()
        runs[label] = (res, psd)
        cz.close()
        rows.append([label, f"{100 * _fines(psd):.3f}", f"{res.cqas['D10_um']:.1f}", f"{res.cqas['D50_um']:.1f}",
                     f"{res.cqas['yield_pct']:.1f}", f"{res.timeseries['T_reactor_c'].iloc[-1]:.1f}",
                     f"{res.timeseries['time_s'].max() / 60:.0f}"])
        return res

    one("linear 0.3 °C/min (baseline)", lin, "track", {})
    for k, rc in settings:
        res = one(f"DNC N_sp={k:g}·N0 ±20 %, cool {rc:g}/heat 0.5 °C/min", lin, "dnc",
                  dict(counts_setpoint=k * n0, band=0.2 * k * n0, t_max_c=48.0, heating_rate_c_min=0.5,
                       cooling_rate_c_min=rc, filter_window=1, max_hold_min=30.0, final_hold_min=30.0,
                       max_duration_min=1500.0))
        # linear cooling that reaches the end temperature in the same time as DNC did
        t_ramp_min = res.timeseries["time_s"].max() / 60.0 - 30.0
        rate = (start - end) / max(t_ramp_min, 1.0)
        if 0.01 < rate < 0.3 and not any(lbl.startswith(f"linear {rate:.3f}") for lbl in runs):
            same = ThermocycleProfile(40.0, 0.1, start, [Segment(end, rate, 30)], name="linear, same time")
            one(f"linear {rate:.3f} °C/min (same batch time, baseline)", same, "track", {})
    print(f"seed count at start N0 = {n0:g}")
    return rows, runs


def _plots(track_runs: dict, dnc_runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    r0 = track_runs["track"]
    t = r0.timeseries["time_s"] / 3600
    ax[0].plot(t, r0.timeseries["T_ref_c"], "k--", lw=1, label="recipe")
    for c, col in (("track", "C0"), ("pid", "C1"), ("nmpc", "C3")):
        ts = track_runs[c].timeseries
        ax[0].plot(ts["time_s"] / 3600, ts["T_reactor_c"], col, lw=1, label=f"reactor ({c})")
        ax[1].plot(ts["time_s"] / 3600, ts["T_reactor_c"] - ts["T_ref_c"], col, lw=1, label=c)
    ax[0].set_ylabel("°C")
    ax[0].legend(fontsize=8)
    ax[1].set_ylabel("reactor − recipe (°C)")
    ax[1].set_xlabel("time (h)")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "control_tracking.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (label, (res, psd)) in enumerate(dnc_runs.items()):
        ts = res.timeseries
        ax[0].plot(ts["time_s"] / 3600, ts["T_reactor_c"], f"C{i}", lw=1, label=label)
        ax[1].plot(ts["time_s"] / 3600, ts["counts"], f"C{i}", lw=1)
        ax[2].plot(psd["size_um"], psd["q3"], f"C{i}", lw=1)
    ax[0].set_ylabel("reactor (°C)")
    ax[0].legend(fontsize=7)
    ax[1].set_ylabel("counts")
    for a in ax[:2]:
        a.set_xlabel("time (h)")
    ax[2].set_xlabel("size (µm)")
    ax[2].set_ylabel("q3")
    ax[2].set_xlim(0, 200)
    fig.tight_layout()
    fig.savefig(RESULTS / "control_dnc.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1-cycle profile, fewer cases")
    ap.add_argument("--url", default="sim://?seed=1", help="virtual crystallizer URL")
    args = ap.parse_args()
    profile = short_profile() if args.quick else four_cycles_10h()
    print(f"profile: {profile}")

    solve = bench_solve_times(profile, args.url)
    rows = []
    base = np.median(solve["NMPC cold-started (baseline)"][0])
    for label, (st, wall, _) in solve.items():
        rows.append([label, str(st.size) if st.size > 1 else "-", f"{np.median(st):.2f}", f"{st.max():.2f}",
                     f"{np.median(st) / base:.2f}", "-" if wall is None else f"{wall:.1f}"])
    _table(f"NMPC solve time per step, horizon 20, {profile.batch_time_min / 60:.1f} h virtual run",
           ["controller", "steps", "median ms", "max ms", "× cold median", "whole run s"], rows)

    _table("NMPC solve time vs horizon (thermal plant only)",
           ["horizon", "median ms", "p95 ms", "max ms", "mean Ipopt iterations"],
           bench_horizon(profile, [10, 20] if args.quick else [10, 20, 40]))

    rows, track_runs = bench_tracking(profile, args.url, solve)
    _table(f"Reactor tracking on '{profile.name}' (virtual crystallizer {args.url})",
           ["controller", "RMS °C", "RMS / baseline", "max abs °C", "overshoot °C", "D50 µm", "whole run s"], rows)

    settings = [(8.0, 0.3)] if args.quick else [(8.0, 0.3), (8.0, 0.2), (12.0, 0.3)]
    rows, dnc_runs = bench_dnc(args.url, settings)
    _table("DNC vs linear cooling to 10 °C (c0 40 mg/g, seeds 10 %, start 44 °C)",
           ["strategy", "fines < 20 µm (vol %)", "D10 µm", "D50 µm", "yield %", "end T °C", "batch min"], rows)
    _plots(track_runs, dnc_runs)
    print(f"\nplots: {RESULTS / 'control_tracking.png'}, {RESULTS / 'control_dnc.png'}")


if __name__ == "__main__":
    main()
