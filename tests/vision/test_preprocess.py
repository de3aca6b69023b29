"""Background estimation/subtraction, flat field, contrast, sequence subtractors, overlays."""

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import (
    clahe,
    equalize_histogram,
    estimate_background,
    flat_field,
    foreground_masks,
    subtract_background,
    to_uint8,
)
from crystalloop.vision.plots import STATUS_COLORS, overlay, plot_psd


def _lit(shape=(120, 160)):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    field = 150 + 60 * xx / shape[1]  # strong horizontal gradient
    img = field.copy()
    img[50:60, 20:30] *= 0.4  # dark particle in the dim half
    img[50:60, 130:140] *= 0.4  # same particle in the bright half
    return img.astype(np.float32), field


@pytest.mark.parametrize("method", ["rolling_ball", "morphological", "median"])
def test_background_follows_illumination_not_particles(method):
    img, field = _lit()
    bg = estimate_background(img, radius=15, method=method, polarity="dark")
    assert np.abs(bg - field).mean() < 3.0
    assert np.abs(bg[55, 25] - field[55, 25]) < 8  # the particle is not part of the background


def test_flat_fielded_signal_is_illumination_independent():
    img, _ = _lit()
    sig = subtract_background(img, radius=15, polarity="dark")
    assert sig[55, 25] == pytest.approx(0.6, abs=0.06) and sig[55, 135] == pytest.approx(0.6, abs=0.06)
    assert np.abs(sig[5:40]).max() < 0.05
    raw = subtract_background(img, radius=15, polarity="dark", normalize=False)
    assert raw[55, 135] > raw[55, 25] * 1.2  # without flat field the bright side has more contrast


def test_flat_field_with_reference_frames():
    img, field = _lit()
    out = flat_field(img, field.astype(np.float32), dark=0.0)
    assert out[5:40].std() < 1e-3 * out.mean()
    with pytest.raises(ConfigError, match="brighter than the dark"):
        flat_field(img, field, dark=500.0)
    with pytest.raises(ImageError, match="does not match"):
        flat_field(img, field[:10])


def test_contrast_functions_return_uint8_full_range():
    img = np.random.default_rng(0).normal(1000, 10, (64, 64)).astype(np.uint16)
    for f in (equalize_histogram, clahe, to_uint8):
        out = f(img)
        assert out.dtype == np.uint8 and out.shape == img.shape and out.max() - out.min() > 200
    with pytest.raises(ConfigError, match="clip_limit"):
        clahe(img, clip_limit=0)


@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_sequence_subtractor_finds_a_new_particle(method):
    rng = np.random.default_rng(1)
    frames = [np.clip(rng.normal(180, 2, (60, 80)), 0, 255).astype(np.uint8) for _ in range(25)]
    frames[-1][20:30, 40:50] = 60  # a particle appears in the last frame
    masks = list(foreground_masks(frames, method=method, history=20))
    assert masks[-1][20:30, 40:50].mean() > 0.9
    assert masks[-1].sum() < 150
    with pytest.raises(ConfigError, match="'mog2' or 'knn'"):
        list(foreground_masks(frames, method="gmg"))


def test_overlay_colours_and_psd_plot(tmp_path):
    img = np.full((40, 60), 200, np.uint8)
    lab = np.zeros((40, 60), np.int32)
    lab[10:20, 10:20], lab[0:8, 40:50], lab[25:35, 30:40] = 1, 2, 3
    parts = pd.DataFrame({"label": [1, 2, 3], "edge": [False, True, False], "in_focus": [True, True, False]})
    rgb = overlay(img, lab, parts)
    assert tuple(rgb[10, 15]) == STATUS_COLORS["kept"]
    assert tuple(rgb[7, 45]) == STATUS_COLORS["edge"]
    assert tuple(rgb[25, 35]) == STATUS_COLORS["out_of_focus"]
    assert tuple(rgb[15, 15]) == (200, 200, 200)  # interiors untouched
    from crystalloop.vision import psd_table

    x = np.random.default_rng(0).lognormal(3, 0.3, 200)
    p = plot_psd(psd_table(x), tmp_path / "psd.png", sizes=x)
    assert p.is_file() and p.stat().st_size > 5000
