"""Exact ground-truth descriptors of rendered particles (same names as ``measure_particles``).

Single shapes (convex, centrally symmetric polygons) are described in closed form, many at once;
agglomerates (unions of overlapping primaries) from an 8× supersampled raster of the union.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from crystalloop.vision import _geometry as geo
from crystalloop.vision.render.shapes import SHIFT

__all__ = ["TRUTH_COLUMNS", "truth_singles", "truth_union", "truth_frame"]

#: Columns of the ground-truth table (descriptor names match ``measure_particles``).
#: Columns of the ground-truth table (descriptor names match ``measure_particles``).
TRUTH_COLUMNS = (
    "label", "kind", "x_px", "y_px", "depth", "in_focus", "in_frame", "edge",
    "area_um2", "ecd_um", "perimeter_um", "feret_max_um", "feret_min_um", "feret_angle_deg",
    "ellipse_major_um", "ellipse_minor_um", "aspect_ratio", "circularity", "solidity", "convexity",
    "centroid_row_px", "centroid_col_px", "n_primary", "overlap_fraction", "visible_area_um2",
)


def truth_singles(polys: list[np.ndarray], centres: np.ndarray) -> dict[str, np.ndarray]:
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


def truth_union(polys: list[np.ndarray]) -> dict:
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
        cv2.fillPoly(big, [np.round(q * (1 << SHIFT)).astype(np.int32)], 1, cv2.LINE_8, SHIFT)
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


def truth_frame(p, rows, labels, own_px, crops, px, in_focus_depth) -> pd.DataFrame:
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
