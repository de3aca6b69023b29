"""Segmentation metrics: pixel accuracy, IoU per class, instance F1 at IoU 0.5, PSD percentile error.

All functions take plain arrays: class maps ``(H, W)`` for the pixel metrics and instance label
images (0 = background) for the instance and PSD metrics, so they score the classical pipeline
and the CNN alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystalloop.errors import ConfigError, ImageError

__all__ = [
    "pixel_accuracy",
    "iou_per_class",
    "instance_f1",
    "psd_percentile_error",
    "segmentation_scores",
]


def _pair(y_true, y_pred, what: str):
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.shape != b.shape:
        raise ImageError(f"{what}: ground truth is {a.shape} but prediction is {b.shape}")
    if a.ndim != 2:
        raise ImageError(f"{what}: expected 2-D maps, got shape {a.shape}")
    return a, b


def pixel_accuracy(y_true, y_pred) -> float:
    """Share of pixels whose predicted class equals the true class."""
    a, b = _pair(y_true, y_pred, "pixel_accuracy")
    return float((a == b).mean())


def iou_per_class(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Intersection over union per class (NaN for a class absent from both maps)."""
    a, b = _pair(y_true, y_pred, "iou_per_class")
    a = a.astype(np.int64).ravel()
    b = b.astype(np.int64).ravel()
    if a.size and (a.max() >= n_classes or b.max() >= n_classes or a.min() < 0 or b.min() < 0):
        raise ImageError(f"iou_per_class: class values exceed 0..{n_classes - 1}")
    cm = np.bincount(a * n_classes + b, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def _match(true_lab: np.ndarray, pred_lab: np.ndarray):
    """IoU of every overlapping (true, pred) pair; returns (ious, true ids, pred ids, n_true, n_pred)."""
    t = true_lab.astype(np.int64).ravel()
    p = pred_lab.astype(np.int64).ravel()
    t_ids, t_inv = np.unique(t, return_inverse=True)
    p_ids, p_inv = np.unique(p, return_inverse=True)
    t_area = np.bincount(t_inv)
    p_area = np.bincount(p_inv)
    key = t_inv * len(p_ids) + p_inv
    pairs, inter = np.unique(key, return_counts=True)
    ti, pi = pairs // len(p_ids), pairs % len(p_ids)
    keep = (t_ids[ti] > 0) & (p_ids[pi] > 0)
    ti, pi, inter = ti[keep], pi[keep], inter[keep]
    iou = inter / (t_area[ti] + p_area[pi] - inter)
    return iou, t_ids[ti], p_ids[pi], int((t_ids > 0).sum()), int((p_ids > 0).sum())


def instance_f1(true_labels, pred_labels, *, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision, recall and F1: a prediction is a true positive when it overlaps a
    ground-truth instance with IoU > ``iou_threshold`` (≥ 0.5 makes the matching one-to-one).

    Returns
    -------
    dict
        ``tp, fp, fn, precision, recall, f1, mean_matched_iou``.
    """
    if not 0.5 <= iou_threshold < 1.0:
        raise ConfigError(f"iou_threshold={iou_threshold}; expected a value in [0.5, 1) so matches are unique")
    a, b = _pair(true_labels, pred_labels, "instance_f1")
    iou, _, _, n_true, n_pred = _match(a, b)
    m = iou > iou_threshold
    tp = int(m.sum())
    fp, fn = n_pred - tp, n_true - tp
    prec = tp / n_pred if n_pred else float(n_true == 0)
    rec = tp / n_true if n_true else float(n_pred == 0)
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1,
            "mean_matched_iou": float(iou[m].mean()) if tp else float("nan")}


def _ecd(labels: np.ndarray, pixel_size_um: float) -> np.ndarray:
    lab = labels.astype(np.int64).ravel()
    area = np.bincount(lab)[1:]
    area = area[area > 0]
    return np.sqrt(4.0 * area / np.pi) * pixel_size_um


def _weighted_percentiles(x: np.ndarray, w: np.ndarray, q: Sequence[float]) -> np.ndarray:
    o = np.argsort(x)
    x, w = x[o], w[o]
    c = np.cumsum(w)
    c = c / c[-1]
    return np.interp(np.asarray(q) / 100.0, c, x)


def psd_percentile_error(
    true_labels, pred_labels, *, pixel_size_um: float = 1.0,
    percentiles: Sequence[float] = (10, 50, 90), weighting: str = "volume",
) -> dict[str, float]:
    """Relative error of PSD percentiles (area-equivalent diameter) between two label images.

    Parameters
    ----------
    true_labels, pred_labels : ndarray or sequence of ndarray
        Instance label images; lists are pooled (one PSD over all images).
    weighting : {"volume", "number"}
        Q3 (volume, ∝ ECD³) or Q0 (number) percentiles.

    Returns
    -------
    dict
        ``x10_true_um, x10_pred_um, x10_rel_error`` (and so on for each percentile).
    """
    if weighting not in ("volume", "number"):
        raise ConfigError(f"weighting={weighting!r}; expected 'volume' or 'number'")
    ts = [true_labels] if isinstance(true_labels, np.ndarray) else list(true_labels)
    ps = [pred_labels] if isinstance(pred_labels, np.ndarray) else list(pred_labels)
    if len(ts) != len(ps):
        raise ImageError(f"psd_percentile_error: {len(ts)} true label images but {len(ps)} predicted")
    for a, b in zip(ts, ps, strict=True):
        _pair(a, b, "psd_percentile_error")
    dt = np.concatenate([_ecd(np.asarray(a), pixel_size_um) for a in ts])
    dp = np.concatenate([_ecd(np.asarray(b), pixel_size_um) for b in ps])
    out: dict[str, float] = {"n_true": float(dt.size), "n_pred": float(dp.size)}
    for q in percentiles:
        name = f"x{int(q)}"
        if dt.size == 0 or dp.size == 0:
            xt = xp = err = float("nan")
        else:
            wt = dt**3 if weighting == "volume" else np.ones_like(dt)
            wp = dp**3 if weighting == "volume" else np.ones_like(dp)
            xt = float(_weighted_percentiles(dt, wt, [q])[0])
            xp = float(_weighted_percentiles(dp, wp, [q])[0])
            err = (xp - xt) / xt
        out[f"{name}_true_um"], out[f"{name}_pred_um"], out[f"{name}_rel_error"] = xt, xp, err
    return out


def segmentation_scores(true_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray], *, pixel_size_um: float = 1.0) -> dict[str, float]:
    """Summary over images: foreground pixel accuracy and IoU, pooled instance F1 at IoU 0.5,
    and volume-weighted x10/x50/x90 relative errors."""
    ts, ps = list(true_labels), list(pred_labels)
    if len(ts) != len(ps) or not ts:
        raise ImageError(f"segmentation_scores: {len(ts)} true and {len(ps)} predicted label images")
    tp = fp = fn = 0
    acc, iou = [], []
    for a, b in zip(ts, ps, strict=True):
        a, b = _pair(a, b, "segmentation_scores")
        acc.append(pixel_accuracy(a > 0, b > 0))
        iou.append(iou_per_class((a > 0).astype(int), (b > 0).astype(int), 2)[1])
        r = instance_f1(a, b)
        tp, fp, fn = tp + r["tp"], fp + r["fp"], fn + r["fn"]
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    psd = psd_percentile_error(ts, ps, pixel_size_um=pixel_size_um)
    return {
        "pixel_accuracy": float(np.mean(acc)), "iou_foreground": float(np.nanmean(iou)),
        "instance_precision": prec, "instance_recall": rec,
        "instance_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "x10_rel_error": psd["x10_rel_error"], "x50_rel_error": psd["x50_rel_error"],
        "x90_rel_error": psd["x90_rel_error"],
    }
