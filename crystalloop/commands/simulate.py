"""``crystalloop simulate``: a recipe on the virtual crystallizer, through the same runner as ``crystalloop run``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer


def sim_backend_url(*, kinetics: str = "default", seed: int = 0, n_classes: int | None = None) -> str:
    """The ``sim://`` URL of ``crystalloop simulate``'s options (what ``crystalloop run --backend`` takes)."""
    from urllib.parse import urlencode

    opts: dict[str, str] = {"seed": str(int(seed)), "kinetics": str(kinetics)}
    if n_classes is not None:
        opts["n_classes"] = str(int(n_classes))
    return "sim://?" + urlencode(opts)


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
    sample_interval_s: Annotated[float, typer.Option(help="Sampling period of every sensor, s.")] = 60.0,
    n_classes: Annotated[int | None, typer.Option(help="Size classes of the PBM grid (default from the kinetic set).")] = None,
) -> None:
    """Run RECIPE on the virtual crystallizer (the runner on sim://): store the run, print the CQAs, save a PNG."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from crystalloop.commands import make_console, print_table
    from crystalloop.control import RunOptions, run
    from crystalloop.errors import ConfigError
    from crystalloop.hardware.sim import default_recipe_path
    from crystalloop.profiles import ThermocycleProfile
    from crystalloop.store import ExperimentStore, default_store_path

    if images and not (math.isfinite(image_interval_min) and image_interval_min > 0):
        raise ConfigError(f"--image-interval-min must be a number of minutes > 0, got {image_interval_min!r} "
                          f"(use --no-images for none)")
    if n_classes is not None and n_classes < 10:
        raise ConfigError(f"--n-classes must be at least 10 size classes, got {n_classes}")
    options = RunOptions(kind="simulation", sample_interval_s=sample_interval_s, commit_interval_s=1.0,
                         image_interval_s=image_interval_min * 60.0 if images else None,
                         meta={"kinetics": str(kinetics)})
    path = recipe if recipe is not None else default_recipe_path()
    profile = ThermocycleProfile.from_file(path)
    backend = sim_backend_url(kinetics=kinetics, seed=seed, n_classes=n_classes)
    console = make_console()
    db = ExperimentStore(store or default_store_path())
    with Progress(TextColumn("[bold]simulating[/] {task.description}"), BarColumn(),
                  TextColumn("{task.completed:.1f}/{task.total:.1f} h"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(path.name, total=profile.batch_time_s / 3600)

        def on_tick(tick: dict) -> None:
            bar.update(task, completed=tick["time_s"] / 3600, total=tick["end_s"] / 3600)

        res = run(profile, backend=backend, store=db, options=options, image_root=out / "images", on_tick=on_tick)
    if res.status != "completed" or res.n_samples == 0:
        console.print(res.summary(), highlight=False)
        raise typer.Exit(1)
    t = Table(title=f"CQAs — {profile.name or path.name} on '{kinetics}' (seed {seed})",
              show_header=True, header_style="bold")
    t.add_column("CQA")
    t.add_column("value", justify="right")
    for k, v in res.cqas.items():
        t.add_row(k, f"{v:.2f}")
    print_table(console, t)
    png = res.plot(out / f"sim_{res.run_id}.png")
    console.print(f"run {res.run_id} stored in {db.path}: {res.n_samples} samples over {res.duration_h:.2f} h, "
                  f"{len(res.images)} images (backend {backend})", highlight=False)
    if res.images:
        console.print(f"  images: {res.image_dir}", highlight=False)
    console.print(f"  plot: {png}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
