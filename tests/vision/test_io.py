"""Reading PNG/JPEG/BMP/TIFF (8/16-bit, grey/RGB, stacks), folders, globs, corrupt files."""

import cv2
import numpy as np
import pytest
import tifffile

from crystalloop.errors import ImageError
from crystalloop.vision import expand_sources, iter_images, read_image, read_stack


@pytest.fixture
def folder(tmp_path):
    g = (np.arange(48 * 64) % 251).reshape(48, 64).astype(np.uint8)
    rgb = np.dstack([g, 255 - g, np.full_like(g, 7)])
    cv2.imwrite(str(tmp_path / "f2.png"), g)
    cv2.imwrite(str(tmp_path / "f10.bmp"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "f1.jpg"), g)
    tifffile.imwrite(tmp_path / "s16.tif", np.stack([g.astype(np.uint16) * 200, g.astype(np.uint16)]))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path, g, rgb


def test_formats_round_trip(folder):
    d, g, rgb = folder
    assert np.array_equal(read_image(d / "f2.png"), g)
    assert np.array_equal(read_image(d / "f10.bmp"), rgb)  # RGB order, not BGR
    assert np.abs(read_image(d / "f1.jpg").astype(int) - g).mean() < 3
    stack = read_stack(d / "s16.tif")
    assert len(stack) == 2 and stack[0].dtype == np.uint16 and stack[0].max() == 250 * 200
    assert np.array_equal(read_image(d / "s16.tif", page=1), g)


def test_folder_glob_natural_order_and_skipping(folder):
    d, _, _ = folder
    files = expand_sources(d)
    names = [f.split("/")[-1] for f in files]
    assert names == ["broken.png", "empty.tif", "f1.jpg", "f2.png", "f10.bmp", "s16.tif"]
    assert [f.split("/")[-1] for f in expand_sources(str(d / "f*.png"))] == ["f2.png"]
    skipped = []
    got = [n.split("/")[-1] for n, _ in iter_images([d], skipped=skipped)]
    assert got == ["f1.jpg", "f2.png", "f10.bmp", "s16.tif[0]", "s16.tif[1]"]
    reasons = dict((f.split("/")[-1], r) for f, r in skipped)
    assert set(reasons) == {"broken.png", "empty.tif"}
    assert "cannot decode" in reasons["broken.png"] and "0 bytes" in reasons["empty.tif"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageError, match="unsupported type '.gif'"):
        read_image(tmp_path / "a.gif")
    with pytest.raises(ImageError, match="page 3 does not exist"):
        cv2.imwrite(str(tmp_path / "x.png"), np.zeros((4, 4), np.uint8))
        read_image(tmp_path / "x.png", page=3)


def test_one_reader_and_one_check_for_the_whole_vision_package():
    # issue 11: the learned estimators read and check images through the same functions
    from crystalloop.vision import _validate, io, learn
    from crystalloop.vision.learn import data

    assert learn.read_image is io.read_image and data.IMAGE_SUFFIXES is io.IMAGE_SUFFIXES
    with pytest.raises(ImageError, match="contains 8 NaN/infinite pixel"):
        data.check_image(np.array([[np.nan, np.inf, 0, 0]] * 4))  # the vision-wide message
    with pytest.raises(ImageError, match="contains 8 NaN/infinite pixel"):
        _validate.check_image(np.array([[np.nan, np.inf, 0, 0]] * 4))
