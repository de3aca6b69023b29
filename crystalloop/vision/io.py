"""Reading images: PNG, JPEG, BMP, TIFF (8/16-bit, grey or RGB, multi-page), files, folders, globs.

Colour images are returned in RGB order (OpenCV's BGR is converted). Multi-page TIFF stacks give
one frame per page, named ``file.tif[page]``. Sequences are ordered naturally (``img2`` before
``img10``) so time order survives.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from crystalloop.errors import ImageError

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_stack", "expand_sources", "iter_images", "natural_key"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def natural_key(s: str) -> list:
    """Sort key that orders embedded numbers numerically (frame2 < frame10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(s))]


def read_stack(path: str | os.PathLike) -> list[np.ndarray]:
    """All frames of an image file (one for PNG/JPEG/BMP, every page of a TIFF).

    Raises
    ------
    ImageError
        The file does not exist, is empty, or cannot be decoded (message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise ImageError(f"image file {str(p)!r} is empty (0 bytes)")
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"image file {str(p)!r} has unsupported type {suffix!r}; expected one of {list(IMAGE_SUFFIXES)}")
    if suffix in (".tif", ".tiff"):
        try:
            import tifffile

            with tifffile.TiffFile(p) as tf:
                frames = []
                for page in tf.pages:
                    a = page.asarray()
                    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[2] not in (3, 4):
                        a = np.moveaxis(a, 0, -1)
                    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4):
                        frames.extend(list(a))  # (pages, rows, cols) in one page series
                    else:
                        frames.append(a)
        except Exception as exc:
            # OpenCV decodes what tifffile cannot (e.g. compression without imagecodecs)
            ok, mats = cv2.imreadmulti(str(p), flags=cv2.IMREAD_UNCHANGED)
            if not ok or not mats:
                raise ImageError(f"cannot read TIFF {str(p)!r}: {exc}") from exc
            frames = [cv2.cvtColor(m, cv2.COLOR_BGR2RGB) if m.ndim == 3 and m.shape[2] == 3 else m for m in mats]
        if not frames:
            raise ImageError(f"TIFF {str(p)!r} has no pages")
        return [_fix(a, p) for a in frames]
    data = np.fromfile(p, dtype=np.uint8)
    a = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ImageError(f"cannot decode image {str(p)!r} (corrupt or not a {suffix[1:].upper()} file)")
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA if a.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return [_fix(a, p)]


def _fix(a: np.ndarray, p: Path) -> np.ndarray:
    if a.size == 0:
        raise ImageError(f"image {str(p)!r} has zero size")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype.kind not in "uif" and a.dtype != bool:
        raise ImageError(f"image {str(p)!r} has unsupported pixel type {a.dtype}")
    return a


def read_image(path: str | os.PathLike, *, page: int = 0) -> np.ndarray:
    """One frame of an image file (``page`` of a multi-page TIFF)."""
    frames = read_stack(path)
    if not -len(frames) <= page < len(frames):
        raise ImageError(f"{str(path)!r} has {len(frames)} page(s); page {page} does not exist")
    return frames[page]


def expand_sources(sources: Iterable | str | os.PathLike) -> list[str]:
    """Files named by paths, folders (their image files) and glob patterns, in natural order.

    Missing paths and globs that match nothing are kept (reading them reports the error).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[str] = []
    for s in sources:
        s = str(s)
        p = Path(s)
        if p.is_dir():
            files = [str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            out.extend(sorted(files, key=natural_key))
        elif any(ch in s for ch in "*?["):
            hits = sorted(glob.glob(s, recursive=True), key=natural_key)
            files = [h for h in hits if Path(h).is_file() and Path(h).suffix.lower() in IMAGE_SUFFIXES]
            out.extend(files if files else [s])
        else:
            out.append(s)
    return out


def iter_images(sources, *, skipped: list | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, image)`` for every frame of every source.

    ``sources`` may mix paths/folders/globs, numpy arrays (named ``array[k]``) and
    ``(name, array)`` pairs. A file that cannot be read is appended to ``skipped`` as
    ``(file, reason)`` and skipped (or raises :class:`ImageError` when ``skipped`` is None).
    """
    if isinstance(sources, np.ndarray):
        sources = [sources]
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    k_arr = 0
    for src in sources:
        if isinstance(src, np.ndarray):
            yield f"array[{k_arr}]", src
            k_arr += 1
            continue
        if isinstance(src, tuple) and len(src) == 2 and isinstance(src[1], np.ndarray):
            yield str(src[0]), src[1]
            continue
        for f in expand_sources([src]):
            try:
                frames = read_stack(f)
            except ImageError as exc:
                if skipped is None:
                    raise
                skipped.append((f, str(exc)))
                continue
            if len(frames) == 1:
                yield f, frames[0]
            else:
                for i, fr in enumerate(frames):
                    yield f"{f}[{i}]", fr
