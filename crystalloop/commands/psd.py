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
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Map the images over Dask instead: 'local:N' or a scheduler address such as "
                            "tcp://10.0.0.5:8786 (--out must be a folder the workers share; needs "
                            "crystalloop[scale]).")] = None,
    settings: Annotated[Path | None, typer.Option(
        "--settings", help="Pipeline settings JSON (e.g. written by calibration).")] = None,
    polarity: Annotated[str | None, typer.Option("--polarity", help="auto, dark or bright particles.")] = None,
    background: Annotated[str | None, typer.Option(
        "--background", help="Background: rolling_ball, morphological, median or none.")] = None,
    background_radius_px: Annotated[float | None, typer.Option(
        "--background-radius-px", help="Background radius, px (larger than the widest particle's half-width).")] = None,
    normalize: Annotated[bool | None, typer.Option(
        "--normalize/--no-normalize", help="Divide dark-particle signals by the background (flat field).")] = None,
    threshold: Annotated[str | None, typer.Option(
        "--threshold", help="otsu, triangle, midpoint, adaptive, or a fixed level of the background-subtracted signal.")] = None,
    threshold_offset: Annotated[float | None, typer.Option(
        "--threshold-offset", help="Shift of the threshold towards the background (fraction; + grows particles).")] = None,
    noise_floor: Annotated[float | None, typer.Option(
        "--noise-floor", help="Keep the threshold this many noise sigmas above the background.")] = None,
    adaptive_block_px: Annotated[int | None, typer.Option(
        "--adaptive-block-px", help="Neighbourhood of the adaptive threshold, px (odd).")] = None,
    min_size_px: Annotated[float | None, typer.Option("--min-size-px", help="Smallest object kept, px.")] = None,
    closing_radius_px: Annotated[int | None, typer.Option(
        "--closing-radius-px", help="Radius of the closing disc, px (0: no closing).")] = None,
    fill_holes: Annotated[bool | None, typer.Option("--fill-holes/--no-fill-holes", help="Fill holes in objects.")] = None,
    watershed: Annotated[bool | None, typer.Option(
        "--watershed/--no-watershed", help="Split touching particles.")] = None,
    watershed_strength: Annotated[float | None, typer.Option(
        "--watershed-strength", help="0 never splits, 1 splits at every dent.")] = None,
    split_needles: Annotated[bool | None, typer.Option(
        "--split-needles/--no-split-needles", help="Separate touching and crossing needles along their skeleton.")] = None,
    circularity_range: Annotated[str | None, typer.Option(
        "--circularity-range", help="Keep objects with circularity in LOW,HIGH (e.g. 0.85,0.95); 'none' for all.")] = None,
    skeleton_min_aspect: Annotated[float | None, typer.Option(
        "--skeleton-min-aspect", help="Measure particles at least this elongated along their skeleton (0: all).")] = None,
    edge: Annotated[str | None, typer.Option(
        "--edge", help="Particles touching the frame: 'exclude' (counted, not sized) or 'include' (sized as cut).")] = None,
    edge_correction: Annotated[str | None, typer.Option(
        "--edge-correction", help="With --edge exclude: miles_lantuejoul (weights the sized particles) or none.")] = None,
    min_focus: Annotated[float | None, typer.Option("--min-focus", help="Focus cut-off (1/px); below: out of focus.")] = None,
    size: Annotated[str | None, typer.Option(
        "--size", help="Size measure: ecd_um, feret_max_um, feret_min_um, length_um, width_um.")] = None,
    labels: Annotated[list[str] | None, typer.Option(
        "--labels", help="Measure these label images (from Cellpose, StarDist, ilastik, Fiji ...) instead of "
                         "segmenting; IMAGES, if given, are their images (paired in order).")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Segment with a trained model folder (crystalloop vision train-seg) instead of the "
                        "classical threshold and watershed.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Table format: csv or parquet.")] = "csv",
    no_overlays: Annotated[bool, typer.Option("--no-overlays", help="Do not write overlay PNGs.")] = False,
    no_label_images: Annotated[bool, typer.Option(
        "--no-label-images", help="Do not write the 16-bit label TIFFs.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the results of an earlier run in a non-empty --out folder.")] = False,
) -> None:
    """Detect and measure particles in images; write particles, PSD, label images, overlays, PSD plot and a
    JSON summary.

    Images come from paths, or from a stored run (--run N, e.g. one written by crystalloop
    simulate) at the pixel size recorded with them; --labels measures label images another tool
    made. Every segmentation setting is an option; --settings JSON gives the rest (options win).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crystalloop.commands import make_console
    from crystalloop.errors import ConfigError
    from crystalloop.scale import parse_scheduler
    from crystalloop.vision.pipeline import PipelineSettings
    from crystalloop.vision.report import measure_label_images, measure_psd

    parse_scheduler(scheduler)  # a bad address fails before any image is read
    if scheduler is not None and labels:
        raise ConfigError("--scheduler maps image files over Dask; --labels measures label images in this process")
    console = make_console()
    if run is not None:
        if images:
            raise ConfigError(f"give image paths or --run, not both (got {len(images)} path(s) and --run {run})")
        images, pixel_size_um = _run_images(store, run, last, pixel_size_um)
        console.print(f"run {run}: {len(images)} image(s) at {pixel_size_um:g} µm/px", highlight=False)
    elif last is not None:
        raise ConfigError("--last selects images of a stored run: use it with --run")
    if not images and not labels:
        raise ConfigError("no images: give image files, folders or glob patterns, or --run N")
    if pixel_size_um is None:
        raise ConfigError("--pixel-size-um is required: the size of one pixel in µm (e.g. --pixel-size-um 1.5)")
    s = PipelineSettings.load(settings) if settings is not None else PipelineSettings()
    changes = {k: v for k, v in (
        ("polarity", polarity), ("background_radius_px", background_radius_px), ("normalize", normalize),
        ("threshold_offset", threshold_offset), ("noise_floor", noise_floor), ("adaptive_block_px", adaptive_block_px),
        ("min_size_px", min_size_px), ("closing_radius_px", closing_radius_px), ("fill_holes", fill_holes),
        ("watershed", watershed), ("watershed_strength", watershed_strength), ("split_needles", split_needles),
        ("skeleton_min_aspect", skeleton_min_aspect), ("edge_correction", edge_correction),
        ("min_focus", min_focus), ("size", size)) if v is not None}
    if background is not None:
        changes["background"] = None if background.lower() == "none" else background
    if threshold is not None:
        changes["threshold"] = _threshold_option(threshold)
    if circularity_range is not None:
        changes["circularity_range"] = _range_option(circularity_range)
    if edge is not None:
        if edge not in ("exclude", "include"):
            raise ConfigError(f"--edge must be 'exclude' or 'include', got {edge!r}")
        changes["exclude_edge"] = edge == "exclude"
    s = s.replace(**changes) if changes else s
    if size is not None and size not in ("ecd_um", "feret_max_um", "feret_min_um", "length_um", "width_um",
                                         "ellipse_major_um", "ellipse_minor_um"):
        raise ConfigError(f"--size must be one of ecd_um, feret_max_um, feret_min_um, length_um, width_um, "
                          f"ellipse_major_um, ellipse_minor_um; got {size!r}")
    # transient: the bar goes away when done, so an input error is the only line left
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("images", total=None)

        def _cb(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if labels and model is not None:
            raise ConfigError("--labels measures finished label images; --model segments images: give one of them")
        segmenter = None
        if model is not None:
            from crystalloop.vision.segmenters import load_segmenter

            segmenter = load_segmenter(model)
        if labels:
            batch = measure_label_images(labels, images=images or None, pixel_size_um=pixel_size_um, out_dir=out,
                                         settings=s, overlays=not no_overlays, overwrite=overwrite, fmt=fmt,
                                         progress=_cb)
        else:
            batch = measure_psd(images, pixel_size_um=pixel_size_um, out_dir=out, settings=s, workers=workers,
                                overlays=not no_overlays, labels=not no_label_images, overwrite=overwrite,
                                fmt=fmt, progress=_cb, scheduler=scheduler, segmenter=segmenter,
                                segmenter_name=None if model is None else str(model))
    sm = batch.summary
    console.print(f"images read: {sm['images_read']}, skipped: {sm['images_skipped']}")
    for f, why in batch.skipped:
        console.print(f"  [yellow]skipped[/yellow] {f}: {why}")
    console.print(f"particles: {sm['particles_detected']} detected, {sm['particles_kept']} sized "
                  f"({sm['particles_edge']} at the edge, {sm['particles_out_of_focus']} out of focus)")
    if not labels:
        console.print(f"polarity: {sm['polarity']}; edge particles: "
                      f"{'excluded, ' + sm['edge_correction'] + ' weights' if s.exclude_edge else 'sized as cut'}")
    if sm["particles_kept"]:
        console.print(f"{s.size}: x10,0 = {sm['x10_0_um']:.1f}  x50,0 = {sm['x50_0_um']:.1f}  x90,0 = {sm['x90_0_um']:.1f} µm; "
                      f"x10,3 = {sm['x10_3_um']:.1f}  x50,3 = {sm['x50_3_um']:.1f}  x90,3 = {sm['x90_3_um']:.1f} µm")
    wrote = [f"particles.{fmt}", f"psd.{fmt}"] + [f"psd_{k.removesuffix('_um')}.{fmt}" for k in batch.psd_by]
    wrote += ["summary.json", "psd.png"]
    wrote += [] if no_overlays or (labels and not images) else ["overlays/"]
    wrote += [] if no_label_images or labels else ["labels/"]
    console.print(f"wrote {', '.join(wrote)} to {out}/")
    if sm["images_read"] == 0:
        raise typer.Exit(1)


def _threshold_option(v: str):
    """``--threshold``: a method name or a fixed level."""
    from crystalloop.errors import ConfigError

    if v in ("otsu", "triangle", "midpoint", "adaptive"):
        return v
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"--threshold must be otsu, triangle, midpoint, adaptive or a number, got {v!r}") from None


def _range_option(v: str):
    """``--circularity-range LOW,HIGH`` (or ``none``)."""
    from crystalloop.errors import ConfigError

    if v.strip().lower() == "none":
        return None
    try:
        lo, hi = (float(x) for x in v.split(","))
    except ValueError:
        raise ConfigError(f"--circularity-range must be LOW,HIGH (e.g. 0.85,0.95) or none, got {v!r}") from None
    return (lo, hi)


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
