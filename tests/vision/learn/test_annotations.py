"""Annotation readers: every lab format gives the same objects; partial annotations; bad input."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import render_particles
from crystalloop.vision.learn import Annotation, detect_format, load_annotations


@pytest.fixture(scope="module")
def scene():
    """A 96×128 probe image with 6 particles (two touching) and its exact label image."""
    p = pd.DataFrame({"x_px": [20.0, 60.0, 74.0, 100.0, 30.0, 95.0], "y_px": [20.0, 30.0, 30.0, 70.0, 70.0, 20.0],
                      "length_um": [18.0, 20.0, 16.0, 24.0, 14.0, 12.0], "width_um": [12.0, 14.0, 12.0, 10.0, 14.0, 9.0],
                      "angle_deg": [0.0, 20.0, 80.0, 45.0, 0.0, 10.0]})
    img, _, lab = render_particles(p, shape=(96, 128), pixel_size_um=1.0, seed=1, return_labels=True)
    return img, lab.astype(np.int32)


def _polys(lab):
    out = {}
    for k in range(1, lab.max() + 1):
        cs, _ = cv2.findContours((lab == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        out[k] = max(cs, key=cv2.contourArea)[:, 0, :].astype(float)
    return out


def _match(lab, ref, min_iou):
    """Every reference object has one read object with IoU ≥ min_iou (labels may be renumbered)."""
    assert lab.shape == ref.shape and lab.max() == ref.max()
    for k in range(1, ref.max() + 1):
        m = ref == k
        vals, counts = np.unique(lab[m], return_counts=True)
        j = vals[np.argmax(counts)]
        assert j > 0
        iou = (m & (lab == j)).sum() / (m | (lab == j)).sum()
        assert iou >= min_iou, (k, iou)


def test_label_image_folder_with_any_suffix_and_dtype(tmp_path, scene):
    img, lab = scene
    cv2.imwrite(str(tmp_path / "a.png"), img)
    tifffile.imwrite(tmp_path / "a_mask.tif", lab.astype(np.uint16))
    cv2.imwrite(str(tmp_path / "b10.png"), img[::-1])
    cv2.imwrite(str(tmp_path / "b10_labels.png"), lab[::-1].astype(np.uint16))
    cv2.imwrite(str(tmp_path / "b2.png"), img[:, ::-1])
    tifffile.imwrite(tmp_path / "b2_masks.tif", lab[:, ::-1].astype(np.int32))
    assert detect_format(tmp_path) == "masks"
    anns = load_annotations(tmp_path)
    assert [a.name for a in anns] == ["a", "b2", "b10"]  # natural order
    np.testing.assert_array_equal(anns[0].labels, lab)
    np.testing.assert_array_equal(anns[1].labels, lab[:, ::-1])
    np.testing.assert_array_equal(anns[2].labels, lab[::-1])
    assert all(a.complete for a in anns) and anns[0].image.dtype == np.uint8


def test_mask_dir_pairs_by_stem(tmp_path, scene):
    img, lab = scene
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "x.png"), img)
    tifffile.imwrite(tmp_path / "lab" / "x.tif", lab.astype(np.uint16))
    anns = load_annotations(tmp_path / "img", mask_dir=tmp_path / "lab")
    np.testing.assert_array_equal(anns[0].labels, lab)


def test_one_mask_per_object(tmp_path, scene):
    img, lab = scene
    d = tmp_path / "s1"
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    cv2.imwrite(str(d / "images" / "s1.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    for k in range(1, lab.max() + 1):
        cv2.imwrite(str(d / "masks" / f"m{k}.png"), ((lab == k) * 255).astype(np.uint8))
    assert detect_format(tmp_path) == "objects"
    (a,) = load_annotations(tmp_path)
    np.testing.assert_array_equal(a.labels, lab)  # masks in natural order → labels 1..n
    assert a.image.shape == (96, 128, 3)


def test_coco_polygons(tmp_path, scene):
    img, lab = scene
    cv2.imwrite(str(tmp_path / "c.png"), img)
    anns = [{"id": k, "image_id": 7, "category_id": 1, "segmentation": [p.ravel().tolist()]}
            for k, p in _polys(lab).items()]
    coco = {"images": [{"id": 7, "file_name": "c.png", "height": 96, "width": 128}], "annotations": anns,
            "categories": [{"id": 1, "name": "crystal"}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    assert detect_format(tmp_path) == "coco" == detect_format(tmp_path / "instances.json")
    (a,) = load_annotations(tmp_path)
    _match(a.labels, lab, 0.75)  # pixel-centre polygons lose about half a pixel of rim


def test_labelme_polygons_roi_and_background(tmp_path, scene):
    img, lab = scene
    cv2.imwrite(str(tmp_path / "l.png"), img)
    shapes = [{"label": "crystal", "points": p.tolist(), "shape_type": "polygon", "group_id": None}
              for p in _polys(lab).values()]
    (tmp_path / "l.json").write_text(json.dumps({"shapes": shapes, "imagePath": "l.png", "imageHeight": 96,
                                                 "imageWidth": 128}))
    assert detect_format(tmp_path) == "labelme"
    (a,) = load_annotations(tmp_path)
    _match(a.labels, lab, 0.75)
    assert a.complete
    # partial: a region of interest and a background scribble; one object drawn as two shapes
    shapes2 = shapes[:2] + [{"label": "roi", "points": [[0, 0], [50, 50]], "shape_type": "rectangle"},
                            {"label": "background", "points": [[5, 85], [120, 85]], "shape_type": "line"},
                            {"label": "c", "points": [[110, 60], [118, 60], [118, 66]], "shape_type": "polygon",
                             "group_id": 3},
                            {"label": "c", "points": [[110, 70], [118, 70], [118, 76]], "shape_type": "polygon",
                             "group_id": 3}]
    (tmp_path / "l.json").write_text(json.dumps({"shapes": shapes2, "imagePath": "l.png"}))
    (a,) = load_annotations(tmp_path / "l.json")
    assert not a.complete and a.labels.max() == 3 and a.meta["n_objects"] == 3
    t = a.targets()
    assert (t[60:80, 60:100] == 0).all()  # outside the roi, unlabelled
    assert (t[85, 10:110] == 1).all()  # the background line
    assert (t[:50, :50] > 0).all()


def test_scribbles_and_roi_files(tmp_path, scene):
    img, lab = scene
    cv2.imwrite(str(tmp_path / "s.png"), img)
    scr = np.zeros(lab.shape, np.uint8)
    scr[2:5, :] = 1
    scr[lab == 1] = 2
    cv2.imwrite(str(tmp_path / "s_scribbles.png"), scr)
    cv2.imwrite(str(tmp_path / "r.png"), img)
    tifffile.imwrite(tmp_path / "r_mask.tif", lab.astype(np.uint16))
    roi = np.zeros(lab.shape, np.uint8)
    roi[:48] = 255
    cv2.imwrite(str(tmp_path / "r_roi.png"), roi)
    r, s = load_annotations(tmp_path)
    assert s.labels is None and not s.complete
    t = s.targets()
    assert set(np.unique(t).tolist()) == {0, 1, 2} and (t[2:5] == 1).all() and (t[lab == 1] == 2).all()
    t = r.targets(boundary_px=1)
    assert (t[48:] == 0).all() and set(np.unique(t[:48]).tolist()) == {1, 2, 3}


def test_targets_boundary_band(scene):
    _, lab = scene
    a = Annotation("x", np.zeros(lab.shape, np.uint8), lab)
    t1, t2 = a.targets(boundary_px=1), a.targets(boundary_px=2)
    assert (t1[lab == 0] == 1).all() and (t1[lab > 0] >= 2).all()
    assert (t2 == 3).sum() > (t1 == 3).sum() > 0
    assert (a.targets(boundary=False)[lab > 0] == 2).all()


def test_bad_annotations(tmp_path, scene):
    img, lab = scene
    with pytest.raises(ConfigError, match="do not exist"):
        load_annotations(tmp_path / "nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match="neither COCO .* nor LabelMe"):
        load_annotations(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="format 'voc' is not supported"):
        load_annotations(tmp_path, format="voc")
    d = tmp_path / "m"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), img)
    with pytest.raises(ConfigError, match=r"a\.png' has no annotation: expected a_mask"):
        load_annotations(d)
    cv2.imwrite(str(d / "a_mask.png"), lab[:90].astype(np.uint16))
    with pytest.raises(ImageError, match=r"is 90×128 px but image .*a\.png' is 96×128 px"):
        load_annotations(d)
    cv2.imwrite(str(d / "a_mask.png"), lab.astype(np.uint16))
    cv2.imwrite(str(d / "a_scribbles.png"), np.full(lab.shape, 7, np.uint8))
    with pytest.raises(ImageError, match=r"holds values \[7\]; expected 0 unlabelled, 1 background, 2 object"):
        load_annotations(d)
    e = tmp_path / "e"
    e.mkdir()
    tifffile.imwrite(e / "a.tif", img)
    tifffile.imwrite(e / "a_mask.tif", np.full(lab.shape, -1, np.int16))
    with pytest.raises(ImageError, match="negative labels"):
        load_annotations(e)
    (e / "b.json").write_text(json.dumps({"shapes": [{"label": "c", "points": [[1, 1], [2, 2]],
                                                      "shape_type": "polygon"}], "imagePath": "a.tif"}))
    with pytest.raises(ConfigError, match=r"shapes\[0\]: a polygon needs at least 3 points, got 2"):
        load_annotations(e / "b.json")
