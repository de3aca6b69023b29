"""Preprocessing: background estimation/subtraction, flat-field, contrast, sequence subtractors.

All functions take an image first and keyword-only options (scikit-image style), accept any
numeric dtype and grey or colour input, and return float32 unless stated otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from crystalloop.errors import ConfigError
from crystalloop.vision._background import block_mean, reduction, small_background, upsample
from crystalloop.vision._validate import check_image, check_same_shape, to_gray_float
from crystalloop.vision.segment import detect_polarity

__all__ = [
    "estimate_background",
    "subtract_background",
    "flat_field",
    "equalize_histogram",
    "clahe",
    "to_uint8",
    "background_subtractor",
    "foreground_masks",
]


def _resolve_polarity(img: np.ndarray, polarity: str) -> str:
    if polarity not in ("auto", "dark", "bright"):
        raise ConfigError(f"polarity must be 'auto', 'dark' or 'bright', got {polarity!r}")
    return detect_polarity(img) if polarity == "auto" else polarity


def estimate_background(
    image: np.ndarray,
    *,
    radius: float = 50,
    method: str = "rolling_ball",
    polarity: str = "auto",
) -> np.ndarray:
    """Smooth background of an image whose particles are smaller than ``radius`` px.

    Parameters
    ----------
    image : ndarray
    radius : float
        Ball/structuring-element radius in pixels; larger than the largest particle's half-width.
    method : {"rolling_ball", "morphological", "median"}
        ``rolling_ball``: grey-level opening (bright particles) or closing (dark particles) with a
        disc, computed on a grid reduced by up to ``radius / 4`` and smoothed — the fast
        equivalent of ImageJ's rolling ball (paraboloid) for smooth illumination.
        ``morphological``: the same at full resolution (exact, slower). ``median``: median
        filter of size ``2 radius + 1`` (on the reduced grid).
    polarity : {"auto", "dark", "bright"}

    Returns
    -------
    background : ndarray of float32, same shape (rows, cols)
    """
    img = to_gray_float(check_image(image))
    if not np.isfinite(radius) or radius < 1:
        raise ConfigError(f"background radius must be ≥ 1 px, got {radius!r}")
    if method not in ("rolling_ball", "morphological", "median"):
        raise ConfigError(f"background method must be 'rolling_ball', 'morphological' or 'median', got {method!r}")
    pol = _resolve_polarity(img, polarity)
    h, w = img.shape
    f = reduction(h, w, radius, method)
    small = block_mean(img, f) if f > 1 else img
    bg = small_background(small, max(int(round(radius / f)), 1), method, pol)
    if f > 1:
        bg = upsample(bg, f, 0, h, 0, w)
    return bg.astype(np.float32, copy=False)


def subtract_background(
    image: np.ndarray,
    *,
    radius: float = 50,
    method: str = "rolling_ball",
    polarity: str = "auto",
    normalize: bool = True,
) -> np.ndarray:
    """Particle signal with the background removed: 0 on background, positive on particles.

    ``normalize=True`` divides dark-particle signals by the background (flat-field: the signal
    is the relative darkening, so uneven illumination does not change particle contrast);
    bright particles (fluorescence, dark field) are additive and only subtracted.
    Dark particles become positive too, so every later step sees bright-on-zero.
    """
    img = to_gray_float(check_image(image))
    pol = _resolve_polarity(img, polarity)
    bg = estimate_background(img, radius=radius, method=method, polarity=pol)
    # OpenCV element-wise ops: the same float32 results as numpy, without temporaries
    # (each fresh full-frame array costs page faults: work in the buffers already held)
    sig = cv2.subtract(bg, img) if pol == "dark" else cv2.subtract(img, bg)
    if normalize and pol == "dark":
        # transmitted light is multiplicative: relative darkening is independent of illumination
        cv2.divide(sig, cv2.max(bg, 1e-3, dst=bg), dst=sig)
    return sig.astype(np.float32, copy=False)


def flat_field(image: np.ndarray, flat: np.ndarray, *, dark: np.ndarray | float | None = None) -> np.ndarray:
    """Flat-field correction ``(image - dark) / (flat - dark) × mean(flat - dark)``.

    ``flat`` is an image of the empty, illuminated field (e.g. the mean of particle-free frames),
    ``dark`` the camera's dark frame (or offset).
    """
    img = to_gray_float(check_image(image))
    fl = to_gray_float(check_image(flat, "flat"))
    check_same_shape(img, fl, "image", "flat")
    d = 0.0
    if dark is not None:
        if np.ndim(dark) == 0:
            d = float(dark)
        else:
            d = to_gray_float(check_image(np.asarray(dark), "dark"))
            check_same_shape(img, d, "image", "dark")
    den = fl - d
    if np.any(den <= 0):
        raise ConfigError("flat-field frame must be brighter than the dark frame everywhere (flat - dark > 0)")
    return ((img - d) / den * float(np.mean(den))).astype(np.float32)


def to_uint8(image: np.ndarray, *, saturate: float = 0.0) -> np.ndarray:
    """Linear stretch to uint8 (clipping ``saturate`` % at each end)."""
    img = to_gray_float(check_image(image))
    if saturate > 0:
        lo, hi = np.percentile(img, [saturate, 100 - saturate])
    else:
        lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.clip((img - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Global histogram equalization (uint8 result)."""
    img = check_image(image)
    u8 = img if (img.dtype == np.uint8 and img.ndim == 2) else to_uint8(img)
    return cv2.equalizeHist(u8)


def clahe(image: np.ndarray, *, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (uint8 result)."""
    img = check_image(image)
    if clip_limit <= 0:
        raise ConfigError(f"clip_limit must be > 0, got {clip_limit!r}")
    u8 = img if (img.dtype == np.uint8 and img.ndim == 2) else to_uint8(img)
    return cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(int(t) for t in tile_grid_size)).apply(u8)


def background_subtractor(method: str = "mog2", *, history: int = 50, threshold: float | None = None,
                          detect_shadows: bool = False):
    """An OpenCV background subtractor for image sequences (``mog2`` or ``knn``)."""
    if method == "mog2":
        return cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=16 if threshold is None else threshold,
                                                  detectShadows=detect_shadows)
    if method == "knn":
        return cv2.createBackgroundSubtractorKNN(history=history, dist2Threshold=400 if threshold is None else threshold,
                                                 detectShadows=detect_shadows)
    raise ConfigError(f"background subtractor must be 'mog2' or 'knn', got {method!r}")


def foreground_masks(images: Iterable[np.ndarray], *, method: str = "mog2", history: int = 50,
                     threshold: float | None = None, learning_rate: float = -1) -> Iterator[np.ndarray]:
    """Foreground (moving/new particle) masks of a time-ordered sequence, one bool mask per frame.

    The first frames train the model; particles that stay put slowly fade into the background
    (as with any MOG2/KNN subtractor), so use it for flowing suspensions and appearance events.
    """
    sub = background_subtractor(method, history=history, threshold=threshold)
    shape = None
    for k, im in enumerate(images):
        img = check_image(im, f"frame {k}")
        u8 = img if (img.dtype == np.uint8 and img.ndim == 2) else to_uint8(img)
        if shape is None:
            shape = u8.shape
        elif u8.shape != shape:
            raise ConfigError(f"frame {k} has shape {u8.shape}, the sequence started with {shape}")
        yield sub.apply(u8, learningRate=learning_rate) > 0
