"""Few-shot training of a segmentation model from a lab's own annotations (``vision train-seg``).

:func:`train_segmentation` reads annotations (:func:`~crystalloop.vision.learn.annotations.load_annotations`),
estimates how well the model will do on new images, trains the final model on everything and
writes a model folder::

    MODEL/model/          the segmenter (pixel classifier: forest.skops + settings.json;
                          U-Net: model.pt + config.json), opened by load_segmenter
    MODEL/training.json   training data (files, formats, sizes, labelled pixels per class),
                          method and settings, seed, software versions, wall time
    MODEL/scores.json     validation scores (instance F1 at IoU 0.5, precision, recall,
                          median ECD error) and how they were obtained

Validation: with two or more annotated images of which one is complete, the last complete one is
held out, a model is trained on the others and scored on it; with a single complete image, the
model is trained on its left half (the right half unlabelled) and scored on the right half.
Partial annotations (scribbles, regions of interest) are used for training only.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError
from crystalloop.vision.learn.annotations import Annotation, load_annotations

__all__ = ["SEGMENTATION_METHODS", "train_segmentation", "instance_scores", "make_segmenter"]

#: Trainable segmenters: ilastik-style pixel classifier and the three-class U-Net.
SEGMENTATION_METHODS = ("pixel", "unet")
_UNET_CLASSES = ["background", "interior", "boundary"]


def instance_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float]:
    """Instance F1 at IoU 0.5 and the median ECD error of a prediction against a label image.

    ``median_ecd_error`` is (median ECD of the predicted objects) / (median of the annotated) − 1,
    number-weighted, in pixels (a ratio, so the pixel size cancels); NaN when either is empty.
    """
    from crystalloop.vision.learn.metrics import instance_f1

    f = instance_f1(true_labels, pred_labels)

    def med(lab):
        a = np.bincount(np.asarray(lab).ravel().astype(np.int64))[1:]
        a = a[a > 0]
        return float(np.median(np.sqrt(4 * a / np.pi))) if a.size else float("nan")

    mt, mp = med(true_labels), med(pred_labels)
    return {"f1": float(f["f1"]), "precision": float(f["precision"]), "recall": float(f["recall"]),
            "n_true": int(len(np.unique(true_labels)) - (1 if (np.asarray(true_labels) == 0).any() else 0)),
            "n_pred": int(len(np.unique(pred_labels)) - (1 if (np.asarray(pred_labels) == 0).any() else 0)),
            "median_ecd_error": (mp / mt - 1.0) if np.isfinite(mt) and np.isfinite(mp) else float("nan")}


def make_segmenter(method: str, *, channels: int, random_state: int = 0, **params):
    """A fresh, unfitted segmenter of ``method`` (``pixel`` or ``unet``) with ``params``."""
    if method == "pixel":
        from crystalloop.vision.learn.pixel import PixelClassifier

        return PixelClassifier(random_state=random_state, **params)
    if method == "unet":
        from crystalloop.vision.learn.unet import UNetSegmenter

        defaults = {"base_filters": 16, "depth": 3, "tile_size": 128, "epochs": 30, "tiles_per_epoch": 64,
                    "validation_fraction": 0.0, "augmentation": "seed002", "normalize": "percentile"}
        defaults.update(params)
        return UNetSegmenter(n_classes=3, class_names=_UNET_CLASSES, object_classes=[1], channels=channels,
                             random_state=random_state, **defaults)
    raise ConfigError(f"method={method!r}; expected one of {list(SEGMENTATION_METHODS)}")


def _channels(anns: Sequence[Annotation], channel: int | None) -> int:
    ch = {1 if (a.image.ndim == 2 or channel is not None) else min(a.image.shape[2], 3) for a in anns}
    if len(ch) > 1:
        raise ConfigError(f"annotated images mix grey and colour ({sorted(ch)} channels); choose one channel "
                          "(--channel) or convert them")
    return ch.pop()


def _fit(method: str, anns: Sequence[Annotation], channels: int, random_state: int, params: dict,
         synthetic: int, boundary_px: int, masks_override: list | None = None):
    est = make_segmenter(method, channels=channels, random_state=random_state, **params)
    images = [a.image for a in anns]
    targets = masks_override or [a.targets(boundary_px=boundary_px) for a in anns]
    if method == "pixel":
        return est.fit(images, targets)
    # U-Net: classes 0 background, 1 interior, 2 boundary; complete annotations only
    for a, t in zip(anns, targets, strict=True):
        if (t == 0).any():
            raise ConfigError(f"annotation {a.name!r} is partial (unlabelled pixels); the U-Net needs complete "
                              "annotations: use --method pixel for scribbles or regions of interest")
    ims = [a.image for a in anns]
    masks = [(t.astype(np.int64) - 1) for t in targets]
    if synthetic:
        from crystalloop.vision.learn.synth import make_segmentation_set

        s_im, _, s_lab, _ = make_segmentation_set(int(synthetic), classes="boundary", seed=random_state)
        for im, lab in zip(s_im, s_lab, strict=True):
            a = Annotation("synthetic", im, lab)
            ims.append(im if channels == 1 else np.repeat(im[:, :, None], 3, axis=2))
            masks.append(a.targets(boundary_px=boundary_px).astype(np.int64) - 1)
    return est.fit(ims, masks)


def _validate(method, anns, channels, random_state, params, synthetic, boundary_px) -> dict:
    complete = [i for i, a in enumerate(anns) if a.complete]
    if not complete:
        return {"how": "none: no complete annotation to score on (partial annotations train only)"}
    t0 = time.perf_counter()
    if len(anns) >= 2:
        k = complete[-1]
        train = [a for i, a in enumerate(anns) if i != k]
        est = _fit(method, train, channels, random_state, params, synthetic, boundary_px)
        held = anns[k]
        pred = est.predict_labels(held.image)
        s = instance_scores(held.labels, pred)
        how = f"trained on {len(train)} image(s), scored on held-out {held.name!r}"
    else:
        a = anns[0]
        w = a.image.shape[1]
        half = w // 2
        t = a.targets(boundary_px=boundary_px)
        t[:, half:] = 0
        if method == "unet":
            left = Annotation(a.name + "[left]", a.image[:, :half], a.labels[:, :half])
            est = _fit(method, [left], channels, random_state, params, synthetic, boundary_px)
        else:
            est = _fit(method, [a], channels, random_state, params, synthetic, boundary_px, masks_override=[t])
        right = Annotation(a.name + "[right]", a.image[:, half:], a.labels[:, half:])
        pred = est.predict_labels(right.image)
        s = instance_scores(right.labels, pred)
        how = f"trained on the left half of {a.name!r}, scored on its right half"
    s["how"] = how
    s["wall_s"] = round(time.perf_counter() - t0, 2)
    return s


def train_segmentation(
    annotations: str | Path | Sequence[Annotation],
    out_dir: str | Path,
    *,
    method: str = "pixel",
    format: str = "auto",
    mask_dir: str | Path | None = None,
    channel: int | None = None,
    validate: bool = True,
    synthetic: int = 0,
    boundary_px: int = 1,
    random_state: int = 0,
    overwrite: bool = False,
    **params,
) -> dict:
    """Train a segmentation model from annotations and write its model folder.

    Parameters
    ----------
    annotations : path or list of Annotation
        Folder/file in any format of :func:`load_annotations`, or annotations already read.
    out_dir : path
        Model folder to write (refused if it holds files, unless ``overwrite``).
    method : {"pixel", "unet"}
        Random-forest pixel classifier (seconds) or three-class U-Net (minutes).
    format, mask_dir
        Passed to :func:`load_annotations`.
    channel : int, optional
        Use one channel of colour images (default: all channels).
    validate : bool
        Estimate the scores on held-out data first (module docstring).
    synthetic : int
        U-Net only: add this many renderer images (with exact labels) to the training set.
    boundary_px : int
        Width of the boundary class along object outlines, px.
    random_state : int
        Seed (same data + seed → identical model).
    **params
        Estimator parameters (:class:`PixelClassifier` or :class:`UNetSegmenter`).

    Returns
    -------
    dict
        The ``training.json`` content with the validation scores under ``"scores"``.
    """
    if method not in SEGMENTATION_METHODS:
        raise ConfigError(f"method={method!r}; expected one of {list(SEGMENTATION_METHODS)}")
    if synthetic and method != "unet":
        raise ConfigError(f"synthetic={synthetic}: renderer images are added to U-Net training only (method='unet')")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"model folder {str(out)!r} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"model folder {str(out)!r} is not empty; choose a new folder or pass overwrite (--overwrite)")
    source = str(annotations) if isinstance(annotations, (str, Path)) else "annotations given in memory"
    anns = load_annotations(annotations, format=format, mask_dir=mask_dir) if isinstance(annotations, (str, Path)) \
        else list(annotations)
    if not anns:
        raise ConfigError("no annotations to train on")
    channels = _channels(anns, channel)
    if method == "pixel":
        if channel is not None:
            params["channel"] = channel
        fit_anns = anns
    else:
        if channel is not None:
            params["input_channel"] = channel
        fit_anns = anns
    scores = _validate(method, fit_anns, channels, random_state, params, synthetic, boundary_px) if validate \
        else {"how": "not validated (validate=False)"}
    t0 = time.perf_counter()
    est = _fit(method, fit_anns, channels, random_state, params, synthetic, boundary_px)
    train_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    est.save(out / "model")
    import sklearn

    targets = [a.targets(boundary_px=boundary_px) for a in anns]
    info = {
        "method": method,
        "source": source,
        "images": [{"name": a.name, "source": a.source, "shape": list(a.image.shape), "complete": a.complete,
                    "objects": int(a.labels.max()) if a.labels is not None else 0,
                    "labelled_px": {k: int((t == v).sum()) for k, v in
                                    (("background", 1), ("interior", 2), ("boundary", 3))}}
                   for a, t in zip(anns, targets, strict=True)],
        "settings": {"channel": channel, "channels": channels, "boundary_px": boundary_px, "synthetic": synthetic,
                     "random_state": random_state, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}},
        "train_wall_s": round(train_s, 2),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__},
    }
    (out / "training.json").write_text(json.dumps(info, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    info["scores"] = scores
    return info
