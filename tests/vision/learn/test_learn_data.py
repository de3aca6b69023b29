"""Data loaders, image checks, augmentation, class weights and tiling."""

import json

import cv2
import numpy as np
import pytest

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision.learn import (
    Augmentation,
    check_image,
    flips_rot180,
    labels_to_classes,
    load_coco,
    load_mask_folder,
    median_frequency_weights,
    normalize_image,
    predict_tiled,
)
from crystalloop.vision.learn.augment import tile_starts
from crystalloop.vision.learn.data import _rle_decode


def _coco(tmp_path, *, anns=None, size=(40, 60)):
    img = np.full(size, 200, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "height": size[0], "width": size[1]}],
        "annotations": anns if anns is not None else [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]]},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": [[30, 5, 40, 5, 40, 15]]},
        ],
        "categories": [{"id": 1, "name": "polystyrene"}],
    }
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    return p


def test_load_coco_rasterizes_polygons(tmp_path):
    images, labels, meta = load_coco(_coco(tmp_path))
    assert len(images) == 1 and images[0].shape == (40, 60)
    lab = labels[0]
    assert set(np.unique(lab)) == {0, 1, 2}
    # square with corners (10,10)-(20,20) inclusive: 11×11 pixels
    assert (lab == 1).sum() == 121
    assert lab[15, 15] == 1 and lab[8, 36] == 2
    assert meta[0]["category_ids"] == [1, 1]


def test_rle_roundtrip_uncompressed_and_compressed():
    m = np.zeros((5, 4), bool)
    m[1:3, 1:4] = True
    flat = m.T.ravel()  # column-major
    counts, val, run = [], False, 0
    for v in flat:
        if v == val:
            run += 1
        else:
            counts.append(run)
            val, run = v, 1
    counts.append(run)
    assert (_rle_decode({"counts": counts}, 5, 4) == m).all()
    # pycocotools' compressed string for the same mask (computed with its LEB128-like scheme)
    def encode(cnts):
        s = []
        for i, x in enumerate(cnts):
            if i > 2:
                x -= cnts[i - 2]
            more = True
            while more:
                c = x & 0x1F
                x >>= 5
                more = (x != -1) if (c & 0x10) else (x != 0)
                if more:
                    c |= 0x20
                s.append(chr(c + 48))
        return "".join(s)
    assert (_rle_decode({"counts": encode(counts)}, 5, 4) == m).all()


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"images": []}', "expected top-level 'images' and 'annotations'"),
    ],
)
def test_load_coco_corrupted_files(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_coco(p)


def test_load_coco_bad_annotations(tmp_path):
    with pytest.raises(ConfigError, match="refers to image_id=99"):
        load_coco(_coco(tmp_path, anns=[{"image_id": 99, "segmentation": [[0, 0, 1, 0, 1, 1]]}]))
    with pytest.raises(ConfigError, match=r"annotations\[0\] has a polygon with 3 coordinates"):
        load_coco(_coco(tmp_path, anns=[{"image_id": 7, "segmentation": [[0, 0, 1]]}]))
    with pytest.raises(ConfigError, match="lacks 'image_id' or 'segmentation'"):
        load_coco(_coco(tmp_path, anns=[{"image_id": 7}]))


def test_load_coco_size_mismatch_and_missing_image(tmp_path):
    p = _coco(tmp_path)
    d = json.loads(p.read_text())
    d["images"][0]["height"] = 41
    p.write_text(json.dumps(d))
    with pytest.raises(ImageError, match=r"is 40×60 px but the annotation says 41×60"):
        load_coco(p)
    d["images"][0]["file_name"] = "missing.png"
    p.write_text(json.dumps(d))
    with pytest.raises(ImageError, match=r"missing\.png' does not exist"):
        load_coco(p)


def test_load_mask_folder_pairs_and_mismatch(tmp_path):
    cv2.imwrite(str(tmp_path / "x1.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "x1_mask.png"), np.ones((20, 30), np.uint8))
    images, masks, names = load_mask_folder(tmp_path)
    assert names == ["x1"] and masks[0].shape == (20, 30) and masks[0].max() == 1
    cv2.imwrite(str(tmp_path / "x2.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "x2_mask.png"), np.ones((21, 30), np.uint8))
    with pytest.raises(ImageError, match=r"is 21×30 px but image .*x2.png is 20×30 px"):
        load_mask_folder(tmp_path)
    (tmp_path / "x2_mask.png").unlink()
    with pytest.raises(ConfigError, match="x2.png has no mask"):
        load_mask_folder(tmp_path)


def test_corrupted_image_file(tmp_path):
    from crystalloop.vision.learn import read_image

    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"cannot decode image .*c\.png"):
        read_image(tmp_path / "c.png")


def test_check_image_channels():
    assert check_image(np.zeros((8, 8), np.uint8)).shape == (8, 8, 1)
    assert check_image(np.zeros((8, 8)), channels=3).shape == (8, 8, 3)
    with pytest.raises(ImageError, match="has 3 channels .* expects 1"):
        check_image(np.zeros((8, 8, 3), np.uint8), channels=1)
    with pytest.raises(ImageError, match="has 4 channels"):
        check_image(np.zeros((8, 8, 4), np.uint8), channels=3)
    with pytest.raises(ImageError, match="NaN"):
        check_image(np.full((8, 8), np.nan))
    with pytest.raises(ImageError, match="dtype"):
        check_image(np.array([["a"] * 8] * 8))


def test_normalize_modes():
    u8 = np.array([[0, 255]], np.uint8)[:, :, None]
    assert normalize_image(u8).max() == pytest.approx(1.0)
    u16 = np.array([[0, 65535]], np.uint16)[:, :, None]
    assert normalize_image(u16).max() == pytest.approx(1.0)
    x = np.linspace(100, 200, 1000).reshape(10, 100, 1)
    p = normalize_image(x, "percentile")
    assert p.dtype == np.float32 and np.percentile(p, 50) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ConfigError, match="normalize='zscore'"):
        normalize_image(x, "zscore")


def test_labels_to_classes_boundary_separates_touching():
    lab = np.zeros((20, 20), np.int32)
    lab[5:15, 2:10] = 1
    lab[5:15, 10:18] = 2
    cls = labels_to_classes(lab, "boundary", boundary_px=1)
    assert set(np.unique(cls)) == {0, 1, 2}
    assert (cls[8:12, 9:11] == 2).all()  # the contact line is boundary
    assert cls[10, 5] == 1 and cls[0, 0] == 0
    assert (labels_to_classes(lab) == (lab > 0)).all()


def test_median_frequency_weights_definition():
    a = np.zeros((10, 10), int)
    a[:, 7:] = 1  # image 1: class 0 70 %, class 1 30 %
    b = np.ones((10, 10), int)
    b[:2] = 2  # image 2: class 1 80 %, class 2 20 %
    w = median_frequency_weights([a, b], 3)
    freq = np.array([70 / 100, (30 + 80) / 200, 20 / 100])
    assert w == pytest.approx(np.median(freq) / freq)
    # the seed-002 Table 2 frequencies give its weights
    f = np.array([0.3359, 0.7052, 0.1038])
    assert (np.median(f) / f) == pytest.approx([1.0, 0.4763, 3.2361], abs=2e-4)


def test_median_frequency_weights_empty_class():
    with pytest.raises(ImageError, match="class\\(es\\) crystal have no pixels"):
        median_frequency_weights([np.eye(4, dtype=int)], 3, class_names=["dark", "light", "crystal"])
    with pytest.raises(ImageError, match="expected 0..1"):
        median_frequency_weights([np.full((4, 4), 2)], 2)


def test_augmentation_moves_image_and_mask_together():
    img = np.zeros((64, 64, 1), np.float32)
    m = np.zeros((64, 64), np.int64)
    img[20:40, 10:30] = 1.0
    m[20:40, 10:30] = 1
    aug = Augmentation()
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = aug(img, m, rng)
        assert a.shape == img.shape and b.shape == m.shape
        # nearest-neighbour mask agrees with the linearly warped image almost everywhere
        agree = ((a[:, :, 0] > 0.5) == (b == 1)).mean()
        assert agree > 0.97
    with pytest.raises(ConfigError, match="zoom"):
        Augmentation(zoom=(2.0, 1.0))
    assert Augmentation.resolve(Augmentation().to_dict()) == Augmentation()
    with pytest.raises(ConfigError, match="augmentation="):
        Augmentation.resolve("strong")


def test_flips_rot180_quadruples():
    x = np.arange(2 * 1 * 3 * 4, dtype=float).reshape(2, 1, 3, 4)
    y = flips_rot180(x)
    assert y.shape == (8, 1, 3, 4)
    assert (y[0] == x[0]).all() and (y[1] == x[0][:, ::-1]).all()
    assert (y[2] == x[0][:, :, ::-1]).all() and (y[3] == x[0][:, ::-1, ::-1]).all()
    assert (y[4] == x[1]).all()


def test_tiling_is_seamless():
    rng = np.random.default_rng(0)
    img = rng.random((2, 150, 233)).astype(np.float32)
    out = predict_tiled(lambda t: t * 2.0, img, tile=64, overlap=8, multiple=8)
    assert out.shape == img.shape and np.allclose(out, img * 2.0)
    # a neighbourhood filter is wrong at tile edges: equality with the global filter proves
    # that only tile centres are stitched
    box = lambda t: np.stack([cv2.blur(c, (5, 5)) for c in t])  # noqa: E731
    out2 = predict_tiled(box, img, tile=64, overlap=8, multiple=8)
    assert np.allclose(out2[:, 3:-3, 3:-3], box(img)[:, 3:-3, 3:-3], atol=1e-6)
    starts = tile_starts(233, 64, 8)
    assert starts[0] == 0 and starts[-1] == 233 - 64
    with pytest.raises(ConfigError, match="exceed twice the overlap"):
        tile_starts(100, 16, 8)
