"""Descriptors against exact geometry and against the renderer's ground truth."""

import cv2
import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import (
    PARTICLE_COLUMNS,
    mask_to_labels,
    measure_particles,
    render_particles,
    threshold,
)


def test_rectangle_is_exact():
    lab = np.zeros((60, 60), np.int32)
    lab[10:20, 5:45] = 3
    t = measure_particles(lab, pixel_size_um=0.5)
    assert list(t.columns) == list(PARTICLE_COLUMNS)
    r = t.iloc[0]
    assert r.label == 3 and r.area_px == 400 and r.area_um2 == pytest.approx(100.0)
    # callipers on the pixel-centre hull + ½ px: within ½ px of the pixel outline (exact hull)
    assert r.feret_min_um == pytest.approx(0.5 * (9 + 0.5))
    assert r.feret_max_um == pytest.approx(0.5 * (np.hypot(39, 9) + 0.5), rel=1e-9)
    assert abs(r.feret_max_um - 0.5 * np.hypot(40, 10)) <= 0.5 * 1.0  # square corners: worst case
    assert r.perimeter_um == pytest.approx(0.5 * 100, rel=0.04)
    assert r.solidity == pytest.approx(1.0, abs=0.01) and r.convexity == pytest.approx(1.0, abs=0.01)
    assert r.ellipse_major_um / r.ellipse_minor_um == pytest.approx(4.0, rel=0.01)
    assert (r.centroid_row_px, r.centroid_col_px) == (14.5, 24.5)
    assert not r.edge
    # feret angle of the diagonal: atan(10/40) from the column axis
    assert min(r.feret_angle_deg, 180 - r.feret_angle_deg) == pytest.approx(np.degrees(np.arctan(0.25)), abs=1.2)


def test_disk_circularity_and_edge_flag():
    lab = np.zeros((100, 100), np.int32)
    cv2.circle(lab, (50, 50), 20, 1, -1)
    cv2.circle(lab, (0, 50), 10, 2, -1)
    t = measure_particles(lab, pixel_size_um=1.0).set_index("label")
    truth_area = float((lab == 1).sum())
    assert t.loc[1, "ecd_um"] == pytest.approx(np.sqrt(4 * truth_area / np.pi), rel=1e-9)
    assert abs(t.loc[1, "feret_max_um"] - 41.0) <= 0.5  # the cv2 disc spans 41 px
    assert t.loc[1, "circularity"] > 0.95
    assert t.loc[2, "edge"] and not t.loc[1, "edge"]


def test_focus_separates_sharp_from_blurred():
    img = np.full((100, 200), 200, np.float32)
    cv2.circle(img, (50, 50), 20, 50, -1)
    blurred = cv2.GaussianBlur(img, (0, 0), 4)
    img[:, 100:] = blurred[:, :100]
    lab = mask_to_labels(threshold(img))
    t = measure_particles(lab, img, pixel_size_um=1.0).sort_values("centroid_col_px")
    sharp, soft = t.focus.to_numpy()
    assert sharp > 0.3 and soft < sharp / 2  # contrast from a ring around each particle
    # with the background level known (a background-subtracted signal) the score is 1/(σ√(2π))
    t2 = measure_particles(lab, img, pixel_size_um=1.0, focus_image=200 - img, focus_background=0.0)
    sharp2, soft2 = t2.sort_values("centroid_col_px").focus.to_numpy()
    assert sharp2 > 0.3
    assert soft2 == pytest.approx(1 / (4 * np.sqrt(2 * np.pi)), rel=0.3)


def test_matches_renderer_truth():
    rng = np.random.default_rng(2)
    n = 24
    p = pd.DataFrame({"x_px": (np.arange(n) % 6) * 100 + 60 + rng.random(n), "y_px": (np.arange(n) // 6) * 100 + 60 + rng.random(n),
                      "length_um": rng.uniform(30, 70, n), "width_um": rng.uniform(15, 30, n),
                      "angle_deg": rng.uniform(0, 180, n), "kind": rng.choice(["ellipse", "rod", "block", "platelet"], n)})
    img, truth = render_particles(p, shape=(420, 640), pixel_size_um=2.0, illumination=0.0, seed=0)
    lab = mask_to_labels(threshold(img), closing_radius_px=1)
    t = measure_particles(lab, img, pixel_size_um=2.0)
    assert len(t) == n
    order = np.lexsort((truth.centroid_col_px.round(-1), truth.centroid_row_px.round(-1)))
    tt = truth.iloc[order].reset_index(drop=True)
    mt = t.iloc[np.lexsort((t.centroid_col_px.round(-1), t.centroid_row_px.round(-1)))].reset_index(drop=True)
    assert np.allclose(mt.centroid_row_px, tt.centroid_row_px, atol=0.6)
    for col, tol in [("ecd_um", 0.02), ("feret_max_um", 0.03), ("feret_min_um", 0.06), ("perimeter_um", 0.05),
                     ("ellipse_major_um", 0.03)]:
        rel = np.abs(mt[col] / tt[col] - 1)
        assert rel.mean() < tol, (col, rel.mean())


def test_empty_and_bad_input():
    t = measure_particles(np.zeros((10, 10), np.int32), pixel_size_um=1.0)
    assert len(t) == 0 and list(t.columns) == list(PARTICLE_COLUMNS)
    with pytest.raises(ConfigError, match="pixel_size_um"):
        measure_particles(np.zeros((10, 10), np.int32), pixel_size_um=-1)
    with pytest.raises(ConfigError, match="pixel_size_um is required"):
        measure_particles(np.zeros((10, 10), np.int32), pixel_size_um=None)
    with pytest.raises(ImageError, match="does not match"):
        measure_particles(np.zeros((10, 10), np.int32), np.zeros((10, 11)), pixel_size_um=1)
    with pytest.raises(ImageError, match="dtype"):
        measure_particles(np.zeros((10, 10), complex), pixel_size_um=1)
    with pytest.raises(ConfigError, match="≥ 0"):
        measure_particles(np.full((10, 10), -1, np.int32), pixel_size_um=1)
