"""crystalloop vision train-seg ANNOTATIONS --out MODEL, then crystalloop psd IMAGES --model MODEL."""

import json

import cv2
import numpy as np
import pandas as pd
import tifffile
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.vision import render_particles

runner = CliRunner()


def _write_scene(d, name, seed):
    rng = np.random.default_rng(seed)
    n = 12
    p = pd.DataFrame({"x_px": rng.uniform(12, 116, n), "y_px": rng.uniform(12, 116, n),
                      "length_um": rng.uniform(12, 20, n), "width_um": rng.uniform(8, 12, n),
                      "angle_deg": rng.uniform(0, 180, n), "depth": np.zeros(n)})
    img, truth, lab = render_particles(p, shape=(128, 128), pixel_size_um=1.0, seed=seed, return_labels=True)
    cv2.imwrite(str(d / f"{name}.png"), img)
    tifffile.imwrite(d / f"{name}_mask.tif", lab.astype(np.uint16))
    return lab


def test_train_seg_then_psd_with_the_model(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    for k in range(2):
        _write_scene(ann, f"a{k}", k + 1)
    new = tmp_path / "new"
    new.mkdir()
    lab = _write_scene(new, "b", 7)
    (new / "b_mask.tif").unlink()
    model = tmp_path / "model"
    res = runner.invoke(app, ["vision", "train-seg", str(ann), "--out", str(model), "--trees", "12"])
    assert res.exit_code == 0, res.output
    assert "pixel: trained on 2 annotated image(s)" in res.output and "instance F1@0.5" in res.output
    assert json.loads((model / "scores.json").read_text())["f1"] >= 0.7
    assert json.loads((model / "training.json").read_text())["settings"]["n_estimators"] == 12
    out = tmp_path / "psd"
    res = runner.invoke(app, ["psd", str(new), "--pixel-size-um", "1.0", "--model", str(model), "--out", str(out),
                              "--edge", "include"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segmentation"] == f"model {model}"
    n_true = len(np.unique(lab)) - 1
    assert abs(summary["particles_detected"] - n_true) <= 2
    # refused: a non-empty model folder, an unknown method, --labels with --model, a folder without a model
    res = runner.invoke(app, ["vision", "train-seg", str(ann), "--out", str(model)])
    assert res.exit_code == 2 and "is not empty" in res.output
    res = runner.invoke(app, ["vision", "train-seg", str(ann), "--out", str(tmp_path / "m2"), "--method", "svm"])
    assert res.exit_code == 2 and "method='svm'" in res.output
    res = runner.invoke(app, ["psd", str(new), "--pixel-size-um", "1", "--model", str(ann), "--out", str(tmp_path / "p2")])
    assert res.exit_code == 2 and "not a segmentation model folder" in res.output
