"""Input checks shared by the vision functions (clear errors, never ``assert``)."""

from __future__ import annotations

import numpy as np

from crystalloop.errors import ConfigError, ImageError

__all__: list[str] = []

_OK_KINDS = "biuf"


def check_pixel_size(pixel_size_um, name: str = "pixel_size_um") -> float:
    """Return ``pixel_size_um`` as a positive finite float or raise :class:`ConfigError`."""
    if pixel_size_um is None:
        raise ConfigError(f"{name} is required: give the size of one pixel in µm (e.g. {name}=1.5)")
    if isinstance(pixel_size_um, bool):
        raise ConfigError(f"{name} must be a positive number of µm per pixel, got {pixel_size_um!r}")
    try:
        v = float(pixel_size_um)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number of µm per pixel, got {pixel_size_um!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number of µm per pixel, got {pixel_size_um!r}")
    return v


def check_image(image, name: str = "image", *, allow_color: bool = True) -> np.ndarray:
    """Validate an image array: non-empty, 2-D (or 3-D colour), numeric, finite."""
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ImageError(f"{name} must be a numpy array, got {type(image).__name__}") from exc
    if image.dtype.kind not in _OK_KINDS:
        raise ImageError(
            f"{name} has unsupported dtype {image.dtype}; expected bool, integer (uint8/uint16/...) or float"
        )
    if image.size == 0 or 0 in image.shape:
        raise ImageError(f"{name} is empty (shape {image.shape}); expected at least 1×1 pixels")
    if image.ndim == 3 and allow_color and image.shape[2] in (1, 3, 4):
        pass
    elif image.ndim != 2:
        raise ImageError(
            f"{name} must be 2-D (rows, cols){' or (rows, cols, 3|4) colour' if allow_color else ''}, got shape {image.shape}"
        )
    if image.dtype.kind == "f" and not _all_finite(image):
        bad = int(np.count_nonzero(~np.isfinite(image)))
        raise ImageError(f"{name} contains {bad} NaN/infinite pixel(s); expected finite values")
    return image


def _all_finite(image: np.ndarray) -> bool:
    """No NaN/inf pixel."""
    # min/max propagate NaN and expose ±inf: two vectorised reductions, no boolean temporary
    return bool(np.isfinite(image.min()) and np.isfinite(image.max()))


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ImageError(
            f"{name_a} shape {a.shape[:2]} does not match {name_b} shape {b.shape[:2]}; they must cover the same pixels"
        )


def to_gray_float(image: np.ndarray) -> np.ndarray:
    """Grey-level float32 view of an image (colour → luminance), keeping the native value range."""
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        else:
            rgb = image[:, :, :3].astype(np.float32)
            return (0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]).astype(np.float32)
    return image.astype(np.float32, copy=False)
