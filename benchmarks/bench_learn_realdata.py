"""Vision learning on real data: binary U-Net vs the classical pipeline (issue 7 metrics).

    python benchmarks/bench_learn_realdata.py                  # both sets (a few minutes on 2 CPU threads)
    python benchmarks/bench_learn_realdata.py --epochs 12      # larger training budget

Splits (no image is used for both training and testing):

- StarDist nuclei: train on ``img2d.tif``/``mask2d.tif`` (512×512), test on the separate
  ``img2d_small.tif``/``mask2d_small.tif`` pair (256×256).
- imagegrains gravel (``imagegrains-fh/train``, 6 images): train on the first 4 in sorted file
  order, test on the last 2 (leave-one-image-out would be 6 trainings — too slow for this budget).

Training budget is small and fixed (CPU, ``torch.set_num_threads(2)``, seed 0): a compact U-Net
(8 base filters, depth 3) on random 96-px crops with the seed-002 augmentation. Instances come from
the U-Net foreground probability through :func:`crystalloop.vision.mask_to_labels` with the same
watershed strength as the classical pipeline. The baseline, measured in the same run, is the classical
pipeline :func:`crystalloop.vision.analyze_image` with the real-data settings of
``benchmarks/bench_vision.py`` (40 px rolling ball, watershed strength 0.8).

Metrics per test image (foreground = any instance): pixel accuracy, foreground IoU, instance F1 at
IoU 0.5 and the median ECD error (number-weighted median of area-equivalent diameters, %).
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tifffile  # noqa: E402

from crystalloop.vision import PipelineSettings, analyze_image, mask_to_labels, read_image  # noqa: E402
from crystalloop.vision.learn import (  # noqa: E402
    UNetSegmenter,
    instance_f1,
    iou_per_class,
    labels_to_classes,
    pixel_accuracy,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: the real-data settings of benchmarks/bench_vision.py (nuclei and gravel)
REAL_SETTINGS = PipelineSettings(background_radius_px=40, watershed_strength=0.8)
WATERSHED_STRENGTH = 0.8


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _median_ecd(lab: np.ndarray) -> float:
    a = np.bincount(lab.ravel().astype(np.int64))[1:]
    a = a[a > 0]
    return float(np.median(np.sqrt(4 * a / np.pi))) if a.size else float("nan")


def load_sets():
    """``{set: (train_images, train_labels, [(name, test_image, test_labels), ...])}``."""
    sd = DATA / "stardist-nuclei"
    nuclei = ([tifffile.imread(sd / "img2d.tif")], [tifffile.imread(sd / "mask2d.tif").astype(np.int32)],
              [("img2d_small.tif", tifffile.imread(sd / "img2d_small.tif"),
                tifffile.imread(sd / "mask2d_small.tif").astype(np.int32))])
    files = sorted(glob.glob(str(DATA / "imagegrains-fh" / "train" / "*.jpg")))
    pairs = [(Path(f).name, read_image(f), tifffile.imread(f.replace(".jpg", "_mask.tif")).astype(np.int32)) for f in files]
    grains = ([p[1] for p in pairs[:4]], [p[2] for p in pairs[:4]], pairs[4:])
    return {"stardist-nuclei": nuclei, "imagegrains": grains}


def _scores(gt: np.ndarray, lab: np.ndarray) -> dict[str, float]:
    f = instance_f1(gt, lab)
    e = _median_ecd(gt)
    return {"pixel_acc": pixel_accuracy(gt > 0, lab > 0),
            "iou_fg": float(iou_per_class((gt > 0).astype(int), (lab > 0).astype(int), 2)[1]),
            "f1": f["f1"], "n_pred": f["tp"] + f["fp"],
            "med_ecd_err_pct": 100 * (_median_ecd(lab) / e - 1)}


def run(epochs: int, tiles_per_epoch: int, seed: int = 0) -> pd.DataFrame:
    import torch

    torch.set_num_threads(2)
    rows = []
    for name, (tr_x, tr_y, test) in load_sets().items():
        model = UNetSegmenter(n_classes=2, base_filters=8, depth=3, tile_size=96, tiles_per_epoch=tiles_per_epoch,
                              batch_size=8, epochs=epochs, lr=3e-3, random_state=seed, n_threads=2, device="cpu")
        t0 = time.perf_counter()
        model.fit([_gray(x) for x in tr_x], [labels_to_classes(y, "binary") for y in tr_y])
        fit_s = time.perf_counter() - t0
        for img_name, img, gt in test:
            t0 = time.perf_counter()
            prob = model.predict_proba([_gray(img)])[0][1]
            lab = mask_to_labels(prob, watershed_strength=WATERSHED_STRENGTH)
            unet_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            classical = analyze_image(img, pixel_size_um=1.0, settings=REAL_SETTINGS).labels
            cl_s = time.perf_counter() - t0
            common = {"set": name, "test_image": img_name, "objects": int(len(np.unique(gt)) - 1),
                      "train_images": len(tr_x)}
            rows.append({**common, "method": "U-Net", **_scores(gt, lab), "fit_s": fit_s, "predict_s": unet_s})
            rows.append({**common, "method": "classical", **_scores(gt, classical), "fit_s": 0.0, "predict_s": cl_s})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--tiles-per-epoch", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = run(a.epochs, a.tiles_per_epoch, a.seed)
    print(f"U-Net budget: {a.epochs} epochs × {a.tiles_per_epoch} crops of 96 px, CPU 2 threads, seed {a.seed}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
