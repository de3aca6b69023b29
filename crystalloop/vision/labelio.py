"""Label images: the exchange format with other tools.

:func:`write_labels` writes an instance label image as a 16-bit ImageJ TIFF (0 = background,
objects 1..n, pixel size in the resolution tags and in µm), which ImageJ/Fiji, napari, Cellpose,
ilastik and scikit-image read as it is; more than 65,535 objects need 32 bits (a plain TIFF then,
since ImageJ has no 32-bit integer type). :func:`read_labels` reads label images other tools
made (TIFF or PNG, 8/16/32-bit integers, or integer-valued floats) and labels binary masks by
8-connectivity.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from crystalloop.errors import ImageError

__all__ = ["write_labels", "read_labels", "LABEL_SUFFIX"]

#: File name suffix of the label images written beside the particle table.
LABEL_SUFFIX = "_labels.tif"


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, pixel_size_um: float | None = None) -> Path:
    """Write an instance label image as a TIFF readable by ImageJ/Fiji, napari, Cellpose, ilastik.

    Parameters
    ----------
    path : path
        Output file (``.tif``).
    labels : ndarray of int (rows, cols)
        0 = background, objects numbered from 1.
    pixel_size_um : float, optional
        Stored as the TIFF resolution (pixels per µm, ImageJ ``unit=um``).

    Returns
    -------
    Path
    """
    import tifffile

    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iub":
        raise ImageError(f"labels must be a 2-D integer image, got shape {lab.shape} and dtype {lab.dtype}")
    lo = int(lab.min()) if lab.size else 0
    if lo < 0:
        raise ImageError(f"labels must be ≥ 0 (0 = background), got minimum {lo}")
    hi = int(lab.max()) if lab.size else 0
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    kw = {}
    if pixel_size_um is not None:
        kw["resolution"] = (1.0 / float(pixel_size_um), 1.0 / float(pixel_size_um))
    if hi <= np.iinfo(np.uint16).max:
        md = {"unit": "um"} if pixel_size_um is not None else {}
        tifffile.imwrite(p, lab.astype(np.uint16, copy=False), imagej=True, metadata=md, compression="zlib", **kw)
    else:
        if pixel_size_um is not None:
            kw["resolutionunit"] = "CENTIMETER"
            kw["resolution"] = (1e4 / float(pixel_size_um), 1e4 / float(pixel_size_um))
        tifffile.imwrite(p, lab.astype(np.uint32, copy=False), compression="zlib", **kw)
    return p


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an instance label image made by any tool.

    Parameters
    ----------
    path : path
        TIFF (first page) or PNG; integer values (0 = background), integer-valued floats, or a
        binary mask (one non-zero value: its 8-connected components become the objects).

    Returns
    -------
    labels : ndarray of int32 (rows, cols)
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"label image {str(p)!r} does not exist" if not p.exists()
                         else f"label image {str(p)!r} is not a file")
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(p, key=0)
        else:
            a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if a is None:
                raise ValueError("not a readable image")
    except Exception as exc:  # any decoder error: one clear message
        raise ImageError(f"cannot read label image {str(p)!r}: {exc}") from exc
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] in (3, 4) and np.all(a[..., :3] == a[..., :1]):
        a = a[..., 0]
    if a.ndim != 2:
        raise ImageError(f"label image {str(p)!r} must be 2-D (one label per pixel), got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ImageError(f"label image {str(p)!r} holds non-integer values; expected integer object ids")
    elif a.dtype.kind not in "iub":
        raise ImageError(f"label image {str(p)!r} has dtype {a.dtype}; expected integers")
    if a.size and a.min() < 0:
        raise ImageError(f"label image {str(p)!r} has negative values (minimum {a.min()}); expected 0 = background")
    if a.size and a.max() > np.iinfo(np.int32).max:
        raise ImageError(f"label image {str(p)!r} has ids above {np.iinfo(np.int32).max}")
    lab = a.astype(np.int32)
    vals = np.unique(lab[lab > 0]) if lab.any() else np.array([])
    if vals.size == 1:
        # a binary mask (e.g. 0/255): its connected components are the objects
        _, lab = cv2.connectedComponents((lab > 0).view(np.uint8) if lab.dtype == bool else (lab > 0).astype(np.uint8),
                                         connectivity=8, ltype=cv2.CV_32S)
    return lab
