"""Optics and sensor of the simulated probe: illumination field, defocus blur, noise, rings.

- :func:`illumination_field`: smooth gradient + off-centre vignetting;
- :func:`blur_coarse`: wide Gaussian defocus blur on a 2× reduced grid (exact for in-focus ones);
- :func:`noise_from_pool`: sensor noise from a shared pool of Gaussian samples (fast camera mode);
- :func:`ring_profile`: radial opacity of droplets and bubbles.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["illumination_field", "COARSE_BLUR_PX", "blur_coarse", "noise_from_pool", "ring_profile"]


def illumination_field(shape, strength: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
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


#: Blur σ (px) from which a particle is blurred on a 2× reduced grid: only defocused particles
#: (depth above the in-focus limit, σ ≥ 0.7 + 6 × 0.35 = 2.8 px) — in-focus ones stay exact.
COARSE_BLUR_PX = 3.0


def blur_coarse(cov: np.ndarray, sigma: float) -> np.ndarray:
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


def noise_from_pool(size: int, std: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``size`` unit Gaussian samples from the shared pool at a random offset, and the scale
    (± ``std``, random sign) to apply. Frames larger than half the pool get fresh samples."""
    global _NOISE_POOL
    if size > _NOISE_POOL_SIZE // 2:
        return rng.standard_normal(size, dtype=np.float32), std
    if _NOISE_POOL is None:
        _NOISE_POOL = np.random.default_rng(0x5EED).standard_normal(_NOISE_POOL_SIZE, dtype=np.float32)
    off = int(rng.integers(0, _NOISE_POOL_SIZE - size + 1))
    return _NOISE_POOL[off : off + size], (std if rng.random() < 0.5 else -std)


def ring_profile(poly, x0, y0, shape, kind) -> np.ndarray:
    """Radial opacity of droplets (dark rim, bright centre) and bubbles (thick dark rim)."""
    cx, cy = poly.mean(axis=0)
    rad = np.max(np.hypot(*(poly - [cx, cy]).T))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = np.hypot(xx + x0 - cx, yy + y0 - cy) / max(rad, 1e-6)
    inner, floor = (0.75, 0.35) if kind == "droplet" else (0.55, 0.1)
    return np.where(r > inner, 1.0, floor + (1 - floor) * (r / inner) ** 4).astype(np.float32)
