"""End-to-end training and prediction workflows (what the ``crystalloop vision`` commands call).

Each function loads data, trains or applies a model, and writes into an output folder: the model
(``model/``: ``model.pt`` + ``config.json``), the training curve (``training.png``), metrics
(``metrics.json``) and tables (CSV). They are plain functions, so a notebook can call them too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop._plotting import save_png
from crystalloop.errors import ConfigError, ImageError, SchemaError

__all__ = ["train_segmenter", "train_classifier", "train_regressor", "predict_images", "read_images"]


def read_images(paths: Sequence[str | Path], *, channels: int = 1) -> list[np.ndarray]:
    """Read image files; RGB is converted to gray when ``channels=1``."""
    import cv2

    from crystalloop.vision.io import read_image

    out = []
    for p in paths:
        img = read_image(p)
        if channels == 1 and img.ndim == 3 and img.shape[2] in (3, 4):
            img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2GRAY)
        out.append(img)
    return out


def _expand(sources: Sequence[str | Path]) -> list[Path]:
    from crystalloop.vision.io import expand_sources

    files = [Path(f) for f in expand_sources(list(sources))]
    for p in files:
        if not p.is_file():
            raise ImageError(f"image file {p} does not exist")
    if not files:
        raise ImageError(f"no image files found in {list(map(str, sources))}")
    return files


def _write(out: Path, name: str, obj) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / name
    if isinstance(obj, pd.DataFrame):
        obj.to_csv(p)
    else:
        p.write_text(json.dumps(obj, indent=2, default=float))
    return p


def _split(n: int, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return idx[k:], idx[:k]


def train_segmenter(
    out_dir: str | Path,
    *,
    coco: str | Path | None = None,
    image_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
    mask_suffix: str = "_mask",
    synthetic: int = 0,
    targets: str = "binary",
    test_fraction: float = 0.25,
    pixel_size_um: float = 1.0,
    postprocess: dict | None = None,
    random_state: int | None = 0,
    progress: bool = False,
    **params,
) -> dict:
    """Train a :class:`UNetSegmenter` and evaluate it on held-out images.

    Data (one of): ``coco`` (+ ``image_dir``) annotations; ``image_dir`` with masks beside the
    images or in ``mask_dir``; or ``synthetic`` renderer images. Masks are instance labels
    converted by ``targets`` (``binary``, ``boundary``), or already class maps
    (``targets="classes"``; ``"seed002"`` for synthetic three-class images).

    Writes ``model/``, ``training.png``, ``metrics.json`` (pixel accuracy, IoU per class,
    instance F1 at IoU 0.5 and x10/x50/x90 errors on the test images) and returns the metrics.
    """
    from crystalloop.vision.learn.data import labels_to_classes, load_coco, load_mask_folder
    from crystalloop.vision.learn.metrics import iou_per_class, pixel_accuracy, segmentation_scores
    from crystalloop.vision.learn.synth import make_segmentation_set
    from crystalloop.vision.learn.train import plot_history
    from crystalloop.vision.learn.unet import UNetSegmenter

    if targets not in ("binary", "boundary", "classes", "seed002"):
        raise ConfigError(f"targets={targets!r}; expected 'binary', 'boundary', 'classes' or 'seed002'")
    out = Path(out_dir)
    channels = int(params.get("channels", 1))
    class_masks = None
    if coco is not None:
        images, labels, _ = load_coco(coco, image_dir, channels=channels)
    elif image_dir is not None:
        images, labels, _ = load_mask_folder(image_dir, mask_dir, mask_suffix=mask_suffix, channels=channels)
    elif synthetic > 0:
        kind = "seed002" if targets == "seed002" else "binary"
        images, class_masks, labels, _ = make_segmentation_set(int(synthetic), classes=kind, pixel_size_um=pixel_size_um,
                                                               seed=random_state)
    else:
        raise ConfigError("give training data: coco=..., image_dir=... or synthetic=N")
    # instance metrics need instance labels: all cases but class maps read from files
    has_instances = targets in ("binary", "boundary") or class_masks is not None
    if targets in ("classes", "seed002"):
        masks = class_masks if class_masks is not None else [np.asarray(m) for m in labels]
        n_classes = int(max(int(np.max(m)) for m in masks) + 1)
        object_classes = [n_classes - 1] if targets == "seed002" else None
    else:
        masks = [labels_to_classes(lab, targets) for lab in labels]
        n_classes = 2 if targets == "binary" else 3
        object_classes = [1] if targets == "boundary" else None
    tr, te = _split(len(images), test_fraction, random_state)
    est = UNetSegmenter(n_classes=n_classes, object_classes=object_classes, random_state=random_state,
                        progress=progress, **params)
    est.fit([images[i] for i in tr], [masks[i] for i in tr])
    est.save(out / "model")
    plot_history(est.history_, out / "training.png", title="U-Net training")
    metrics: dict = {"n_train": len(tr), "n_test": len(te), "n_classes": n_classes, "targets": targets,
                     "train_time_s": est.history_[-1]["time_s"]}
    if len(te):
        test_imgs = [images[i] for i in te]
        pred = est.predict(test_imgs)
        metrics["pixel_accuracy"] = float(np.mean([pixel_accuracy(masks[i], p) for i, p in zip(te, pred, strict=True)]))
        ious = np.nanmean([iou_per_class(masks[i], p, n_classes) for i, p in zip(te, pred, strict=True)], axis=0)
        metrics["iou_per_class"] = {name: float(v) for name, v in zip(est.classes_names_, ious, strict=True)}
        if has_instances:
            inst = est.segment_instances(test_imgs, **(postprocess or {}))
            metrics["instances"] = segmentation_scores([np.asarray(labels[i]) for i in te], inst, pixel_size_um=pixel_size_um)
    _write(out, "metrics.json", metrics)
    return metrics


def _read_label_csv(path: Path) -> tuple[list[Path], pd.DataFrame]:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read label table {path}: {exc}") from exc
    if "file" not in df.columns:
        raise SchemaError(f"label table {path} needs a 'file' column (image path relative to the table) and one 0/1 column per label")
    files = [(path.parent / f) for f in df["file"].astype(str)]
    return files, df.drop(columns=["file"])


def train_classifier(
    out_dir: str | Path,
    *,
    labels_csv: str | Path | None = None,
    synthetic: int = 0,
    test_fraction: float = 0.2,
    random_state: int | None = 0,
    progress: bool = False,
    **params,
) -> pd.DataFrame:
    """Train a multi-label :class:`CrystalClassifier`; write the model, ``training.png``,
    ``report.csv`` (precision/recall/F1 per label on the test images, as in seed 001),
    ``thresholds.json`` and ``metrics.json``. Returns the report.

    ``labels_csv``: a table with a ``file`` column (paths relative to the table) and one 0/1
    column per label; or ``synthetic=N`` renderer images with the ten seed-001 labels.
    """
    from crystalloop.vision.learn.classify import CrystalClassifier
    from crystalloop.vision.learn.synth import make_crystal_images
    from crystalloop.vision.learn.train import plot_history

    out = Path(out_dir)
    if labels_csv is not None:
        files, Y = _read_label_csv(Path(labels_csv))
        X = read_images(files, channels=int(params.get("channels", 1)))
    elif synthetic > 0:
        X, Y = make_crystal_images(int(synthetic), seed=random_state)
        X = list(X)
    else:
        raise ConfigError("give training data: labels_csv=... or synthetic=N")
    tr, te = _split(len(X), test_fraction, random_state)
    est = CrystalClassifier(random_state=random_state, progress=progress, **params)
    est.fit([X[i] for i in tr], Y.iloc[tr].reset_index(drop=True))
    est.save(out / "model")
    plot_history(est.history_, out / "training.png", title="classifier training")
    _write(out, "thresholds.json", dict(zip(est.labels_, map(float, est.thresholds_), strict=True)))
    report = est.report([X[i] for i in te], Y.iloc[te].reset_index(drop=True)) if len(te) else pd.DataFrame()
    _write(out, "report.csv", report)
    _write(out, "metrics.json", {"n_train": len(tr), "n_test": len(te), "train_time_s": est.history_[-1]["time_s"],
                                 "micro_f1": float(report.loc["micro avg", "f1"]) if len(te) else None})
    return report


def train_regressor(
    out_dir: str | Path,
    *,
    table_csv: str | Path | None = None,
    target: str = "target",
    group: str | None = "group",
    synthetic: int = 0,
    cross_validate: bool = False,
    compare_augmentation: bool = False,
    random_state: int | None = 0,
    progress: bool = False,
    **params,
) -> dict:
    """Train an :class:`ImageRegressor` on all images, optionally with leave-one-group-out CV.

    ``table_csv``: ``file`` column + ``target`` (+ ``group``: the sample each image belongs
    to); or ``synthetic=N`` groups of porous-structure images. Writes the model,
    ``training.png``, ``cv.csv`` (seed-004 Table 2: per-group relative errors) and
    ``metrics.json``.
    """
    from crystalloop.vision.learn.regress import ImageRegressor, leave_one_group_out
    from crystalloop.vision.learn.synth import make_regression_set
    from crystalloop.vision.learn.train import plot_history

    out = Path(out_dir)
    if table_csv is not None:
        files, df = _read_label_csv(Path(table_csv))
        if target not in df.columns:
            raise SchemaError(f"{table_csv} has no target column {target!r}; columns: {list(df.columns)}")
        X = read_images(files)
        y = df[target].to_numpy(float)
        groups = df[group].astype(str).to_numpy() if group and group in df.columns else np.asarray([f.stem for f in files])
    elif synthetic > 0:
        X, y, groups = make_regression_set(int(synthetic), 4, seed=random_state)
    else:
        raise ConfigError("give training data: table_csv=... or synthetic=N")
    est = ImageRegressor(random_state=random_state, progress=progress, **params)
    metrics: dict = {"n_images": len(y), "n_groups": int(len(set(groups)))}
    if cross_validate:
        cv = leave_one_group_out(est, X, y, groups, compare_augmentation=compare_augmentation, progress=progress)
        _write(out, "cv.csv", cv)
        metrics["cv_mean_rel_error"] = {c: float(cv.loc["mean", c]) for c in cv.columns if c.startswith("rel_error")}
    est.fit(X, y)
    est.save(out / "model")
    plot_history(est.history_, out / "training.png", title="regressor training")
    metrics["train_time_s"] = est.history_[-1]["time_s"]
    metrics["train_r2"] = est.score(X, y)
    _write(out, "metrics.json", metrics)
    return metrics


def predict_images(model_dir: str | Path, images: Sequence[str | Path], out_dir: str | Path, *,
                   pixel_size_um: float | None = None, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Apply a saved model to image files and write ``predictions.csv`` (and, for a
    segmenter, one label image per input under ``labels/`` plus ``particles.csv`` when
    ``pixel_size_um`` is given). Returns the predictions table (one row per image).
    """

    from crystalloop.vision.learn.classify import CrystalClassifier
    from crystalloop.vision.learn.impurity import (
        AutoencoderDetector,
        FeatureDetector,
        ImpurityClassifier,
    )
    from crystalloop.vision.learn.regress import ImageRegressor
    from crystalloop.vision.learn.train import load_model
    from crystalloop.vision.learn.unet import UNetSegmenter

    model = load_model(model_dir)
    files = _expand(images)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    channels = int(getattr(model, "channels", 1))
    rows, parts = [], []
    for k, f in enumerate(files):
        img = read_images([f], channels=channels)
        row: dict = {"file": str(f)}
        if isinstance(model, UNetSegmenter):
            lab = model.segment_instances(img)[0]
            save_png(lab.astype(np.uint16), out / "labels" / f"{f.stem}_labels.png")
            row["n_objects"] = int(lab.max())
            if pixel_size_um is not None and lab.max():
                from crystalloop.vision.measure import measure_particles

                p = measure_particles(lab, img[0], pixel_size_um=pixel_size_um)
                p.insert(0, "file", str(f))
                parts.append(p)
        elif isinstance(model, CrystalClassifier):
            row.update(model.predict_frame(img).iloc[0].to_dict())
        elif isinstance(model, ImageRegressor):
            row["prediction"] = float(model.predict(img)[0])
        elif isinstance(model, ImpurityClassifier):
            row["impurity_proba"] = float(model.predict_proba(img)[0, 1])
            row["impurity"] = int(row["impurity_proba"] >= 0.5)
        elif isinstance(model, (AutoencoderDetector, FeatureDetector)):
            row["anomaly_score"] = float(model.score_samples(img)[0])
            row["impurity"] = int(row["anomaly_score"] > model.threshold_)
        rows.append(row)
        if progress is not None:
            progress(k + 1, len(files))
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    if parts:
        pd.concat(parts, ignore_index=True).to_csv(out / "particles.csv", index=False)
    return table
