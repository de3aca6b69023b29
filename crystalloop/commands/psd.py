"""``crystalloop psd``: particle table, PSD, overlays and plots from probe images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _run_images(store: Path | None, run_id: int, last: int | None, pixel_size_um: float | None) -> tuple[list[str], float]:
    """Image paths and pixel size of a stored run (``--run``), checked against ``--pixel-size-um``."""
    import numpy as np

    from crystalloop.errors import ConfigError
    from crystalloop.store import ExperimentStore, default_store_path

    path = store or default_store_path()
    if not Path(path).exists():
        raise ConfigError(f"--run {run_id}: no experiment store at {path} (give --store)")
    with ExperimentStore(path, create=False) as db:
        recs = db.images(run_id)
    if recs.empty:
        raise ConfigError(f"--run {run_id}: the run has no image records in {path}")
    if last is not None:
        if last < 1:
            raise ConfigError(f"--last must be >= 1 image, got {last}")
        recs = recs.tail(last)
    sizes = np.unique(recs["pixel_size_um"].to_numpy())
    if len(sizes) != 1 or not np.isfinite(sizes[0]):
        raise ConfigError(f"--run {run_id}: its images have pixel sizes {sizes.tolist()} µm; give --pixel-size-um "
                          "and select images of one size")
    stored = float(sizes[0])
    if pixel_size_um is not None and not np.isclose(pixel_size_um, stored, rtol=1e-9):
        raise ConfigError(f"--pixel-size-um {pixel_size_um} disagrees with the {stored} µm recorded for run "
                          f"{run_id}'s images in {path}")
    return recs["path"].astype(str).tolist(), stored


def psd(
    images: Annotated[list[str] | None, typer.Argument(
        help="Image files, folders or glob patterns (PNG/JPEG/BMP/TIFF, multi-page TIFF); or use --run.")] = None,
    pixel_size_um: Annotated[float | None, typer.Option(
        "--pixel-size-um", help="Pixel size in µm (required unless --run gives it).")] = None,
    run: Annotated[int | None, typer.Option(
        "--run", help="Measure the images of this stored run, at their recorded pixel size.")] = None,
    last: Annotated[int | None, typer.Option(
        "--last", help="With --run: only the last N images (e.g. 1 for the end-of-batch PSD).")] = None,
    store: Annotated[Path | None, typer.Option(
        "--store", "-s", help="Experiment store for --run (default: $CRYSTALLOOP_STORE or ./crystalloop.db).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("psd"),
    workers: Annotated[int, typer.Option("--workers", "-j", help="Worker processes (one file per task).")] = 1,
    settings: Annotated[Path | None, typer.Option(
        "--settings", help="Pipeline settings JSON (e.g. written by calibration).")] = None,
    polarity: Annotated[str | None, typer.Option("--polarity", help="auto, dark or bright particles.")] = None,
    min_size_px: Annotated[float | None, typer.Option("--min-size-px", help="Smallest object kept, px.")] = None,
    min_focus: Annotated[float | None, typer.Option("--min-focus", help="Focus cut-off (1/px); below: out of focus.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="Size measure: ecd_um, feret_max_um, feret_min_um.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Table format: csv or parquet.")] = "csv",
    no_overlays: Annotated[bool, typer.Option("--no-overlays", help="Do not write overlay PNGs.")] = False,
) -> None:
    """Detect and measure particles in images; write particles, PSD, overlays, PSD plot and a JSON summary.

    Images come from paths, or from a stored run (--run N, e.g. one written by crystalloop
    simulate) at the pixel size recorded with them.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crystalloop.commands import make_console
    from crystalloop.errors import ConfigError
    from crystalloop.vision.pipeline import PipelineSettings
    from crystalloop.vision.report import measure_psd

    console = make_console()
    if run is not None:
        if images:
            raise ConfigError(f"give image paths or --run, not both (got {len(images)} path(s) and --run {run})")
        images, pixel_size_um = _run_images(store, run, last, pixel_size_um)
        console.print(f"run {run}: {len(images)} image(s) at {pixel_size_um:g} µm/px", highlight=False)
    elif last is not None:
        raise ConfigError("--last selects images of a stored run: use it with --run")
    if not images:
        raise ConfigError("no images: give image files, folders or glob patterns, or --run N")
    if pixel_size_um is None:
        raise ConfigError("--pixel-size-um is required: the size of one pixel in µm (e.g. --pixel-size-um 1.5)")
    s = PipelineSettings.load(settings) if settings is not None else PipelineSettings()
    changes = {k: v for k, v in (("polarity", polarity), ("min_size_px", min_size_px),
                                 ("min_focus", min_focus), ("size", size)) if v is not None}
    s = s.replace(**changes) if changes else s
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("images", total=None)

        def _cb(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        batch = measure_psd(images, pixel_size_um=pixel_size_um, out_dir=out, settings=s, workers=workers,
                            overlays=not no_overlays, fmt=fmt, progress=_cb)
    sm = batch.summary
    console.print(f"images read: {sm['images_read']}, skipped: {sm['images_skipped']}")
    for f, why in batch.skipped:
        console.print(f"  [yellow]skipped[/yellow] {f}: {why}")
    console.print(f"particles: {sm['particles_detected']} detected, {sm['particles_kept']} sized "
                  f"({sm['particles_edge']} at the edge, {sm['particles_out_of_focus']} out of focus)")
    if sm["particles_kept"]:
        console.print(f"{s.size}: x10,0 = {sm['x10_0_um']:.1f}  x50,0 = {sm['x50_0_um']:.1f}  x90,0 = {sm['x90_0_um']:.1f} µm; "
                      f"x10,3 = {sm['x10_3_um']:.1f}  x50,3 = {sm['x50_3_um']:.1f}  x90,3 = {sm['x90_3_um']:.1f} µm")
    console.print(f"wrote particles.{fmt}, psd.{fmt}, summary.json, psd.png"
                  f"{'' if no_overlays else ', overlays/'} to {out}/")
    if sm["images_read"] == 0:
        raise typer.Exit(1)


def psd_calibrate(
    images: Annotated[list[str], typer.Argument(help="Calibration images (files, folders, globs).")],
    reference: Annotated[Path, typer.Option(
        "--reference", help="Offline PSD: CSV with a size column (size_um/ecd_um, one row per particle) "
                            "or a class table with size_um (or size_upper_um) and Q3 (or Q0).")],
    pixel_size_um: Annotated[float | None, typer.Option("--pixel-size-um", help="Pixel size in µm (required).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Settings JSON to write.")] = Path("calibrated.json"),
    trials: Annotated[int, typer.Option("--trials", help="Pipeline evaluations.")] = 40,
    number: Annotated[bool, typer.Option("--number", help="Match the number (Q0) instead of the volume (Q3) PSD.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Fit threshold offset, minimum size, watershed strength and focus cut-off to an offline PSD."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crystalloop.commands import make_console
    from crystalloop.errors import ConfigError
    from crystalloop.vision.calibrate import calibrate, read_reference

    console = make_console()
    if pixel_size_um is None:
        raise ConfigError("--pixel-size-um is required: the size of one pixel in µm (e.g. --pixel-size-um 1.5)")
    ref = read_reference(reference)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("calibrating", total=trials)
        res = calibrate(images, ref, pixel_size_um=pixel_size_um, n_trials=trials, r=0 if number else 3,
                        seed=seed, progress=lambda k, n: progress.update(task, completed=k))
    res.save(out)
    c = res.comparison
    s = res.settings
    console.print(f"loss {res.loss:.4f}: x10 {c['x10_err_pct']:+.1f} %, x50 {c['x50_err_pct']:+.1f} %, "
                  f"x90 {c['x90_err_pct']:+.1f} %, KS {c['ks']:.3f}")
    console.print(f"threshold_offset={s.threshold_offset:.3f} min_size_px={s.min_size_px:.1f} "
                  f"watershed_strength={s.watershed_strength:.2f} min_focus={s.min_focus}")
    console.print(f"wrote {out} (use: crystalloop psd IMAGES --settings {out})")


def register(app: typer.Typer) -> None:
    app.command("psd")(psd)
    app.command("psd-calibrate")(psd_calibrate)
