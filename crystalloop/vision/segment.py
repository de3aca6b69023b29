"""Segmentation: thresholds, polarity, morphological cleaning and watershed splitting.

:func:`threshold` turns a grey image (or a background-subtracted signal) into a particle mask;
:func:`mask_to_labels` turns any binary or probability mask — a threshold, a CNN output — into
instance labels with the seed-002 post-processing (remove small objects, closing with a disc,
hole filling, optional border removal, distance-transform watershed, optional circularity window).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision._shape import perimeter_px, pick_counts
from crystalloop.vision._threshold import global_threshold, image_polarity, threshold_with_level
from crystalloop.vision._validate import check_image
from crystalloop.vision.skeleton import split_elongated

__all__ = [
    "threshold_value",
    "detect_polarity",
    "threshold",
    "fill_holes",
    "remove_small_objects",
    "clear_border",
    "watershed_split",
    "mask_to_labels",
    "disk",
]


def disk(radius: int) -> np.ndarray:
    """Disc-shaped structuring element (uint8) of the given radius in pixels."""
    r = int(radius)
    if r < 0:
        raise ConfigError(f"disc radius must be ≥ 0 px, got {radius!r}")
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= r * r + r * 0.5).astype(np.uint8)


def threshold_value(image: np.ndarray, *, method: str = "otsu") -> float:
    """Global threshold of a grey image (``otsu`` or ``triangle``), in the image's units.

    Computed on a 256-bin histogram (exact for 8-bit images).
    """
    return global_threshold(image, method=method)


def detect_polarity(image: np.ndarray) -> str:
    """``"dark"`` if the particles are darker than the background, else ``"bright"``.

    The background is the majority class of an Otsu split: particles are the minority. A
    constant image is reported as ``"dark"``.
    """
    return image_polarity(image)


def threshold(
    image: np.ndarray,
    *,
    method: str | float = "otsu",
    polarity: str = "auto",
    offset: float = 0.0,
    block_size: int = 51,
    noise_floor: float = 0.0,
) -> np.ndarray:
    """Particle mask of a grey image.

    Parameters
    ----------
    image : ndarray (rows, cols) or (rows, cols, 3)
        Grey or colour image (any numeric dtype) or a background-subtracted signal.
    method : {"otsu", "triangle", "midpoint", "adaptive"} or float
        Global Otsu/triangle threshold; ``midpoint``: half-way between the median levels of the
        two Otsu classes (iterated; the 50 % level of particle edges, so areas are unbiased even
        when particles cover few pixels); local (Gaussian-weighted mean over ``block_size``)
        adaptive threshold; or a fixed grey level.
    polarity : {"auto", "dark", "bright"}
        Particles darker (transmitted light) or brighter than the background; ``auto`` uses
        :func:`detect_polarity`.
    offset : float
        Shift of the threshold towards the background, as a fraction of the distance between the
        threshold and the background level (positive: more permissive, grows particles;
        negative: stricter). For ``adaptive`` it is a grey-level offset.
    block_size : int
        Neighbourhood (odd, px) of the adaptive threshold.
    noise_floor : float
        The threshold is kept at least ``noise_floor`` noise standard deviations away from the
        background level, so an empty (all-background) image gives an empty mask.

    Returns
    -------
    mask : ndarray of bool
    """
    return threshold_with_level(image, method=method, polarity=polarity, offset=offset, block_size=block_size,
                                noise_floor=noise_floor)[0]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected (4-connectivity) to the image border."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m.copy()
    # flood the outside (value 2) of a 1-px padded copy; everything not reached is object or hole
    pad = cv2.copyMakeBorder(m.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(pad, None, (0, 0), 2, flags=4)
    return pad[1:-1, 1:-1] != 2


def remove_small_objects(mask: np.ndarray, min_size_px: float) -> np.ndarray:
    """Remove 8-connected objects smaller than ``min_size_px`` pixels."""
    m = np.asarray(mask, dtype=bool)
    if min_size_px <= 1 or not m.any():
        return m.copy()
    n, lab, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(m.view(np.uint8), 8, cv2.CV_32S,
                                                                   cv2.CCL_BBDT)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_size_px) + 1
    out = m.copy()
    if small.size > n // 4:  # many specks: one lookup over the image
        keep = stats[:, cv2.CC_STAT_AREA] >= min_size_px
        keep[0] = False
        return keep[lab]
    # few specks: clear each in its bounding box
    for j in small.tolist():
        x, y, w, h = stats[j, :4].tolist()
        out[y : y + h, x : x + w][lab[y : y + h, x : x + w] == j] = False
    return out


def clear_border(labels: np.ndarray) -> np.ndarray:
    """Set to 0 every labelled object touching the image border."""
    lab = np.asarray(labels)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    out = lab.copy()
    border = border[border != 0]
    if border.size:
        out[np.isin(lab, border)] = 0
    return out


def _reconstruct(marker: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey-level morphological reconstruction by dilation of ``marker`` under ``mask``."""
    k = np.ones((3, 3), np.uint8)
    prev = np.minimum(marker, mask)
    cur = np.empty_like(prev)
    for _ in range(10_000):
        cv2.min(cv2.dilate(prev, k), mask, dst=cur)
        if not cv2.countNonZero(cv2.compare(cur, prev, cv2.CMP_NE)):
            break
        prev, cur = cur, prev
    return prev


def _split_one(obj: np.ndarray, strength: float, dist: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Watershed split of one binary object (uint8 crop with a 1-px empty frame)."""
    if dist is None:
        dist = cv2.distanceTransform(obj, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    peak = float(dist.max())
    h = max(0.5, (1.0 - strength) * peak)
    recon = _reconstruct(dist - h, dist)
    seeds = ((dist - recon) >= h - 1e-3) & (obj > 0)
    n, markers = cv2.connectedComponents(seeds.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    n -= 1
    if n < 2:
        return obj.astype(np.int32), 1
    return _flood(markers, dist, obj), n


def _flood(markers: np.ndarray, dist: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Marker-controlled flooding of ``obj`` from ``markers`` in decreasing distance order.

    Level by level (1 px steps of the distance map, from the peaks down) every basin grows by
    geodesic dilation into the pixels at or above the level, so basins meet at the necks — the
    watershed of the inverted distance map on a quantised relief.
    """
    lab = markers.astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    inside = obj > 0
    levels = np.unique(np.floor(dist[inside]))[::-1]  # 1 px steps
    big = np.float32(markers.max() + 1)
    labbig = np.where(lab > 0, lab, big)  # lab with the background at +big (for the minimum)
    checker = (np.indices(lab.shape).sum(axis=0) % 2).astype(bool)
    free = inside & (lab == 0)  # pixels no basin has reached yet
    for lv in levels:
        allowed = free & (dist >= lv)
        for _ in range(10_000):
            if not allowed.any():
                break
            gmax = cv2.dilate(lab, k3)
            new = allowed & (gmax > 0)
            if not new.any():
                break
            gmin = cv2.erode(labbig, k3)
            # pixels reached by two basins at once are shared on a checkerboard (no label bias)
            val = np.where(checker[new], gmax[new], gmin[new])
            lab[new] = val
            labbig[new] = val
            allowed &= ~new
            free &= ~new
    return lab.astype(np.int32)


def watershed_split(
    labels: np.ndarray,
    *,
    strength: float = 0.7,
    max_solidity: float = 0.92,
    min_size_px: float = 20,
    split_needles: bool = True,
    _sequential: bool = False,
) -> np.ndarray:
    """Split touching particles with a distance-transform watershed.

    Only non-convex objects (solidity below ``max_solidity``) are considered. Blobs of touching
    or crossing elongated crystals (``split_needles``) are separated along their skeleton
    (:func:`~crystalloop.vision.skeleton.split_elongated`: branches paired straight through the
    junctions); the others are flooded from the h-maxima of their distance map with
    ``h = (1 - strength) × max distance`` (at least 0.5 px): ``strength`` 0 never splits, 1
    splits at every dent.

    Parameters
    ----------
    labels : ndarray of int or bool
        Binary mask or instance labels (each label is split on its own).
    strength : float in [0, 1]
    max_solidity : float
        Objects at least this convex are left whole.
    min_size_px : float
        Objects smaller than this are left whole.
    split_needles : bool
        Separate touching and crossing needles along their skeleton.

    Returns
    -------
    labels : ndarray of int32, sequential from 1
    """
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"watershed strength must lie in [0, 1], got {strength!r}")
    lab = np.asarray(labels)
    if lab.dtype == bool:
        _, lab = cv2.connectedComponents(lab.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    lab = lab.astype(np.int32, copy=False)
    if strength == 0.0:
        return _relabel(lab)
    # candidates: objects whose outline polygon is clearly non-convex (one findContours call on
    # the whole image; touching particles are what the watershed is for)
    out = lab if _sequential else _relabel(lab)  # _sequential: private, the caller owns lab
    fg = (out > 0).view(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    candidates = _nonconvex_labels(out, max_solidity, max(min_size_px, 8), contours=contours)
    if not candidates:
        return out
    _split_candidates(out, candidates, ndi.find_objects(out), strength, needles=split_needles)
    return out


def _split_candidates(out: np.ndarray, candidates, slices: list, strength: float,
                      needles: bool = False) -> None:
    """Split the candidate labels of ``out`` in place; ``slices`` (index = label - 1) is updated
    (the first part keeps the id with its new box, the others get new ids after the last one,
    so ids stay sequential without another pass over the image)."""
    nxt = len(slices) + 1
    for i in sorted(candidates):
        sl = slices[i - 1]
        if sl is None:
            continue
        own = out[sl] == i
        crop = cv2.copyMakeBorder(own.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        sub = None
        # needles: only blobs far longer than their widest part (area ≥ 3 × (2·max distance)²;
        # two touching discs: 1.6, a crossing of two needles of aspect 5: ≈ 7) are worth a skeleton
        if needles and np.count_nonzero(own) >= 3.0 * (2.0 * float(dist.max())) ** 2:
            sub = split_elongated(crop > 0)
        if sub is not None:
            n = int(sub.max())
        else:
            sub, n = _split_one(crop, strength, dist)
        if n < 2:
            continue
        sub = sub[1:-1, 1:-1]
        tgt = out[sl]
        r0, c0 = sl[0].start, sl[1].start
        for k in range(1, n + 1):
            # part 1 keeps the id, with any pixel the flooding left unassigned
            part = (own & (sub < 2)) if k == 1 else (sub == k)
            rr, cc = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
            box = (slice(r0 + int(rr[0]), r0 + int(rr[-1]) + 1), slice(c0 + int(cc[0]), c0 + int(cc[-1]) + 1)) \
                if rr.size else None
            if k == 1:
                slices[i - 1] = box
                continue
            tgt[part] = nxt
            slices.append(box)
            nxt += 1


def _nonconvex_labels(lab: np.ndarray, max_solidity: float, min_size_px: float, contours=None) -> set[int]:
    """Labels whose outer contour area / convex hull area is below ``max_solidity``.

    Pixel counts of the contour polygon and of its convex hull come from Pick's theorem (both
    run through pixel centres), so a digitised convex shape scores 1. Objects of one label that touch another label are traced together (a merged blob is then a
    candidate as a whole, each label is split on its own anyway).
    """
    if contours is None:
        fg = (lab > 0).view(np.uint8)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    big = [c.reshape(-1, 2) for c in contours if len(c) >= 4]
    out: set[int] = set()
    if not big:
        return out
    a_c = pick_counts(big)  # pixels of each blob (holes filled)
    a_h = pick_counts([cv2.convexHull(c).reshape(-1, 2) for c in big])
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = (a_c >= min_size_px) & (a_h > 0) & (a_c / a_h < max_solidity)
    for k in np.flatnonzero(sel).tolist():
        x, y, w, h = cv2.boundingRect(big[k])
        ids = np.unique(lab[y : y + h, x : x + w])
        out.update(int(v) for v in ids if v)
    return out


def _relabel(lab: np.ndarray) -> np.ndarray:
    if lab.size == 0 or lab.max() <= 0:
        return np.zeros(lab.shape, np.int32)
    u = np.flatnonzero(np.bincount(lab.ravel()))
    u = u[u != 0]
    if u.size and u[-1] == u.size:
        return lab.astype(np.int32, copy=True)
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    lut[u] = np.arange(1, u.size + 1, dtype=np.int32)
    return lut[lab]


def _circularity_filter(lab: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = lab.copy()
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        own = lab[sl] == i
        crop = np.zeros((own.shape[0] + 2, own.shape[1] + 2), np.uint8)
        crop[1:-1, 1:-1] = own
        cnts, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        area = float(np.count_nonzero(own))
        per = perimeter_px(cnts, area)
        circ = min(4 * np.pi * area / per**2, 1.0) if per > 0 else 0.0
        if not lo <= circ <= hi:
            out[sl][own] = 0
    return _relabel(out)


def mask_to_labels(
    mask: np.ndarray,
    *,
    probability_threshold: float = 0.5,
    min_size_px: float = 20,
    closing_radius_px: int = 2,
    fill: bool = True,
    remove_border: bool = False,
    watershed: bool = True,
    watershed_strength: float = 0.7,
    circularity_range: tuple[float, float] | None = None,
    split_needles: bool = True,
    _return_slices: bool = False,
) -> np.ndarray:
    """Instance labels from a binary or probability mask (seed-002 post-processing).

    Steps, in order: binarize (probabilities ``>= probability_threshold``), delete objects smaller
    than ``min_size_px``, closing with a disc of ``closing_radius_px``, fill holes, delete objects
    touching the border (optional), distance-transform watershed split (optional), keep objects
    with circularity ``4πA/P²`` inside ``circularity_range`` (optional; seed 002: (0.85, 0.95)).

    Parameters
    ----------
    mask : ndarray (rows, cols)
        bool, integer (non-zero = particle; an existing label image is binarized) or float
        probabilities in [0, 1].
    probability_threshold : float
    min_size_px : float
        Smallest object kept, in pixels (seed 002: 20 px²).
    closing_radius_px : int
        Radius of the closing disc (0 = no closing).
    fill : bool
        Fill holes inside objects.
    remove_border : bool
        Delete objects touching the image border (otherwise keep them; the measurement flags them).
    watershed : bool
        Split touching particles (see :func:`watershed_split`).
    watershed_strength : float in [0, 1]
    circularity_range : (low, high), optional
    split_needles : bool
        With ``watershed``: separate touching and crossing elongated crystals along their
        skeleton instead of the distance watershed (see :func:`watershed_split`).

    Returns
    -------
    labels : ndarray of int32, 0 = background, objects numbered 1..n
    """
    m = check_image(mask, "mask", allow_color=False)
    if m.dtype.kind == "f":
        if m.min() < 0 or m.max() > 1:
            raise ImageError(
                f"a float mask must hold probabilities in [0, 1], got values in [{float(m.min()):.3g}, {float(m.max()):.3g}]"
            )
        b = m >= probability_threshold
    else:
        b = m != 0
    if min_size_px < 0:
        raise ConfigError(f"min_size_px must be ≥ 0, got {min_size_px!r}")
    if closing_radius_px < 0:
        raise ConfigError(f"closing_radius_px must be ≥ 0, got {closing_radius_px!r}")
    b = remove_small_objects(b, min_size_px)
    if closing_radius_px > 0 and b.any():
        r = int(closing_radius_px)
        pad = cv2.copyMakeBorder(b.view(np.uint8), r, r, r, r, cv2.BORDER_CONSTANT, value=0)
        pad = cv2.morphologyEx(pad, cv2.MORPH_CLOSE, disk(r))
        b = pad[r:-r, r:-r].astype(bool)
    if fill:
        b = fill_holes(b)
    if not b.any():
        return (np.zeros(b.shape, np.int32), []) if _return_slices else np.zeros(b.shape, np.int32)
    n, lab = cv2.connectedComponents(b.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if fill and not remove_border:
        # hole-free blobs, numbered 1..n: one contour pass gives every box and the watershed's
        # candidates (no scan of the label image)
        contours, _ = cv2.findContours(b.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        slices: list = [None] * (n - 1)
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            cx, cy = c[0, 0].tolist()
            slices[int(lab[cy, cx]) - 1] = (slice(y, y + h), slice(x, x + w))
        if watershed and not 0.0 <= watershed_strength <= 1.0:
            raise ConfigError(f"watershed strength must lie in [0, 1], got {watershed_strength!r}")
        if watershed and watershed_strength > 0:
            cand = _nonconvex_labels(lab, 0.92, max(min_size_px, 8), contours=contours)
            if cand:
                _split_candidates(lab, cand, slices, watershed_strength, needles=split_needles)
        lab = _circularity(lab, circularity_range)
        if circularity_range is not None:
            slices = None
        return (lab, slices) if _return_slices else lab
    if remove_border:
        lab = clear_border(lab)
    if watershed:
        # labels straight from connectedComponents are already 1..n (no relabelling pass)
        lab = watershed_split(lab, strength=watershed_strength, min_size_px=max(min_size_px, 8),
                              split_needles=split_needles, _sequential=not remove_border)
    else:
        lab = _relabel(lab)
    lab = _circularity(lab, circularity_range)
    return (lab, None) if _return_slices else lab


def _circularity(lab: np.ndarray, circularity_range) -> np.ndarray:
    if circularity_range is None:
        return lab
    lo, hi = circularity_range
    if not 0 <= lo <= hi:
        raise ConfigError(f"circularity_range must be (low, high) with 0 ≤ low ≤ high, got {circularity_range!r}")
    return _circularity_filter(lab, float(lo), float(hi))
