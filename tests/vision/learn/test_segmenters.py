"""The segmenter hook: a trained model replaces the threshold step of the pipeline."""

import numpy as np
import pytest

from crystalloop.errors import ImageError, ModelError
from crystalloop.vision import analyze_image, analyze_images
from crystalloop.vision.segmenters import Segmenter, load_segmenter, segment_labels


class _Boxes:
    """A segmenter from a manual: two fixed rectangles."""

    def predict_labels(self, image):
        lab = np.zeros(np.asarray(image).shape[:2], np.int32)
        lab[10:20, 10:30] = 1
        lab[40:50, 40:45] = 2
        return lab


def test_pipeline_measures_the_segmenters_labels():
    img = np.full((64, 64), 200, np.uint8)  # blank: the threshold step would find nothing
    assert len(analyze_image(img, pixel_size_um=2.0).particles) == 0
    res = analyze_image(img, pixel_size_um=2.0, segmenter=_Boxes())
    p = res.particles.sort_values("label")
    assert p["area_um2"].tolist() == [800.0, 200.0] and p["kept"].all()
    assert np.isnan(res.threshold_level)
    batch = analyze_images([img, img], pixel_size_um=2.0, segmenter=_Boxes())
    assert batch.summary["particles_kept"] == 4


def test_bad_segmenters(tmp_path):
    class Wrong:
        def predict_labels(self, image):
            return np.zeros((3, 3), np.int32)

    class Floaty:
        def predict_labels(self, image):
            return np.zeros(np.asarray(image).shape[:2])

    img = np.zeros((8, 8), np.uint8)
    assert isinstance(_Boxes(), Segmenter) and not isinstance(object(), Segmenter)
    with pytest.raises(ImageError, match=r"returned labels of shape \(3, 3\) for an image of shape \(8, 8\)"):
        segment_labels(Wrong(), img)
    with pytest.raises(ImageError, match="dtype float64; expected integers"):
        segment_labels(Floaty(), img)
    with pytest.raises(ModelError, match="object has no predict_labels"):
        segment_labels(object(), img)
    with pytest.raises(ModelError, match="does not exist"):
        load_segmenter(tmp_path / "none")
    with pytest.raises(ModelError, match="not a segmentation model folder"):
        load_segmenter(tmp_path)
