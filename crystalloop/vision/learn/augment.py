"""Augmentation, class weights and tiling shared by the learned estimators.

- :class:`Augmentation` — random affine warps of an image and its mask; the defaults are the
  seed-002 settings (x reflection, rotation 0–90°, x/y shear 0–45°, translation ±100 px,
  zoom 0.75–1.5).
- :func:`flips_rot180` — the seed-004 deterministic quadrupling (original, vertical flip,
  horizontal flip, 180° rotation).
- :func:`median_frequency_weights` — seed-002 class weights, median frequency / class frequency.
- :func:`tile_starts` / :func:`predict_tiled` — overlapping tiles so large frames (1280×960 and
  beyond) are processed in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from crystalloop.errors import ConfigError, ImageError

__all__ = [
    "Augmentation",
    "SEED002_AUGMENTATION",
    "flips_rot180",
    "median_frequency_weights",
    "tile_starts",
    "predict_tiled",
]


@dataclass(frozen=True)
class Augmentation:
    """Random affine augmentation of ``(H, W, C)`` images and ``(H, W)`` masks.

    Parameters
    ----------
    flip_x, flip_y : bool
        Random reflection across the vertical / horizontal axis.
    rotation_deg : (float, float)
        Range of the rotation angle (random sign).
    shear_deg : (float, float)
        Range of x and y shear angles (each drawn independently, random sign).
    translate_px : float
        Maximum translation in x and y, in pixels (scaled to the tile when the image is smaller
        than 4× the translation).
    zoom : (float, float)
        Range of the isotropic scale factor.
    p : float
        Probability that a sample is warped at all (flips are drawn independently).
    """

    flip_x: bool = True
    flip_y: bool = False
    rotation_deg: tuple[float, float] = (0.0, 90.0)
    shear_deg: tuple[float, float] = (0.0, 45.0)
    translate_px: float = 100.0
    zoom: tuple[float, float] = (0.75, 1.5)
    p: float = 0.8

    def __post_init__(self):
        for name in ("rotation_deg", "shear_deg", "zoom"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"Augmentation.{name}={(lo, hi)}: lower bound exceeds upper bound")
        if self.zoom[0] <= 0:
            raise ConfigError(f"Augmentation.zoom={self.zoom} must be positive")
        if abs(self.shear_deg[1]) >= 89:
            raise ConfigError(f"Augmentation.shear_deg={self.shear_deg} must stay below 89°")
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"Augmentation.p={self.p} must lie in [0, 1]")

    def to_dict(self) -> dict:
        """Plain-dict form (stored in a model's JSON config)."""
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def resolve(cls, value) -> Augmentation | None:
        """``None``/``False`` → no augmentation, ``"seed002"``/``True`` → defaults, a dict → fields."""
        if value is None or value is False:
            return None
        if value is True or value == "seed002":
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
            except TypeError as exc:
                raise ConfigError(f"augmentation={value!r}: {exc}") from exc
        raise ConfigError(f"augmentation={value!r}; expected None, 'seed002', a dict of Augmentation fields or an Augmentation")

    def matrix(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Draw one 2×3 affine matrix for an image of ``shape`` (rows, cols)."""
        h, w = shape
        sign = lambda: 1.0 if rng.random() < 0.5 else -1.0  # noqa: E731
        ang = np.deg2rad(sign() * rng.uniform(*self.rotation_deg))
        shx = np.tan(np.deg2rad(sign() * rng.uniform(*self.shear_deg)))
        shy = np.tan(np.deg2rad(sign() * rng.uniform(*self.shear_deg)))
        s = rng.uniform(*self.zoom)
        t_max = min(self.translate_px, 0.25 * min(h, w))
        tx, ty = rng.uniform(-t_max, t_max, size=2)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        shear = np.array([[1.0, shx], [shy, 1.0]])
        a = s * rot @ shear
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        b = c - a @ c + np.array([tx, ty])
        return np.hstack([a, b[:, None]])

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
        """Augment one sample; returns ``(image, mask)`` (mask may be None)."""
        import cv2

        img = image
        if self.flip_x and rng.random() < 0.5:
            img = img[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        if self.flip_y and rng.random() < 0.5:
            img = img[::-1]
            mask = None if mask is None else mask[::-1]
        if rng.random() < self.p:
            h, w = img.shape[:2]
            m = self.matrix((h, w), rng)
            warped = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            img = warped.reshape(image.shape)
            if mask is not None:
                mask = cv2.warpAffine(np.ascontiguousarray(mask).astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
        return np.ascontiguousarray(img), None if mask is None else np.ascontiguousarray(mask).astype(np.int64)


SEED002_AUGMENTATION = Augmentation()


def flips_rot180(images: np.ndarray) -> np.ndarray:
    """Seed-004 augmentation: stack original, vertical flip, horizontal flip and 180° rotation.

    ``images`` is ``(N, ...)`` with rows/cols on axes -2/-1 (channels-first) ; the result is
    ``(4N, ...)`` ordered as the four variants of sample 0, then of sample 1, ...
    """
    x = np.asarray(images)
    variants = [x, x[..., ::-1, :], x[..., :, ::-1], x[..., ::-1, ::-1]]
    return np.stack(variants, axis=1).reshape((-1,) + x.shape[1:])


def median_frequency_weights(masks: Sequence[np.ndarray], n_classes: int, *, class_names: Sequence[str] | None = None) -> np.ndarray:
    """Seed-002 class weights: ``median(freq) / freq_c``.

    ``freq_c`` = pixels of class c / total pixels of the images in which class c occurs (the
    definition of Eigen & Fergus used by the seed's Table 2).

    Raises
    ------
    ImageError
        If a class never occurs in the masks (its weight would be infinite) or a mask holds a
        class index ≥ ``n_classes``.
    """
    counts = np.zeros(n_classes, dtype=np.float64)
    image_pixels = np.zeros(n_classes, dtype=np.float64)
    for i, m in enumerate(masks):
        m = np.asarray(m)
        if m.size and (m.min() < 0 or m.max() >= n_classes):
            raise ImageError(f"mask {i} holds class values {int(m.min())}..{int(m.max())}; expected 0..{n_classes - 1}")
        c = np.bincount(m.ravel().astype(np.int64), minlength=n_classes)[:n_classes]
        counts += c
        image_pixels += np.where(c > 0, m.size, 0)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        names = [class_names[i] if class_names is not None else str(i) for i in missing]
        raise ImageError(
            f"class(es) {', '.join(names)} have no pixels in the training masks; every one of the "
            f"{n_classes} classes needs examples (or reduce n_classes / pass class_weight=None)"
        )
    freq = counts / image_pixels
    return (np.median(freq) / freq).astype(np.float32)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    if tile <= 2 * overlap:
        raise ConfigError(f"tile={tile} must exceed twice the overlap={overlap}")
    step = tile - 2 * overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def predict_tiled(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *, tile: int, overlap: int, multiple: int = 1) -> np.ndarray:
    """Apply ``fn`` (``(C, h, w) -> (K, h, w)``) tile by tile and stitch the centres.

    Each output pixel comes from the tile in which it lies furthest from a tile edge
    (the inner ``tile - 2*overlap`` region), so there are no seams. Images smaller than a tile
    are reflect-padded up to a multiple of ``multiple``.
    """
    c, h, w = image.shape
    ph = max(h, min(tile, _ceil_to(h, multiple)))
    pw = max(w, min(tile, _ceil_to(w, multiple)))
    ph, pw = _ceil_to(ph, multiple), _ceil_to(pw, multiple)
    if (ph, pw) != (h, w):
        mode = "reflect" if ph - h < h and pw - w < w else "edge"
        image = np.pad(image, ((0, 0), (0, ph - h), (0, pw - w)), mode=mode)
    th, tw = min(tile, ph), min(tile, pw)
    if th % multiple or tw % multiple:
        raise ImageError(f"tile {th}×{tw} is not a multiple of {multiple}")
    rows, cols = tile_starts(ph, th, overlap), tile_starts(pw, tw, overlap)
    out = None
    for r in rows:
        r0 = 0 if r == rows[0] else r + overlap
        r1 = ph if r == rows[-1] else r + th - overlap
        for cc in cols:
            c0 = 0 if cc == cols[0] else cc + overlap
            c1 = pw if cc == cols[-1] else cc + tw - overlap
            pred = fn(image[:, r : r + th, cc : cc + tw])
            if out is None:
                out = np.zeros((pred.shape[0], ph, pw), dtype=pred.dtype)
            out[:, r0:r1, c0:c1] = pred[:, r0 - r : r1 - r, c0 - cc : c1 - cc]
    return out[:, :h, :w]


def _ceil_to(n: int, m: int) -> int:
    return int(-(-n // m) * m)
