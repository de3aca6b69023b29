"""Particles touching the frame: Miles–Lantuéjoul weights remove the size bias of excluding them."""

import cv2
import numpy as np
import pytest

from crystalloop.vision import PipelineSettings, mean_size, measure_particles
from crystalloop.vision.pipeline import flag_particles


def test_weights_are_the_miles_lantuejoul_factor():
    lab = np.zeros((100, 200), np.int32)
    lab[10:30, 20:60] = 1    # 20 x 40 box inside
    lab[0:10, 100:110] = 2   # touches the frame
    t = flag_particles(measure_particles(lab, pixel_size_um=1.0), PipelineSettings(), lab.shape)
    assert t.weight[0] == pytest.approx(100 * 200 / ((100 - 20) * (200 - 40)))
    assert t.weight[1] == 0 and not t.kept[1] and t.edge[1]
    none = flag_particles(measure_particles(lab, pixel_size_um=1.0), PipelineSettings(edge_correction="none"),
                          lab.shape)
    assert none.weight.tolist() == [1.0, 0.0]
    incl = flag_particles(measure_particles(lab, pixel_size_um=1.0), PipelineSettings(exclude_edge=False), lab.shape)
    assert incl.kept.all() and incl.weight.tolist() == [1.0, 1.0]


def test_weighted_psd_of_inner_particles_is_unbiased():
    # discs of two sizes scattered over a large plane (no overlaps), seen through small frames:
    # big discs touch the frame far more often, so the unweighted inner particles are too small
    rng = np.random.default_rng(5)
    frame = (240, 320)
    true_d, inner = [], []
    for _ in range(60):
        lab = np.zeros((frame[0] + 200, frame[1] + 200), np.int32)
        discs = []
        for _ in range(400):
            r = int(rng.choice([8, 40], p=[0.5, 0.5]))
            x, y = rng.uniform(0, lab.shape[1]), rng.uniform(0, lab.shape[0])
            if all(np.hypot(x - a, y - b) > r + c + 2 for a, b, c in discs):
                discs.append((x, y, r))
            if len(discs) >= 12:
                break
        for k, (x, y, r) in enumerate(discs, start=1):
            cv2.circle(lab, (int(x), int(y)), r, k, -1)
        view = lab[100 : 100 + frame[0], 100 : 100 + frame[1]]
        # the population: discs whose centre lies in the frame
        true_d += [2 * r + 1 for x, y, r in discs if 100 <= x < 100 + frame[1] and 100 <= y < 100 + frame[0]]
        t = flag_particles(measure_particles(view, pixel_size_um=1.0), PipelineSettings(), frame)
        inner.append(t[t.kept])
    import pandas as pd

    k = pd.concat(inner)
    frac_big_true = np.mean(np.array(true_d) > 40)
    frac_big_unweighted = np.mean(k.ecd_um > 40)
    frac_big_weighted = np.sum(k.weight[k.ecd_um > 40]) / np.sum(k.weight)
    assert frac_big_unweighted < frac_big_true - 0.1  # the bias the weights correct
    assert frac_big_weighted == pytest.approx(frac_big_true, abs=0.06)
    assert mean_size(k, 1, 0, weights=k.weight) > 1.1 * mean_size(k, 1, 0)
