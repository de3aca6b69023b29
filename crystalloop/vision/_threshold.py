"""Threshold levels shared by :mod:`~crystalloop.vision.segment`, the pipeline and the tiled pipeline:
the 8-bit histogram levels (Otsu, triangle, mid-point), the polarity, the robust noise level and
the final level (offset towards the background, noise floor), on a whole image or on the
statistics that tiles gather.
"""

from __future__ import annotations

import cv2
import numpy as np

from crystalloop.errors import ConfigError
from crystalloop.vision._validate import check_image, to_gray_float

__all__ = ["METHODS", "to_u8", "global_threshold", "level_of_u8", "midpoint", "image_polarity", "polarity_of",
           "noise_sigma", "sigma_of", "threshold_with_level", "final_level"]

METHODS = ("otsu", "triangle", "midpoint", "adaptive")


def to_u8(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Linear map of a float image to uint8 (returns the image, offset and scale)."""
    lo, hi = float(img.min()), float(img.max())
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    u8 = np.clip((img - lo) / scale + 0.5, 0, 255).astype(np.uint8)
    return u8, lo, scale


def global_threshold(image: np.ndarray, *, method: str = "otsu") -> float:
    """:func:`crystalloop.vision.segment.threshold_value`."""
    img = to_gray_float(check_image(image))
    if method not in ("otsu", "triangle", "midpoint"):
        raise ConfigError(f"global threshold method must be 'otsu', 'triangle' or 'midpoint', got {method!r}")
    # the histogram of a 2×2-subsampled image gives the same threshold at a quarter of the cost
    sub0 = img[::2, ::2] if img.size > 250_000 else img
    u8, lo, scale = to_u8(sub0)
    if u8.min() == u8.max():
        return float(lo)
    t = level_of_u8(u8, lo, scale, method)
    if method == "midpoint":
        t = midpoint(t, img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)])
    return t


def level_of_u8(u8: np.ndarray, lo: float, scale: float, method: str) -> float:
    """Otsu/triangle level of an 8-bit image (or any uint8 array with its histogram), mapped
    back to image units."""
    flag = cv2.THRESH_TRIANGLE if method == "triangle" else cv2.THRESH_OTSU
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY | flag)
    # cv2 returns t with "> t" as foreground; map the bin back to image units (bin centre + ½)
    return lo + (t + 0.5) * scale


def midpoint(t: float, sub: np.ndarray) -> float:
    """Half-way between the median levels of the two Otsu classes (iterated): the 50 % edge
    level of flat particles, unbiased by how few pixels the particles cover."""
    sub = sub.ravel()
    for _ in range(5):
        a, b = sub[sub <= t], sub[sub > t]
        if a.size == 0 or b.size == 0:
            break
        t_new = 0.5 * (float(np.median(a)) + float(np.median(b)))
        if abs(t_new - t) <= 1e-6 * (abs(t) + 1e-12):
            break
        t = t_new
    return t


def image_polarity(image: np.ndarray) -> str:
    """:func:`crystalloop.vision.segment.detect_polarity`."""
    img = to_gray_float(check_image(image))
    if img.max() == img.min():
        return "dark"
    return polarity_of(img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)])


def polarity_of(sub: np.ndarray) -> str:
    """:func:`image_polarity` on its subsample (tiled processing gathers the same one)."""
    if sub.max() == sub.min():
        return "dark"
    t = global_threshold(sub, method="otsu")
    above = np.count_nonzero(sub >= t)
    return "dark" if above >= sub.size - above else "bright"


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise level: MAD of the difference of neighbouring pixels / √2."""
    step = max(1, int(np.sqrt(img.size / 40_000)))
    return sigma_of(img[::step, :: max(1, step // 2)])


def sigma_of(sub: np.ndarray) -> float:
    """:func:`noise_sigma` of its subsample."""
    if sub.shape[1] < 2:
        return 0.0
    d = np.diff(sub, axis=1).ravel()
    med = np.median(d)
    return float(1.4826 * np.median(np.abs(d - med)) / np.sqrt(2))


def threshold_with_level(image, *, method="otsu", polarity="auto", offset=0.0, block_size=51, noise_floor=0.0):
    """:func:`crystalloop.vision.segment.threshold` that also returns the grey level used (NaN for ``adaptive``)."""
    img = to_gray_float(check_image(image))
    if polarity not in ("auto", "dark", "bright"):
        raise ConfigError(f"polarity must be 'auto', 'dark' or 'bright', got {polarity!r}")
    if isinstance(method, str) and method not in METHODS:
        raise ConfigError(f"threshold method must be one of {list(METHODS)} or a number, got {method!r}")
    pol = image_polarity(img) if polarity == "auto" else polarity
    lo, hi = float(img.min()), float(img.max())
    if hi == lo:
        return np.zeros(img.shape, bool), float("nan")
    if isinstance(method, str) and method == "adaptive":
        if int(block_size) < 3 or int(block_size) % 2 == 0:
            raise ConfigError(f"block_size must be an odd integer ≥ 3 px, got {block_size!r}")
        local = cv2.GaussianBlur(img, (0, 0), sigmaX=block_size / 6.0)
        sigma = noise_sigma(img)
        margin = max(noise_floor * sigma, 0.0) - offset
        return ((img < local - margin) if pol == "dark" else (img > local + margin)), float("nan")
    if isinstance(method, str):
        if method not in METHODS:
            raise ConfigError(f"threshold method must be one of {list(METHODS)} or a number, got {method!r}")
        t = global_threshold(img, method=method)
    else:
        t = float(method)
        if not np.isfinite(t):
            raise ConfigError(f"a fixed threshold must be a finite grey level, got {method!r}")
    bg = float(np.median(img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)]))
    t = final_level(t, pol, offset, noise_floor, bg, lambda: noise_sigma(img), lo, hi)
    return ((img < t) if pol == "dark" else (img > t)), float(t)


def final_level(t, pol, offset, noise_floor, bg, sigma, lo, hi) -> float:
    """Offset towards the background level ``bg`` and the noise floor (``sigma()``: noise σ)."""
    t = t + offset * (bg - t)
    if noise_floor > 0:
        # at least a millionth of the value range: rounding noise is never a particle
        margin = max(noise_floor * sigma(), 1e-6 * max(abs(lo), abs(hi)))
        t = min(t, bg - margin) if pol == "dark" else max(t, bg + margin)
    return float(t)
