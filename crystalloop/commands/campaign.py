"""``crystalloop campaign``: the closed loop — learn, propose, run, measure from images, repeat."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer


def campaign(
    doe: Annotated[Path | None, typer.Argument(
        help="Starting DoE table (CSV/Parquet/Excel). The same DoE and --out again resume the campaign; "
             "omit it to run more rounds of the campaign in --out.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="Backend URL: sim://?kinetics=default, julabo:///dev/ttyUSB0, ...")] = "sim://",
    rounds: Annotated[int, typer.Option("--rounds", "-n", help="Rounds of the campaign (with a DoE: in all, so the same command resumes; without: this many more).")] = 1,
    batch: Annotated[int, typer.Option("--batch", "-k", help="Recipes per round.")] = 2,
    objectives: Annotated[str, typer.Option("--objectives", "-o", help="Comma-separated 'max:NAME'/'min:NAME'.")] = "max:D50,min:DoA",
    out: Annotated[Path, typer.Option("--out", help="Campaign folder (doe.csv, history.csv, rounds.csv, plots, round_XX/).")] = Path("campaign"),
    store: Annotated[Path | None, typer.Option("--store", help="Experiment store (default OUT/campaign.sqlite).")] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help="Design constraint, repeatable: 'crystallinity>=50'.")] = None,
    limit: Annotated[str, typer.Option("--limit", help="Report the best first objective under this limit ('' for none).")] = "DoA<=10",
    lab: Annotated[Path | None, typer.Option("--lab", help="Table of offline CQAs (run_id + CQA columns); required on real hardware.")] = None,
    lab_wait: Annotated[float, typer.Option("--lab-wait", help="Seconds to wait for a run's row in --lab.")] = 0.0,
    acquisition: Annotated[str, typer.Option("--acquisition", help="ehvi (NSGA-II on mean ± kappa std, batch by expected hypervolume "
                  "improvement), optimistic (the same candidates, batch spread along the front), mean or pessimistic.")] = "ehvi",
    kappa: Annotated[float, typer.Option("--kappa", help="Std multiples of the acquisition bound.")] = 1.0,
    cycles: Annotated[str, typer.Option("--cycles", "-c", help="Numbers of cycles of the proposals, e.g. '1-4'.")] = "1-4",
    bounds: Annotated[Path | None, typer.Option(
        "--bounds", help="YAML/JSON overriding design bounds, e.g. 'cooling_rate_c_min: [0.1, 0.3]'.")] = None,
    pop: Annotated[int, typer.Option("--pop", help="NSGA-II population size.")] = 80,
    gens: Annotated[int, typer.Option("--gens", help="NSGA-II generations per round.")] = 50,
    model: Annotated[str, typer.Option("--model", help="Twin learned each round: 'hybrid' (a kinetic model fitted to D50 under a GP "
                  "per CQA; a few seconds per round), 'gp' (a Gaussian process per CQA on physical profile features; "
                  "about a second per round) or 'ensemble' (tree ensembles, seed 003).")] = "hybrid",
    solubility: Annotated[str | None, typer.Option("--solubility", help="--model gp/hybrid: the compound's solubility c*(T) as "
                  "coefficients a0,a1,a2 (mg/g solvent, T in °C) or a CSV/YAML/JSON file (columns T_c, solubility_mg_g). "
                  "Default: the simulated plant's own curve on sim://; none on hardware (profile features only).")] = None,
    grid: Annotated[str, typer.Option("--grid", help="--model ensemble: hyper-parameter grids, fast or paper.")] = "fast",
    splits: Annotated[int, typer.Option("--splits", help="--model ensemble: Monte Carlo CV splits.")] = 20,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="--model ensemble: SDV augmentation search (slow).")] = False,
    frames: Annotated[int, typer.Option("--frames", help="Probe frames grabbed at the end of each batch.")] = 10,
    sample_interval: Annotated[float, typer.Option("--sample-interval", help="Sensor sampling period of the runner, s.")] = 60.0,
    image_interval: Annotated[float | None, typer.Option("--image-interval", help="Also grab frames during the batch every N s.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Run a closed-loop design campaign: fit the twin, propose recipes with NSGA-II, run them,
    measure D50 from the probe images (DoA/crystallinity from the lab), append to the DoE, repeat."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from crystalloop.campaign import TableLab, run_campaign
    from crystalloop.commands import make_console, print_table
    from crystalloop.digital_twin.design import read_bounds
    from crystalloop.errors import ConfigError

    if model not in ("ensemble", "gp", "hybrid"):
        raise ConfigError(f"--model must be 'ensemble', 'gp' or 'hybrid', got {model!r}")
    if model == "ensemble" and solubility is not None:
        raise ConfigError("--solubility is used by --model gp or hybrid only; add --model gp/hybrid or drop --solubility")
    if model != "ensemble" and (grid != "fast" or augment):
        raise ConfigError(f"--grid and --augment tune the tree-ensemble twin; add --model ensemble (got --model {model})")
    console = make_console()
    run_opts = {"sample_interval_s": sample_interval}
    if image_interval is not None:
        run_opts["image_interval_s"] = image_interval
    bar: dict = {}  # the progress bar appears with the first stage, after every argument was checked

    def on(stage: str, info: dict) -> None:
        if not bar:
            bar["p"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=False)
            bar["p"].start()
            bar["task"] = bar["p"].add_task("campaign", total=max(rounds, 0) * max(batch, 0))
        progress, task = bar["p"], bar["task"]
        if stage == "learn":
            progress.update(task, description=f"round {info['round']}: fitting the {model} twin on {info['n_runs']} runs")
        elif stage == "propose":
            progress.update(task, description=f"round {info['round']}: NSGA-II proposes {batch} recipes")
        elif stage == "run":
            progress.update(task, description=f"round {info['round']}: running {info['label']} on {backend}")
        elif stage == "measured":
            progress.advance(task)
            d50, truth = info.get("D50_image_um", math.nan), info.get("plant_D50_um", math.nan)
            extra = f" (plant {truth:.1f} µm)" if truth == truth else ""
            console.print(f"  {info['run_id']}: {info['status']}, D50 from {info.get('n_particles', 0)} particles "
                          f"{d50:.1f} µm{extra}, DoA {info.get('DoA_pct', math.nan):.1f} %")
        elif stage == "resume":
            done = ", ".join(info["done"]) or "none"
            console.print(f"round {info['round']}: resuming the interrupted round (measured before the stop: {done})",
                          highlight=False)
        elif stage == "round":
            console.print(f"round {info['round']}: hypervolume {info['hypervolume_before']:.4g} → "
                          f"{info['hypervolume']:.4g}")

    try:
        res = run_campaign(
            doe, objectives, backend=backend, n_rounds=rounds, batch_size=batch, out_dir=out, store=store,
            constraints=constraint or None, limit=limit or None,
            lab=TableLab(lab, timeout_s=lab_wait) if lab is not None else None,
            acquisition=acquisition, kappa=kappa, cycles=cycles, pop_size=pop, n_gen=gens,
            bounds=read_bounds(bounds),
            twin_model=model, solubility="auto" if solubility is None else solubility,
            twin_options={"grid": grid, "n_splits": splits, "augment": augment} if model == "ensemble" else None,
            n_frames=frames, run_options=run_opts, seed=seed, progress=on,
        )
    finally:
        if bar:
            bar["p"].stop()
    r = res.rounds
    table = Table(title=f"campaign rounds ({objectives}; best under {r['limit'].iloc[-1]})")
    table.add_column("per round")
    for v in r["round"]:
        table.add_column(f"round {int(v)}", justify="right")
    rows = [c for c in r.columns if c in ("n_runs", "hypervolume_before", "hypervolume") or c.startswith("best_")
            or c.endswith(("_mae", "_bias", "_coverage68", "_coverage95")) or c.startswith("D50_image_")
            or c.endswith("_s")]
    for c in rows:
        table.add_row(c, *[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r[c]])
    print_table(console, table)
    out_dir = res.out_dir
    new_runs = res.history["run_id"].astype(str).tolist() if len(res.history) else []
    console.print(f"campaign in {out_dir}/: {len(res.doe)} runs in doe.csv, {len(new_runs)} of them by the campaign "
                  f"({', '.join(new_runs)})", highlight=False)
    plots = [p for p in res.files.values() if p.suffix == ".png"]
    console.print(f"  plots:   {', '.join(str(p) for p in plots)}", highlight=False)
    recipes = sorted(out_dir.glob("round_*/recipes"))
    if recipes:
        console.print(f"  recipes: {', '.join(str(d) + '/' for d in recipes)} (YAML for crystalloop run/simulate, "
                      f"setpoint CSV for a thermostat)", highlight=False)
    console.print(f"  tables:  {res.files['doe']}, {res.files['history']}, {res.files['rounds']}", highlight=False)
    console.print(f"  more rounds: crystalloop campaign --out {out_dir} --rounds 1", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("campaign")(campaign)
