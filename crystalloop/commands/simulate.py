"""``crystalloop simulate``: run a recipe on the virtual crystallizer and store the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def simulate_command(
    recipe: Annotated[Path | None, typer.Argument(
        help="Recipe file (YAML/JSON ThermocycleProfile). Default: the shipped 3-cycle example.")] = None,
    kinetics: Annotated[str, typer.Option(
        "--kinetics", "-k", help="Kinetic set: default, pharmapy, paracetamol-ethanol or a YAML path.")] = "default",
    seed: Annotated[int, typer.Option("--seed", help="Seed of kinetic variability, sensor noise and images.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG summary and probe images.")] = Path("out"),
    store: Annotated[Path | None, typer.Option(
        "--store", "-s", help="Experiment store file (default: $CRYSTALLOOP_STORE or ./crystalloop.db).")] = None,
    images: Annotated[bool, typer.Option("--images/--no-images", help="Render probe images during the batch.")] = True,
    image_interval_min: Annotated[float, typer.Option(help="Minutes between probe images.")] = 30.0,
    n_classes: Annotated[int | None, typer.Option(help="Size classes of the PBM grid (default from the kinetic set).")] = None,
) -> None:
    """Run RECIPE on the virtual crystallizer: store the run, print the CQAs, save a PNG summary."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from crystalloop.commands import make_console
    from crystalloop.hardware.sim.record import default_recipe_path, simulate_to_store
    from crystalloop.store import ExperimentStore, default_store_path

    console = make_console()
    path = recipe if recipe is not None else default_recipe_path()
    db = ExperimentStore(store or default_store_path())
    with Progress(TextColumn("[bold]simulating[/] {task.description}"), BarColumn(),
                  TextColumn("{task.completed:.1f}/{task.total:.1f} h"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(path.name, total=1.0)

        def progress(t_s: float, end_s: float) -> None:
            bar.update(task, completed=t_s / 3600, total=end_s / 3600)

        rec = simulate_to_store(path, store=db, out_dir=out, kinetics=kinetics, seed=seed,
                                image_interval_s=image_interval_min * 60 if images else None,
                                n_classes=n_classes, progress=progress)
    res = rec.result
    t = Table(title=f"CQAs — {res.profile.name or path.name} on '{res.kinetics.name}' (seed {seed})",
              show_header=True, header_style="bold")
    t.add_column("CQA")
    t.add_column("value", justify="right")
    for k, v in res.cqas.items():
        t.add_row(k, f"{v:.2f}")
    console.print(t)
    console.print(f"run [bold]{rec.run_id}[/] stored in {rec.store_path}: {len(res.timeseries)} samples, "
                  f"{len(rec.image_paths)} images, mass-balance error {res.mass_balance_error:.1e}",
                  highlight=False)
    if rec.image_paths:
        console.print(f"  images: {rec.image_paths[0].parent}", highlight=False)
    console.print(f"  plot: {rec.plot_path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
