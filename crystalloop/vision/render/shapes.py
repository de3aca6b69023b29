"""Particle outlines of every kind the renderer draws, and their rasterisation.

Each particle is a polygon in local coordinates (long axis along +x, centred at the origin; curved
shapes get enough vertices), placed by :func:`place` and rasterised with supersampling so the
rendered area matches the exact one. :func:`area_factors` gives the projected area of each kind
relative to its length × width box (what :func:`~crystalloop.vision.render.sample_particles` needs
to turn an area-equivalent diameter into a length and width).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from crystalloop.vision import _geometry as geo

__all__ = [
    "KINDS", "SHAPES", "SUPERSAMPLE", "SHIFT", "stadium", "place", "agglomerate", "coverage", "raster",
    "singles_geometry", "shape_area_factor", "area_factors",
]

#: Particle kinds the renderer draws.
KINDS = ("ellipse", "needle", "rod", "platelet", "block", "agglomerate", "droplet", "bubble")


SUPERSAMPLE = 4  # supersampling factor of the per-particle coverage raster
SHIFT = 4  # cv2 fractional bits for polygon vertices


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


def stadium(length: float, width: float) -> np.ndarray:
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


SHAPES = {
    "ellipse": _ellipse, "droplet": _ellipse, "bubble": _ellipse,
    "needle": _needle, "rod": stadium, "platelet": _platelet, "block": _block,
}


def place(poly: np.ndarray, x: float, y: float, angle_deg: float) -> np.ndarray:
    """Rotate (counter-clockwise on screen) and translate a local polygon to image (col, row)."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    px = x + c * poly[:, 0] + s * poly[:, 1]
    py = y - s * poly[:, 0] + c * poly[:, 1]
    return np.stack((px, py), axis=1)


def agglomerate(length: float, width: float, n_primary: int, rng: np.random.Generator) -> list[np.ndarray]:
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
        shape = stadium if rng.random() < 0.5 else _block
        prims.append(place(shape(lp, wp), *centres[-1], rng.uniform(0, 180)))
    allpts = np.vstack(prims)
    mid = 0.5 * (allpts.min(axis=0) + allpts.max(axis=0))
    return [p - mid for p in prims]


# --------------------------------------------------------------------------------------------
# rasterisation and truth
# --------------------------------------------------------------------------------------------


def coverage(polys: list[np.ndarray], x0: int, y0: int, h: int, w: int, ss: int | None = None) -> np.ndarray:
    """Fractional pixel coverage of the union of convex polygons in the crop at (y0, x0).

    Supersampled ``ss``× (default 4, 2 for crops above 48 px) with every polygon inset by half a
    subpixel, which cancels OpenCV's outward bias of its scan-line fill.
    """
    if ss is None:
        ss = SUPERSAMPLE if max(h, w) <= 48 else 2
    big = np.zeros((h * ss, w * ss), np.uint8)
    for p in polys:
        q = (p - np.array([x0, y0]) + 0.5) * ss - 0.5
        q = geo.inset_convex(q, 0.5)
        cv2.fillPoly(big, [np.round(q * (1 << SHIFT)).astype(np.int32)], 1, cv2.LINE_8, SHIFT)
    if ss == 1:
        return big.astype(np.float32)
    return cv2.resize(big.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def raster(verts: np.ndarray, h: int, w: int, ss: int) -> np.ndarray:
    """Coverage of one convex polygon given as fixed-point vertices of the ``ss``× crop raster."""
    big = np.zeros((h * ss, w * ss), np.uint8)
    cv2.fillPoly(big, [verts], 1, cv2.LINE_8, SHIFT)
    if ss == 1:
        return big.astype(np.float32)
    return cv2.resize(big.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def singles_geometry(local: list[np.ndarray], x: np.ndarray, y: np.ndarray, angle_deg: np.ndarray,
                      margin: np.ndarray, coarse: np.ndarray) -> dict:
    """Placement, bounding boxes, crops and fixed-point raster vertices of many single convex
    shapes at once (what :func:`place` and :func:`coverage` do per particle).

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
    ss = np.where(np.maximum(y1 - y0, x1 - x0) <= 48, SUPERSAMPLE, 2)
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
    V = np.round(((Qi - org + 0.5) * ss[:, None, None] - 0.5) * (1 << SHIFT)).astype(np.int32)
    return {
        "poly": [Q[j, : nv[j]] for j in range(m)], "verts": [V[j, : nv[j]] for j in range(m)],
        "lo": np.stack((lx, ly), axis=1).tolist(), "hi": np.stack((hx, hy), axis=1).tolist(),
        "box": np.stack((x0, y0, x1, y1), axis=1).tolist(), "ss": ss.tolist(),
    }


def shape_area_factor(kind: str, aspect_ratio: float) -> float:
    """Projected area / (length × width) of a kind at an aspect ratio (exact for the polygons)."""
    if kind in ("ellipse", "droplet", "bubble"):
        return np.pi / 4
    if kind == "agglomerate":
        return 0.6
    poly = SHAPES[kind](float(aspect_ratio), 1.0)
    return abs(geo.polygon_area(poly)) / float(aspect_ratio)


_STADIUM_UNIT_AREA = abs(geo.polygon_area(stadium(1.0, 1.0)))


def area_factors(kinds: np.ndarray, ar: np.ndarray) -> np.ndarray:
    """:func:`shape_area_factor` for many particles at once (closed forms of the polygons'
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
