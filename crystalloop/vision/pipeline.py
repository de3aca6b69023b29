"""The classical measuring pipeline: image → background → threshold → labels → descriptors → PSD.

:class:`PipelineSettings` holds every hyperparameter (saved/loaded as JSON, what
:func:`~crystalloop.vision.calibrate` fits); :func:`analyze_image` runs one image;
:func:`analyze_images` runs a batch (files, folders, globs, arrays) in parallel and pools the PSD.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision._validate import check_image, check_pixel_size, to_gray_float
from crystalloop.vision.measure import _measure, empty_particle_table
from crystalloop.vision.preprocess import subtract_background
from crystalloop.vision.psd import psd_summary, psd_table
from crystalloop.vision.segment import _threshold, detect_polarity, mask_to_labels

__all__ = ["PipelineSettings", "ImageResult", "BatchResult", "analyze_image", "analyze_images", "prepare_signal",
           "segment_signal"]


@dataclass
class PipelineSettings:
    """Hyperparameters of the classical pipeline (units in the names).

    Attributes
    ----------
    background : {"rolling_ball", "morphological", "median", None}
        Background estimation (None: use the raw grey image).
    background_radius_px : float
        Rolling-ball radius; larger than the biggest particle's half-width.
    normalize : bool
        Divide the signal by the background (flat-field by the estimated illumination).
    polarity : {"auto", "dark", "bright"}
    threshold : {"otsu", "triangle", "midpoint", "adaptive"} or float
    threshold_offset : float
        Shift of the threshold towards the background (fraction; calibrated).
    noise_floor : float
        Keep the threshold this many noise σ above the background (empty frames stay empty).
    adaptive_block_px : int
    min_size_px : float
        Smallest object kept (seed 002: 20 px²).
    closing_radius_px : int
    fill_holes : bool
    watershed : bool
    watershed_strength : float in [0, 1]
    circularity_range : (low, high) or None
    split_needles : bool
        Separate touching and crossing elongated crystals along their skeleton (with
        ``watershed``; see :func:`~crystalloop.vision.skeleton.split_elongated`).
    skeleton_min_aspect : float or None
        Particles at least this elongated (moment-ellipse aspect ratio) are measured along their
        skeleton (``length_um``, ``width_um``); 0: all, None: none (length = max Feret).
    exclude_edge : bool
        Particles touching the frame stay in the table (counted, flagged ``edge``) but are not
        sized in the PSD; False sizes them as they are (truncated by the frame).
    edge_correction : {"miles_lantuejoul", "none"}
        With ``exclude_edge``: weight every sized particle by the Miles–Lantuéjoul factor
        ``W·H / ((W − w)(H − h))`` (frame W×H px, particle box w×h px), the inverse probability
        that a particle of its size lies wholly inside the frame, so excluding edge particles
        does not bias the PSD towards small sizes. ``none``: every sized particle counts 1.
    min_focus : float or None
        Focus cut-off (1/px); particles below are flagged out of focus and excluded from the PSD.
    size : str
        Size measure of the PSD (``ecd_um``, ``feret_max_um``, ``feret_min_um``, ...).
    """

    background: str | None = "rolling_ball"
    background_radius_px: float = 50.0
    normalize: bool = True
    polarity: str = "auto"
    threshold: str | float = "otsu"
    threshold_offset: float = 0.0
    noise_floor: float = 5.0
    adaptive_block_px: int = 51
    min_size_px: float = 20.0
    closing_radius_px: int = 1
    fill_holes: bool = True
    watershed: bool = True
    watershed_strength: float = 0.7
    circularity_range: tuple[float, float] | None = None
    split_needles: bool = True
    skeleton_min_aspect: float | None = 2.0
    exclude_edge: bool = True
    edge_correction: str = "miles_lantuejoul"
    min_focus: float | None = None
    size: str = "ecd_um"

    def __post_init__(self) -> None:
        if self.background not in (None, "rolling_ball", "morphological", "median"):
            raise ConfigError(f"background must be 'rolling_ball', 'morphological', 'median' or None, got {self.background!r}")
        if self.polarity not in ("auto", "dark", "bright"):
            raise ConfigError(f"polarity must be 'auto', 'dark' or 'bright', got {self.polarity!r}")
        if isinstance(self.threshold, str) and self.threshold not in ("otsu", "triangle", "midpoint", "adaptive"):
            raise ConfigError(
                f"threshold must be 'otsu', 'triangle', 'midpoint', 'adaptive' or a number, got {self.threshold!r}")
        if not 0.0 <= float(self.watershed_strength) <= 1.0:
            raise ConfigError(f"watershed_strength must lie in [0, 1], got {self.watershed_strength!r}")
        if self.min_size_px < 0:
            raise ConfigError(f"min_size_px must be ≥ 0, got {self.min_size_px!r}")
        if self.background_radius_px < 1:
            raise ConfigError(f"background_radius_px must be ≥ 1, got {self.background_radius_px!r}")
        if self.circularity_range is not None:
            self.circularity_range = tuple(float(v) for v in self.circularity_range)
        if self.edge_correction not in ("miles_lantuejoul", "none"):
            raise ConfigError(f"edge_correction must be 'miles_lantuejoul' or 'none', got {self.edge_correction!r}")
        if self.skeleton_min_aspect is not None and not float(self.skeleton_min_aspect) >= 0:
            raise ConfigError(f"skeleton_min_aspect must be ≥ 0 or None, got {self.skeleton_min_aspect!r}")
        if int(self.closing_radius_px) < 0:
            raise ConfigError(f"closing_radius_px must be ≥ 0, got {self.closing_radius_px!r}")
        if int(self.adaptive_block_px) < 3 or int(self.adaptive_block_px) % 2 == 0:
            raise ConfigError(f"adaptive_block_px must be an odd integer ≥ 3, got {self.adaptive_block_px!r}")

    def replace(self, **changes) -> PipelineSettings:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown pipeline setting(s) {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["circularity_range"] is not None:
            d["circularity_range"] = list(d["circularity_range"])
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the settings as JSON."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> PipelineSettings:
        """Read settings written by :meth:`save` (unknown keys are an error)."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read pipeline settings from {p}: {exc}") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"pipeline settings file {p} must hold a JSON object")
        d = d.get("settings", d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"pipeline settings file {p} has unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


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


@dataclass
class BatchResult:
    """Result of :func:`analyze_images`."""

    particles: pd.DataFrame
    psd: pd.DataFrame
    summary: dict
    skipped: list[tuple[str, str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    #: PSD tables by the other crystal sizes (``ecd_um``, ``length_um``, ``width_um`` — those
    #: that are not ``settings.size``), same classes' rules as ``psd``.
    psd_by: dict[str, pd.DataFrame] = field(default_factory=dict)


#: Sizes every batch also reports a PSD for (besides ``PipelineSettings.size``).
PSD_SIZES = ("ecd_um", "length_um", "width_um")


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
    return _segment(signal, settings)[0]


def _segment(signal: np.ndarray, settings: PipelineSettings, level: float | None = None):
    """:func:`segment_signal` that also returns the objects' boxes (``find_objects`` order) when
    the segmentation knows them (None otherwise) and the threshold level used. ``level``: use
    this fixed level (tiled processing passes the whole image's)."""
    lo, hi = cv2.minMaxLoc(signal)[:2] if signal.dtype == np.float32 else (signal.min(), signal.max())
    if float(lo) == float(hi) and level is None:
        return np.zeros(signal.shape, np.int32), [], float("nan")
    if level is None:
        mask, level = _threshold(signal, method=settings.threshold, polarity="bright",
                                 offset=settings.threshold_offset, block_size=settings.adaptive_block_px,
                                 noise_floor=settings.noise_floor)
    else:
        mask = signal > level
    lab, slices = mask_to_labels(mask, min_size_px=settings.min_size_px, closing_radius_px=settings.closing_radius_px,
                                 fill=settings.fill_holes, remove_border=False, watershed=settings.watershed,
                                 watershed_strength=settings.watershed_strength,
                                 circularity_range=settings.circularity_range, split_needles=settings.split_needles,
                                 _return_slices=True)
    return lab, slices, level


def flag_particles(particles: pd.DataFrame, settings: PipelineSettings,
                   shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Add ``in_focus``, ``kept`` (sized in the PSD) and ``weight`` (number weight in the PSD:
    the Miles–Lantuéjoul factor, 1, or 0 for particles not sized) to a particle table.

    ``shape`` (rows, cols) of the image is needed for the Miles–Lantuéjoul weights.
    """
    p = particles
    if settings.min_focus is None:
        p["in_focus"] = True
    else:
        p["in_focus"] = p["focus"].fillna(np.inf).to_numpy() >= float(settings.min_focus)
    p["kept"] = p["in_focus"] & ~(p["edge"] if settings.exclude_edge else False)
    w = np.ones(len(p))
    if settings.exclude_edge and settings.edge_correction == "miles_lantuejoul" and len(p):
        if shape is None:
            raise ConfigError("Miles–Lantuéjoul edge weights need the image shape (rows, cols)")
        rows, cols = shape
        bh = (p["bbox_row1_px"] - p["bbox_row0_px"]).to_numpy(float)
        bw = (p["bbox_col1_px"] - p["bbox_col0_px"]).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = rows * cols / ((rows - bh) * (cols - bw))
        w = np.where((bh < rows) & (bw < cols), w, np.nan)
        p["kept"] = p["kept"].to_numpy(bool) & np.isfinite(w)
    p["weight"] = np.where(p["kept"].to_numpy(bool), w, 0.0)
    return p


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
        from crystalloop.vision.tiling import analyze_tiled

        return analyze_tiled(img, pixel_size_um=px, settings=s, tile_px=tile_px, overlap_px=tile_overlap_px)
    sig, pol = prepare_signal(img, s)
    if segmenter is not None:
        from crystalloop.vision.segmenters import segment_labels

        labels, slices, level = segment_labels(segmenter, img), None, float("nan")
    else:
        labels, slices, level = _segment(sig, s)
    parts = _measure_labels(labels, slices, sig, s, px)
    parts = flag_particles(parts, s, labels.shape)
    return ImageResult(particles=parts, labels=labels, polarity=pol, settings=s, threshold_level=level)


def _measure_labels(labels, slices, sig, s: PipelineSettings, px: float, origin=(0, 0)) -> pd.DataFrame:
    if slices is not None and not any(sl is not None for sl in slices):
        return empty_particle_table()
    if slices is None and labels.max() == 0:
        return empty_particle_table()
    # labels, image and signal are validated and of one shape: skip measure_particles' checks
    return _measure(labels, px, focus_gray=None if sig is None else to_gray_float(sig),
                    focus_background=0.0 if s.background is not None else None, slices=slices,
                    skeleton_min_aspect=s.skeleton_min_aspect, origin=origin)


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
    return _assemble(tables, names, skipped, s, px, edges, n_classes, spacing, info)


def _none_if_nan(v):
    return None if isinstance(v, float) and not np.isfinite(v) else v


def _assemble(tables, names, skipped, s: PipelineSettings, px, edges, n_classes, spacing,
              info: list[dict] | None = None) -> BatchResult:
    if tables:
        particles = pd.concat(tables, ignore_index=True)
        # rebuilt column by column: one memory layout whether the tables came from this process
        # or from workers (DataFrame.equals compares the layout too)
        particles = pd.DataFrame({c: particles[c].to_numpy() for c in ["image"] + [c for c in particles.columns
                                                                                   if c != "image"]})
    else:
        particles = empty_particle_table().assign(in_focus=pd.Series(dtype=bool), kept=pd.Series(dtype=bool),
                                                  weight=pd.Series(dtype=float))
        particles.insert(0, "image", pd.Series(dtype=str))
    kept = particles[particles["kept"].astype(bool)]
    w = kept["weight"].to_numpy(float) if len(kept) else np.array([])
    psd_by = {}
    if len(kept):
        table = psd_table(kept, size=s.size, edges=edges, n_classes=n_classes, spacing=spacing, weights=w)
        for size in PSD_SIZES:
            if size != s.size and size in kept.columns:
                # the classes of the main table fit its size only: these get their own
                psd_by[size] = psd_table(kept, size=size, n_classes=n_classes, spacing=spacing, weights=w)
    else:
        table = pd.DataFrame(columns=["size_lower_um", "size_upper_um", "size_um", "count", "number_weighted",
                                      "number_fraction",
                                      "q0", "Q0", "volume_fraction", "q3", "Q3"])
    info = info or []
    pols = sorted({i["polarity"] for i in info})
    used = s.to_dict()
    used["polarity"] = pols[0] if len(pols) == 1 else ("mixed" if pols else s.polarity)
    summary = {
        "images_read": len(names),
        "images_skipped": len(skipped),
        "particles_detected": int(len(particles)),
        "particles_edge": int(particles["edge"].astype(bool).sum()),
        "particles_out_of_focus": int((~particles["in_focus"].astype(bool)).sum()),
        "particles_kept": int(len(kept)),
        "particles_edge_sized": int(particles["edge"].astype(bool).sum()) if not s.exclude_edge else 0,
        "edge_correction": s.edge_correction if s.exclude_edge else "none (edge particles sized as cut)",
        "particles_weighted": float(np.nansum(w)) if len(kept) else 0.0,
        "pixel_size_um": px,
        "size": s.size,
        "polarity": used["polarity"],
        "settings": used,
        "settings_requested": s.to_dict(),
        "images": info,
    }
    if len(kept):
        summary.update(psd_summary(kept, size=s.size, weights=w))
        summary["by_size"] = {}
        for size in PSD_SIZES:
            if size in kept.columns:
                full = psd_summary(kept, size=size, weights=w)
                summary["by_size"][size] = {k: full[k] for k in ("x10_0_um", "x50_0_um", "x90_0_um", "x10_3_um",
                                                                  "x50_3_um", "x90_3_um", "d43_um")}
    else:
        summary.update({k: float("nan") for k in ("x10_0_um", "x50_0_um", "x90_0_um", "x10_3_um", "x50_3_um", "x90_3_um")})
    summary["n_particles"] = int(len(kept))
    return BatchResult(particles=particles, psd=table, summary=summary, skipped=skipped, images=names,
                       psd_by=psd_by)


