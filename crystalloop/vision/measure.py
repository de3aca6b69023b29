"""Per-particle descriptors (ISO 9276-6 / ImageJ names) from instance labels, in µm.

Conventions (documented in docs/vision.md): area is the pixel count (unbiased for a 50 %
threshold). Contours run through boundary-pixel centres, which lie 0–1 px inside the true
outline: the perimeter is the Vossepoel–Smeulders chain-code estimate of that contour plus π
(Steiner formula for an outline ½ px further out — a digitised disc gets circularity ≈ 1), and
the Feret diameters come from exact rotating callipers on the convex hull of the boundary-pixel
centres plus ½ px (the mean gap measured over random orientations, within ±0.5 px of the
continuous shape). Solidity uses the pixel count of the convex hull (as scikit-image/ImageJ).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision import _geometry as geo
from crystalloop.vision._shape import PARTICLE_COLUMNS, describe, empty_table, gradient_magnitude
from crystalloop.vision._validate import (
    check_image,
    check_pixel_size,
    check_same_shape,
    to_gray_float,
)

__all__ = ["measure_particles", "PARTICLE_COLUMNS", "focus_map", "empty_particle_table", "hull_pixel_count"]


_FLOAT_COLUMNS = [c for c in PARTICLE_COLUMNS if c not in ("label", "edge", "area_px") and not c.startswith("bbox")]


def hull_pixel_count(hull: np.ndarray, shape: tuple[int, int] | None = None) -> float:
    """Number of pixel centres inside or on a convex polygon with integer (pixel-centre) vertices.

    Pick's theorem: interior points I = A − B/2 + 1, so inside-or-on = A + B/2 + 1 with B the
    lattice points on the boundary (Σ gcd(|dx|, |dy|) over the edges). ``shape`` is unused (kept
    for call compatibility).
    """
    h = np.rint(np.asarray(hull, dtype=np.float64)).astype(np.int64)
    if len(h) == 0:
        return 0.0
    if len(h) == 1:
        return 1.0
    d = np.abs(np.concatenate((h[1:], h[:1])) - h)
    b = float(np.gcd(d[:, 0], d[:, 1]).sum())
    if len(h) == 2:
        return b / 2 + 1
    return abs(geo.polygon_area(h.astype(np.float64))) + b / 2 + 1


def focus_map(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude per pixel (grey levels per pixel, Sobel scaled to unit slope)."""
    return gradient_magnitude(image)


def measure_particles(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    pixel_size_um: float,
    focus: bool = True,
    focus_image: np.ndarray | None = None,
    focus_background: float | None = None,
    skeleton_min_aspect: float | None = 2.0,
) -> pd.DataFrame:
    """Descriptors of every labelled particle.

    Parameters
    ----------
    labels : ndarray of int (rows, cols)
        Instance labels, 0 = background (e.g. from :func:`~crystalloop.vision.mask_to_labels`).
    image : ndarray (rows, cols) or (rows, cols, 3), optional
        The grey/colour image the labels came from; needed for the focus score (else NaN).
    pixel_size_um : float
        Pixel size in µm (> 0).
    focus : bool
        Compute the focus score (boundary gradient / local contrast, 1/px): a sharp step edge
        scores ≈ 0.5, an edge blurred by a Gaussian of σ px ≈ 1/(σ√(2π)).
    focus_image : ndarray, optional
        Image for the focus score instead of ``image`` (e.g. the background-subtracted signal).
    focus_background : float, optional
        Known background level of the focus image (0 for a background-subtracted signal): the
        contrast is then the particle's peak deviation from it, robust to wide blur halos.
    skeleton_min_aspect : float or None
        Particles whose moment-ellipse aspect ratio reaches this value are measured along their
        skeleton (:func:`~crystalloop.vision.skeleton.skeleton_length`) — for convex ones
        (solidity ≥ 0.95) the skeleton is a straight segment along the axis, so their length is
        their extent along the moment-ellipse axis (+½ px, as the Feret diameters), computed
        from the hull; the length of more compact particles is their max Feret diameter (their
        skeleton degenerates to a point or a short stub). 0: every particle; None: none.

    Returns
    -------
    DataFrame
        One row per label with :data:`PARTICLE_COLUMNS`: ``area_um2``, ``ecd_um`` (area-
        equivalent diameter x_A), ``perimeter_um``, ``feret_max_um``, ``feret_min_um``,
        ``feret_angle_deg`` (direction of the max Feret, counter-clockwise from the column
        axis, [0, 180)), ``ellipse_major_um``/``ellipse_minor_um`` (moment ellipse of equal
        area), ``aspect_ratio`` (major/minor), ``circularity`` (4πA/P², ≤ 1), ``solidity``
        (A / convex area), ``convexity`` (convex perimeter / P), ``length_um`` (along the
        skeleton for elongated particles, see ``skeleton_min_aspect``), ``width_um`` (mean
        width: area / length), ``length_width_ratio``, ``edge`` (touches the frame),
        ``focus``, ``centroid_row_px``, ``centroid_col_px`` and the bounding box.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((40, 40), np.int32); lab[10:20, 5:35] = 1
    >>> t = measure_particles(lab, pixel_size_um=2.0)
    >>> float(t.area_um2[0]), round(float(t.ecd_um[0]), 2), bool(t.edge[0])
    (1200.0, 39.09, False)
    """
    px = check_pixel_size(pixel_size_um)
    lab = check_image(labels, "labels", allow_color=False)
    if lab.dtype.kind == "f":
        if not np.all(lab == np.round(lab)):
            raise ConfigError("labels must hold integer ids (0 = background); got non-integer floats")
    if lab.dtype.kind == "b":
        _, lab = cv2.connectedComponents(lab.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    lab = lab.astype(np.int32, copy=False)
    if lab.min() < 0:
        raise ConfigError(f"labels must be ≥ 0 (0 = background), got minimum {int(lab.min())}")
    if image is not None:
        image = check_image(image)
        check_same_shape(lab, image, "labels", "image")
    fimg = None
    if focus and (image is not None or focus_image is not None):
        fimg = image if focus_image is None else check_image(focus_image, "focus_image")
        check_same_shape(lab, fimg, "labels", "focus_image")
        fimg = to_gray_float(fimg)
    if skeleton_min_aspect is not None and not skeleton_min_aspect >= 0:
        raise ConfigError(f"skeleton_min_aspect must be ≥ 0 or None, got {skeleton_min_aspect!r}")
    return describe(lab, px, focus_gray=fimg, focus_background=focus_background,
                    skeleton_min_aspect=skeleton_min_aspect)


def empty_particle_table() -> pd.DataFrame:
    """A particle table with the right columns and dtypes and no rows."""
    return empty_table()
