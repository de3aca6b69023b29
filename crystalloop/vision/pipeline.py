"""The classical measuring pipeline: image → background → threshold → labels → descriptors → PSD.

:class:`PipelineSettings` holds every hyperparameter (saved/loaded as JSON, what
:func:`~crystalloop.vision.calibrate` fits); :func:`analyze_image` runs one image;
:func:`analyze_images` runs a batch (files, folders, globs, arrays) in parallel and pools the PSD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision._core import (
    BatchResult,
    PipelineSettings,
    assemble,
    flag_particles,
    measure_labels,
    segment_with_level,
)
from crystalloop.vision._validate import check_image, check_pixel_size, to_gray_float
from crystalloop.vision.preprocess import subtract_background
from crystalloop.vision.segment import detect_polarity
from crystalloop.vision.tiling import analyze_tiled

__all__ = ["PipelineSettings", "ImageResult", "BatchResult", "analyze_image", "analyze_images", "prepare_signal",
           "segment_signal"]


@dataclass
class ImageResult:
    """Result of :func:`analyze_image`: particle table (with ``in_focus``, ``kept`` and
    ``weight``), label image, and the polarity and threshold level actually used (the level in
    units of the background-subtracted signal; NaN for an adaptive threshold or a blank image)."""

    particles: pd.DataFrame
    labels: np.ndarray
    polarity: str
    settings: PipelineSettings
    threshold_level: float = float("nan")

    def info(self, name: str) -> dict:
        """What was used on this image, for the batch summary."""
        p = self.particles
        return {"image": name, "rows": int(self.labels.shape[0]), "cols": int(self.labels.shape[1]),
                "polarity": self.polarity, "threshold_level": _none_if_nan(self.threshold_level),
                "particles": int(len(p)), "particles_edge": int(p["edge"].sum()) if len(p) else 0}

    @property
    def kept(self) -> pd.DataFrame:
        return self.particles[self.particles["kept"]]


def prepare_signal(image: np.ndarray, settings: PipelineSettings) -> tuple[np.ndarray, str]:
    """Grey float image → (signal, polarity): background-subtracted signal, particles positive."""
    gray = to_gray_float(check_image(image))
    pol = detect_polarity(gray) if settings.polarity == "auto" else settings.polarity
    if float(gray.max()) == float(gray.min()):
        return np.zeros(gray.shape, np.float32), pol  # all background or all foreground
    if settings.background is None:
        sig = gray if pol == "bright" else -gray
        return sig, pol
    if min(gray.shape) < 4:
        return (gray if pol == "bright" else -gray), pol
    radius = min(settings.background_radius_px, max(min(gray.shape) / 2.0, 1.0))
    sig = subtract_background(gray, radius=radius, method=settings.background, polarity=pol,
                              normalize=settings.normalize)
    return sig, pol


def segment_signal(signal: np.ndarray, settings: PipelineSettings) -> np.ndarray:
    """Signal (particles positive) → instance labels with the settings' post-processing."""
    return segment_with_level(signal, settings)[0]


#: Images with more pixels than this are processed in tiles by default (bounded memory).
AUTO_TILE_PIXELS = 4096 * 4096


def analyze_image(image: np.ndarray, *, pixel_size_um: float, settings: PipelineSettings | None = None,
                  segmenter=None, tile_px: int | None = None, tile_overlap_px: int = 256,
                  **overrides) -> ImageResult:
    """Run the pipeline on one image.

    Parameters
    ----------
    image : ndarray (rows, cols) or (rows, cols, 3|4)
        Any numeric dtype (uint8, uint16, float, ...).
    pixel_size_um : float
        Pixel size in µm (> 0).
    settings : PipelineSettings, optional
    segmenter : Segmenter, optional
        A trained model (:func:`crystalloop.vision.segmenters.load_segmenter`) whose
        ``predict_labels(image)`` replaces the threshold/watershed step; its labels are measured,
        flagged and pooled exactly as the pipeline's own.
    tile_px : int, optional
        Process the image in tiles of this size with ``tile_overlap_px`` of overlap
        (:func:`~crystalloop.vision.tiling.analyze_tiled`: bounded memory, the same particles);
        by default images of more than :data:`AUTO_TILE_PIXELS` pixels use 2048 px tiles (not
        with a ``segmenter``). 0 never tiles. A tiled result has no full-frame label image
        (``labels`` is None).
    tile_overlap_px : int
        Overlap of the tiles (px): particles smaller than this are measured exactly as untiled.
    **overrides
        Individual settings, e.g. ``min_size_px=10`` (applied on top of ``settings``).

    Returns
    -------
    ImageResult
        ``particles`` (:data:`~crystalloop.vision.PARTICLE_COLUMNS` + ``in_focus``, ``kept``),
        ``labels``; an all-background or all-foreground image gives an empty table.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((120, 160), 200, np.uint8); img[40:60, 50:80] = 40
    >>> res = analyze_image(img, pixel_size_um=2.0)
    >>> len(res.particles), float(res.particles.area_um2[0])
    (1, 2400.0)
    """
    px = check_pixel_size(pixel_size_um)
    s = (settings or PipelineSettings()).replace(**overrides) if overrides else (settings or PipelineSettings())
    img = check_image(image)
    if segmenter is None and tile_px is None and img.shape[0] * img.shape[1] > AUTO_TILE_PIXELS:
        tile_px = 2048
    if segmenter is None and tile_px:
        return analyze_tiled(img, pixel_size_um=px, settings=s, tile_px=tile_px, overlap_px=tile_overlap_px)
    sig, pol = prepare_signal(img, s)
    if segmenter is not None:
        from crystalloop.vision.segmenters import segment_labels

        labels, slices, level = segment_labels(segmenter, img), None, float("nan")
    else:
        labels, slices, level = segment_with_level(sig, s)
    parts = measure_labels(labels, slices, sig, s, px)
    parts = flag_particles(parts, s, labels.shape)
    return ImageResult(particles=parts, labels=labels, polarity=pol, settings=s, threshold_level=level)


def _work(item, pixel_size_um, settings, segmenter=None):
    name, image = item
    res = analyze_image(image, pixel_size_um=pixel_size_um, settings=settings, segmenter=segmenter)
    return name, res.particles, res.info(name)


def analyze_images(
    sources: Iterable,
    *,
    pixel_size_um: float,
    settings: PipelineSettings | None = None,
    workers: int = 1,
    edges=None,
    n_classes: int = 30,
    spacing: str = "log",
    progress: Callable[[int, int | None], None] | None = None,
    on_result: Callable[[str, np.ndarray, ImageResult], None] | None = None,
    segmenter=None,
) -> BatchResult:
    """Run the pipeline over many images and pool the PSD.

    Parameters
    ----------
    sources : iterable
        Paths, folders, glob patterns (see :func:`~crystalloop.vision.io.iter_images`), numpy
        arrays, or ``(name, array)`` pairs. Unreadable files are reported in ``skipped`` and the
        batch continues.
    pixel_size_um : float
    settings : PipelineSettings, optional
    workers : int
        Processes to use (1: in this process). Images are dispatched in chunks.
    edges, n_classes, spacing
        PSD classes (see :func:`~crystalloop.vision.psd_table`).
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.
    on_result : callable, optional
        Called as ``on_result(name, image, result)`` for each image (in-process only, e.g. to
        write overlays); forces ``workers=1``.
    segmenter : Segmenter, optional
        Trained model that segments each image instead of the threshold step (see
        :func:`analyze_image`).

    Returns
    -------
    BatchResult
        ``particles`` (all images, ``image`` column), ``psd`` (kept particles pooled),
        ``summary`` (counts, skipped, x10/x50/x90 ...), ``skipped`` [(file, reason)].
    """
    from crystalloop.vision.io import iter_images

    px = check_pixel_size(pixel_size_um)
    s = settings or PipelineSettings()
    if int(workers) < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers!r}")
    skipped: list[tuple[str, str]] = []
    items = iter_images(sources, skipped=skipped)
    tables, names, info = [], [], []
    done = 0
    if workers == 1 or on_result is not None:
        for name, image in items:
            res = analyze_image(image, pixel_size_um=px, settings=s, segmenter=segmenter)
            if on_result is not None:
                on_result(name, image, res)
            tables.append(res.particles.assign(image=name))
            names.append(name)
            info.append(res.info(name))
            done += 1
            if progress:
                progress(done, None)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            futs = []
            for item in items:
                futs.append(ex.submit(_work, item, px, s, segmenter))
            for f in futs:
                name, parts, inf = f.result()
                tables.append(parts.assign(image=name))
                names.append(name)
                info.append(inf)
                done += 1
                if progress:
                    progress(done, len(futs))
    return assemble(tables, names, skipped, s, px, edges, n_classes, spacing, info)


def _none_if_nan(v):
    return None if isinstance(v, float) and not np.isfinite(v) else v


