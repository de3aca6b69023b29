"""Thresholds, polarity, morphology, watershed and the mask → labels post-processing."""

import cv2
import numpy as np
import pytest

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import (
    clear_border,
    detect_polarity,
    fill_holes,
    mask_to_labels,
    remove_small_objects,
    threshold,
    watershed_split,
)


def _disks(centres, r, shape=(80, 120)):
    m = np.zeros(shape, np.uint8)
    for c in centres:
        cv2.circle(m, c, r, 1, -1)
    return m.astype(bool)


def test_polarity_and_threshold_both_ways():
    img = np.full((60, 80), 200, np.uint8)
    img[20:30, 20:40] = 50
    assert detect_polarity(img) == "dark"
    assert detect_polarity(255 - img) == "bright"
    m = threshold(img)
    assert m.sum() == 200 and m[25, 30]
    assert np.array_equal(threshold(255 - img), m)
    assert np.array_equal(threshold(img, method="triangle"), m)
    assert threshold(img, method=120.0, polarity="dark").sum() == 200
    assert threshold(img, method="adaptive", block_size=31).sum() > 100


def test_empty_and_constant_images_give_empty_masks():
    assert not threshold(np.full((30, 30), 7, np.uint16)).any()
    noise = np.random.default_rng(0).normal(100, 3, (200, 200)).astype(np.float32)
    assert mask_to_labels(threshold(noise, noise_floor=5.0)).max() == 0


def test_fill_small_border():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    m[8:11, 8:11] = False
    assert fill_holes(m).sum() == 100
    m2 = m.copy()
    m2[0:2, 0:2] = True
    assert remove_small_objects(m2, 5).sum() == m.sum()
    lab = cv2.connectedComponents(m2.view(np.uint8))[1]
    assert clear_border(lab).astype(bool).sum() == m.sum()


def test_watershed_splits_touching_disks_only_when_asked():
    m = _disks([(40, 40), (62, 40)], 12)
    assert mask_to_labels(m, watershed=False).max() == 1
    lab = mask_to_labels(m, watershed=True)
    assert lab.max() == 2
    areas = np.bincount(lab.ravel())[1:]
    assert abs(int(areas[0]) - int(areas[1])) < 0.1 * areas.mean()
    assert (lab > 0).sum() == (mask_to_labels(m, watershed=False) > 0).sum()  # no pixels lost on the line
    assert watershed_split(m, strength=0.0).max() == 1
    single = _disks([(60, 40)], 15)
    assert mask_to_labels(single).max() == 1  # a convex object is never split


def test_probability_map_and_seed002_filters():
    m = _disks([(30, 30), (90, 40)], 10).astype(np.float32) * 0.9
    m[70:72, 5:7] = 0.95  # 4 px speck, below 20 px²
    lab = mask_to_labels(m)
    assert lab.max() == 2
    sq = np.zeros((80, 120), bool)
    sq[10:40, 50:52] = True  # a thin line: circularity ~0.1
    lab2 = mask_to_labels((m > 0.5) | sq, circularity_range=(0.85, 1.0))
    assert lab2.max() == 2
    edge = _disks([(3, 40), (60, 40)], 10)
    assert mask_to_labels(edge, remove_border=True).max() == 1


def test_bad_masks():
    with pytest.raises(ImageError, match=r"probabilities in \[0, 1\]"):
        mask_to_labels(np.full((5, 5), 2.0))
    with pytest.raises(ImageError, match="NaN"):
        mask_to_labels(np.full((5, 5), np.nan))
    with pytest.raises(ImageError, match="empty"):
        mask_to_labels(np.zeros((0, 5), bool))
    with pytest.raises(ConfigError, match="polarity"):
        threshold(np.ones((5, 5)), polarity="up")
    with pytest.raises(ConfigError, match="threshold method"):
        threshold(np.ones((5, 5)), method="magic")
    with pytest.raises(ConfigError, match="strength"):
        watershed_split(np.ones((5, 5), bool), strength=2)
