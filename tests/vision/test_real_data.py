"""Real images with ground truth (../shared/data): a few frames here, the full run in benchmarks."""

import re

import cv2
import numpy as np
import pytest

from crystalloop.vision import PipelineSettings, analyze_image, read_image
from crystalloop.vision.metrics import match_instances

ISO = PipelineSettings(background=None, min_size_px=0, closing_radius_px=0, watershed=False, noise_floor=0)


@pytest.mark.parametrize("name,limit_pct", [
    ("A.2/StrictMonodisperse_2.5px.tif", 5.0),
    pytest.param("A.2/StrictMonnodisperse_3.5px.tif", 5.0, marks=pytest.mark.slow),
    ("A.2/StrictMonodisperse_5px.tif", 1.0),
    pytest.param("A.2/StrictMonodisperse_30px.tif", 1.0, marks=pytest.mark.slow),
    pytest.param("A.3/Monodisperse_n100_7px.tif", 1.0, marks=pytest.mark.slow),
])
def test_iso_disks_mean_ecd_and_count(shared_data, name, limit_pct):
    path = shared_data / "iso-tr-19672" / name
    d = float(re.search(r"_([\d.]+)px", name).group(1))
    import tifffile

    frames = tifffile.imread(path, key=range(2))  # 2 of 5–100 frames; the benchmark runs more
    ecd = []
    for im in frames:
        r = analyze_image(im, pixel_size_um=1.0, settings=ISO)
        n_true = cv2.connectedComponents((im < 128).astype(np.uint8), connectivity=8)[0] - 1
        assert len(r.particles) == n_true
        assert not r.particles.edge.any()
        ecd.extend(r.kept.ecd_um)
    assert abs(np.mean(ecd) / d - 1) * 100 < limit_pct


def _skimage_labels(img, polarity):
    skimage = pytest.importorskip("skimage")
    from skimage import color, filters, measure

    del skimage
    g = color.rgb2gray(img) if img.ndim == 3 else img.astype(float)
    t = filters.threshold_otsu(g)
    return measure.label(g > t if polarity == "bright" else g < t)


def _median_ecd(lab):
    a = np.bincount(lab.ravel())[1:]
    a = a[a > 0]
    return np.median(np.sqrt(4 * a / np.pi))


def test_stardist_nuclei_beat_the_skimage_baseline(shared_data):
    import tifffile

    img = tifffile.imread(shared_data / "stardist-nuclei" / "img2d.tif")
    gt = tifffile.imread(shared_data / "stardist-nuclei" / "mask2d.tif")
    r = analyze_image(img, pixel_size_um=1.0, background_radius_px=40, watershed_strength=0.8)
    base = _skimage_labels(img, r.polarity)
    ours, theirs = match_instances(gt, r.labels), match_instances(gt, base)
    assert ours.f1 > theirs.f1 + 0.2 and ours.f1 > 0.5
    e = _median_ecd(gt)
    assert abs(_median_ecd(r.labels) / e - 1) < abs(_median_ecd(base) / e - 1)


@pytest.mark.slow
def test_imagegrains_gravel_beats_the_skimage_baseline(shared_data):
    import tifffile

    f = shared_data / "imagegrains-fh" / "train" / "3_P1060343_3.jpg"
    img = read_image(f)
    gt = tifffile.imread(str(f).replace(".jpg", "_mask.tif"))
    r = analyze_image(img, pixel_size_um=390.0, background_radius_px=40, watershed_strength=0.8)
    base = _skimage_labels(img, r.polarity)
    assert match_instances(gt, r.labels).f1 > match_instances(gt, base).f1
    e = _median_ecd(gt)
    assert abs(_median_ecd(r.labels) / e - 1) < abs(_median_ecd(base) / e - 1)
