"""The segmenter interface: anything that turns an image into an instance label image.

The classical pipeline segments by threshold and watershed; a trained model (the pixel
classifier or the U-Net of :mod:`crystalloop.vision.learn`) can take that step instead. The
pipeline only needs :class:`Segmenter`: ``predict_labels(image)`` returns an int32 label image
(0 background, 1..n objects) of the image's ``(rows, cols)``, which the pipeline then measures
exactly as its own labels. :func:`load_segmenter` opens a model folder written by
``crystalloop vision train-seg`` (or by the estimators' ``save``), without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from crystalloop.errors import ImageError, ModelError

__all__ = ["Segmenter", "load_segmenter", "segment_labels"]


@runtime_checkable
class Segmenter(Protocol):
    """An object that segments one image into instances.

    ``predict_labels(image)`` takes a ``(rows, cols)`` or ``(rows, cols, channels)`` array of
    any numeric dtype and returns an int32 array of shape ``(rows, cols)``: 0 background,
    1..n one label per object. Pixel size does not enter: sizes are measured afterwards.
    """

    def predict_labels(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        ...


def segment_labels(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """Call ``segmenter.predict_labels(image)`` and check what comes back (shape, integer dtype)."""
    if not isinstance(segmenter, Segmenter):
        raise ModelError(f"segmenter {type(segmenter).__name__} has no predict_labels(image) method")
    img = np.asarray(image)
    lab = np.asarray(segmenter.predict_labels(img))
    if lab.shape != img.shape[:2]:
        raise ImageError(f"segmenter {type(segmenter).__name__} returned labels of shape {lab.shape} for an image of "
                         f"shape {img.shape[:2]}; expected the image's (rows, cols)")
    if lab.dtype.kind not in "iu":
        raise ImageError(f"segmenter {type(segmenter).__name__} returned labels of dtype {lab.dtype}; expected integers")
    return lab.astype(np.int32, copy=False)


def load_segmenter(path: str | Path, *, device: str | None = "cpu") -> Segmenter:
    """Open a trained segmentation model folder.

    Parameters
    ----------
    path : path
        A folder written by ``crystalloop vision train-seg`` (its ``model/`` subfolder is used
        when present) or by :meth:`PixelClassifier.save` / :meth:`UNetSegmenter.save`.
    device : str
        U-Net only: ``cpu``, ``cuda`` or ``auto``.

    Returns
    -------
    Segmenter
        A :class:`~crystalloop.vision.learn.PixelClassifier` (random forest, loaded through skops
        with a fixed trusted-type list) or a :class:`~crystalloop.vision.learn.UNetSegmenter`
        (``state_dict`` loaded with ``weights_only=True``).
    """
    d = Path(path)
    if not d.is_dir():
        raise ModelError(f"model folder {str(d)!r} does not exist; expected the --out folder of crystalloop vision train-seg")
    if (d / "model").is_dir():
        d = d / "model"
    if (d / "settings.json").is_file():
        try:
            kind = json.loads((d / "settings.json").read_text(encoding="utf-8")).get("kind")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise ModelError(f"{str(d / 'settings.json')!r} is not a valid model settings file: {exc}") from exc
        if kind == "pixel_classifier":
            from crystalloop.vision.learn.pixel import PixelClassifier

            return PixelClassifier.load(d)
        raise ModelError(f"{str(d / 'settings.json')!r} describes a model of kind {kind!r}; expected 'pixel_classifier'")
    if (d / "config.json").is_file():
        from crystalloop.vision.learn.train import load_model

        est = load_model(d, device=device)
        if not isinstance(est, Segmenter):
            raise ModelError(f"{str(d)!r} holds a {type(est).__name__}, which does not segment images; "
                             "expected a segmentation model (train it with crystalloop vision train-seg)")
        return est
    raise ModelError(f"{str(d)!r} is not a segmentation model folder: expected settings.json (pixel classifier) "
                     "or config.json + model.pt (U-Net)")
