"""Descriptors of labelled pixel shapes, shared by :mod:`~crystalloop.vision.measure`,
:mod:`~crystalloop.vision.segment` and the pipelines: the particle table of validated labels
(:func:`describe`, what :func:`~crystalloop.vision.measure.measure_particles` runs), chain-code
perimeters, pixel counts of lattice polygons (Pick's theorem), the extent along the moment-ellipse
axis and the focus scores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from crystalloop.vision import _geometry as geo
from crystalloop.vision._validate import check_image, to_gray_float

__all__ = ["PARTICLE_COLUMNS", "FERET_PAD_PX", "STRAIGHT_SOLIDITY", "perimeter_px", "gradient_magnitude", "describe",
           "axis_extent", "perimeters_px", "pick_counts", "empty_table", "label_focus_scores"]

#: Columns of the particle table returned by :func:`measure_particles` (in this order).
PARTICLE_COLUMNS = (
    "label", "area_px", "area_um2", "ecd_um", "perimeter_um", "feret_max_um", "feret_min_um",
    "feret_angle_deg", "ellipse_major_um", "ellipse_minor_um", "aspect_ratio", "circularity",
    "solidity", "convexity", "length_um", "width_um", "length_width_ratio", "edge", "focus", "centroid_row_px", "centroid_col_px",
    "bbox_row0_px", "bbox_col0_px", "bbox_row1_px", "bbox_col1_px",
)


FERET_PAD_PX = 0.5  # see measure_particles: digitisation correction of calliper diameters
STRAIGHT_SOLIDITY = 0.95  # elongated particles at least this convex are straight: length = axis extent


def perimeter_px(contours, area: float) -> float:
    """Vossepoel–Smeulders perimeter of the pixel-centre contours, grown by ½ px (+π)."""
    total = 0.0
    for c in contours:
        p = c.reshape(-1, 2)
        if len(p) < 2:
            continue
        d = np.concatenate((p[1:], p[:1])) - p
        diag = (d[:, 0] != 0) & (d[:, 1] != 0)
        code = (d[:, 0] + 1) * 3 + (d[:, 1] + 1)
        corners = np.count_nonzero(code != np.concatenate((code[1:], code[:1])))
        n_o = np.count_nonzero(diag)
        n_e = len(d) - n_o
        total += 0.980 * n_e + 1.406 * n_o - 0.091 * corners
    if total <= 0:
        # single pixel or a one-pixel line: perimeter of the equal-area disc
        return float(np.sqrt(4 * np.pi * area)) if area > 0 else 0.0
    return total + np.pi


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """:func:`crystalloop.vision.measure.focus_map`."""
    g = to_gray_float(check_image(image))
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy) * np.float32(1.0 / 8.0)


def describe(lab: np.ndarray, px: float, *, focus_gray: np.ndarray | None = None,
             focus_background: float | None = None, slices=None,
             skeleton_min_aspect: float | None = 2.0, origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
    """:func:`~crystalloop.vision.measure.measure_particles` on validated input (int32 labels,
    float focus image or None).

    ``slices`` (``ndi.find_objects`` of ``lab``, e.g. kept from the segmentation) saves a pass
    over the image. Per particle only the cheap OpenCV calls run in Python (crop, moments,
    contour, hull); perimeters, hull pixel counts and callipers are computed for all particles
    at once.
    """
    if slices is None:
        slices = ndi.find_objects(lab)
    focus_scores = None
    in_loop = focus_gray is not None and focus_background is not None
    if focus_gray is not None and not in_loop:
        focus_scores = label_focus_scores(lab, focus_gray, background=focus_background, slices=slices)
    elif in_loop:
        focus_scores = np.full(len(slices) + 1, np.nan)
        bg = float(np.float32(focus_background))
    h, w = lab.shape
    k3 = np.ones((3, 3), np.uint8)
    ids, boxes, moms, contours, hulls, crops = [], [], [], [], [], []
    for i, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        crop = cv2.copyMakeBorder((lab[sl] == i).view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        if in_loop:
            # focus: mean gradient on the boundary pixels / peak deviation from the background,
            # in the box grown by 1 px (clipped to the frame; the padded crop is its mask)
            er0, er1, ec0, ec1 = max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)
            g = focus_gray[er0:er1, ec0:ec1]
            own = crop[er0 - r0 + 1 : er1 - r0 + 1, ec0 - c0 + 1 : ec1 - c0 + 1]
            bnd = cv2.subtract(own, cv2.erode(own, k3, borderType=cv2.BORDER_CONSTANT, borderValue=0))
            gmin, gmax = cv2.minMaxLoc(g, mask=own)[:2]
            peak = max(abs(gmax - bg), abs(gmin - bg))
            if peak > 0 and cv2.countNonZero(bnd):
                gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
                gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
                # exact sum (math.fsum): cv2.mean's SIMD order depends on memory alignment, so
                # its last bit differed between worker processes
                sel = bnd > 0
                x, y = gx[sel].astype(np.float64), gy[sel].astype(np.float64)
                mag = np.sqrt(x * x + y * y)
                focus_scores[i] = math.fsum(mag.tolist()) / mag.size / 8.0 / peak
        m = cv2.moments(crop, binaryImage=True)
        cnts, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        pts = cnts[0] if len(cnts) == 1 else np.vstack(cnts)
        ids.append(i)
        boxes.append((r0, c0, r1, c1))
        moms.append((m["m00"], m["m10"], m["m01"], m["mu20"], m["mu02"], m["mu11"]))
        contours.append(cnts)
        crops.append(crop)
        hulls.append(geo.convex_hull(pts))
    if not ids:
        return empty_table()
    n = len(ids)
    mo = np.array(moms, dtype=np.float64)
    area = mo[:, 0]
    per = perimeters_px(contours, area)
    hull_area = np.maximum(pick_counts(hulls), area)
    fmax, fmin, ang, hull_per = geo.feret_many(hulls)
    hull_per = np.where(np.array([len(hh) > 2 for hh in hulls]), hull_per, 2 * fmax) + np.pi
    # the extreme pixel centres lie 0 (oblique straight edges) to ½ px (axis-aligned edges,
    # curved ends) inside the true outline: add ½ px to each calliper distance
    fmax, fmin = fmax + FERET_PAD_PX, fmin + FERET_PAD_PX
    mu20 = mo[:, 3] / area + 1 / 12
    mu02 = mo[:, 4] / area + 1 / 12
    mu11 = mo[:, 5] / area
    major, minor = geo.ellipse_axes(mu20, mu02, mu11, area)
    with np.errstate(invalid="ignore", divide="ignore"):
        aspect = np.where(minor > 0, major / minor, np.inf)
        circ = np.where(per > 0, np.minimum(4 * np.pi * area / per**2, 1.0), 0.0)
        convex = np.where(per > 0, np.minimum(hull_per / per, 1.0), 1.0)
    length = fmax.copy()
    if skeleton_min_aspect is not None:
        from crystalloop.vision.skeleton import skeleton_length

        solid = area / hull_area
        elongated = aspect >= skeleton_min_aspect
        # a convex crystal's skeleton is a straight segment along its axis, and its end-corrected
        # length is the particle's extent along that axis: exact from the hull, no thinning
        straight = elongated & (solid >= STRAIGHT_SOLIDITY)
        if straight.any():
            length[straight] = axis_extent([hulls[k] for k in np.flatnonzero(straight)],
                                            mu20[straight], mu02[straight], mu11[straight]) + FERET_PAD_PX
        for k in np.flatnonzero(elongated & ~straight).tolist():
            length[k] = skeleton_length(crops[k] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.where(length > 0, area / length, 0.0)
        lw = np.where(width > 0, length / width, np.inf)
    b = np.array(boxes, dtype=np.int64)
    idx = np.array(ids, dtype=np.int64)
    # the frame test on the local boxes; coordinates in the frame of the whole image (``origin``:
    # where this label image sits in it, for tiles), computed by the same expression
    frame_edge = (b[:, 0] == 0) | (b[:, 1] == 0) | (b[:, 2] == h) | (b[:, 3] == w)
    b = b + np.array([origin[0], origin[1], origin[0], origin[1]], dtype=np.int64)
    out = pd.DataFrame({
        "label": idx, "area_px": area.astype(np.int64), "area_um2": area * px * px,
        "ecd_um": np.sqrt(4 * area / np.pi) * px, "perimeter_um": per * px,
        "feret_max_um": fmax * px, "feret_min_um": fmin * px, "feret_angle_deg": ang,
        "ellipse_major_um": major * px, "ellipse_minor_um": minor * px, "aspect_ratio": aspect,
        "circularity": circ, "solidity": np.minimum(area / hull_area, 1.0), "convexity": convex,
        "length_um": length * px, "width_um": width * px, "length_width_ratio": lw,
        "edge": frame_edge,
        "focus": focus_scores[idx] if focus_scores is not None else np.full(n, np.nan),
        "centroid_row_px": mo[:, 2] / area - 1 + b[:, 0], "centroid_col_px": mo[:, 1] / area - 1 + b[:, 1],
        "bbox_row0_px": b[:, 0], "bbox_col0_px": b[:, 1], "bbox_row1_px": b[:, 2], "bbox_col1_px": b[:, 3],
    })
    return out


def axis_extent(hulls: list, mu20, mu02, mu11) -> np.ndarray:
    """Extent (px) of each hull (pixel centres) along its moment-ellipse major axis."""
    theta = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)
    lens = np.array([len(q) for q in hulls])
    P = geo.pad_polygons(hulls, lens, max(int(lens.max()), 1)).astype(np.float64)
    proj = P[..., 0] * np.cos(theta)[:, None] + P[..., 1] * np.sin(theta)[:, None]
    return proj.max(axis=1) - proj.min(axis=1)


def perimeters_px(contours: list, area: np.ndarray) -> np.ndarray:
    """:func:`perimeter_px` of every particle (list of its contours) at once."""
    pts, owner = [], []
    for k, cnts in enumerate(contours):
        for c in cnts:
            if len(c) >= 2:
                pts.append(c.reshape(-1, 2))
                owner.append(k)
    n = len(contours)
    total = np.zeros(n)
    if pts:
        lens = np.array([len(q) for q in pts])
        p = np.concatenate(pts).astype(np.int64)
        start = np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.arange(len(p)) - start
        nxt = np.where(pos + 1 < np.repeat(lens, lens), np.arange(len(p)) + 1, start)
        d = p[nxt] - p
        diag = (d[:, 0] != 0) & (d[:, 1] != 0)
        code = (d[:, 0] + 1) * 3 + (d[:, 1] + 1)
        corner = code != code[nxt]
        w = np.where(diag, 1.406, 0.980) - 0.091 * corner
        seg = np.repeat(np.arange(len(pts)), lens)
        per_contour = np.bincount(seg, weights=w, minlength=len(pts))
        total = np.bincount(np.array(owner), weights=per_contour, minlength=n)
    # single pixel or a one-pixel line: perimeter of the equal-area disc
    return np.where(total > 0, total + np.pi, np.where(area > 0, np.sqrt(4 * np.pi * np.maximum(area, 0)), 0.0))


def pick_counts(polys: list[np.ndarray]) -> np.ndarray:
    """:func:`~crystalloop.vision.measure.hull_pixel_count` of many lattice polygons at once
    (padded by their last vertex: zero-length edges add nothing to the area or the boundary
    count)."""
    n = len(polys)
    lens = np.array([len(q) for q in polys])
    out = np.zeros(n)
    if n == 0:
        return out
    kmax = max(int(lens.max()), 1)
    P = geo.pad_polygons(polys, lens, kmax)
    P = (P if P.dtype.kind in "iu" else np.rint(P)).astype(np.int64)
    Q = np.concatenate((P[:, 1:], P[:, :1]), axis=1)
    d = np.abs(Q - P)
    b = np.gcd(d[..., 0], d[..., 1]).sum(axis=1).astype(np.float64)
    a = 0.5 * np.abs((P[..., 0] * Q[..., 1] - Q[..., 0] * P[..., 1]).sum(axis=1)).astype(np.float64)
    out = np.where(lens >= 3, a + b / 2 + 1, np.where(lens == 2, b / 2 + 1, lens.astype(np.float64)))
    return out


def empty_table() -> pd.DataFrame:
    """:func:`crystalloop.vision.measure.empty_particle_table`."""
    cols = {}
    for c in PARTICLE_COLUMNS:
        dt = bool if c == "edge" else (np.int64 if c in ("label", "area_px") or c.startswith("bbox") else float)
        cols[c] = pd.Series(dtype=dt)
    return pd.DataFrame(cols)


def label_focus_scores(lab: np.ndarray, gray: np.ndarray, ring_px: int = 4, background: float | None = None,
                  slices=None) -> np.ndarray:
    """Focus score of every label (index = label): mean gradient on its boundary pixels divided
    by its contrast. With a known ``background`` level (a background-subtracted signal: 0) the
    contrast is the particle's peak deviation from it; otherwise the mean of a ``ring_px`` ring
    around the particle minus its mean interior."""
    n = int(lab.max()) + 1
    if background is not None:
        # per particle, in its bounding box (+1 px): cheaper than full-frame passes at low solids
        score = np.full(n, np.nan)
        h, w = lab.shape
        k3 = np.ones((3, 3), np.uint8)
        for i, sl in enumerate(slices if slices is not None else ndi.find_objects(lab), start=1):
            if sl is None:
                continue
            r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
            c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
            own = (lab[r0:r1, c0:c1] == i).view(np.uint8)
            g = gray[r0:r1, c0:c1]
            gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
            gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
            boundary = (own > 0) & (cv2.erode(own, k3, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
            peak = float(np.abs(g[own > 0] - np.float32(background)).max())
            if peak > 0 and boundary.any():
                x, y = gx[boundary].astype(np.float64), gy[boundary].astype(np.float64)
                mag = np.sqrt(x * x + y * y)
                score[i] = math.fsum(mag.tolist()) / mag.size / 8.0 / peak
        return score
    grad = gradient_magnitude(gray)
    labf = lab.astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    inner = cv2.erode(labf, k3, borderType=cv2.BORDER_REPLICATE)
    boundary = (lab > 0) & (inner != labf)
    bl = lab[boundary]
    g_sum = np.bincount(bl, weights=grad[boundary], minlength=n)
    g_cnt = np.bincount(bl, minlength=n)
    inside = lab > 0
    li = lab[inside]
    i_sum = np.bincount(li, weights=gray[inside], minlength=n)
    i_cnt = np.bincount(li, minlength=n)
    dil = cv2.dilate(labf, np.ones((2 * ring_px + 1, 2 * ring_px + 1), np.uint8))
    ring = (lab == 0) & (dil > 0)
    rl = dil[ring].astype(np.int64)
    r_sum = np.bincount(rl, weights=gray[ring], minlength=n)
    r_cnt = np.bincount(rl, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = np.abs(r_sum / r_cnt - i_sum / i_cnt)
        score = (g_sum / g_cnt) / contrast
    score[~np.isfinite(score)] = np.nan
    return score
