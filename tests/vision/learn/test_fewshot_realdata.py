"""Leave-one-out on real annotated images nobody here made (../shared/data; skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest

from crystalloop.vision import analyze_image, read_image
from crystalloop.vision.learn import Annotation, PixelClassifier, instance_scores

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
tifffile = pytest.importorskip("tifffile")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} not present (see ../shared/data/README.md)")
    return path


def test_pixel_classifier_trained_on_one_half_of_the_nuclei_finds_the_other_half():
    d = _need(DATA / "stardist-nuclei")
    img, lab = tifffile.imread(d / "img2d.tif"), tifffile.imread(d / "mask2d.tif").astype(np.int32)
    train = Annotation("left", img[:, :256], lab[:, :256])
    test = Annotation("right", img[:, 256:], lab[:, 256:])
    m = PixelClassifier(n_estimators=24, samples_per_class=3000, random_state=0).fit([train.image], [train.targets()])
    s = instance_scores(test.labels, m.predict_labels(test.image))
    # measured F1 0.847, median ECD +10.1 % with this small forest (the default forest: 0.914, +8.7 %);
    # the floors leave room for library drift only
    assert s["f1"] >= 0.7, s
    assert abs(s["median_ecd_error"]) <= 0.15, s


@pytest.mark.slow
def test_pixel_classifier_on_gravel_from_two_other_photos():
    d = _need(DATA / "imagegrains-fh" / "train")
    files = sorted(d.glob("*.jpg"))
    anns = [Annotation(f.stem, read_image(f), tifffile.imread(str(f).replace(".jpg", "_mask.tif")).astype(np.int32))
            for f in files]
    m = PixelClassifier(random_state=0).fit([anns[1].image, anns[2].image], [anns[1].targets(), anns[2].targets()])
    s = instance_scores(anns[0].labels, m.predict_labels(anns[0].image))
    # measured F1 0.186 on this photo (the hardest fold of bench_seg_fewshot; mean over six 0.30,
    # goal 0.7 missed), the classical pipeline 0.050 with the bench_vision real-data settings
    classical = analyze_image(anns[0].image, pixel_size_um=1.0, background_radius_px=40, watershed_strength=0.8)
    c = instance_scores(anns[0].labels, classical.labels)
    assert s["f1"] >= 0.15 and s["f1"] >= 2 * c["f1"], (s, c)
