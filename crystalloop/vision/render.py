"""Synthetic in-situ probe images with exact ground truth.

:func:`sample_particles` draws the particle list of one frame from a number distribution (the
virtual crystallizer's camera uses it); :func:`render_particles` draws it as an 8-bit probe image —
ellipses, needles, rods, platelets, blocks, agglomerate clusters, droplets and bubbles with their
true sizes, defocus blur growing with depth, uneven illumination and sensor noise — and returns a
ground-truth table with every descriptor the measurement code reports (same column names, in µm).

Geometry is exact: each particle is a polygon (curved shapes with enough vertices), its true
descriptors come from that polygon (agglomerates: from a supersampled raster of the union), and
its coverage is rasterised with 4× supersampling per particle so the rendered area matches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision import _geometry as geo

__all__ = ["render_particles", "sample_particles", "KINDS", "TRUTH_COLUMNS"]

#: Particle kinds the renderer draws.
KINDS = ("ellipse", "needle", "rod", "platelet", "block", "agglomerate", "droplet", "bubble")

#: Columns of the ground-truth table (descriptor names match ``measure_particles``).
TRUTH_COLUMNS = (
    "label", "kind", "x_px", "y_px", "depth", "in_focus", "in_frame", "edge",
    "area_um2", "ecd_um", "perimeter_um", "feret_max_um", "feret_min_um", "feret_angle_deg",
    "ellipse_major_um", "ellipse_minor_um", "aspect_ratio", "circularity", "solidity", "convexity",
    "centroid_row_px", "centroid_col_px", "n_primary", "overlap_fraction", "visible_area_um2",
)

_SS = 4  # supersampling factor of the per-particle coverage raster
_SHIFT = 4  # cv2 fractional bits for polygon vertices


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------


def _n_vertices(length_px: float) -> int:
    return int(np.clip(np.pi * length_px / 3.0, 24, 96))


def _ellipse(length: float, width: float) -> np.ndarray:
    n = _n_vertices(length)
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    # scale the inscribed polygon so its area equals the ellipse's
    k = np.sqrt(2 * np.pi / (n * np.sin(2 * np.pi / n)))
    return np.stack((0.5 * length * k * np.cos(t), 0.5 * width * k * np.sin(t)), axis=1)


@functools.lru_cache(maxsize=128)
def _half_arc(n: int) -> np.ndarray:
    """Unit half circle from -90° to +90° with ``n`` vertices, as a closed stadium template:
    rows 0..n-1 the right cap, n..2n-1 the left cap (read-only, cached)."""
    a = np.linspace(-np.pi / 2, np.pi / 2, n)
    ca, sa = np.cos(a), np.sin(a)
    out = np.concatenate((np.stack((ca, sa), axis=1), np.stack((-ca, -sa), axis=1)))
    out.flags.writeable = False
    return out


def _stadium(length: float, width: float) -> np.ndarray:
    r = 0.5 * min(width, length)
    half = 0.5 * length - r
    n = max(8, _n_vertices(width) // 2)
    out = r * _half_arc(n)
    out[:n, 0] += half
    out[n:, 0] -= half
    return out


def _needle(length: float, width: float) -> np.ndarray:
    t = min(0.8 * width, 0.45 * length)
    hl, hw = 0.5 * length, 0.5 * width
    return np.array([[hl, 0], [hl - t, hw], [-hl + t, hw], [-hl, 0], [-hl + t, -hw], [hl - t, -hw]])


def _platelet(length: float, width: float) -> np.ndarray:
    hl, hw = 0.5 * length, 0.5 * width
    return np.array([[hl, 0], [0.5 * hl, hw], [-0.5 * hl, hw], [-hl, 0], [-0.5 * hl, -hw], [0.5 * hl, -hw]])


def _block(length: float, width: float) -> np.ndarray:
    hl, hw = 0.5 * length, 0.5 * width
    c = 0.08 * min(length, width)
    return np.array([
        [hl, -hw + c], [hl, hw - c], [hl - c, hw], [-hl + c, hw],
        [-hl, hw - c], [-hl, -hw + c], [-hl + c, -hw], [hl - c, -hw],
    ])


_SHAPES = {
    "ellipse": _ellipse, "droplet": _ellipse, "bubble": _ellipse,
    "needle": _needle, "rod": _stadium, "platelet": _platelet, "block": _block,
}


def _place(poly: np.ndarray, x: float, y: float, angle_deg: float) -> np.ndarray:
    """Rotate (counter-clockwise on screen) and translate a local polygon to image (col, row)."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    px = x + c * poly[:, 0] + s * poly[:, 1]
    py = y - s * poly[:, 0] + c * poly[:, 1]
    return np.stack((px, py), axis=1)


def _agglomerate(length: float, width: float, n_primary: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Overlapping primaries (rods/blocks) whose cluster spans about ``length``."""
    n = max(2, int(n_primary))
    lp = length / (1.0 + 0.35 * (n - 1) ** 0.7)
    wp = max(width * lp / length, 0.25 * lp) if length > 0 else width
    prims, centres = [], [np.zeros(2)]
    for k in range(n):
        if k > 0:
            base = centres[int(rng.integers(0, len(centres)))]
            step = rng.uniform(0.3, 0.5) * lp
            phi = rng.uniform(0, 2 * np.pi)
            centres.append(base + step * np.array([np.cos(phi), np.sin(phi)]))
        shape = _stadium if rng.random() < 0.5 else _block
        prims.append(_place(shape(lp, wp), *centres[-1], rng.uniform(0, 180)))
    allpts = np.vstack(prims)
    mid = 0.5 * (allpts.min(axis=0) + allpts.max(axis=0))
    return [p - mid for p in prims]


# --------------------------------------------------------------------------------------------
# rasterisation and truth
# --------------------------------------------------------------------------------------------


def _coverage(polys: list[np.ndarray], x0: int, y0: int, h: int, w: int, ss: int | None = None) -> np.ndarray:
    """Fractional pixel coverage of the union of convex polygons in the crop at (y0, x0).

    Supersampled ``ss``× (default 4, 2 for crops above 48 px) with every polygon inset by half a
    subpixel, which cancels OpenCV's outward bias of its scan-line fill.
    """
    if ss is None:
        ss = _SS if max(h, w) <= 48 else 2
    big = np.zeros((h * ss, w * ss), np.uint8)
    for p in polys:
        q = (p - np.array([x0, y0]) + 0.5) * ss - 0.5
        q = geo.inset_convex(q, 0.5)
        cv2.fillPoly(big, [np.round(q * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    if ss == 1:
        return big.astype(np.float32)
    return cv2.resize(big.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def _raster(verts: np.ndarray, h: int, w: int, ss: int) -> np.ndarray:
    """Coverage of one convex polygon given as fixed-point vertices of the ``ss``× crop raster."""
    big = np.zeros((h * ss, w * ss), np.uint8)
    cv2.fillPoly(big, [verts], 1, cv2.LINE_8, _SHIFT)
    if ss == 1:
        return big.astype(np.float32)
    return cv2.resize(big.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def _singles_geometry(local: list[np.ndarray], x: np.ndarray, y: np.ndarray, angle_deg: np.ndarray,
                      margin: np.ndarray, coarse: np.ndarray) -> dict:
    """Placement, bounding boxes, crops and fixed-point raster vertices of many single convex
    shapes at once (what :func:`_place` and :func:`_coverage` do per particle).

    Polygons are padded by repeating their last vertex (copies change no extreme); the inset of
    half a subpixel runs over each polygon's own cyclic neighbours, in pixel units (0.5/ss px).
    """
    nv = np.array([len(q) for q in local])
    k = int(nv.max())
    P = geo.pad_polygons(local, nv, k).astype(np.float64)
    a = np.radians(angle_deg)
    c, sn = np.cos(a)[:, None], np.sin(a)[:, None]
    X = x[:, None] + c * P[..., 0] + sn * P[..., 1]
    Y = y[:, None] - sn * P[..., 0] + c * P[..., 1]
    lx, ly, hx, hy = X.min(axis=1), Y.min(axis=1), X.max(axis=1), Y.max(axis=1)
    x0, y0 = np.floor(lx).astype(int) - margin, np.floor(ly).astype(int) - margin
    x1, y1 = np.ceil(hx).astype(int) + margin + 1, np.ceil(hy).astype(int) + margin + 1
    x1 = np.where(coarse, x1 + (x1 - x0) % 2, x1)
    y1 = np.where(coarse, y1 + (y1 - y0) % 2, y1)
    ss = np.where(np.maximum(y1 - y0, x1 - x0) <= 48, _SS, 2)
    # inset (geo.inset_convex) on each polygon's own cycle
    m = len(local)
    ar = np.arange(k)[None, :]
    rows = np.arange(m)[:, None]
    valid = ar < nv[:, None]
    nxt = np.where(ar + 1 < nv[:, None], ar + 1, 0)
    prv = np.where(ar > 0, ar - 1, nv[:, None] - 1)
    Q = np.stack((X, Y), axis=-1)
    e = Q[rows, nxt] - Q
    ln = np.maximum(np.sqrt(e[..., 0] ** 2 + e[..., 1] ** 2), 1e-12)
    nrm = np.stack((e[..., 1], -e[..., 0]), axis=-1) / ln[..., None]
    area = np.where(valid, Q[..., 0] * Q[rows, nxt][..., 1] - Q[rows, nxt][..., 0] * Q[..., 1], 0.0).sum(axis=1)
    nrm = np.where((area < 0)[:, None, None], -nrm, nrm)
    n1 = nrm[rows, prv]
    denom = np.maximum(1.0 + np.sum(n1 * nrm, axis=-1), 0.2)
    d = (0.5 / ss)[:, None, None]
    Qi = Q - d * (n1 + nrm) / denom[..., None]
    org = np.stack((x0, y0), axis=-1)[:, None, :]
    V = np.round(((Qi - org + 0.5) * ss[:, None, None] - 0.5) * (1 << _SHIFT)).astype(np.int32)
    return {
        "poly": [Q[j, : nv[j]] for j in range(m)], "verts": [V[j, : nv[j]] for j in range(m)],
        "lo": np.stack((lx, ly), axis=1).tolist(), "hi": np.stack((hx, hy), axis=1).tolist(),
        "box": np.stack((x0, y0, x1, y1), axis=1).tolist(), "ss": ss.tolist(),
    }


def _truth_singles(polys: list[np.ndarray], centres: np.ndarray) -> dict[str, np.ndarray]:
    """Exact truth of many convex, centrally symmetric polygons (every single kind) at once.

    Central symmetry makes the callipers cheap: max Feret = 2 × the farthest vertex from the
    centre, the width across an edge normal = 2 × the largest vertex projection on it. Polygons are padded to a common vertex count by repeating their last vertex (zero-length
    edges add nothing to area, moments or perimeter and are skipped for the callipers).
    """
    n = len(polys)
    kmax = max(len(q) for q in polys)
    P = np.empty((n, kmax, 2))
    valid = np.zeros((n, kmax), bool)
    for i, q in enumerate(polys):
        k = len(q)
        P[i, :k] = q
        P[i, k:] = q[-1]
        valid[i, :k] = True
    q = P - centres[:, None, :]
    x, y = q[..., 0], q[..., 1]
    qn = np.concatenate((q[:, 1:], q[:, :1]), axis=1)
    x1, y1 = qn[..., 0], qn[..., 1]
    cross = x * y1 - x1 * y
    a = 0.5 * cross.sum(axis=1)
    cx = ((x + x1) * cross).sum(axis=1) / (6 * a)
    cy = ((y + y1) * cross).sum(axis=1) / (6 * a)
    sxx = ((x * x + x * x1 + x1 * x1) * cross).sum(axis=1) / (12 * a)
    syy = ((y * y + y * y1 + y1 * y1) * cross).sum(axis=1) / (12 * a)
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum(axis=1) / (24 * a)
    m20, m11, m02 = sxx - cx * cx, sxy - cx * cy, syy - cy * cy
    area = np.abs(a)
    e = qn - q
    seg = np.sqrt(e[..., 0] ** 2 + e[..., 1] ** 2)
    per = seg.sum(axis=1)
    r2 = x * x + y * y
    k = np.argmax(r2, axis=1)
    rows = np.arange(n)
    fmax = 2.0 * np.sqrt(r2[rows, k])
    ang = np.degrees(np.arctan2(-y[rows, k], x[rows, k])) % 180.0
    ok = seg > 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        nrm = np.stack((-e[..., 1], e[..., 0]), axis=-1) / np.where(ok, seg, 1.0)[..., None]
    # vertex k on edge normal j: a batched (n, k, 2) @ (n, 2, j) product (einsum's generic
    # loop is ~10× slower here)
    proj = q @ nrm.transpose(0, 2, 1)
    proj[~valid] = -np.inf
    proj = proj.max(axis=1)
    fmin = 2.0 * np.where(ok, proj, np.inf).min(axis=1)
    major, minor = geo.ellipse_axes(m20, m02, m11, area)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "area_px": area, "ecd_px": np.sqrt(4 * area / np.pi), "perimeter_px": per,
            "feret_max_px": fmax, "feret_min_px": fmin, "feret_angle_deg": ang,
            "ellipse_major_px": major, "ellipse_minor_px": minor,
            "aspect_ratio": np.where(minor > 0, major / minor, np.inf),
            "circularity": np.minimum(np.where(per > 0, 4 * np.pi * area / per**2, 0.0), 1.0),
            "solidity": np.ones(n), "convexity": np.ones(n),
            "centroid_row_px": cy + centres[:, 1], "centroid_col_px": cx + centres[:, 0],
        }


def _truth_union(polys: list[np.ndarray]) -> dict:
    """Truth of a union of polygons from an 8× supersampled raster (perimeter from its contour)."""
    pts = np.vstack(polys)
    x0, y0 = np.floor(pts.min(axis=0)) - 2
    x1, y1 = np.ceil(pts.max(axis=0)) + 2
    w, h = int(x1 - x0) + 1, int(y1 - y0) + 1
    # 8× for small clusters; large ones at ≥ 2× with the raster kept to ~512 px a side (the
    # relative digitisation error of area/perimeter falls with size anyway)
    ss = int(np.clip(512 // max(w, h), 2, 8))
    big = np.zeros((h * ss, w * ss), np.uint8)
    for p in polys:
        q = geo.inset_convex((p - np.array([x0, y0]) + 0.5) * ss - 0.5, 0.5)
        cv2.fillPoly(big, [np.round(q * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    m = cv2.moments(big, binaryImage=True)
    area = m["m00"] / ss**2
    cx = (m["m10"] / m["m00"] + 0.5) / ss - 0.5 + x0
    cy = (m["m01"] / m["m00"] + 0.5) / ss - 0.5 + y0
    m20, m11, m02 = (m["mu20"] / m["m00"] + 1 / 12) / ss**2, m["mu11"] / m["m00"] / ss**2, (m["mu02"] / m["m00"] + 1 / 12) / ss**2
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    per = sum(cv2.arcLength(c, True) for c in contours) / ss
    hull = geo.convex_hull(pts)
    fmax, fmin, ang = geo.feret(hull)
    return _descr(area, per, cx, cy, m20, m11, m02, abs(geo.polygon_area(hull)),
                  geo.polygon_perimeter(hull), fmax, fmin, ang)


def _descr(area, per, cx, cy, m20, m11, m02, hull_area, hull_per, fmax, fmin, ang) -> dict:
    major, minor = (float(v) for v in geo.ellipse_axes(m20, m02, m11, area))
    return {
        "area_px": area, "ecd_px": np.sqrt(4 * area / np.pi), "perimeter_px": per,
        "feret_max_px": fmax, "feret_min_px": fmin, "feret_angle_deg": ang,
        "ellipse_major_px": major, "ellipse_minor_px": minor,
        "aspect_ratio": major / minor if minor > 0 else np.inf,
        "circularity": min(4 * np.pi * area / per**2, 1.0) if per > 0 else 0.0,
        "solidity": min(area / hull_area, 1.0) if hull_area > 0 else 1.0,
        "convexity": min(hull_per / per, 1.0) if per > 0 else 1.0,
        "centroid_row_px": cy, "centroid_col_px": cx,
    }


def _illumination_field(shape, strength: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Smooth illumination (gradient + off-centre vignetting) × ``scale``, computed coarse and
    upsampled."""
    h, w = shape
    if strength <= 0:
        return np.full(shape, scale, np.float32)
    hs, ws = max(h // 16, 2), max(w // 16, 2)
    yy = np.linspace(-1, 1, hs, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, ws, dtype=np.float32)[None, :]
    phi = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    grad = 0.5 * (np.cos(phi) * xx + np.sin(phi) * yy)
    vign = ((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0
    small = (scale * (1.0 + strength * (grad - vign + 0.25))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _check_particles(particles: pd.DataFrame) -> dict[str, np.ndarray]:
    """Validated particle columns as plain arrays (fast to iterate)."""
    if not isinstance(particles, pd.DataFrame):
        raise SchemaError(f"particles must be a pandas DataFrame, got {type(particles).__name__}")
    need = ["x_px", "y_px", "length_um", "width_um"]
    missing = [c for c in need if c not in particles.columns]
    if missing:
        raise SchemaError(
            f"particles table is missing column(s) {missing}; expected at least {need} "
            f"(optional: angle_deg, kind, depth, n_primary); got {list(particles.columns)}"
        )
    n = len(particles)
    p: dict[str, np.ndarray] = {}
    for c in need + ["angle_deg", "depth"]:
        if c in particles.columns:
            col = particles[c]
            # numeric columns convert directly (pd.to_numeric costs ~100 µs a call)
            v = (col.to_numpy(float) if col.dtype.kind in "fiub"
                 else pd.to_numeric(col, errors="coerce").to_numpy(float))
            if not np.all(np.isfinite(v)):
                raise SchemaError(f"particles column {c!r} must be finite numbers; got non-finite at rows "
                                  f"{np.flatnonzero(~np.isfinite(v))[:5].tolist()}")
            p[c] = v
    if (p["length_um"] <= 0).any() or (p["width_um"] <= 0).any():
        raise SchemaError("particles columns 'length_um' and 'width_um' must be > 0 µm")
    p.setdefault("angle_deg", np.zeros(n))
    p["depth"] = np.clip(p["depth"], 0.0, 1.0) if "depth" in p else np.zeros(n)
    if "kind" not in particles.columns:
        p["kind"] = np.full(n, "ellipse", dtype=object)
    else:
        kc = particles["kind"]
        p["kind"] = kc.to_numpy() if kc.dtype == object and all(isinstance(v, str) for v in kc.array) \
            else kc.astype(str).to_numpy()
    if "n_primary" not in particles.columns:
        p["n_primary"] = np.full(n, 4)
    elif particles["n_primary"].dtype.kind in "iu":
        p["n_primary"] = particles["n_primary"].to_numpy().astype(int)
    else:
        p["n_primary"] = pd.to_numeric(particles["n_primary"], errors="coerce").fillna(4).astype(int).to_numpy()
    bad = sorted(set(p["kind"].tolist()) - set(KINDS))
    if bad:
        raise ConfigError(f"unknown particle kind(s) {bad}; expected one of {list(KINDS)}")
    return p


def _check_pixel_size(pixel_size_um) -> float:
    try:
        v = float(pixel_size_um)
    except (TypeError, ValueError):
        raise ConfigError(f"pixel_size_um must be a positive number of µm per pixel, got {pixel_size_um!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"pixel_size_um must be a positive number of µm per pixel, got {pixel_size_um!r}")
    return v


def render_particles(
    particles: pd.DataFrame,
    *,
    shape: tuple[int, int] = (960, 1280),
    pixel_size_um: float,
    background: float | None = None,
    illumination: float = 0.25,
    noise_std: float = 3.0,
    blur: bool = True,
    dark_particles: bool = True,
    contrast: float = 0.75,
    focus_sigma_px: float = 0.7,
    max_blur_px: float = 6.0,
    in_focus_depth: float = 0.35,
    return_labels: bool = False,
    overlap: bool = True,
    fast_noise: bool = False,
    seed: int | np.random.Generator | None = None,
):
    """Render a particle list as an 8-bit probe image and return its ground truth.

    Parameters
    ----------
    particles : DataFrame
        One row per particle: ``x_px, y_px`` (centre, column/row in pixels), ``length_um``,
        ``width_um`` (extent along/across the long axis), optional ``angle_deg`` (long axis,
        counter-clockwise from the column axis), ``kind`` (one of :data:`KINDS`, default
        ``ellipse``), ``depth`` (0 in focus … 1 strongly defocused) and ``n_primary``
        (agglomerates, default 4).
    shape : (rows, cols)
        Image shape in pixels.
    pixel_size_um : float
        Size of one pixel in µm (> 0).
    background : float, optional
        Background grey level (default 200 for dark particles, 40 for bright ones).
    illumination : float
        Relative amplitude of the uneven illumination (gradient + vignetting); 0 for flat.
    noise_std : float
        Standard deviation of the additive Gaussian sensor noise in grey levels.
    blur : bool
        Apply the optical blur: Gaussian with ``focus_sigma_px + depth * max_blur_px``.
    dark_particles : bool
        Dark particles on a bright background (transmitted light, default) or the reverse.
    contrast : float
        Opacity of an in-focus particle (0–1).
    in_focus_depth : float
        Particles with ``depth <= in_focus_depth`` are flagged ``in_focus`` in the truth.
    return_labels : bool
        Also return the int32 label image (0 background, ``label`` of the top-most particle).
    overlap : bool
        Compute ``overlap_fraction`` and ``visible_area_um2`` (needs the label image; NaN when
        false). The simulator's camera turns it off: it costs a full-frame label image and a
        count per particle.
    fast_noise : bool
        Take the sensor noise from a shared pool of Gaussian samples (generated once per
        process) at a random offset instead of drawing ``rows × cols`` new samples: 10× cheaper,
        identical per-pixel statistics and independent pixels within a frame, but the noise
        fields of different frames are shifted copies of the same 4-Mpx pool (fine for a
        camera simulator, not for studies that average noise over many frames).
    seed : int or Generator, optional
        Seeds illumination, noise and agglomerate geometry.

    Returns
    -------
    image : ndarray of uint8, shape ``shape``
    truth : DataFrame
        One row per particle (columns :data:`TRUTH_COLUMNS`): the exact descriptors of the drawn
        shape in µm (not clipped by the frame), ``edge`` (touches the frame border), ``in_frame``
        (any part visible), ``in_focus``, ``overlap_fraction`` (share of its area hidden by
        particles drawn later) and ``visible_area_um2``.
    labels : ndarray of int32, only when ``return_labels`` is true.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"x_px": [40.0], "y_px": [30.0], "length_um": [20.0], "width_um": [20.0]})
    >>> img, truth = render_particles(p, shape=(64, 96), pixel_size_um=1.0, seed=0)
    >>> img.shape, img.dtype, round(float(truth.ecd_um[0]), 1)
    ((64, 96), dtype('uint8'), 20.0)
    """
    px = _check_pixel_size(pixel_size_um)
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) <= 0:
        raise ConfigError(f"shape must be (rows, cols) with both > 0, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    p = _check_particles(particles)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bg = float(background if background is not None else (200.0 if dark_particles else 40.0))

    n = len(p["x_px"])
    need_labels = bool(return_labels or overlap)
    labels = np.zeros((h, w), np.int32) if need_labels else None
    sig = (focus_sigma_px + p["depth"] * max_blur_px) if blur else np.zeros(n)
    margin = np.where(sig > 0, np.ceil(3 * sig) + 1, 1).astype(int)
    # defocused particles also lose contrast (light spreads over a larger area)
    alpha = contrast / (1.0 + 0.15 * np.maximum(sig - focus_sigma_px, 0.0))
    # background × illumination first; particles then darken (or brighten) only their crops
    img = _illumination_field((h, w), illumination, rng, scale=bg)
    peak = 255.0 if bg < 200 else 0.0
    transmission = None if dark_particles else np.ones((h, w), np.float32)
    target = img if dark_particles else transmission
    rows, own_px = [], np.zeros(n)
    singles: list[tuple[int, np.ndarray, float, float]] = []
    crops = []
    kinds, xs, ys, angs = p["kind"].tolist(), p["x_px"].tolist(), p["y_px"].tolist(), p["angle_deg"].tolist()
    lens, wids = (p["length_um"] / px).tolist(), (p["width_um"] / px).tolist()
    # single shapes: placement, boxes and raster vertices for all at once (agglomerates, which
    # draw from rng, stay in the loop in particle order)
    sidx = [i for i in range(n) if kinds[i] != "agglomerate"]
    slot = {i: j for j, i in enumerate(sidx)}
    if sidx:
        ia = np.array(sidx)
        geom = _singles_geometry([_SHAPES[kinds[i]](lens[i], wids[i]) for i in sidx], p["x_px"][ia],
                                 p["y_px"][ia], p["angle_deg"][ia], margin[ia],
                                 sig[ia] >= _COARSE_BLUR_PX)
    for i in range(n):
        kind, x_c, y_c, ang_c = kinds[i], xs[i], ys[i], angs[i]
        g = float(sig[i])
        coarse = g >= _COARSE_BLUR_PX
        j = slot.get(i)
        if j is None:  # agglomerate
            polys = [_place(q, x_c, y_c, ang_c) for q in _agglomerate(lens[i], wids[i], p["n_primary"][i], rng)]
            t = _truth_union(polys)
            pts = np.vstack(polys)
            (lx, ly), (hx, hy) = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
            m = int(margin[i])
            # crop with room for the blur; may extend beyond the frame (clipped when pasted)
            x0, y0 = math.floor(lx) - m, math.floor(ly) - m
            x1, y1 = math.ceil(hx) + m + 1, math.ceil(hy) + m + 1
            if coarse:  # even crop sides: the 2× reduction below is then exactly aligned
                x1, y1 = x1 + (x1 - x0) % 2, y1 + (y1 - y0) % 2
        else:
            polys = [geom["poly"][j]]
            t = {}  # filled below, all single shapes at once
            singles.append((i, polys[0], x_c, y_c))
            (lx, ly), (hx, hy) = geom["lo"][j], geom["hi"][j]
            x0, y0, x1, y1 = geom["box"][j]
        in_frame = hx >= -0.5 and hy >= -0.5 and lx <= w - 0.5 and ly <= h - 0.5
        t["in_frame"] = in_frame
        t["edge"] = in_frame and (lx < 0.5 or ly < 0.5 or hx > w - 1.5 or hy > h - 1.5)
        rows.append(t)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if not in_frame or cx1 <= cx0 or cy1 <= cy0:
            crops.append(None)
            continue
        if j is None:
            cov = _coverage(polys, x0, y0, y1 - y0, x1 - x0)
        else:
            cov = _raster(geom["verts"][j], y1 - y0, x1 - x0, geom["ss"][j])
        inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        if need_labels:
            inside = cov[inner] >= 0.5
            own_px[i] = np.count_nonzero(inside)
            labels[cy0:cy1, cx0:cx1][inside] = i + 1
        if kind in ("droplet", "bubble"):
            cov *= _ring_profile(polys[0], x0, y0, cov.shape, kind)
        if coarse:
            cov = _blur_coarse(cov, g)
        elif g > 0:
            # kernel truncated at 3σ (the crop's margin; OpenCV's default 4σ costs a third more)
            k = 2 * math.ceil(3 * g) + 1
            cov = cv2.GaussianBlur(cov, (k, k), sigmaX=g, borderType=cv2.BORDER_CONSTANT)
        # transmission of the crop: 1 - alpha × coverage, multiplied into the frame
        tr = cov[inner]
        tr *= -float(alpha[i])
        tr += 1.0
        sub = target[cy0:cy1, cx0:cx1]
        sub *= tr
        crops.append((cx0, cy0, cx1, cy1))

    if not dark_particles:
        # additive light: background + (peak - background) × (1 - transmission)
        transmission -= 1.0
        transmission *= np.float32(bg - peak)
        img += transmission
    if noise_std > 0:
        if fast_noise:
            pool, scale = _noise_from_pool(h * w, float(noise_std), rng)
            cv2.scaleAdd(pool.reshape(h, w), scale, img, dst=img)
        else:
            noise = np.empty((h, w), np.float32)
            cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
            cv2.randn(noise, 0.0, float(noise_std))
            img += noise
    cv2.max(img, 0.0, dst=img)
    image = cv2.convertScaleAbs(img)  # rounds to nearest and saturates at 255

    if singles:
        batch = _truth_singles([q for _, q, _, _ in singles], np.array([(x, y) for _, _, x, y in singles]))
        for j, (i, _, _, _) in enumerate(singles):
            rows[i].update({key: float(v[j]) for key, v in batch.items()})
    truth = _truth_frame(p, rows, labels, own_px, crops, px, in_focus_depth)
    if return_labels:
        return image, truth, labels
    return image, truth


#: Blur σ (px) from which a particle is blurred on a 2× reduced grid: only defocused particles
#: (depth above the in-focus limit, σ ≥ 0.7 + 6 × 0.35 = 2.8 px) — in-focus ones stay exact.
_COARSE_BLUR_PX = 3.0


def _blur_coarse(cov: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a wide σ on a 2× reduced grid (crop sides even): 2×2 mean, blur, bilinear
    back. The reduction and the interpolation add ≈ 0.92 px² of variance, taken off σ²."""
    hh, ww = cov.shape
    small = cv2.resize(cov, (ww // 2, hh // 2), interpolation=cv2.INTER_AREA)
    gs = math.sqrt(max(sigma * sigma - 0.92, 0.25)) / 2.0
    k = 2 * math.ceil(3 * gs) + 1
    small = cv2.GaussianBlur(small, (k, k), sigmaX=gs, borderType=cv2.BORDER_CONSTANT)
    return cv2.resize(small, (ww, hh), interpolation=cv2.INTER_LINEAR)


_NOISE_POOL: np.ndarray | None = None
_NOISE_POOL_SIZE = 1 << 22  # 4 Mpx of unit Gaussian samples (16 MB), drawn once per process


def _noise_from_pool(size: int, std: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``size`` unit Gaussian samples from the shared pool at a random offset, and the scale
    (± ``std``, random sign) to apply. Frames larger than half the pool get fresh samples."""
    global _NOISE_POOL
    if size > _NOISE_POOL_SIZE // 2:
        return rng.standard_normal(size, dtype=np.float32), std
    if _NOISE_POOL is None:
        _NOISE_POOL = np.random.default_rng(0x5EED).standard_normal(_NOISE_POOL_SIZE, dtype=np.float32)
    off = int(rng.integers(0, _NOISE_POOL_SIZE - size + 1))
    return _NOISE_POOL[off : off + size], (std if rng.random() < 0.5 else -std)


def _ring_profile(poly, x0, y0, shape, kind) -> np.ndarray:
    """Radial opacity of droplets (dark rim, bright centre) and bubbles (thick dark rim)."""
    cx, cy = poly.mean(axis=0)
    rad = np.max(np.hypot(*(poly - [cx, cy]).T))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = np.hypot(xx + x0 - cx, yy + y0 - cy) / max(rad, 1e-6)
    inner, floor = (0.75, 0.35) if kind == "droplet" else (0.55, 0.1)
    return np.where(r > inner, 1.0, floor + (1 - floor) * (r / inner) ** 4).astype(np.float32)


def _truth_frame(p, rows, labels, own_px, crops, px, in_focus_depth) -> pd.DataFrame:
    n = len(p["x_px"])
    depth = p["depth"].astype(float)
    out = {
        "label": np.arange(1, n + 1, dtype=np.int32),
        "kind": p["kind"].astype(object),
        "x_px": p["x_px"].astype(float), "y_px": p["y_px"].astype(float),
        "depth": depth, "in_focus": depth <= in_focus_depth,
    }

    def col(key, dtype=float):
        return np.array([r[key] for r in rows], dtype=dtype) if rows else np.zeros(0, dtype)

    out["in_frame"] = col("in_frame", bool)
    out["edge"] = col("edge", bool)
    out["area_um2"] = col("area_px") * px**2
    for c in ("ecd", "perimeter", "feret_max", "feret_min", "ellipse_major", "ellipse_minor"):
        out[f"{c}_um"] = col(f"{c}_px") * px
    for c in ("feret_angle_deg", "aspect_ratio", "circularity", "solidity", "convexity", "centroid_row_px",
              "centroid_col_px"):
        out[c] = col(c)
    out["n_primary"] = np.where(p["kind"] == "agglomerate", p["n_primary"], 1).astype(np.int64)
    if labels is None:  # overlap not requested
        out["overlap_fraction"] = np.full(n, np.nan)
        out["visible_area_um2"] = np.full(n, np.nan)
        return pd.DataFrame({c: out[c] for c in TRUTH_COLUMNS})
    vis = np.zeros(n)
    for i, c in enumerate(crops):
        if c is not None:
            x0, y0, x1, y1 = c
            vis[i] = np.count_nonzero(labels[y0:y1, x0:x1] == i + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["overlap_fraction"] = np.where(own_px > 0, 1.0 - vis / np.maximum(own_px, 1), 0.0)
    out["visible_area_um2"] = vis * px**2
    return pd.DataFrame({c: out[c] for c in TRUTH_COLUMNS})


def _shape_area_factor(kind: str, aspect_ratio: float) -> float:
    """Projected area / (length × width) of a kind at an aspect ratio (exact for the polygons)."""
    if kind in ("ellipse", "droplet", "bubble"):
        return np.pi / 4
    if kind == "agglomerate":
        return 0.6
    poly = _SHAPES[kind](float(aspect_ratio), 1.0)
    return abs(geo.polygon_area(poly)) / float(aspect_ratio)


_STADIUM_UNIT_AREA = abs(geo.polygon_area(_stadium(1.0, 1.0)))


def _area_factors(kinds: np.ndarray, ar: np.ndarray) -> np.ndarray:
    """:func:`_shape_area_factor` for many particles at once (closed forms of the polygons'
    areas at width 1, length ``ar`` ≥ 1)."""
    f = np.full(len(ar), np.pi / 4)
    for kind in set(kinds.tolist()):
        sel = kinds == kind
        a = ar[sel]
        if kind == "agglomerate":
            f[sel] = 0.6
        elif kind == "platelet":
            f[sel] = 0.75  # hexagon with vertices at ±L/2 and ±L/4: 3/4 of the box
        elif kind == "needle":
            f[sel] = (a - np.minimum(0.8, 0.45 * a)) / a  # box minus the two tips' corners
        elif kind == "block":
            f[sel] = (a - 2 * (0.08 * np.minimum(a, 1.0)) ** 2) / a  # box minus 4 chamfers
        elif kind == "rod":
            # stadium polygon: the round-ended polygon of length 1 plus a 1-wide rectangle
            f[sel] = (_STADIUM_UNIT_AREA + (a - 1.0)) / a
    return f


def sample_particles(
    sizes_um: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    shape: tuple[int, int] = (960, 1280),
    pixel_size_um: float,
    aspect_ratio: float | tuple[float, float] = 1.0,
    kind: str | Mapping[str, float] = "ellipse",
    agglomerate_fraction: float = 0.0,
    n_particles: int | None = None,
    depth_range: tuple[float, float] = (0.0, 1.0),
    min_size_um: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Draw the particle list of one frame from a number distribution.

    Parameters
    ----------
    sizes_um : array of float, shape (n_classes,)
        Class centres (increasing) of the size grid; the size is the particle's area-equivalent
        diameter (ECD) in the image plane.
    counts : array of float, shape (n_classes,)
        Expected number of particles per class *in this frame* (≥ 0).
    shape, pixel_size_um
        Frame shape (rows, cols) and pixel size.
    aspect_ratio : float or (low, high)
        Length/width, fixed or drawn uniformly from the range (≥ 1).
    kind : str or mapping
        One kind for all, or ``{kind: fraction}`` drawn at random.
    agglomerate_fraction : float
        Share of particles turned into agglomerates of 2–6 primaries.
    n_particles : int, optional
        Exact number of particles; by default Poisson with mean ``sum(counts)``.
    depth_range : (low, high)
        Depths drawn uniformly in this range.
    min_size_um : float
        Sizes below this are dropped (sub-pixel particles a camera cannot see).
    seed : int or Generator, optional

    Returns
    -------
    DataFrame
        ``x_px, y_px, length_um, width_um, angle_deg, kind, depth, n_primary, size_um`` — ready for
        :func:`render_particles`.
    """
    px = _check_pixel_size(pixel_size_um)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(sizes_um, dtype=float).ravel()
    c = np.asarray(counts, dtype=float).ravel()
    if x.shape != c.shape or x.size == 0:
        raise SchemaError(f"sizes_um and counts must be non-empty and of equal length, got {x.size} and {c.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(c))) or np.any(c < 0) or np.any(x <= 0):
        raise SchemaError("sizes_um must be finite and > 0 µm and counts finite and ≥ 0")
    if x.size > 1 and np.any(np.diff(x) <= 0):
        raise SchemaError("sizes_um must be strictly increasing class centres")
    if not 0 <= agglomerate_fraction <= 1:
        raise ConfigError(f"agglomerate_fraction must lie in [0, 1], got {agglomerate_fraction!r}")
    total = c.sum()
    n = int(rng.poisson(total)) if n_particles is None else int(n_particles)
    if n_particles is not None and n_particles < 0:
        raise ConfigError(f"n_particles must be ≥ 0, got {n_particles!r}")
    if n == 0 or total <= 0:
        return _empty_particles()
    # class edges: geometric midpoints, extrapolated at the ends
    if x.size > 1:
        mids = np.sqrt(x[1:] * x[:-1])
        edges = np.r_[x[0] ** 2 / mids[0], mids, x[-1] ** 2 / mids[-1]]
    else:
        edges = np.array([x[0] * 0.95, x[0] * 1.05])
    k = rng.choice(x.size, size=n, p=c / total)
    size = np.exp(rng.uniform(np.log(edges[k]), np.log(edges[k + 1])))
    size = np.maximum(size, 1e-6)
    if np.ndim(aspect_ratio) == 0:
        ar = np.full(n, float(aspect_ratio))
    else:
        lo, hi = aspect_ratio
        ar = rng.uniform(float(lo), float(hi), n)
    if np.any(ar < 1):
        raise ConfigError(f"aspect_ratio must be ≥ 1 (length/width), got {aspect_ratio!r}")
    if isinstance(kind, str):
        kinds = np.full(n, kind, dtype=object)
        if kind not in KINDS:
            raise ConfigError(f"unknown particle kind {kind!r}; expected one of {list(KINDS)}")
    else:
        names = list(kind)
        bad = [k_ for k_ in names if k_ not in KINDS]
        if bad:
            raise ConfigError(f"unknown particle kind(s) {bad}; expected one of {list(KINDS)}")
        fr = np.array([float(kind[k_]) for k_ in names])
        if np.any(fr < 0) or fr.sum() <= 0:
            raise ConfigError(f"kind fractions must be ≥ 0 with a positive sum, got {dict(kind)!r}")
        kinds = np.array(names, dtype=object)[rng.choice(len(names), size=n, p=fr / fr.sum())]
    agg = rng.random(n) < agglomerate_fraction
    kinds[agg] = "agglomerate"
    n_primary = np.where(agg, rng.integers(2, 7, n), 1)
    factor = _area_factors(kinds, ar)
    length = size * np.sqrt(np.pi * ar / (4 * factor))
    # agglomerates: the size is that of the cluster; primaries are derived from it
    length = np.where(agg, size * 1.25, length)
    ar = np.where(agg, np.maximum(ar, 1.5), ar)
    width = length / ar
    h, w = shape
    d0, d1 = depth_range
    cols = {
        "x_px": rng.uniform(-0.5, w - 0.5, n),
        "y_px": rng.uniform(-0.5, h - 0.5, n),
        "length_um": length, "width_um": width,
        "angle_deg": rng.uniform(0, 180, n),
        "kind": kinds.astype(str),
        "depth": rng.uniform(d0, d1, n),
        "n_primary": n_primary.astype(int),
        "size_um": size,
    }
    keep = size >= max(min_size_um, 0.0)
    _ = px  # validated above; sizes are physical and the caller's frame is in pixels
    if not keep.all():  # filter the arrays, not the frame (pandas indexing costs ~1 ms a call)
        cols = {k: v[keep] for k, v in cols.items()}
    return pd.DataFrame(cols)


def _empty_particles() -> pd.DataFrame:
    """The particle table of an empty frame (same columns and dtypes as a full one)."""
    f = np.zeros(0)
    return pd.DataFrame({"x_px": f, "y_px": f, "length_um": f, "width_um": f, "angle_deg": f,
                         "kind": np.zeros(0, dtype=object), "depth": f,
                         "n_primary": np.zeros(0, dtype=int), "size_um": f})
