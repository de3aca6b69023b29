"""``crystalloop psd`` outputs a lab can use: label TIFFs in and out, overwrite protection, every
setting on the command line, the settings actually used, scale bars, edge handling."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.vision import render_particles, sample_particles
from crystalloop.vision.labelio import read_labels, write_labels
from crystalloop.vision.plots import scale_bar_length


@pytest.fixture
def frames(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    for i in range(2):
        p = sample_particles([30.0, 50.0], [6, 6], shape=(220, 300), pixel_size_um=1.0, depth_range=(0, 0.2), seed=i)
        img, _ = render_particles(p, shape=(220, 300), pixel_size_um=1.0, seed=i)
        cv2.imwrite(str(d / f"frame{i}.png"), img)
    return d


def _psd(*args):
    return CliRunner().invoke(app, ["psd", *map(str, args)])


def test_non_empty_out_is_refused_and_a_typo_never_replaces_results(tmp_path, frames):
    out = tmp_path / "out"
    assert _psd(frames, "--pixel-size-um", 2, "--out", out).exit_code == 0
    before = (out / "particles.csv").read_bytes()
    assert len(pd.read_csv(out / "particles.csv")) > 5
    r = _psd(frames, "--pixel-size-um", 2, "--out", out)
    assert r.exit_code == 2 and "is not empty" in r.output and "--overwrite" in r.output
    # the typo case: a mistyped input folder with an existing output folder
    r = _psd(tmp_path / "imgg", "--pixel-size-um", 2, "--out", out)
    assert r.exit_code == 2 and "no image found" in r.output and "imgg" in r.output
    r = _psd(tmp_path / "imgg" / "*.png", "--pixel-size-um", 2, "--out", out, "--overwrite")
    assert r.exit_code == 2 and "no image found" in r.output
    assert (out / "particles.csv").read_bytes() == before  # untouched either way
    r = _psd(frames / "frame0.png", "--pixel-size-um", 2, "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["images_read"] == 1
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["frame0_labels.tif"]  # no stale frame1 files
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["frame0_overlay.png"]


def test_label_tiffs_beside_the_table_and_psd_labels_measures_them(tmp_path, frames):
    out = tmp_path / "out"
    assert _psd(frames, "--pixel-size-um", 2, "--out", out).exit_code == 0
    parts = pd.read_csv(out / "particles.csv")
    f0 = out / "labels" / "frame0_labels.tif"
    with tifffile.TiffFile(f0) as tf:
        assert tf.is_imagej and tf.pages[0].dtype == np.uint16 and tf.imagej_metadata["unit"] == "um"
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(0.5)  # 2 µm per pixel
        lab = tf.asarray()
    mine = parts[parts.image.str.endswith("frame0.png")]
    assert sorted(np.unique(lab[lab > 0]).tolist()) == sorted(mine.label.tolist())
    areas = np.bincount(lab.ravel())
    assert (areas[mine.label] == mine.area_px).all()
    # measure the label images as another tool's output, with and without their images
    out2 = tmp_path / "out2"
    r = _psd(frames, "--labels", out / "labels", "--pixel-size-um", 2, "--out", out2)
    assert r.exit_code == 0, r.output
    again = pd.read_csv(out2 / "particles.csv")
    assert len(again) == len(parts)
    for col in ("area_px", "ecd_um", "feret_max_um", "length_um", "width_um", "edge"):
        assert again[col].to_numpy() == pytest.approx(parts[col].to_numpy()), col
    assert (out2 / "overlays" / "frame0_labels_overlay.png").is_file()
    out3 = tmp_path / "out3"
    r = _psd("--labels", f0, "--pixel-size-um", 2, "--out", out3)
    assert r.exit_code == 0, r.output
    t = pd.read_csv(out3 / "particles.csv")
    assert t.focus.isna().all() and len(t) == len(mine)
    r = _psd(frames, "--labels", f0, "--pixel-size-um", 2, "--out", tmp_path / "out4")
    assert r.exit_code == 2 and "1 label image(s) but 2 image(s)" in r.output


def test_read_labels_from_other_tools(tmp_path):
    lab = np.zeros((40, 50), np.int32)
    lab[5:15, 5:20], lab[20:30, 30:45] = 7, 70000
    write_labels(tmp_path / "big.tif", lab, pixel_size_um=0.5)  # > 65535: 32-bit TIFF
    assert (read_labels(tmp_path / "big.tif") == lab).all()
    mask = ((lab > 0) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)  # a binary mask: components become objects
    m = read_labels(tmp_path / "mask.png")
    assert m.max() == 2 and (m > 0).sum() == (lab > 0).sum()
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 1.5, np.float32))
    with pytest.raises(Exception, match="non-integer"):
        read_labels(tmp_path / "f.tif")
    with pytest.raises(Exception, match="does not exist"):
        read_labels(tmp_path / "nope.tif")


def test_every_setting_on_the_command_line_overrides_the_json(tmp_path, frames):
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"min_size_px": 5, "watershed_strength": 0.2, "background_radius_px": 30}))
    out = tmp_path / "out"
    r = _psd(frames, "--pixel-size-um", 2, "--out", out, "--settings", js, "--min-size-px", 40,
             "--background", "median", "--threshold", "triangle", "--threshold-offset", 0.1, "--noise-floor", 3,
             "--closing-radius-px", 0, "--no-fill-holes", "--no-watershed", "--no-split-needles",
             "--circularity-range", "0.1,1.0", "--skeleton-min-aspect", 3, "--edge", "include",
             "--no-normalize", "--adaptive-block-px", 31)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())["settings"]
    assert s["min_size_px"] == 40 and s["watershed_strength"] == 0.2 and s["background_radius_px"] == 30
    assert s["background"] == "median" and s["threshold"] == "triangle" and s["threshold_offset"] == 0.1
    assert s["noise_floor"] == 3 and s["closing_radius_px"] == 0 and s["fill_holes"] is False
    assert s["watershed"] is False and s["split_needles"] is False and s["circularity_range"] == [0.1, 1.0]
    assert s["skeleton_min_aspect"] == 3 and s["exclude_edge"] is False and s["normalize"] is False
    assert s["adaptive_block_px"] == 31
    for bad, msg in ((["--threshold", "hi"], "--threshold must be"), (["--edge", "drop"], "--edge must be"),
                     (["--circularity-range", "0.5"], "LOW,HIGH"), (["--adaptive-block-px", 4], "odd integer"),
                     (["--edge-correction", "x"], "--edge-correction"), (["--size", "area"], "--size must be")):
        r = _psd(frames, "--pixel-size-um", 2, "--out", tmp_path / "bad", *bad)
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)


def test_summary_records_what_was_used_and_edge_particles(tmp_path, frames):
    out = tmp_path / "out"
    assert _psd(frames, "--pixel-size-um", 2, "--out", out).exit_code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["settings_requested"]["polarity"] == "auto" and s["settings"]["polarity"] == "dark"
    assert s["polarity"] == "dark" and len(s["images"]) == 2
    assert all(i["polarity"] == "dark" and i["threshold_level"] > 0 for i in s["images"])
    assert s["edge_correction"] == "miles_lantuejoul" and s["particles_edge"] >= 1
    parts = pd.read_csv(out / "particles.csv")
    assert s["particles_edge"] == int(parts.edge.sum())
    # PSDs by length and by width beside the one by ECD
    for name, col in (("psd_length.csv", "length_um"), ("psd_width.csv", "width_um")):
        t = pd.read_csv(out / name)
        assert t["count"].sum() == s["particles_kept"] and t.size_upper_um.iloc[-1] >= parts[col][parts.kept].max()
    by = s["by_size"]
    assert by["ecd_um"]["x50_0_um"] == pytest.approx(s["x50_0_um"])
    assert by["width_um"]["x50_0_um"] < by["ecd_um"]["x50_0_um"] < by["length_um"]["x50_0_um"]
    assert (parts.weight[parts.kept] > 1).all() and (parts.weight[parts.edge] == 0).all()
    # edge particles sized by choice
    out2 = tmp_path / "out2"
    assert _psd(frames, "--pixel-size-um", 2, "--out", out2, "--edge", "include").exit_code == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["particles_edge_sized"] == s["particles_edge"] and s2["particles_kept"] == s2["particles_detected"]


def test_overlays_carry_a_scale_bar(tmp_path, frames):
    out = tmp_path / "out"
    assert _psd(frames, "--pixel-size-um", 2, "--out", out).exit_code == 0
    ov = cv2.imread(str(out / "overlays" / "frame0_overlay.png"))
    h, w = ov.shape[:2]
    corner = ov[h * 3 // 4 :, w // 2 :]
    white = np.all(corner == 255, axis=2)
    runs = white.sum(axis=1)
    bar_um = scale_bar_length(w, 2.0)
    assert bar_um == 100.0 and runs.max() == pytest.approx(bar_um / 2.0, abs=1)  # 50 px bar
