"""Accuracy metrics against ground truth: instance matching (IoU, F1) and size errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystalloop.vision._validate import check_image, check_same_shape

__all__ = ["InstanceMatch", "match_instances"]


@dataclass
class InstanceMatch:
    """Result of :func:`match_instances`.

    ``pairs`` is an ``(n_tp, 2)`` array of (true label, predicted label) and ``iou`` their IoU.
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    iou: np.ndarray

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    @property
    def mean_matched_iou(self) -> float:
        return float(self.iou.mean()) if self.iou.size else 0.0


def match_instances(true_labels: np.ndarray, pred_labels: np.ndarray, *, iou_threshold: float = 0.5) -> InstanceMatch:
    """One-to-one matching of predicted to true instances at an IoU threshold.

    Candidate pairs are all overlapping (true, predicted) objects; they are accepted greedily in
    order of decreasing IoU, each object used at most once (for thresholds ≥ 0.5 the matching is
    unique anyway). F1 = 2TP / (2TP + FP + FN), as in the StarDist/cellpose evaluations.
    """
    t = np.asarray(check_image(true_labels, "true_labels", allow_color=False)).astype(np.int64)
    p = np.asarray(check_image(pred_labels, "pred_labels", allow_color=False)).astype(np.int64)
    check_same_shape(t, p, "true_labels", "pred_labels")
    nt, np_ = int(t.max()) + 1, int(p.max()) + 1
    t_ids = np.unique(t[t > 0])
    p_ids = np.unique(p[p > 0])
    both = (t > 0) & (p > 0)
    key = t[both] * np_ + p[both]
    k, inter = np.unique(key, return_counts=True)
    ti, pi = k // np_, k % np_
    ta = np.bincount(t.ravel(), minlength=nt)
    pa = np.bincount(p.ravel(), minlength=np_)
    iou = inter / (ta[ti] + pa[pi] - inter)
    order = np.argsort(-iou, kind="stable")
    used_t, used_p, pairs, ious = set(), set(), [], []
    for j in order:
        if iou[j] < iou_threshold:
            break
        a, b = int(ti[j]), int(pi[j])
        if a in used_t or b in used_p:
            continue
        used_t.add(a)
        used_p.add(b)
        pairs.append((a, b))
        ious.append(float(iou[j]))
    tp = len(pairs)
    return InstanceMatch(tp=tp, fp=int(p_ids.size - tp), fn=int(t_ids.size - tp),
                         pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2), iou=np.array(ious))
