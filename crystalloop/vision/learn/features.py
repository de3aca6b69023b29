"""Multi-scale pixel features in the style of ilastik's pixel classification.

Every channel of the image (or one chosen channel) is normalized to its 1st/99.8th percentiles
and filtered at each scale σ (pixels) by:

========================  =================================================================
``gaussian``              Gaussian smoothing G_σ (intensity)
``log``                   Laplacian of Gaussian σ²(∂xx + ∂yy)G_σ (blobs, edges' sides)
``gradient``              gradient magnitude σ|∇G_σ| (edges)
``dog``                   difference of Gaussians G_σ − G_{0.66σ} (band-pass texture)
``structure_tensor``      both eigenvalues of the structure tensor, inner scale σ/2 (the
                          gradient), outer scale σ (its averaging): edge vs corner texture
``hessian``               both eigenvalues of the Hessian of Gaussian σ²H(G_σ) (ridges,
                          valleys, blobs; sign tells bright from dark)
========================  =================================================================

Default scales are ilastik's, 0.7, 1.0, 1.6, 3.5, 5.0 and 10.0 px. Derivatives are Sobel/central
differences of the smoothed image (scale-normalized by σ or σ²); the Gaussian is OpenCV's with a
reflecting border, so features of an image crop equal those of the full image away from the
crop's edge (≈ 3σ_max). Features are float32 ``(H, W, F)``, deterministic, no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import _validate

__all__ = ["DEFAULT_SIGMAS", "FEATURE_KINDS", "pixel_features", "feature_names", "prepare_channels"]

#: ilastik's default feature scales in pixels.
DEFAULT_SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: Filter families, in the order they are stacked per channel and scale.
FEATURE_KINDS = ("gaussian", "log", "gradient", "dog", "structure_tensor", "hessian")
_WIDTH = {"gaussian": 1, "log": 1, "gradient": 1, "dog": 1, "structure_tensor": 2, "hessian": 2}


def _check_options(sigmas, kinds) -> tuple[tuple[float, ...], tuple[str, ...]]:
    try:
        s = tuple(float(v) for v in sigmas)
    except (TypeError, ValueError):
        raise ConfigError(f"sigmas must be a list of positive numbers of pixels, got {sigmas!r}") from None
    if not s or any(not np.isfinite(v) or v <= 0 for v in s):
        raise ConfigError(f"sigmas must be a non-empty list of positive numbers of pixels, got {list(sigmas)!r}")
    k = tuple(str(v) for v in kinds)
    bad = [v for v in k if v not in FEATURE_KINDS]
    if bad or not k:
        raise ConfigError(f"unknown feature kind(s) {bad or list(k)}; expected some of {list(FEATURE_KINDS)}")
    return s, k


def prepare_channels(image, *, channel: int | None = None, name: str = "image") -> np.ndarray:
    """Image → float32 ``(H, W, C)`` with each channel mapped to its 1st/99.8th percentiles.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey or ``(H, W, C)`` colour (alpha dropped), any numeric dtype.
    channel : int, optional
        Use only this channel of a colour image (0-based); default: every channel.
    """
    img = _validate.check_image(np.asarray(image), name)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if channel is not None:
        if not isinstance(channel, (int, np.integer)) or not 0 <= int(channel) < img.shape[2]:
            raise ConfigError(f"channel={channel!r} does not exist in {name} with {img.shape[2]} channel(s); "
                              f"expected 0..{img.shape[2] - 1}")
        img = img[:, :, int(channel) : int(channel) + 1]
    out = np.empty(img.shape, np.float32)
    for c in range(img.shape[2]):
        x = img[:, :, c].astype(np.float32)
        lo, hi = np.percentile(x, [1.0, 99.8])
        out[:, :, c] = (x - np.float32(lo)) / np.float32(max(float(hi - lo), 1e-6))
    return out


def feature_names(n_channels: int, *, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                  kinds: Sequence[str] = FEATURE_KINDS) -> list[str]:
    """Names of the columns :func:`pixel_features` returns, e.g. ``c0_hessian_max_s3.5``."""
    s, k = _check_options(sigmas, kinds)
    names = []
    for c in range(int(n_channels)):
        for sig in s:
            for kind in k:
                if _WIDTH[kind] == 1:
                    names.append(f"c{c}_{kind}_s{sig:g}")
                else:
                    names += [f"c{c}_{kind}_max_s{sig:g}", f"c{c}_{kind}_min_s{sig:g}"]
    return names


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    k = 2 * int(np.ceil(3.0 * sigma)) + 1
    return cv2.GaussianBlur(x, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _d(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    # Sobel 3×3: first derivative scaled 1/8, second 1/4 (unit-gain derivative estimates)
    scale = 0.125 if dx + dy == 1 else 0.25
    if dx == 1 and dy == 1:
        scale = 0.0625
    return cv2.Sobel(x, cv2.CV_32F, dx, dy, ksize=3, scale=scale, borderType=cv2.BORDER_REFLECT)


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2×2 matrices [[a, b], [b, c]]."""
    m = 0.5 * (a + c)
    r = np.sqrt(0.25 * (a - c) ** 2 + b * b)
    return m + r, m - r


def pixel_features(image, *, sigmas: Sequence[float] = DEFAULT_SIGMAS, kinds: Sequence[str] = FEATURE_KINDS,
                   channel: int | None = None, normalize: bool = True) -> np.ndarray:
    """Stack of filter responses for every pixel.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``; colour channels are filtered separately.
    sigmas : sequence of float
        Scales in pixels (default :data:`DEFAULT_SIGMAS`).
    kinds : sequence of str
        Filter families (default all of :data:`FEATURE_KINDS`).
    channel : int, optional
        Use one channel of a colour image only.
    normalize : bool
        Map each channel to its percentiles first (:func:`prepare_channels`). False takes the
        image as already prepared (float ``(H, W, C)``), so that bands of one image share the
        whole image's normalization.

    Returns
    -------
    ndarray of float32, shape (H, W, F)
        ``F = n_channels × len(sigmas) × (number of responses of kinds)``, in the order of
        :func:`feature_names`.

    Examples
    --------
    >>> import numpy as np
    >>> f = pixel_features(np.eye(16), sigmas=(1.0, 2.0))
    >>> f.shape
    (16, 16, 16)
    """
    s, k = _check_options(sigmas, kinds)
    if normalize:
        chans = prepare_channels(image, channel=channel)
    else:
        chans = np.asarray(image, dtype=np.float32)
        chans = chans[:, :, None] if chans.ndim == 2 else chans
        if channel is not None:
            chans = chans[:, :, int(channel) : int(channel) + 1]
    h, w, nc = chans.shape
    if min(h, w) < 2:
        raise ImageError(f"image has shape {chans.shape[:2]}; pixel features need at least 2×2 pixels")
    per = sum(_WIDTH[v] for v in k)
    out = np.empty((h, w, nc * len(s) * per), np.float32)
    j = 0
    for c in range(nc):
        x = np.ascontiguousarray(chans[:, :, c])
        for sig in s:
            g = _blur(x, sig)
            gx = gy = None
            for kind in k:
                if kind == "gaussian":
                    out[:, :, j] = g
                elif kind == "dog":
                    out[:, :, j] = g - _blur(x, 0.66 * sig)
                elif kind == "log":
                    out[:, :, j] = (sig * sig) * (_d(g, 2, 0) + _d(g, 0, 2))
                elif kind == "gradient":
                    gx, gy = (_d(g, 1, 0), _d(g, 0, 1)) if gx is None else (gx, gy)
                    out[:, :, j] = sig * np.sqrt(gx * gx + gy * gy)
                elif kind == "hessian":
                    hmax, hmin = _eig2(_d(g, 2, 0), _d(g, 1, 1), _d(g, 0, 2))
                    out[:, :, j], out[:, :, j + 1] = (sig * sig) * hmax, (sig * sig) * hmin
                elif kind == "structure_tensor":
                    gi = _blur(x, 0.5 * sig)
                    ix, iy = _d(gi, 1, 0), _d(gi, 0, 1)
                    smax, smin = _eig2(_blur(ix * ix, sig), _blur(ix * iy, sig), _blur(iy * iy, sig))
                    out[:, :, j], out[:, :, j + 1] = (sig * sig) * smax, (sig * sig) * smin
                j += _WIDTH[kind]
    return out
