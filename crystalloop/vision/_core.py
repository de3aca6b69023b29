"""The steps of the classical pipeline that the whole-image path (:mod:`~crystalloop.vision.pipeline`)
and the tiled path (:mod:`~crystalloop.vision.tiling`) share: the settings, segmentation of a
signal (optionally at a fixed level), measurement of the labels, the flags and weights of the
particle table and the assembly of a batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision._shape import describe
from crystalloop.vision._threshold import threshold_with_level
from crystalloop.vision._validate import to_gray_float
from crystalloop.vision.measure import empty_particle_table
from crystalloop.vision.psd import psd_summary, psd_table
from crystalloop.vision.segment import mask_to_labels

__all__ = ["PipelineSettings", "BatchResult", "PSD_SIZES", "segment_with_level", "flag_particles", "measure_labels",
           "assemble"]


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


def segment_with_level(signal: np.ndarray, settings: PipelineSettings, level: float | None = None):
    """:func:`segment_signal` that also returns the objects' boxes (``find_objects`` order) when
    the segmentation knows them (None otherwise) and the threshold level used. ``level``: use
    this fixed level (tiled processing passes the whole image's)."""
    lo, hi = cv2.minMaxLoc(signal)[:2] if signal.dtype == np.float32 else (signal.min(), signal.max())
    if float(lo) == float(hi) and level is None:
        return np.zeros(signal.shape, np.int32), [], float("nan")
    if level is None:
        mask, level = threshold_with_level(signal, method=settings.threshold, polarity="bright",
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


def measure_labels(labels, slices, sig, s: PipelineSettings, px: float, origin=(0, 0)) -> pd.DataFrame:
    if slices is not None and not any(sl is not None for sl in slices):
        return empty_particle_table()
    if slices is None and labels.max() == 0:
        return empty_particle_table()
    # labels, image and signal are validated and of one shape: skip measure_particles' checks
    return describe(labels, px, focus_gray=None if sig is None else to_gray_float(sig),
                    focus_background=0.0 if s.background is not None else None, slices=slices,
                    skeleton_min_aspect=s.skeleton_min_aspect, origin=origin)


def assemble(tables, names, skipped, s: PipelineSettings, px, edges, n_classes, spacing,
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
