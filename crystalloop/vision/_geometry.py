"""Exact planar geometry of polygons: area, perimeter, moments, convex hull and Feret diameters.

Shared by the renderer (ground truth from the drawn polygons) and the measurement code
(Feret diameters of particle contours by rotating calipers over the convex hull).
Points are ``(N, 2)`` float arrays of ``(x, y)`` = ``(col, row)`` in pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__: list[str] = []


def _next(a: np.ndarray) -> np.ndarray:
    """The array shifted by one row (a cheap ``np.roll(a, -1, axis=0)``)."""
    return np.concatenate((a[1:], a[:1]))


def _prev(a: np.ndarray) -> np.ndarray:
    return np.concatenate((a[-1:], a[:-1]))


def polygon_area(p: np.ndarray) -> float:
    """Signed shoelace area (positive for counter-clockwise in x-right/y-up axes)."""
    x, y = p[:, 0], p[:, 1]
    q = _next(p)
    return 0.5 * float(np.dot(x, q[:, 1]) - np.dot(q[:, 0], y))


def polygon_perimeter(p: np.ndarray) -> float:
    """Length of the closed polygon."""
    d = _next(p) - p
    return float(np.sum(np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)))


def polygon_moments(p: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Area, centroid (cx, cy) and central second moments (mu20, mu11, mu02) divided by area."""
    x, y = p[:, 0], p[:, 1]
    q = _next(p)
    x1, y1 = q[:, 0], q[:, 1]
    cross = x * y1 - x1 * y
    a = 0.5 * cross.sum()
    if abs(a) < 1e-12:
        return 0.0, float(x.mean()), float(y.mean()), 0.0, 0.0, 0.0
    cx = ((x + x1) * cross).sum() / (6 * a)
    cy = ((y + y1) * cross).sum() / (6 * a)
    sxx = ((x * x + x * x1 + x1 * x1) * cross).sum() / (12 * a)
    syy = ((y * y + y * y1 + y1 * y1) * cross).sum() / (12 * a)
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum() / (24 * a)
    return abs(a), float(cx), float(cy), sxx - cx * cx, sxy - cx * cy, syy - cy * cy


def ellipse_axes(mu20, mu02, mu11, area) -> tuple[np.ndarray, np.ndarray]:
    """Major and minor axis of the ellipse with the same second moments (``mu`` = central
    moments / area, any shape of arrays), rescaled to the same ``area`` (ISO 9276-6)."""
    tr, det = mu20 + mu02, mu20 * mu02 - mu11 * mu11
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    major, minor = 4 * np.sqrt(tr / 2 + disc), 4 * np.sqrt(np.maximum(tr / 2 - disc, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        sc = np.where(major * minor > 0, np.sqrt(area / (np.pi / 4 * major * minor)), 1.0)
    return major * sc, minor * sc


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of points (OpenCV's Sklansky), without repeated end point."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) <= 2:
        return np.unique(pts, axis=0)
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def feret(hull: np.ndarray) -> tuple[float, float, float]:
    """Exact maximum and minimum Feret diameters of a convex polygon and the max-Feret angle.

    Maximum Feret: largest vertex-to-vertex distance (an antipodal pair). Minimum Feret:
    rotating calipers — the minimum over hull edges of the largest vertex distance from the
    edge's supporting line (the minimum width is always attained flush with an edge).

    Returns
    -------
    feret_max, feret_min : float
        In the units of ``hull``.
    angle_deg : float
        Direction of the maximum Feret chord, degrees in ``[0, 180)`` counter-clockwise from the
        +x (column) axis with y pointing *up* (image rows point down, so ``-drow`` is used).
    """
    h = np.asarray(hull, dtype=float)
    if len(h) < 2:
        return 0.0, 0.0, 0.0
    h = h - h.mean(axis=0)
    sq = h[:, 0] ** 2 + h[:, 1] ** 2
    dist2 = sq[:, None] + sq[None, :] - 2.0 * (h @ h.T)
    k = int(np.argmax(dist2))
    i, j = divmod(k, len(h))
    v = h[j] - h[i]
    fmax = float(np.sqrt(v[0] ** 2 + v[1] ** 2))
    angle = float(np.degrees(np.arctan2(-v[1], v[0])) % 180.0)
    if len(h) == 2:
        return fmax, 0.0, angle
    # minimum width: over the edge normals, the extent of the projections (rotating calipers)
    e = _next(h) - h
    nrm = np.stack((-e[:, 1], e[:, 0]), axis=1)
    ln = np.sqrt(nrm[:, 0] ** 2 + nrm[:, 1] ** 2)
    ok = ln > 1e-12
    proj = h @ (nrm[ok] / ln[ok, None]).T
    fmin = float(np.min(proj.max(axis=0) - proj.min(axis=0)))
    return fmax, fmin, angle


def inset_convex(p: np.ndarray, d: float) -> np.ndarray:
    """Move every edge of a convex polygon inward by ``d`` (vertex offset along the bisector)."""
    e = _next(p) - p
    n = np.stack((e[:, 1], -e[:, 0]), axis=1)
    n /= np.maximum(np.sqrt(n[:, 0] ** 2 + n[:, 1] ** 2), 1e-12)[:, None]
    if polygon_area(p) < 0:
        n = -n
    n1, n2 = _prev(n), n
    denom = np.maximum(1.0 + np.sum(n1 * n2, axis=1), 0.2)
    return p - d * (n1 + n2) / denom[:, None]


def feret_many(hulls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`feret` and :func:`polygon_perimeter` of many convex polygons at once.

    Polygons are padded to a common vertex count by repeating their last vertex: the copies
    never win the maximum chord (the original comes first), their zero-length edges are skipped
    for the minimum width and add nothing to the perimeter.

    Returns
    -------
    feret_max, feret_min, angle_deg, perimeter : arrays of shape (n,)
    """
    n = len(hulls)
    lens = np.array([len(q) for q in hulls], dtype=np.int64)
    fmax, fmin, ang, per = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    if n == 0 or lens.max() < 2:
        return fmax, fmin, ang, per
    kmax = int(lens.max())
    P = pad_polygons(hulls, lens, kmax).astype(np.float64)
    valid = np.arange(kmax)[None, :] < lens[:, None]
    cnt = np.maximum(lens, 1)[:, None]
    # sequential sums (cumsum): a polygon's result must not depend on how far the others pad it
    # (pairwise summation splits differently for different lengths: last-bit differences)
    P = P - (np.cumsum(P * valid[..., None], axis=1)[:, -1] / cnt)[:, None, :]
    sq = P[..., 0] ** 2 + P[..., 1] ** 2
    dist2 = sq[:, :, None] + sq[:, None, :] - 2.0 * (P @ P.transpose(0, 2, 1))
    k = np.argmax(dist2.reshape(n, -1), axis=1)
    i, j = np.divmod(k, kmax)
    rows = np.arange(n)
    v = P[rows, j] - P[rows, i]
    fmax = np.sqrt(v[:, 0] ** 2 + v[:, 1] ** 2)
    ang = np.degrees(np.arctan2(-v[:, 1], v[:, 0])) % 180.0
    e = np.concatenate((P[:, 1:], P[:, :1]), axis=1) - P
    ln = np.sqrt(e[..., 0] ** 2 + e[..., 1] ** 2)
    per = np.cumsum(ln, axis=1)[:, -1]
    ok = ln > 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        nrm = np.stack((-e[..., 1], e[..., 0]), axis=-1) / np.where(ok, ln, 1.0)[..., None]
    proj = P @ nrm.transpose(0, 2, 1)  # vertex on edge normal
    width = proj.max(axis=1) - proj.min(axis=1)
    fmin = np.where(ok, width, np.inf).min(axis=1)
    fmin = np.where(lens > 2, fmin, 0.0)
    small = lens < 2
    fmax[small], ang[small], per[small] = 0.0, 0.0, 0.0
    return fmax, fmin, ang, per


def pad_polygons(polys: list[np.ndarray], lens: np.ndarray, kmax: int) -> np.ndarray:
    """Stack polygons into an ``(n, kmax, 2)`` array, each padded by repeating its last vertex
    (empty polygons become zeros). One concatenation and one gather, no per-polygon copies."""
    n = len(polys)
    nonempty = [np.asarray(q).reshape(-1, 2) for q in polys if len(q)]
    if not nonempty:
        return np.zeros((n, max(kmax, 1), 2))
    allpts = np.concatenate(nonempty)
    offs = np.cumsum(lens) - lens
    idx = offs[:, None] + np.minimum(np.arange(kmax)[None, :], np.maximum(lens - 1, 0)[:, None])
    out = allpts[np.minimum(idx, len(allpts) - 1)]
    out[lens == 0] = 0
    return out
