"""Large images in overlapping tiles: the same particles as the whole image at once."""

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError
from crystalloop.vision import PipelineSettings, analyze_image, render_particles, sample_particles
from crystalloop.vision._background import block_mean, small_background, upsample
from crystalloop.vision.preprocess import estimate_background
from crystalloop.vision.tiling import analyze_tiled

KEY = ["bbox_row0_px", "bbox_col0_px", "area_px"]


@pytest.fixture(scope="module")
def big():
    h = w = 3000
    sizes = np.linspace(10, 90, 30)
    counts = np.exp(-0.5 * ((sizes - 35) / 18) ** 2)
    p = sample_particles(sizes, counts, shape=(h, w), pixel_size_um=1.0, n_particles=600, aspect_ratio=(1, 5),
                         kind={"ellipse": 1, "needle": 1, "rod": 1, "block": 1}, depth_range=(0, 0.5), seed=11)
    img, _ = render_particles(p, shape=(h, w), pixel_size_um=1.0, seed=11)
    return img


def test_background_of_a_tile_is_the_whole_images_exactly(big):
    g = big.astype(np.float32)
    full = estimate_background(g, radius=50, polarity="dark")
    small = np.concatenate([block_mean(g[r : r + 12 * 40], 12) for r in range(0, 3000, 12 * 40)])
    assert np.array_equal(small, block_mean(g, 12))
    bs = small_background(small, 4, "rolling_ball", "dark")
    for r0, c0 in ((0, 0), (1234, 777), (2500, 2900)):
        tile = upsample(bs, 12, r0, min(r0 + 500, 3000), c0, min(c0 + 300, 3000))
        assert np.array_equal(tile, full[r0 : r0 + 500, c0 : c0 + 300])


def test_tiled_particles_are_identical_to_untiled(big):
    whole = analyze_image(big, pixel_size_um=1.0, tile_px=0)
    tiled = analyze_image(big, pixel_size_um=1.0, tile_px=1024, tile_overlap_px=192)
    assert tiled.labels is None and tiled.n_tiles == 9 and tiled.cut_by_tiles == 0
    assert tiled.polarity == whole.polarity and tiled.threshold_level == whole.threshold_level
    a = whole.particles.sort_values(KEY, kind="stable", ignore_index=True).drop(columns="label")
    b = tiled.particles.drop(columns="label")
    assert len(a) > 400
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_tiling_refuses_what_it_cannot_do_exactly(big):
    with pytest.raises(ConfigError, match="adaptive"):
        analyze_tiled(big, pixel_size_um=1.0, settings=PipelineSettings(threshold="adaptive"))
    with pytest.raises(ConfigError, match="reduced-grid background"):
        analyze_tiled(big, pixel_size_um=1.0, settings=PipelineSettings(background="morphological"))
    with pytest.raises(ConfigError, match="small enough"):
        analyze_tiled(big[:300, :300], pixel_size_um=1.0)
