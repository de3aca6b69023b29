"""From per-pixel class probabilities to an instance label image (shared by the learned segmenters).

Two ways to separate touching objects, chosen by ``method``:

``boundary`` (needs a boundary class)
    Seeds are the regions where the interior probability exceeds 0.5 (opened by a 3×3 square),
    split where they still touch by a distance-transform watershed (markers: h-maxima of height
    ``h_px``), regions under ``min_seed_px`` dropped; a watershed on the boundary-minus-interior
    probability grows them inside the foreground. This is how U-Net/ilastik three-class
    (background / interior / boundary) outputs separate touching and crossing crystals.
``distance``
    A distance-transform watershed of the foreground: markers are the h-maxima (height ``h_px``)
    of the lightly smoothed Euclidean distance map, so two touching convex objects whose necks
    are narrower than their bodies by ``h_px`` pixels are split.

``auto`` uses ``boundary`` when the probabilities have a boundary class, else ``distance``.
The foreground is ``1 − p(background) > threshold`` after a Gaussian smoothing of the
probabilities (``smooth_sigma`` px), with holes filled; objects smaller than ``min_size_px``
are removed and labels are renumbered 1..n in raster order of their first pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from crystalloop.errors import ConfigError, ImageError

__all__ = ["INSTANCE_METHODS", "probabilities_to_labels"]

#: Instance separation methods of :func:`probabilities_to_labels`.
INSTANCE_METHODS = ("auto", "boundary", "distance")


def _smooth(p: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return p.astype(np.float32, copy=False)
    return cv2.GaussianBlur(p.astype(np.float32), (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def _remove_small(lab: np.ndarray, min_size: int) -> np.ndarray:
    if min_size > 1 and lab.max() > 0:
        sz = np.bincount(lab.ravel())
        small = sz < min_size
        small[0] = False
        lab = np.where(small[lab], 0, lab)
    out, _, _ = relabel_sequential(lab.astype(np.int32))
    return out.astype(np.int32)


def probabilities_to_labels(
    prob: np.ndarray,
    *,
    classes: Sequence[str],
    method: str = "auto",
    threshold: float = 0.5,
    smooth_sigma: float = 1.0,
    h_px: float = 1.0,
    min_size_px: int = 20,
    min_seed_px: int = 8,
    grow_px: float | None = None,
) -> np.ndarray:
    """Instance labels from class probabilities.

    Parameters
    ----------
    prob : ndarray of float, shape (H, W, K)
        Per-pixel probabilities of the ``K`` classes named in ``classes``.
    classes : sequence of str
        Names of the probability channels; must include ``background`` and ``interior`` (or
        ``object``), optionally ``boundary``.
    method : {"auto", "boundary", "distance"}
        Instance separation (module docstring).
    threshold : float
        Foreground where ``1 − p(background)`` exceeds it (0–1).
    smooth_sigma : float
        Gaussian smoothing of the probabilities in pixels (0: none).
    h_px : float
        Minimum depth (px) of a distance-map maximum that starts its own object (both methods:
        of the foreground for ``distance``, of the interior for ``boundary``).
    min_size_px, min_seed_px : int
        Smallest object kept, smallest interior region that seeds an object (``boundary``).
    grow_px : float, optional
        ``boundary`` only: grow each interior seed by this many pixels (within the foreground)
        instead of flooding the whole foreground by watershed; use the annotation's boundary
        width (+1) so objects keep the annotated extent when the predicted boundary is wider.

    Returns
    -------
    ndarray of int32, shape (H, W)
        0 background, 1..n objects.
    """
    p = np.asarray(prob)
    names = [str(c) for c in classes]
    if p.ndim != 3 or p.shape[2] != len(names):
        raise ImageError(f"probabilities have shape {p.shape}; expected (H, W, {len(names)}) for classes {names}")
    if method not in INSTANCE_METHODS:
        raise ConfigError(f"method={method!r}; expected one of {list(INSTANCE_METHODS)}")
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold={threshold!r}; expected a probability strictly between 0 and 1")
    if "background" not in names:
        raise ConfigError(f"classes {names} lack 'background'")
    obj = "interior" if "interior" in names else "object"
    if obj not in names:
        raise ConfigError(f"classes {names} lack 'interior' (or 'object')")
    has_boundary = "boundary" in names
    if method == "boundary" and not has_boundary:
        raise ConfigError(f"method='boundary' needs a boundary class; this model has classes {names}")
    use = ("boundary" if has_boundary else "distance") if method == "auto" else method
    pb = _smooth(p[:, :, names.index("background")], smooth_sigma)
    fg = (1.0 - pb) > float(threshold)
    fg = ndi.binary_fill_holes(fg)
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    if use == "boundary":
        pi = _smooth(p[:, :, names.index(obj)], smooth_sigma)
        pbd = _smooth(p[:, :, names.index("boundary")], smooth_sigma)
        inner = cv2.morphologyEx(((pi > 0.5) & fg).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        # interiors of touching objects that still connect through a neck are split at it
        d = cv2.GaussianBlur(ndi.distance_transform_edt(inner).astype(np.float32), (0, 0), sigmaX=1.0)
        markers, _ = ndi.label(h_maxima(d, float(h_px)) & inner)
        seeds = _remove_small(watershed(-d, markers, mask=inner), int(min_seed_px))
        if grow_px is None:
            lab = watershed(pbd - pi, seeds, mask=fg)
        else:
            # objects are their interior plus a rim of the boundary width: the boundary class
            # predicted around an object spreads outward with the filters' scale
            lab = np.where(fg, expand_labels(seeds, distance=float(grow_px)), 0)
        # foreground blobs without any interior seed (small objects) keep their own label
        rest, n_rest = ndi.label(fg & (lab == 0))
        if n_rest:
            lab = np.where(rest > 0, rest + lab.max(), lab)
    else:
        d = ndi.distance_transform_edt(fg).astype(np.float32)
        ds = cv2.GaussianBlur(d, (0, 0), sigmaX=1.0)
        markers, _ = ndi.label(h_maxima(ds, float(h_px)))
        lab = watershed(-ds, markers, mask=fg)
    return _remove_small(lab.astype(np.int32), int(min_size_px))
