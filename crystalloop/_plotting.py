"""Matplotlib and PNG output shared by every area (private module, public helpers).

Plotting functions call :func:`pyplot` instead of forcing a backend themselves: the
non-interactive Agg backend is chosen only when pyplot has not been set up yet (scripts,
the CLI, lab servers without a display), so a notebook's inline or a desktop backend that
the user already chose is left alone. Figures are written with :func:`save_figure`, images
(probe frames, overlays, label images) with :func:`save_png`: both create the parent folder
and report a failure as an :class:`OSError` that names the file.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["pyplot", "save_figure", "save_png"]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot``, selecting Agg first only if pyplot is not yet imported."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: float | str = "figure", bbox_inches: str | None = None,
                close: bool = True) -> Path:
    """Save ``fig`` as PNG at ``path`` (parent folders created), close it, return the path.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Output file; written as PNG whatever its suffix.
    dpi : float or "figure"
        Resolution; ``"figure"`` keeps the one the figure was created with.
    bbox_inches : str, optional
        ``"tight"`` trims the white margin.
    close : bool
        Close the figure after saving (default), so batch jobs do not accumulate figures;
        ``False`` keeps it open for a notebook to show.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches=bbox_inches)
    if close:
        pyplot().close(fig)
    return path


def save_png(image: Any, path: str | Path) -> Path:
    """Write an image as PNG (parent folders created) and return the path.

    Parameters
    ----------
    image : array_like, shape (rows, cols) or (rows, cols, 3)
        Grey or RGB image. ``uint8`` and ``uint16`` (e.g. label images) are written as they
        are; other dtypes are scaled from their finite minimum-maximum range to ``uint8``.
    path : str or Path
        Output file.

    Raises
    ------
    OSError
        The folder cannot be created or the file cannot be written (the error names the file).
    """
    import cv2

    path = Path(path)
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype not in (np.uint8, np.uint16):
        finite = img[np.isfinite(img)] if np.issubdtype(img.dtype, np.floating) else img
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        img = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo if hi > lo else 1.0) * 255, 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = np.ascontiguousarray(img[..., ::-1])  # RGB -> BGR for OpenCV
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(errno.EIO, "the PNG could not be written", str(path))
    return path
