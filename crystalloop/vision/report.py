"""Batch measurement with files on disk: what ``crystalloop psd`` runs.

:func:`measure_psd` reads images (files, folders, globs; corrupt files reported and skipped),
runs the pipeline on every frame — in parallel worker processes, one file per task — and writes
the particle table, the PSD table (CSV or Parquet), overlays, the PSD plot and a JSON summary.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError
from crystalloop.vision._validate import check_pixel_size
from crystalloop.vision.io import expand_sources, read_stack
from crystalloop.vision.pipeline import BatchResult, PipelineSettings, _assemble, analyze_image
from crystalloop.vision.plots import plot_psd, save_overlay

__all__ = ["measure_psd", "write_tables"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def _process_file(path: str, pixel_size_um: float, settings: PipelineSettings, overlay_dir: str | None):
    """Worker: read one file (all frames), analyse, write overlays. Never raises for bad files."""
    try:
        frames = read_stack(path)
    except Exception as exc:  # corrupt/unreadable: reported, batch continues
        return path, [], str(exc)
    out = []
    for i, img in enumerate(frames):
        name = path if len(frames) == 1 else f"{path}[{i}]"
        try:
            res = analyze_image(img, pixel_size_um=pixel_size_um, settings=settings)
        except Exception as exc:
            return path, out, f"frame {i}: {exc}"
        if overlay_dir is not None:
            stem = _safe(Path(path).stem + ("" if len(frames) == 1 else f"_p{i:04d}"))
            save_overlay(Path(overlay_dir) / f"{stem}_overlay.png", img, res.labels, res.particles)
        out.append((name, res.particles.assign(image=name)))
    return path, out, None


def write_tables(batch: BatchResult, out_dir: str | os.PathLike, *, fmt: str = "csv") -> dict[str, Path]:
    """Write ``particles``, ``psd`` (CSV or Parquet) and ``summary.json``; returns the paths."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in (("particles", batch.particles), ("psd", batch.psd)):
        p = d / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p, index=False)
        paths[name] = p
    summ = {k: _nan_to_none(v) for k, v in batch.summary.items()}
    summ["skipped"] = [{"file": f, "reason": r} for f, r in batch.skipped]
    p = d / "summary.json"
    p.write_text(json.dumps(summ, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    paths["summary"] = p
    return paths


def measure_psd(
    sources: Iterable | str,
    *,
    pixel_size_um: float,
    out_dir: str | os.PathLike | None = None,
    settings: PipelineSettings | None = None,
    workers: int = 1,
    overlays: bool = True,
    fmt: str = "csv",
    edges=None,
    n_classes: int = 30,
    spacing: str = "log",
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Measure the pooled PSD of image files and write every output.

    Parameters
    ----------
    sources : path, folder, glob, or an iterable of them
    pixel_size_um : float
    out_dir : path, optional
        Where to write ``particles.csv|parquet``, ``psd.csv|parquet``, ``summary.json``,
        ``psd.png`` and ``overlays/*.png``; nothing is written when None.
    settings : PipelineSettings, optional
    workers : int
        Worker processes (one file per task); 1 runs in this process.
    overlays : bool
        Write one overlay PNG per frame (needs ``out_dir``).
    fmt : {"csv", "parquet"}
    edges, n_classes, spacing
        PSD classes.
    progress : callable, optional
        ``progress(files_done, files_total)``.

    Returns
    -------
    BatchResult
    """
    px = check_pixel_size(pixel_size_um)
    s = settings or PipelineSettings()
    if int(workers) < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers!r}")
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
    files = expand_sources(sources)
    if not files:
        raise ConfigError("no images given: pass image files, folders or glob patterns")
    overlay_dir = str(Path(out_dir) / "overlays") if (out_dir is not None and overlays) else None
    results = []
    if int(workers) == 1 or len(files) == 1:
        for k, f in enumerate(files):
            results.append(_process_file(f, px, s, overlay_dir))
            if progress:
                progress(k + 1, len(files))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            futs = [ex.submit(_process_file, f, px, s, overlay_dir) for f in files]
            for k, fut in enumerate(futs):
                results.append(fut.result())
                if progress:
                    progress(k + 1, len(files))
    tables, names, skipped = [], [], []
    for path, frames, err in results:
        for name, t in frames:
            tables.append(t)
            names.append(name)
        if err is not None:
            skipped.append((path, err))
    batch = _assemble(tables, names, skipped, s, px, edges, n_classes, spacing)
    if out_dir is not None:
        write_tables(batch, out_dir, fmt=fmt)
        kept = batch.particles[batch.particles["kept"].astype(bool)]
        plot_psd(batch.psd, Path(out_dir) / "psd.png", sizes=kept[s.size].to_numpy() if len(kept) else None,
                 title=f"PSD ({len(kept)} particles, {len(names)} images)",
                 size_label={"ecd_um": "ECD", "feret_max_um": "max Feret", "feret_min_um": "min Feret"}.get(s.size, s.size))
    return batch


def _nan_to_none(v):
    return None if isinstance(v, float) and not np.isfinite(v) else v
