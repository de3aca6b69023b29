"""Background estimation on a reduced grid, shared by :mod:`~crystalloop.vision.preprocess` and the
tiled pipeline (:mod:`~crystalloop.vision.tiling`): the grid reduction factor, the block means of
the full image (strip by strip gives identical blocks), the background on the reduced grid and its
bilinear interpolation at any region of full-resolution pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from crystalloop.vision.segment import disk

__all__ = ["reduction", "block_mean", "small_background", "upsample", "median_big"]


def reduction(h: int, w: int, radius: float, method: str) -> int:
    """Grid reduction factor of the background estimate."""
    return 1 if method == "morphological" else int(max(1, min(radius // 4, 16, h // 4 or 1, w // 4 or 1)))


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean of every ``f × f`` block, blocks aligned to the image origin (partial blocks at the
    bottom and right edges average the pixels they have). Each block's value depends on its own
    pixels only, so horizontal strips starting at multiples of ``f`` give identical blocks
    (what tiled processing relies on)."""
    h, w = img.shape
    hq, wq = h // f, w // f
    out = np.empty((-(-h // f), -(-w // f)), np.float32)
    if hq and wq:
        out[:hq, :wq] = cv2.resize(img[: hq * f, : wq * f], (wq, hq), interpolation=cv2.INTER_AREA)
    rc, rr = w - wq * f, h - hq * f
    # remainders: float64 sums of at most f² float32 values (exact for 8/16-bit data)
    if rc and hq:
        out[:hq, wq] = img[: hq * f, wq * f :].astype(np.float64).reshape(hq, f, rc).sum(axis=(1, 2)) / (f * rc)
    if rr and wq:
        out[hq, :wq] = img[hq * f :, : wq * f].astype(np.float64).reshape(rr, wq, f).sum(axis=(0, 2)) / (rr * f)
    if rr and rc:
        out[hq, wq] = img[hq * f :, wq * f :].astype(np.float64).sum() / (rr * rc)
    return out


def small_background(small: np.ndarray, r: int, method: str, pol: str) -> np.ndarray:
    """Background on the reduced grid: median, or closing/opening with a disc then a Gaussian."""
    if method == "median":
        return median_big(small, 2 * r + 1).astype(np.float32)
    op = cv2.MORPH_CLOSE if pol == "dark" else cv2.MORPH_OPEN
    pad = cv2.copyMakeBorder(small, r, r, r, r, cv2.BORDER_REFLECT)
    bg = cv2.morphologyEx(pad, op, disk(r))[r:-r, r:-r]
    return cv2.GaussianBlur(bg, (0, 0), sigmaX=max(r / 2.0, 1.0), borderType=cv2.BORDER_REFLECT)


def median_big(img: np.ndarray, k: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(img, size=k, mode="reflect")


def upsample(small: np.ndarray, f: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Bilinear interpolation of the reduced grid at full-resolution pixels ``[r0:r1, c0:c1]``
    (pixel centres: block ``k`` sits at ``(k + ½) f − ½``). Element-wise float32 arithmetic on
    weights that depend on the global pixel position only: a tile gets exactly the values the
    whole image would."""
    hs, ws = small.shape

    def axis(a0, a1, n):
        x = (np.arange(a0, a1, dtype=np.float64) + 0.5) / f - 0.5
        x = np.clip(x, 0.0, n - 1.0)
        i = np.minimum(np.floor(x).astype(np.intp), max(n - 2, 0))
        t = (x - i).astype(np.float32)
        return i, np.minimum(i + 1, n - 1), t

    i0, i1, ty = axis(r0, r1, hs)
    j0, j1, tx = axis(c0, c1, ws)
    rows = np.unique(np.concatenate((i0, i1)))
    sub = small[rows]  # only the grid rows this region needs
    a = sub[:, j0] * (np.float32(1) - tx) + sub[:, j1] * tx
    k0, k1 = np.searchsorted(rows, i0), np.searchsorted(rows, i1)
    out = np.take(a, k0, axis=0)
    np.multiply(out, (np.float32(1) - ty)[:, None], out=out)
    tmp = np.take(a, k1, axis=0)
    np.multiply(tmp, ty[:, None], out=tmp)
    np.add(out, tmp, out=out)
    return out
