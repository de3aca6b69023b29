"""``crystalloop run``: execute a recipe or a feedback controller on a backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_STORE_HELP = "Experiment store file (default: $CRYSTALLOOP_STORE or ./crystalloop.db)."


def _table(tick: dict, controller: str):
    from rich.table import Table

    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    end = tick["end_s"] / 3600
    cols = [("time", f"{tick['time_s'] / 3600:.2f}/{end:.2f} h" if end < 1e4 else f"{tick['time_s'] / 3600:.2f} h")]
    for key, label in (("T_ref_c", "recipe"), ("T_set_c", "setpoint"), ("T_jacket_c", "jacket"),
                       ("T_reactor_c", "reactor")):
        if key in tick:
            cols.append((label, f"{tick[key]:7.2f} °C"))
    if "counts" in tick:
        cols.append(("counts", f"{tick['counts']:8.0f}"))
    if "image_counts" in tick:
        cols.append(("image counts", f"{tick['image_counts']:6.0f}"))
    if "transmissivity_pct" in tick:
        cols.append(("transm.", f"{tick['transmissivity_pct']:5.1f} %"))
    for name, _ in cols:
        t.add_column(name, justify="right")
    t.add_row(*(v for _, v in cols))
    t.title = f"crystalloop run ({controller})"
    return t


def run_command(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe file (YAML/JSON ThermocycleProfile).")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help=(
        "Backend URL: sim://?seed=1, julabo:///dev/ttyUSB0, huber://HOST:PORT, lauda://COM3."))] = "sim://",
    controller: Annotated[str, typer.Option("--controller", "-c", help=(
        "track (setpoint follows the recipe), pid (cascade PID on the reactor), nmpc (CasADi/Ipopt), "
        "dnc (direct nucleation control from counts), ssc (supersaturation control from concentration)."))] = "track",
    store: Annotated[Path | None, typer.Option("--store", "-s", help=_STORE_HELP)] = None,
    sample_interval_s: Annotated[float, typer.Option(help="Sampling period of all sensors, s.")] = 60.0,
    control_interval_s: Annotated[float | None, typer.Option(
        help="Control period, s (default: the sample interval).")] = None,
    image_interval_s: Annotated[float | None, typer.Option(
        help="Camera period, s (default: no images).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the plot and images.")] = Path("run_out"),
    safe_state: Annotated[str, typer.Option(help="Safe state on faults and Ctrl-C: hold or stop.")] = "hold",
    counts_setpoint: Annotated[float | None, typer.Option(help="DNC: wanted counts per measurement.")] = None,
    band: Annotated[float | None, typer.Option(help="DNC: half width of the count band.")] = None,
    delta_c: Annotated[float | None, typer.Option(
        help="SSC: supersaturation setpoint c - c* in kg/kg (e.g. 0.002).")] = None,
    counts_from: Annotated[str, typer.Option(
        help="DNC counts: 'counter' (FBRM-like probe) or 'camera' (image counts via the vision pipeline).")] = "counter",
    duration_s: Annotated[float | None, typer.Option(help="Stop after this run time, s.")] = None,
    resume: Annotated[int | None, typer.Option(help="Continue this interrupted/failed/aborted run id.")] = None,
    real_time: Annotated[bool, typer.Option(
        "--real-time", help="Run sim:// on the wall clock instead of a virtual clock.")] = False,
    trace: Annotated[Path | None, typer.Option(
        "--trace", help="Serial thermostats: write every exchange (time, bytes out, bytes in) to this "
                        "plain-text file (replay it with 'crystalloop thermostat replay').")] = None,
) -> None:
    """Run a recipe or controller with live display; log everything to the store; save a plot."""
    import math

    from rich.live import Live

    from crystalloop.commands import make_console
    from crystalloop.control import RunOptions, run
    from crystalloop.errors import ConfigError
    from crystalloop.hardware.base import RealClock
    from crystalloop.store import ExperimentStore, default_store_path

    opts = {}
    if counts_setpoint is not None:
        opts["counts_setpoint"] = counts_setpoint
    if band is not None:
        opts["band"] = band
    if delta_c is not None:
        opts["delta_c_setpoint"] = delta_c
    if recipe is None and resume is None:
        raise ConfigError("give a RECIPE file (or --resume RUN_ID)")
    from crystalloop.hardware.trace import with_trace

    device_url = with_trace(backend, trace)  # checked here: --trace needs a serial thermostat
    # every option is checked before the store is opened; the recipe, backend, limits and the
    # sensors the controller needs are checked by run() before it creates the run
    options = RunOptions(controller=controller, controller_options=opts, sample_interval_s=sample_interval_s,
                         control_interval_s=control_interval_s, image_interval_s=image_interval_s,
                         safe_state=safe_state, duration_s=duration_s, counts_from=counts_from)
    console = make_console()
    db = ExperimentStore(store or default_store_path())
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        def on_tick(tick: dict) -> None:
            live.update(_table(tick, options.controller_name))

        res = run(recipe, backend=device_url, store=db, options=options, image_root=out / "images",
                  clock=RealClock() if real_time else None, resume_run_id=resume, on_tick=on_tick)
    console.print()
    colour = {"completed": "green", "failed": "red", "aborted": "yellow"}.get(res.status, "white")
    console.print(f"run [bold]{res.run_id}[/] ({res.controller} on {backend}): [{colour}]{res.status}[/]"
                  + (f" — {res.reason}" if res.reason else ""), highlight=False)
    if res.n_samples == 0:
        console.print(f"  the run ended before its first sample (no plot); events stored in {db.path}:",
                      highlight=False)
        for t_s, level, message in res.events.itertuples(index=False):
            if level != "info":
                console.print(f"    t={t_s:.0f} s {level}: {message}", highlight=False)
        raise typer.Exit(1)
    png = res.plot(out / f"run_{res.run_id}.png")
    console.print(f"  {res.n_samples} samples over {res.duration_h:.2f} h, {len(res.images)} images, "
                  f"{len(res.events)} events → {db.path}", highlight=False)
    ts = res.timeseries
    if res.profile is not None and res.controller in ("track", "pid", "nmpc") and "T_reactor_c" in ts:
        m = res.metrics()
        console.print(f"  reactor tracking: RMS {m['rms_error_c']:.3f} °C, max |error| {m['max_abs_error_c']:.3f} °C, "
                      f"overshoot {m['overshoot_c']:.3f} °C", highlight=False)
    if res.solve_times_s:
        import numpy as np

        st = np.asarray(res.solve_times_s) * 1e3
        console.print(f"  NMPC solves: {st.size}, median {np.median(st):.1f} ms, max {st.max():.1f} ms", highlight=False)
    if res.cqas:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in res.cqas.items() if math.isfinite(v))
        console.print(f"  virtual crystallizer CQAs: {shown}", highlight=False)
    if res.images:
        console.print(f"  images in {res.image_dir}", highlight=False)
    console.print(f"  plot: {png}", highlight=False)
    if res.status != "completed":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
