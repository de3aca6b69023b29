"""Segmentation metrics on hand-made label images."""

import numpy as np
import pytest

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision.learn import (
    instance_f1,
    iou_per_class,
    pixel_accuracy,
    psd_percentile_error,
    segmentation_scores,
)


def _disks(centres, radius, shape=(100, 100)):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for i, (r, c) in enumerate(centres, 1):
        lab[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = i
    return lab


def test_pixel_accuracy_and_iou():
    t = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    p = np.array([[0, 1, 1, 1], [0, 2, 0, 1]])
    assert pixel_accuracy(t, p) == pytest.approx(6 / 8)
    iou = iou_per_class(t, p, 4)
    assert iou[0] == pytest.approx(2 / 4) and iou[1] == pytest.approx(3 / 4) and iou[2] == pytest.approx(1 / 2)
    assert np.isnan(iou[3])
    with pytest.raises(ImageError, match=r"ground truth is \(2, 4\) but prediction is \(4, 2\)"):
        pixel_accuracy(t, p.T)


def test_instance_f1_counts_matches():
    t = _disks([(20, 20), (20, 70), (70, 40)], 8)
    p = _disks([(21, 20), (20, 71), (90, 90)], 8)  # two shifted matches, one false positive
    r = instance_f1(t, p)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["f1"] == pytest.approx(2 / 3)
    # a prediction merging two objects matches neither at IoU 0.5
    merged = (t > 0).astype(np.int32) * (np.arange(100)[None, :] < 100)
    merged[t == 2] = 1
    r2 = instance_f1(t[:, :], np.where(np.isin(t, [1, 2]), 1, np.where(t == 3, 2, 0)))
    assert r2["tp"] == 1 and r2["fn"] == 2
    assert instance_f1(np.zeros((5, 5), int), np.zeros((5, 5), int))["f1"] == 1.0
    with pytest.raises(ConfigError, match="iou_threshold"):
        instance_f1(t, p, iou_threshold=0.3)


def test_psd_percentile_error():
    t = _disks([(20, 20), (20, 70), (70, 40)], 8)
    r = psd_percentile_error(t, t, pixel_size_um=2.0)
    assert r["x50_rel_error"] == pytest.approx(0.0)
    assert r["x50_true_um"] == pytest.approx(2.0 * np.sqrt(4 * (t == 1).sum() / np.pi), rel=1e-6)
    bigger = _disks([(20, 20), (20, 70), (70, 40)], 10)
    r2 = psd_percentile_error(t, bigger)
    assert r2["x50_rel_error"] == pytest.approx(np.sqrt((bigger == 1).sum() / (t == 1).sum()) - 1, rel=1e-6)
    assert np.isnan(psd_percentile_error(t, np.zeros_like(t))["x50_rel_error"])
    with pytest.raises(ConfigError, match="weighting"):
        psd_percentile_error(t, t, weighting="mass")


def test_segmentation_scores_perfect():
    t = _disks([(20, 20), (70, 40)], 8)
    s = segmentation_scores([t], [t])
    assert s["pixel_accuracy"] == 1.0 and s["instance_f1"] == 1.0 and s["iou_foreground"] == 1.0
