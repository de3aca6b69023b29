"""Large images in overlapping tiles, with the same particles as the whole image at once.

A 20,000 × 20,000 frame held as float32 working images costs several GB. :func:`analyze_tiled`
keeps only the input and one tile's working images in memory. The pipeline's global steps are
computed for the whole image first, from quantities that tiles can gather exactly:

1. the background's reduced grid (block means of ``f × f`` blocks aligned to the image origin,
   computed strip by strip), smoothed once, then interpolated per tile from global pixel
   positions (:func:`crystalloop.vision._background.upsample`), so every tile gets exactly the
   background the whole image would;
2. the threshold statistics of the background-subtracted signal (value range, the 2 × 2
   subsample's 256-bin histogram for Otsu/triangle, and the same sparse subsamples the untiled
   code takes for the background level, the noise level and the mid-point refinement), gathered
   from the tiles' non-overlapping cores;
3. each tile (core plus ``overlap_px`` on every side) is then segmented at that level and
   measured; a particle belongs to the tile whose core holds its bounding box's top-left pixel.

So every particle that lies at least a few pixels inside its tile's extended region — every
particle smaller than the overlap — gets exactly the descriptors it gets untiled (tested).
Particles larger than the overlap are cut by the tile border: they are kept, flagged
``edge`` and counted in ``particles_cut_by_tiles``. Adaptive thresholds and the full-resolution
``morphological`` background have no exact tiled form and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision._background import block_mean, reduction, small_background, upsample
from crystalloop.vision._core import (
    PipelineSettings,
    flag_particles,
    measure_labels,
    segment_with_level,
)
from crystalloop.vision._threshold import final_level, level_of_u8, midpoint, polarity_of, sigma_of
from crystalloop.vision._validate import check_image, check_pixel_size, to_gray_float

__all__ = ["analyze_tiled", "TiledResult"]


@dataclass
class TiledResult:
    """Result of :func:`analyze_tiled`: the particle table (global pixel coordinates, labels
    numbered in reading order of the bounding boxes), the polarity and threshold level used,
    the image shape, the number of tiles and of particles cut by a tile border."""

    particles: pd.DataFrame
    polarity: str
    settings: object
    threshold_level: float
    shape: tuple[int, int]
    n_tiles: int
    cut_by_tiles: int
    labels: None = None  # no full-frame label image (it would not fit the memory bound)

    def info(self, name: str) -> dict:
        p = self.particles
        return {"image": name, "rows": int(self.shape[0]), "cols": int(self.shape[1]), "polarity": self.polarity,
                "threshold_level": None if not np.isfinite(self.threshold_level) else float(self.threshold_level),
                "particles": int(len(p)), "particles_edge": int(p["edge"].sum()) if len(p) else 0,
                "tiles": self.n_tiles, "particles_cut_by_tiles": self.cut_by_tiles}


def _gray(image, r0, r1, c0, c1):
    return to_gray_float(image[r0:r1, c0:c1])


class _Signal:
    """The background-subtracted signal of any region, identical to the untiled one."""

    def __init__(self, image, s, pol):
        self.image, self.s, self.pol = image, s, pol
        h, w = image.shape[:2]
        self.bg_small = None
        if s.background is not None:
            radius = min(s.background_radius_px, max(min(h, w) / 2.0, 1.0))
            f = reduction(h, w, radius, s.background)
            if f == 1:
                raise ConfigError("tiled processing needs a reduced-grid background ('rolling_ball' or 'median'); "
                                  f"background={s.background!r} works at full resolution: give a smaller image or "
                                  "another background method")
            strip = f * max(1, 1024 // f)
            small = np.empty((-(-h // f), -(-w // f)), np.float32)
            for r0 in range(0, h, strip):
                r1 = min(r0 + strip, h)
                small[r0 // f : -(-r1 // f)] = block_mean(_gray(image, r0, r1, 0, w), f)
            self.f = f
            self.bg_small = small_background(small, max(int(round(radius / f)), 1), s.background, pol)

    def __call__(self, r0, r1, c0, c1) -> np.ndarray:
        import cv2

        img = _gray(self.image, r0, r1, c0, c1)
        if self.bg_small is None:
            return img if self.pol == "bright" else -img
        bg = upsample(self.bg_small, self.f, r0, r1, c0, c1)
        sig = cv2.subtract(bg, img) if self.pol == "dark" else cv2.subtract(img, bg)
        if self.s.normalize and self.pol == "dark":
            cv2.divide(sig, cv2.max(bg, 1e-3, dst=bg), dst=sig)
        return sig.astype(np.float32, copy=False)


class _Grid:
    """A global subsample ``x[::sr, ::sc]`` assembled from regions."""

    def __init__(self, h, w, sr, sc):
        self.sr, self.sc = sr, sc
        self.a = np.empty((-(-h // sr), -(-w // sc)), np.float32)

    def take(self, sig, r0, c0):
        h, w = sig.shape
        rr = np.arange(-(-r0 // self.sr) * self.sr, r0 + h, self.sr)
        cc = np.arange(-(-c0 // self.sc) * self.sc, c0 + w, self.sc)
        if rr.size and cc.size:
            self.a[np.ix_(rr // self.sr, cc // self.sc)] = sig[np.ix_(rr - r0, cc - c0)]


def _cores(h, w, tile):
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            yield r0, min(r0 + tile, h), c0, min(c0 + tile, w)


def _global_level(signal: _Signal, s, h, w, tile) -> float:
    """The threshold level :func:`crystalloop.vision.segment.threshold` gives the whole signal."""
    step = max(1, int(np.sqrt(h * w / 40_000)))
    g256 = _Grid(h, w, max(1, h // 256), max(1, w // 256))
    g512 = _Grid(h, w, max(1, h // 512), max(1, w // 512))
    gn = _Grid(h, w, step, max(1, step // 2))
    lo = hi = lo2 = hi2 = None
    for r0, r1, c0, c1 in _cores(h, w, tile):
        sig = signal(r0, r1, c0, c1)
        for g in (g256, g512, gn):
            g.take(sig, r0, c0)
        a, b = float(sig.min()), float(sig.max())
        lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
        sub = sig[(-r0) % 2 :: 2, (-c0) % 2 :: 2]
        if sub.size:
            a, b = float(sub.min()), float(sub.max())
            lo2, hi2 = (a, b) if lo2 is None else (min(lo2, a), max(hi2, b))
    if lo == hi:
        return float("nan")
    method = s.threshold
    if isinstance(method, str):
        scale = (hi2 - lo2) / 255.0 if hi2 > lo2 else 1.0
        counts = np.zeros(256, np.int64)
        for r0, r1, c0, c1 in _cores(h, w, tile):
            sub = signal(r0, r1, c0, c1)[(-r0) % 2 :: 2, (-c0) % 2 :: 2]
            u8 = np.clip((sub - lo2) / scale + 0.5, 0, 255).astype(np.uint8)  # as _threshold.to_u8
            counts += np.bincount(u8.ravel(), minlength=256)
        nz = np.flatnonzero(counts)
        if nz.size == 1:
            t = float(lo2)
        else:
            # Otsu and triangle depend on the histogram only: an image with these counts
            t = level_of_u8(np.repeat(np.arange(256, dtype=np.uint8), counts).reshape(-1, 1), lo2, scale, method)
            if method == "midpoint":
                t = midpoint(t, g512.a)
    else:
        t = float(method)
    bg = float(np.median(g256.a))
    return final_level(t, "bright", s.threshold_offset, s.noise_floor, bg, lambda: sigma_of(gn.a), lo, hi)


def analyze_tiled(image: np.ndarray, *, pixel_size_um: float, settings=None, tile_px: int = 2048,
                  overlap_px: int = 256) -> TiledResult:
    """Run the classical pipeline on a large image in overlapping tiles.

    Parameters
    ----------
    image : ndarray (rows, cols) or (rows, cols, 3|4)
        Any numeric dtype; it stays as it is (only tiles are converted to float).
    pixel_size_um : float
    settings : PipelineSettings, optional
        Not ``threshold="adaptive"`` nor ``background="morphological"`` (no exact tiled form).
    tile_px : int
        Side of the tiles' cores (px).
    overlap_px : int
        Extra pixels on every side of a core: particles smaller than this are measured exactly
        as untiled.

    Returns
    -------
    TiledResult
    """
    px = check_pixel_size(pixel_size_um)
    s = settings or PipelineSettings()
    img = check_image(image)
    h, w = img.shape[:2]
    if int(tile_px) < 64 or int(overlap_px) < 8:
        raise ConfigError(f"tile_px must be ≥ 64 and overlap_px ≥ 8, got {tile_px!r} and {overlap_px!r}")
    if s.threshold == "adaptive":
        raise ConfigError("tiled processing needs a global threshold (otsu, triangle, midpoint or a level), "
                          "not 'adaptive'")
    if h * w <= 250_000:
        raise ConfigError(f"image of {h}×{w} px is small enough to process whole; tiling is for large images")
    tile, ov = int(tile_px), int(overlap_px)
    # global grey range and polarity (the untiled pipeline's subsample)
    glo, ghi = np.inf, -np.inf
    for r0 in range(0, h, 1024):
        g = _gray(img, r0, min(r0 + 1024, h), 0, w)
        glo, ghi = min(glo, float(g.min())), max(ghi, float(g.max()))
    if s.polarity == "auto":
        pol = "dark" if glo == ghi else polarity_of(to_gray_float(img[:: max(1, h // 256), :: max(1, w // 256)]))
    else:
        pol = s.polarity
    n_tiles = len(list(_cores(h, w, tile)))
    if glo == ghi:
        empty = flag_particles(measure_labels(np.zeros((1, 1), np.int32), [], None, s, px), s, (h, w))
        return TiledResult(empty, pol, s, float("nan"), (h, w), n_tiles, 0)
    signal = _Signal(img, s, pol)
    level = _global_level(signal, s, h, w, tile)
    tables, cut = [], 0
    safe = int(s.closing_radius_px) + 2
    for r0, r1, c0, c1 in _cores(h, w, tile):
        e0, e1, f0, f1 = max(r0 - ov, 0), min(r1 + ov, h), max(c0 - ov, 0), min(c1 + ov, w)
        sig = signal(e0, e1, f0, f1)
        if not np.isfinite(level):
            continue
        labels, slices, _ = segment_with_level(sig, s, level=level)
        t = measure_labels(labels, slices, sig, s, px, origin=(e0, f0))
        del labels, sig
        if not len(t):
            continue
        own = ((t.bbox_row0_px >= r0) & (t.bbox_row0_px < r1) & (t.bbox_col0_px >= c0) & (t.bbox_col0_px < c1))
        t = t[own.to_numpy()].copy()
        near = (((t.bbox_row0_px - e0 < safe) & (e0 > 0)) | ((e1 - t.bbox_row1_px < safe) & (e1 < h))
                | ((t.bbox_col0_px - f0 < safe) & (f0 > 0)) | ((f1 - t.bbox_col1_px < safe) & (f1 < w)))
        cut += int(near.sum())
        t["edge"] = ((t.bbox_row0_px == 0) | (t.bbox_col0_px == 0) | (t.bbox_row1_px == h) | (t.bbox_col1_px == w)
                     | near).to_numpy()
        tables.append(t)
    if tables:
        parts = pd.concat(tables, ignore_index=True).sort_values(["bbox_row0_px", "bbox_col0_px", "area_px"],
                                                                 kind="stable", ignore_index=True)
        parts["label"] = np.arange(1, len(parts) + 1, dtype=np.int64)
    else:
        parts = measure_labels(np.zeros((1, 1), np.int32), [], None, s, px)
    parts = flag_particles(parts, s, (h, w))
    return TiledResult(parts, pol, s, level, (h, w), n_tiles, cut)
