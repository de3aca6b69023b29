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


def _stored_run(tmp_path, pixel_sizes):
    """A store with one run whose frames (disks of 40 px) are recorded at ``pixel_sizes``."""
    from crystalloop.store import ExperimentStore

    db_path = tmp_path / "s.db"
    with ExperimentStore(db_path) as db:
        rid = db.start_run(recipe=None, backend="test", kind="simulation")
        for i, px in enumerate(pixel_sizes):
            p = pd.DataFrame({"x_px": [60.0, 160.0], "y_px": [60.0, 120.0], "length_um": [40.0 * px] * 2,
                              "width_um": [40.0 * px] * 2, "depth": [0.0, 0.0]})
            img, _ = render_particles(p, shape=(200, 260), pixel_size_um=px, seed=i)
            f = tmp_path / f"f{i}.png"
            cv2.imwrite(str(f), img)
            db.log_image(rid, 60.0 * i, f, px)
        db.finish_run(rid)
    return db_path, rid


def test_psd_command_from_a_stored_run_uses_the_recorded_pixel_size(tmp_path):
    db, rid = _stored_run(tmp_path, [2.5, 2.5, 2.5])
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["psd", "--run", str(rid), "--store", str(db), "--out", str(out), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert "3 image(s) at 2.5 µm/px" in r.output and "images read: 3" in r.output
    parts = pd.read_csv(out / "particles.csv")
    assert len(parts) == 6
    assert abs(parts.ecd_um.median() - 100.0) < 3.0  # 40 px disks at 2.5 µm/px
    r = CliRunner().invoke(app, ["psd", "--run", str(rid), "--store", str(db), "--last", "1", "--out",
                                 str(tmp_path / "o1"), "--no-overlays"])
    assert r.exit_code == 0 and "1 image(s)" in r.output, r.output
    assert len(pd.read_csv(tmp_path / "o1" / "particles.csv")) == 2


def test_psd_command_run_errors_name_the_problem(tmp_path):
    db, rid = _stored_run(tmp_path, [2.5, 1.0])
    runner = CliRunner()
    r = runner.invoke(app, ["psd", "--run", str(rid), "--store", str(db)])
    assert r.exit_code == 2 and "[1.0, 2.5]" in r.output  # mixed pixel sizes
    r = runner.invoke(app, ["psd", "--run", str(rid), "--store", str(db), "--last", "1", "--pixel-size-um", "2"])
    assert r.exit_code == 2 and "disagrees with the 1.0 µm" in r.output
    r = runner.invoke(app, ["psd", "x.png", "--run", str(rid), "--store", str(db)])
    assert r.exit_code == 2 and "not both" in r.output
    r = runner.invoke(app, ["psd", "--run", "1", "--store", str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no experiment store" in r.output
    r = runner.invoke(app, ["psd", str(tmp_path), "--last", "1", "--pixel-size-um", "1"])
    assert r.exit_code == 2 and "with --run" in r.output
