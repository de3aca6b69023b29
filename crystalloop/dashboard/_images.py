"""The probe image panel: particle overlay and the current PSD of one stored image.

The image is measured with the classical vision pipeline
(:func:`crystalloop.vision.analyze_image`, default :class:`~crystalloop.vision.PipelineSettings`)
at the pixel size recorded with it; particles are outlined by status (kept, touching the
edge, out of focus) with :func:`crystalloop.vision.overlay`, and the volume distribution Q3
of the kept particles gives x10, x50 and x90. Results are cached by file, modification time
and pixel size, so a page that polls the latest image costs one analysis per new image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crystalloop.errors import ImageError

__all__ = ["ImageAnalysis", "analyze_stored_image", "scale_bar"]

_CACHE: OrderedDict[tuple, ImageAnalysis] = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 16


@dataclass(frozen=True)
class ImageAnalysis:
    """One analysed probe image.

    Attributes
    ----------
    image : bytes
        The image with particle outlines, as JPEG (quality 90: a tenth of a PNG of a noisy
        probe image, outlines still crisp).
    width_px, height_px : int
        Image size (the scale bar is drawn by the page from ``width_px`` and ``pixel_size_um``).
    pixel_size_um : float
    psd : dict
        ``n_particles`` (kept), ``size_um`` (class upper edges, µm), ``Q3`` (0-1),
        ``x10_um``, ``x50_um``, ``x90_um`` (None when no particle was kept).
    """

    image: bytes
    width_px: int
    height_px: int
    pixel_size_um: float
    psd: dict[str, Any]


def analyze_stored_image(path: str | Path, pixel_size_um: float) -> ImageAnalysis:
    """Overlay and PSD of the image file ``path`` (cached).

    Raises
    ------
    ImageError
        The file is missing or cannot be read as an image (the message names it).
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ImageError(f"Probe image {p} cannot be read: {e.strerror or e}") from None
    key = (str(p), st.st_mtime_ns, st.st_size, float(pixel_size_um))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    res = _analyze(p, float(pixel_size_um))
    with _LOCK:
        _CACHE[key] = res
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return res


def _analyze(p: Path, px: float) -> ImageAnalysis:
    import cv2

    from crystalloop.vision import analyze_image, overlay, percentile, psd_table, read_image

    img = read_image(p)
    res = analyze_image(img, pixel_size_um=px)
    parts = res.particles
    rgb = overlay(img, res.labels, parts)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB image
        raise ImageError(f"Probe image {p}: the overlay could not be encoded as JPEG")
    kept = parts[parts["kept"]] if "kept" in parts else parts
    psd: dict[str, Any] = {"n_particles": int(len(kept)), "size_um": [], "Q3": [], "x10_um": None, "x50_um": None,
                           "x90_um": None}
    if len(kept):
        tab = psd_table(kept, n_classes=25)
        x = percentile(kept, (10, 50, 90), r=3)
        psd.update({"size_um": [float(tab["size_lower_um"].iloc[0]), *tab["size_upper_um"].astype(float)],
                    "Q3": [0.0, *tab["Q3"].astype(float)],
                    "x10_um": float(x[0]), "x50_um": float(x[1]), "x90_um": float(x[2])})
    h, w = img.shape[:2]
    return ImageAnalysis(image=buf.tobytes(), width_px=int(w), height_px=int(h), pixel_size_um=px, psd=psd)


def scale_bar(width_px: int, pixel_size_um: float, *, fraction: float = 0.2) -> tuple[float, float]:
    """A round scale-bar length near ``fraction`` of the image width: (length µm, share of the width).

    >>> scale_bar(1000, 1.0)
    (200.0, 0.2)
    >>> scale_bar(640, 2.5)
    (500.0, 0.3125)
    """
    span = width_px * pixel_size_um * fraction
    k = 10.0 ** np.floor(np.log10(span))
    length = max(m * k for m in (1.0, 2.0, 5.0) if m * k <= span * 1.6)
    return float(length), float(length / (width_px * pixel_size_um))
