"""Workflows behind ``crystalloop vision ...`` and the commands' error handling."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision.learn import train_classifier, train_segmenter

runner = CliRunner()
TINY_SEG = dict(base_filters=4, depth=2, tile_size=32, tiles_per_epoch=8, epochs=2, n_threads=1, device="cpu")


def test_train_segmenter_from_mask_folder_and_predict(tmp_path, blobs):
    imgs, masks = blobs
    data = tmp_path / "data"
    data.mkdir()
    for i, (im, m) in enumerate(zip(imgs, masks, strict=True)):
        cv2.imwrite(str(data / f"im{i}.png"), im)
        lab = cv2.connectedComponents(m.astype(np.uint8))[1]
        cv2.imwrite(str(data / f"im{i}_mask.png"), lab.astype(np.uint16))
    m = train_segmenter(tmp_path / "out", image_dir=data, test_fraction=0.34, **TINY_SEG)
    assert (m["n_train"], m["n_test"]) == (2, 1)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0 <= saved["pixel_accuracy"] <= 1 and "instance_f1" in saved["instances"]
    assert (tmp_path / "out" / "training.png").stat().st_size > 3000
    res = runner.invoke(app, ["vision", "predict", str(tmp_path / "out" / "model"), str(data / "im0.png"),
                              "--out", str(tmp_path / "pred"), "--pixel-size-um", "2"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(table) == 1 and "n_objects" in table.columns
    assert (tmp_path / "pred" / "labels" / "im0_labels.png").exists()


def test_train_classifier_from_label_table(tmp_path):
    from crystalloop.vision.learn import make_crystal_images

    X, Y = make_crystal_images(24, shape=(32, 32), pixel_size_um=5.0, p_empty=0.3, p_too_concentrated=0.3, seed=2)
    Y = Y[["object_present", "too_concentrated"]]
    for i, x in enumerate(X):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), x)
    Y.assign(file=[f"f{i}.png" for i in range(len(X))]).to_csv(tmp_path / "labels.csv", index=False)
    rep = train_classifier(tmp_path / "out", labels_csv=tmp_path / "labels.csv", input_size=32, filters=(4, 8), epochs=2,
                           validation_fraction=0.25, n_threads=1, device="cpu")
    assert list(rep.index) == ["object_present", "too_concentrated", "micro avg"]
    assert (tmp_path / "out" / "report.csv").exists() and (tmp_path / "out" / "thresholds.json").exists()
    res = runner.invoke(app, ["vision", "predict", str(tmp_path / "out" / "model"), str(tmp_path / "f*.png"),
                              "--out", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    assert {"object_present_proba", "too_concentrated"} <= set(pd.read_csv(tmp_path / "pred" / "predictions.csv").columns)


def test_workflow_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="give training data"):
        train_segmenter(tmp_path)
    with pytest.raises(ConfigError, match="targets='instances'"):
        train_segmenter(tmp_path, synthetic=2, targets="instances")
    (tmp_path / "t.csv").write_text("image,a\nx.png,1\n")
    with pytest.raises(SchemaError, match="needs a 'file' column"):
        train_classifier(tmp_path, labels_csv=tmp_path / "t.csv")


@pytest.mark.parametrize("columns", ["80", "200"])
def test_cli_errors_are_one_line(tmp_path, columns):
    env = {"COLUMNS": columns}
    res = runner.invoke(app, ["vision", "train-seg", "--out", str(tmp_path)], env=env)
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert res.output == "error: give training data: --coco=..., --images=... or --synthetic=N\n"  # the options, not coco=
    res = runner.invoke(app, ["vision", "predict", str(tmp_path / "nomodel"), str(tmp_path)], env=env)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1
    assert errors[0] == (f"error: {tmp_path / 'nomodel'} is not a saved crystalloop model: "
                         f"{tmp_path / 'nomodel' / 'config.json'} not found")
    assert runner.invoke(app, ["vision", "--help"], env=env).exit_code == 0
