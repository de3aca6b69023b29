"""``crystalloop design``: NSGA-II thermocycle design on a fitted digital twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def design(
    twin: Annotated[Path, typer.Argument(help="Folder of a fitted twin, ensemble or GP (crystalloop twin fit ... --out TWIN).")],
    objectives: Annotated[str, typer.Option(
        "--objectives", "-o",
        help="Comma-separated 'max:NAME'/'min:NAME' (D50, DoA, crystallinity, batch_time, ...).")] = "max:D50,min:DoA",
    cycles: Annotated[str, typer.Option(
        "--cycles", "-c", help="Numbers of cycles, one instance each: '1-4', '2', '1,3'.")] = "1-4",
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("design"),
    constraint: Annotated[list[str] | None, typer.Option(
        "--constraint", help="Outcome constraint, repeatable: 'crystallinity>=75'.")] = None,
    pessimistic: Annotated[float, typer.Option(
        "--pessimistic", "-k", help="Optimize mean - k std (max) / mean + k std (min) instead of the mean.")] = 0.0,
    mixed: Annotated[bool, typer.Option(
        "--mixed", help="One instance with the number of cycles as a decision variable.")] = False,
    max_batch_time: Annotated[float | None, typer.Option("--max-batch-time", help="Largest batch time, min.")] = None,
    holds: Annotated[bool, typer.Option("--holds", help="Optimize the hold time of each segment too.")] = False,
    bounds: Annotated[Path | None, typer.Option(
        "--bounds", help="YAML/JSON overriding ProfileBounds fields, e.g. 'c0_mg_g: [30, 50]'.")] = None,
    t_min: Annotated[float | None, typer.Option("--t-min", help="Thermostat lower limit, °C.")] = None,
    t_max: Annotated[float | None, typer.Option("--t-max", help="Thermostat upper limit, °C.")] = None,
    max_rate: Annotated[float | None, typer.Option("--max-rate", help="Thermostat ramp limit, °C/min.")] = None,
    solubility: Annotated[str | None, typer.Option(
        "--solubility", help="Solubility polynomial c*(T) = a0 + a1 T + a2 T^2 ... in kg/kg with T in °C, as "
                             "'a0,a1,a2' (e.g. the kinetic set's coefficients): judges which recipes dissolve "
                             "their product. Without it, a GP twin's stored curve is used, or reheating to the "
                             "start temperature stands in.")] = None,
    max_distance: Annotated[str, typer.Option(
        "--max-distance", help="Largest distance of a designed recipe to the nearest measured one (fraction of "
                               "the bound widths, RMS), 'auto' (as far as the measured recipes lie from each "
                               "other) or 'none'.")] = "auto",
    domain: Annotated[bool, typer.Option(
        "--domain/--no-domain", help="Keep designs where the twin was trained: near measured recipes, measured "
                                     "structures, no more dissolution than measured runs had.")] = True,
    color: Annotated[str | None, typer.Option(
        "--color", help="CQA shown as colour in the front plot (default: first non-objective CQA).")] = None,
    pop: Annotated[int, typer.Option("--pop", help="NSGA-II population size.")] = 100,
    gens: Annotated[int, typer.Option("--gens", help="Generations per instance.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same front).")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Instances run in parallel processes (-1: all cores).")] = 1,
) -> None:
    """Find Pareto-optimal thermocycle profiles on a twin; write the front, plots and knee-point recipes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from crystalloop.commands import make_console
    from crystalloop.digital_twin.design import (
        knee_point,
        load_twin,
        optimize_design,
        parse_cycles,
        read_bounds,
        write_design,
    )
    from crystalloop.limits import ThermostatLimits

    limits = None
    if t_min is not None or t_max is not None or max_rate is not None:
        inf = float("inf")
        limits = ThermostatLimits(-inf if t_min is None else t_min, inf if t_max is None else t_max,
                                  inf if max_rate is None else max_rate, source="user")
    console = make_console()
    from crystalloop.digital_twin.design import solubility_polynomial
    from crystalloop.digital_twin.gp import FeatureGPTwin, solubility_curve
    from crystalloop.digital_twin.hybrid import HybridTwin
    from crystalloop.errors import ConfigError

    sol = None
    if solubility is not None:
        try:
            coeffs = [float(v) for v in solubility.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--solubility must be comma-separated numbers a0,a1,a2 (kg/kg, T in °C), "
                              f"got {solubility!r}") from None
        sol = solubility_polynomial(coeffs, unit="kg/kg")
    md = max_distance.strip().lower()
    if md in ("auto", "none"):
        max_dist: float | str | None = "auto" if md == "auto" else None
    else:
        try:
            max_dist = float(md)
        except ValueError:
            raise ConfigError(f"--max-distance must be a number > 0, 'auto' or 'none', got {max_distance!r}") from None
    tw = load_twin(twin)
    if sol is None and isinstance(tw, (FeatureGPTwin, HybridTwin)) and tw.solubility is not None:
        sol = solubility_curve(tw.solubility)  # the twin's own curve (mg/g, T in °C)
        kind = "hybrid" if isinstance(tw, HybridTwin) else "GP"
        console.print(f"dissolution check: the solubility curve stored with the {kind} twin", highlight=False)
    n_inst = 1 if mixed else len(parse_cycles(cycles))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("NSGA-II", total=n_inst * gens)

        def _cb(label: str, gen: int, n_gen: int) -> None:
            progress.update(task, advance=1, description=f"NSGA-II {label}")

        result = optimize_design(
            tw, objectives, cycles=cycles, mixed=mixed, constraints=constraint or None,
            pessimistic=pessimistic, bounds=read_bounds(bounds), limits=limits,
            max_batch_time_min=max_batch_time, holds=holds, domain="auto" if domain else None, solubility=sol,
            max_distance=max_dist, pop_size=pop, n_gen=gens, seed=seed, n_jobs=jobs, callback=_cb,
        )
    paths = write_design(result, out, color=color)
    summ = result.summary()
    table = Table(title=f"Pareto fronts ({', '.join(str(o) for o in result.objectives)})")
    for col in summ.columns:
        table.add_column(str(col))
    for _, row in summ.iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    for label, msg in result.infeasible.items():
        console.print(f"[yellow]{label}: {msg}[/yellow]")
    knee, row = knee_point(result, return_row=True)
    console.print(f"knee point: {knee.name}")
    if "distance_to_doe" in result.front:
        console.print(f"knee point extrapolation: distance {row['distance_to_doe']:.3g} to the nearest measured recipe "
                      f"{row['nearest_run']} (limit {result.settings['domain']['max_distance'] or float('inf'):.3g}); "
                      f"front distances {result.front['distance_to_doe'].min():.3g}-"
                      f"{result.front['distance_to_doe'].max():.3g}", highlight=False)
    console.print(f"{result.n_evaluations} twin evaluations in {result.wall_time_s:.1f} s; wrote "
                  f"{len(result.front)} Pareto profiles, plots and recipes to {out}/ "
                  f"(recipe: {paths['recipe_knee']})")


def register(app: typer.Typer) -> None:
    app.command("design")(design)
