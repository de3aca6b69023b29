"""Batch measurement with files on disk: what ``crystalloop psd`` runs.

:func:`measure_psd` reads images (files, folders, globs; corrupt files reported and skipped),
runs the pipeline on every frame — in parallel worker processes, one file per task — and writes
the particle table, the PSD table (CSV or Parquet), the label images (16-bit TIFF), overlays with
a scale bar, the PSD plot and a JSON summary. :func:`measure_label_images` measures label images
that another tool made (Cellpose, StarDist, ilastik, Fiji) the same way.

An output folder that already holds files is refused unless ``overwrite=True``, so a typo in an
input path can never replace earlier results with an empty table.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision._core import assemble, flag_particles, measure_labels
from crystalloop.vision._validate import check_pixel_size
from crystalloop.vision.io import expand_sources, read_image, read_stack
from crystalloop.vision.labelio import LABEL_SUFFIX, read_labels, write_labels
from crystalloop.vision.pipeline import BatchResult, PipelineSettings, analyze_image
from crystalloop.vision.plots import plot_psd, save_overlay

__all__ = ["measure_psd", "measure_label_images", "write_tables", "check_out_dir", "OUTPUT_NAMES"]

#: Files and folders a measurement writes into its output folder.
OUTPUT_NAMES = ("particles.csv", "particles.parquet", "psd.csv", "psd.parquet", "summary.json", "psd.png",
                "overlays", "labels") + tuple(f"psd_{n}.{e}" for n in ("ecd", "length", "width")
                                              for e in ("csv", "parquet"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def _stems(files: list[str]) -> dict[str, str]:
    """A distinct, file-name-safe stem per input file (``_2``, ``_3`` … for repeated names)."""
    out, seen = {}, {}
    for f in files:
        base = _safe(Path(f).stem)
        k = seen.get(base, 0) + 1
        seen[base] = k
        out[f] = base if k == 1 else f"{base}_{k}"
    return out


def check_out_dir(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output folder that already holds files, unless ``overwrite``.

    With ``overwrite`` the outputs of an earlier measurement (:data:`OUTPUT_NAMES`) are removed
    first, so the folder never mixes two runs; other files are left alone.
    """
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"output folder {str(d)!r} exists and is not a folder")
    if not d.exists():
        return d
    entries = sorted(e.name for e in d.iterdir())
    if not entries:
        return d
    if not overwrite:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise ConfigError(f"output folder {str(d)!r} is not empty (holds {shown}); give --overwrite to replace "
                          "earlier results, or choose a new --out folder")
    import shutil

    for name in OUTPUT_NAMES:
        q = d / name
        if q.is_dir():
            shutil.rmtree(q)
        elif q.exists():
            q.unlink()
    return d


def _check_inputs_exist(files: list[str], what: str) -> None:
    """Fail before touching any output when no input exists at all (a typo in the path)."""
    missing = [f for f in files if not Path(f).exists()]
    if missing and len(missing) == len(files):
        shown = ", ".join(repr(f) for f in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ImageError(f"no {what} found: {shown} does not exist" if len(missing) == 1
                         else f"no {what} found: {shown} do not exist")


def _write_frame_outputs(stem, img, res_labels, particles, pixel_size_um, overlay_dir, label_dir):
    if res_labels is None:  # a tiled image: no full-frame label image (memory bound)
        return
    if overlay_dir is not None and img is not None:
        save_overlay(Path(overlay_dir) / f"{stem}_overlay.png", img, res_labels, particles,
                     pixel_size_um=pixel_size_um)
    if label_dir is not None:
        write_labels(Path(label_dir) / f"{stem}{LABEL_SUFFIX}", res_labels, pixel_size_um=pixel_size_um)


def _process_file(path: str, pixel_size_um: float, settings: PipelineSettings, overlay_dir: str | None,
                  label_dir: str | None = None, stem: str | None = None, segmenter=None):
    """Worker: read one file (all frames), analyse, write overlays and label images. Never
    raises for bad files."""
    try:
        frames = read_stack(path)
    except Exception as exc:  # corrupt/unreadable: reported, batch continues
        return path, [], str(exc)
    out = []
    stem = stem or _safe(Path(path).stem)
    for i, img in enumerate(frames):
        name = path if len(frames) == 1 else f"{path}[{i}]"
        try:
            res = analyze_image(img, pixel_size_um=pixel_size_um, settings=settings, segmenter=segmenter)
        except Exception as exc:
            return path, out, f"frame {i}: {exc}"
        fstem = stem + ("" if len(frames) == 1 else f"_p{i:04d}")
        _write_frame_outputs(fstem, img, res.labels, res.particles, pixel_size_um, overlay_dir, label_dir)
        out.append((name, res.particles.assign(image=name), res.info(name)))
    return path, out, None


def write_tables(batch: BatchResult, out_dir: str | os.PathLike, *, fmt: str = "csv") -> dict[str, Path]:
    """Write ``particles``, ``psd`` (CSV or Parquet), the PSDs by the other sizes (``psd_ecd``,
    ``psd_length``, ``psd_width``) and ``summary.json``; returns the paths."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in (("particles", batch.particles), ("psd", batch.psd)):
        df = df.reset_index(drop=True)
        p = d / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p, index=False)
        paths[name] = p
    for size, df in batch.psd_by.items():  # the PSD by length, width, ECD beside the main one
        p = d / f"psd_{size.removesuffix('_um')}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p, index=False)
        paths[f"psd_{size}"] = p
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
    labels: bool = True,
    overwrite: bool = False,
    fmt: str = "csv",
    edges=None,
    n_classes: int = 30,
    spacing: str = "log",
    progress: Callable[[int, int], None] | None = None,
    scheduler=None,
    segmenter=None,
    segmenter_name: str | None = None,
) -> BatchResult:
    """Measure the pooled PSD of image files and write every output.

    Parameters
    ----------
    sources : path, folder, glob, or an iterable of them
    pixel_size_um : float
    out_dir : path, optional
        Where to write ``particles.csv|parquet``, ``psd.csv|parquet``, ``summary.json``,
        ``psd.png``, ``overlays/*_overlay.png`` and ``labels/*_labels.tif``; nothing is written
        when None. A folder that already holds files is refused unless ``overwrite``.
    settings : PipelineSettings, optional
    workers : int
        Worker processes (one file per task); 1 runs in this process.
    overlays : bool
        Write one overlay PNG per frame, with a scale bar (needs ``out_dir``).
    labels : bool
        Write one 16-bit label TIFF per frame (ImageJ/Fiji, napari, Cellpose, ilastik).
    overwrite : bool
        Replace the outputs of an earlier measurement in ``out_dir``.
    fmt : {"csv", "parquet"}
    edges, n_classes, spacing
        PSD classes.
    progress : callable, optional
        ``progress(files_done, files_total)``.
    scheduler : str or distributed.Client, optional
        Map the files over a Dask cluster instead of ``workers`` processes: ``"local:N"`` or a
        scheduler address (:mod:`crystalloop.scale`). The tables are identical to the
        in-process run; overlays and label images are written by the workers, so ``out_dir``
        must be a folder they share.
    segmenter : Segmenter, optional
        A trained model (:func:`crystalloop.vision.segmenters.load_segmenter`) that segments the
        images instead of the threshold step; recorded in the summary as ``segmentation``
        (with ``segmenter_name``, e.g. the model folder).

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
    _check_inputs_exist(files, "image")
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
    overlay_dir = str(Path(out_dir) / "overlays") if (out_dir is not None and overlays) else None
    label_dir = str(Path(out_dir) / "labels") if (out_dir is not None and labels) else None
    stems = _stems(files)
    results = []
    if scheduler is not None:
        from crystalloop.scale import map_tasks

        n = len(files)
        results = map_tasks(_process_file, files, [px] * n, [s] * n, [overlay_dir] * n, [label_dir] * n,
                            [stems[f] for f in files], [segmenter] * n, scheduler=scheduler, progress=progress)
    elif int(workers) == 1 or len(files) == 1:
        for k, f in enumerate(files):
            results.append(_process_file(f, px, s, overlay_dir, label_dir, stems[f], segmenter))
            if progress:
                progress(k + 1, len(files))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            futs = [ex.submit(_process_file, f, px, s, overlay_dir, label_dir, stems[f], segmenter) for f in files]
            for k, fut in enumerate(futs):
                results.append(fut.result())
                if progress:
                    progress(k + 1, len(files))
    seg = "classical" if segmenter is None else f"model {segmenter_name or type(segmenter).__name__}"
    return _finish(results, s, px, out_dir, fmt, edges, n_classes, spacing, seg)


def _finish(results, s: PipelineSettings, px: float, out_dir, fmt, edges, n_classes, spacing,
            segmentation: str = "classical") -> BatchResult:
    tables, names, skipped, info = [], [], [], []
    for path, frames, err in results:
        for name, t, inf in frames:
            tables.append(t)
            names.append(name)
            info.append(inf)
        if err is not None:
            skipped.append((path, err))
    batch = assemble(tables, names, skipped, s, px, edges, n_classes, spacing, info)
    batch.summary["segmentation"] = segmentation
    if out_dir is not None:
        if not names:
            # nothing was read (every input missing or corrupt): write no tables at all
            reasons = "; ".join(f"{f}: {r}" for f, r in skipped[:3])
            raise ImageError(f"none of the {len(skipped)} input(s) could be read, nothing written to "
                             f"{str(out_dir)!r} ({reasons})")
        write_tables(batch, out_dir, fmt=fmt)
        kept = batch.particles[batch.particles["kept"].astype(bool)]
        plot_psd(batch.psd, Path(out_dir) / "psd.png", sizes=kept[s.size].to_numpy() if len(kept) else None,
                 title=f"PSD ({len(kept)} particles, {len(names)} images)",
                 size_label={"ecd_um": "ECD", "feret_max_um": "max Feret", "feret_min_um": "min Feret",
                             "length_um": "length", "width_um": "width"}.get(s.size, s.size))
    return batch


def measure_label_images(
    label_sources: Iterable | str,
    *,
    pixel_size_um: float,
    images: Iterable | str | None = None,
    out_dir: str | os.PathLike | None = None,
    settings: PipelineSettings | None = None,
    overlays: bool = True,
    overwrite: bool = False,
    fmt: str = "csv",
    edges=None,
    n_classes: int = 30,
    spacing: str = "log",
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Measure label images another tool made, with the same descriptors, flags and outputs.

    Parameters
    ----------
    label_sources : path, folder, glob, or an iterable of them
        Instance label images (TIFF/PNG; 0 = background; a binary mask is labelled by
        8-connectivity), e.g. from Cellpose, StarDist, ilastik or Fiji.
    pixel_size_um : float
    images : path, folder, glob or iterable, optional
        The grey/colour images the labels belong to, paired in (natural) order: used for the
        focus score and the overlays. Without them the focus is NaN (every particle in focus).
    out_dir, settings, overlays, overwrite, fmt, edges, n_classes, spacing, progress
        As for :func:`measure_psd` (``settings`` supply the edge handling, focus cut-off,
        skeleton and size options; the segmentation settings do not apply).

    Returns
    -------
    BatchResult
    """
    px = check_pixel_size(pixel_size_um)
    s = settings or PipelineSettings()
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
    files = expand_sources(label_sources)
    if not files:
        raise ConfigError("no label images given: pass label files, folders or glob patterns")
    _check_inputs_exist(files, "label image")
    img_files = expand_sources(images) if images is not None else None
    if img_files is not None and len(img_files) != len(files):
        raise ConfigError(f"{len(files)} label image(s) but {len(img_files)} image(s): give one image per label "
                          "image (paired in natural order), or no images")
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
    overlay_dir = str(Path(out_dir) / "overlays") if (out_dir is not None and overlays and img_files) else None
    stems = _stems(files)
    results = []
    for k, f in enumerate(files):
        try:
            lab = read_labels(f)
            img = None
            if img_files is not None:
                img = read_image(img_files[k])
                if img.shape[:2] != lab.shape:
                    raise ImageError(f"label image {f!r} is {lab.shape[0]}×{lab.shape[1]} px but its image "
                                     f"{img_files[k]!r} is {img.shape[0]}×{img.shape[1]} px")
        except ImageError as exc:
            results.append((f, [], str(exc)))
            continue
        parts = measure_labels(lab, None, img, s.replace(background=None), px)
        parts = flag_particles(parts, s, lab.shape)
        info = {"image": f, "rows": int(lab.shape[0]), "cols": int(lab.shape[1]), "polarity": "n/a (label image)",
                "threshold_level": None, "particles": int(len(parts)),
                "particles_edge": int(parts["edge"].sum()) if len(parts) else 0,
                "source_image": img_files[k] if img_files is not None else None}
        if overlay_dir is not None:
            save_overlay(Path(overlay_dir) / f"{stems[f]}_overlay.png", img, lab, parts, pixel_size_um=px)
        results.append((f, [(f, parts.assign(image=f), info)], None))
        if progress:
            progress(k + 1, len(files))
    return _finish(results, s, px, out_dir, fmt, edges, n_classes, spacing)


def _nan_to_none(v):
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    return None if isinstance(v, float) and not np.isfinite(v) else v
