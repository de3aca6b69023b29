"""``crystalloop psd``: outputs, summary, skipped files, missing pixel size."""

import json

import cv2
import pandas as pd
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.vision import render_particles, sample_particles


def test_psd_command_writes_everything(tmp_path):
    for i in range(2):
        p = sample_particles([30.0, 50.0], [5, 5], shape=(200, 260), pixel_size_um=1.0, depth_range=(0, 0.2), seed=i)
        img, _ = render_particles(p, shape=(200, 260), pixel_size_um=1.0, seed=i)
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), img)
    (tmp_path / "corrupt.png").write_bytes(b"nope")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["psd", str(tmp_path), "--pixel-size-um", "2.0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "images read: 2, skipped: 1" in r.output and "corrupt.png" in r.output and "x50,3" in r.output
    for name in ("particles.csv", "psd.csv", "summary.json", "psd.png", "overlays/frame0_overlay.png"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    parts = pd.read_csv(out / "particles.csv")
    assert s["images_read"] == 2 and s["images_skipped"] == 1 and s["particles_detected"] == len(parts) > 5
    assert s["skipped"][0]["file"].endswith("corrupt.png")
    kept = parts[parts.kept]
    assert 55 < kept.ecd_um.median() < 105  # 30–50 px particles at 2 µm/px


def test_psd_command_needs_pixel_size(tmp_path):
    r = CliRunner().invoke(app, ["psd", str(tmp_path)])
    assert r.exit_code == 2 and "pixel-size-um" in r.output


def test_psd_calibrate_command(tmp_path):
    sizes = []
    for i in range(2):
        p = sample_particles([30.0, 50.0], [6, 6], shape=(200, 260), pixel_size_um=1.0, depth_range=(0, 0.2), seed=i)
        img, truth = render_particles(p, shape=(200, 260), pixel_size_um=1.0, seed=i)
        sizes.extend(truth[truth.in_frame & ~truth.edge].ecd_um)
        cv2.imwrite(str(tmp_path / f"c{i}.png"), img)
    pd.DataFrame({"size_um": sizes}).to_csv(tmp_path / "ref.csv", index=False)
    out = tmp_path / "fit.json"
    r = CliRunner().invoke(app, ["psd-calibrate", str(tmp_path / "*.png"), "--reference", str(tmp_path / "ref.csv"),
                                 "--pixel-size-um", "1.0", "--out", str(out), "--trials", "6"])
    assert r.exit_code == 0, r.output
    assert "x50" in r.output and out.is_file()
    from crystalloop.vision import PipelineSettings

    assert isinstance(PipelineSettings.load(out), PipelineSettings)
    bad = tmp_path / "bad.csv"
    bad.write_text("diameter\n3\n")
    r = CliRunner().invoke(app, ["psd-calibrate", str(tmp_path), "--reference", str(bad), "--pixel-size-um", "1"])
    assert r.exit_code == 2 and "size_um" in r.output
