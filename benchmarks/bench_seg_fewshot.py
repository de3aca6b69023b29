"""Few-shot segmentation on real annotated images: pixel classifier and U-Net vs classical and scikit-image.

    python benchmarks/bench_seg_fewshot.py                       # pixel classifier, classical, scikit-image
    python benchmarks/bench_seg_fewshot.py --unet                # + the three-class U-Net (minutes per fold)
    python benchmarks/bench_seg_fewshot.py --json /tmp/fs.json   # also write the rows as JSON

Data (``../shared/data``, real images nobody here annotated):

- imagegrains gravel, 6 RGB photos 512×512 with instance masks: leave-one-image-out; each test
  image is segmented by a model trained on the **two** images that follow it in sorted order
  (cyclically), so every model sees two annotated images and never its test image.
- StarDist nuclei ``img2d.tif`` (512×512, 125 nuclei): a left/right split, trained on one half,
  scored on the other (two folds); and, as an extra row, trained on all of ``img2d`` and scored on
  the separate ``img2d_small.tif`` (256×256, nuclei at about half the scale: a magnification change).

Methods, each run by its own public API in the same process:

- ``pixel``: :class:`crystalloop.vision.learn.PixelClassifier` (default settings, 2 threads);
- ``unet``: the three-class U-Net through :func:`make_segmenter` (``--unet``; 2 torch threads);
- ``classical``: :func:`crystalloop.vision.analyze_image` with the real-data settings of
  ``bench_vision.py`` (no training);
- ``skimage``: what a competent scikit-image user writes without training: grey, Otsu (objects on
  the minority side), remove small objects, distance-transform watershed on ``peak_local_max``
  markers, label.

Metrics per test image: instance F1 at IoU 0.5 and the median ECD error (number median of the
predicted objects' area-equivalent diameters over that of the annotated ones, −1). Train and
predict wall times are recorded with the load average, and the training's CPU seconds (all threads
of this process; on an idle 2-core machine the wall time is about half of it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from crystalloop.vision import PipelineSettings, analyze_image, read_image  # noqa: E402
from crystalloop.vision.learn import Annotation, PixelClassifier, instance_scores, make_segmenter  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSICAL = PipelineSettings(background_radius_px=40, watershed_strength=0.8)  # bench_vision.py real-data settings


def skimage_baseline(image: np.ndarray, *, min_size_px: int = 20, min_distance_px: int = 5) -> np.ndarray:
    """Otsu + small-object removal + distance watershed, written as a scikit-image user would."""
    from skimage import color, feature, filters, morphology, segmentation

    g = color.rgb2gray(image[:, :, :3]) if image.ndim == 3 else image.astype(float)
    t = filters.threshold_otsu(g)
    fg = g > t
    if fg.mean() > 0.5:  # objects are the minority side
        fg = ~fg
    fg = morphology.remove_small_objects(fg, max_size=min_size_px)
    fg = ndi.binary_fill_holes(fg)
    dist = ndi.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=min_distance_px, labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-dist, markers, mask=fg).astype(np.int32)


def load_sets() -> dict[str, list[tuple[str, list[Annotation], Annotation]]]:
    """``{set: [(fold name, training annotations, test annotation), ...]}``."""
    files = sorted(glob.glob(str(DATA / "imagegrains-fh" / "train" / "*.jpg")))
    g = [Annotation(Path(f).stem, read_image(f), tifffile.imread(f.replace(".jpg", "_mask.tif")).astype(np.int32))
         for f in files]
    n = len(g)
    gravel = [(g[i].name, [g[(i + 1) % n], g[(i + 2) % n]], g[i]) for i in range(n)]
    sd = DATA / "stardist-nuclei"
    img, lab = tifffile.imread(sd / "img2d.tif"), tifffile.imread(sd / "mask2d.tif").astype(np.int32)
    h = img.shape[1] // 2
    left = Annotation("img2d[:, :256]", img[:, :h], lab[:, :h])
    right = Annotation("img2d[:, 256:]", img[:, h:], lab[:, h:])
    small = Annotation("img2d_small", tifffile.imread(sd / "img2d_small.tif"),
                       tifffile.imread(sd / "mask2d_small.tif").astype(np.int32))
    nuclei = [("right half", [left], right), ("left half", [right], left),
              ("img2d_small (scale ×0.5)", [Annotation("img2d", img, lab)], small)]
    return {"gravel": gravel, "nuclei": nuclei}


def _row(set_name, fold, method, train, test, lab, fit_s, pred_s, fit_cpu_s=0.0) -> dict:
    s = instance_scores(test.labels, lab)
    return {"set": set_name, "test": fold, "method": method, "train_images": len(train),
            "objects": s["n_true"], "found": s["n_pred"], "f1": s["f1"], "median_ecd_err_pct": 100 * s["median_ecd_error"],
            "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "predict_s": pred_s}


def run(*, unet: bool, unet_epochs: int, seed: int, sets: list[str], unet_folds: int | None = None,
        methods: tuple[str, ...] = ("pixel", "classical", "skimage")) -> pd.DataFrame:
    import torch

    torch.set_num_threads(2)
    rows = []
    for set_name, folds in load_sets().items():
        if set_name not in sets:
            continue
        for k, (fold, train, test) in enumerate(folds):
            channels = 1 if test.image.ndim == 2 else 3
            n0 = len(rows)
            if "pixel" in methods:
                t0, c0 = time.perf_counter(), time.process_time()
                pc = PixelClassifier(n_jobs=2, random_state=seed).fit([a.image for a in train],
                                                                      [a.targets() for a in train])
                fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
                t0 = time.perf_counter()
                lab = pc.predict_labels(test.image)
                rows.append(_row(set_name, fold, "pixel", train, test, lab, fit_s, time.perf_counter() - t0, fit_cpu))
            if unet and "scale" not in fold and (unet_folds is None or k < unet_folds):
                est = make_segmenter("unet", channels=channels, random_state=seed, epochs=unet_epochs, n_threads=2,
                                     device="cpu", base_filters=16, tile_size=128, tiles_per_epoch=64)
                t0, c0 = time.perf_counter(), time.process_time()
                est.fit([a.image for a in train], [a.targets().astype(np.int64) - 1 for a in train])
                fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
                t0 = time.perf_counter()
                lab = est.predict_labels(test.image)
                rows.append(_row(set_name, fold, "unet", train, test, lab, fit_s, time.perf_counter() - t0, fit_cpu))
            if "classical" in methods:
                t0 = time.perf_counter()
                lab = analyze_image(test.image, pixel_size_um=1.0, settings=CLASSICAL).labels
                rows.append(_row(set_name, fold, "classical", train, test, lab, 0.0, time.perf_counter() - t0))
            if "skimage" in methods:
                t0 = time.perf_counter()
                lab = skimage_baseline(test.image)
                rows.append(_row(set_name, fold, "skimage", train, test, lab, 0.0, time.perf_counter() - t0))
            if len(rows) > n0:
                print(pd.DataFrame(rows[n0:]).to_string(index=False, header=False,
                                                        float_format=lambda v: f"{v:.3f}"), flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean F1, median of |median ECD error| and mean times per set and method (main folds only)."""
    main = df[~df["test"].str.contains("scale")]
    out = main.groupby(["set", "method"], sort=False).agg(
        folds=("f1", "size"), f1_mean=("f1", "mean"), f1_min=("f1", "min"),
        abs_ecd_err_pct=("median_ecd_err_pct", lambda v: float(np.median(np.abs(v)))),
        fit_s=("fit_s", "mean"), fit_cpu_s=("fit_cpu_s", "mean"), predict_s=("predict_s", "mean")).reset_index()
    ref = out[out["method"] == "classical"].set_index("set")["f1_mean"]
    if len(ref):
        out["f1_vs_classical"] = out["f1_mean"] / out["set"].map(ref)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unet", action="store_true", help="Also train the three-class U-Net per fold.")
    ap.add_argument("--unet-epochs", type=int, default=20)
    ap.add_argument("--unet-folds", type=int, default=None, help="U-Net on the first N folds of each set only.")
    ap.add_argument("--methods", default="pixel,classical,skimage", help="Comma-separated subset to run.")
    ap.add_argument("--sets", default="gravel,nuclei")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="Write the per-fold rows and the summary here.")
    a = ap.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"real data not found at {DATA} (see ../shared/data/README.md)")
    t0 = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    df = run(unet=a.unet, unet_epochs=a.unet_epochs, seed=a.seed, sets=a.sets.split(","), unet_folds=a.unet_folds,
             methods=tuple(m for m in a.methods.split(",") if m))
    print()
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summ = summarize(df)
    print()
    print(summ.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end: {os.getloadavg()[0]:.2f}")
    if a.json is not None:
        a.json.write_text(json.dumps({"rows": df.to_dict("records"), "summary": summ.to_dict("records")}, indent=1))


if __name__ == "__main__":
    main()
