"""Vision-learning benchmark: CPU inference speed vs the classical pipeline, and training time per epoch.

Run: ``python benchmarks/bench_learn.py`` (default-size models, untrained weights: speed does not
depend on the weights). Prints a table with the classical pipeline measured in the same run.
"""

from __future__ import annotations

import time

import torch

from crystalloop.vision.learn import (
    CrystalClassifier,
    UNetSegmenter,
    make_crystal_images,
    make_segmentation_set,
)
from crystalloop.vision.pipeline import analyze_image
from crystalloop.vision.render import render_particles, sample_particles


def _time(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main(reps: int = 3) -> None:
    torch.set_num_threads(2)
    parts = sample_particles([20, 40, 80], [40, 30, 10], shape=(960, 1280), pixel_size_um=1.0, seed=0)
    frame, _ = render_particles(parts, shape=(960, 1280), pixel_size_um=1.0, seed=0)
    # U-Net at default size: fit one short epoch so the model is usable, then time inference
    imgs, masks, _, _ = make_segmentation_set(2, shape=(256, 256), seed=0)
    seg = UNetSegmenter(epochs=1, tiles_per_epoch=8, device="cpu")
    t0 = time.perf_counter()
    seg.fit(imgs, masks)
    seg_epoch = time.perf_counter() - t0
    t_seg = _time(lambda: seg.predict([frame]), reps)
    t_inst = _time(lambda: seg.segment_instances([frame]), reps)
    t_classic = _time(lambda: analyze_image(frame, pixel_size_um=1.0), reps)
    X, Y = make_crystal_images(64, seed=0)
    clf = CrystalClassifier(epochs=1, device="cpu")
    t0 = time.perf_counter()
    clf.fit(X, Y)
    clf_epoch = (time.perf_counter() - t0) * 1.0
    t_clf = _time(lambda: clf.predict_proba(X), reps) / len(X)
    rows = [
        ("classical pipeline 1280×960 (baseline)", 1 / t_classic, 1.0),
        ("U-Net predict 1280×960 (tiled 512)", 1 / t_seg, t_classic / t_seg),
        ("U-Net + instances 1280×960", 1 / t_inst, t_classic / t_inst),
        ("classifier 128×128 crops", 1 / t_clf, t_classic / t_clf),
    ]
    print(f"{'task':45s} {'img/s':>10s} {'vs classical':>13s}")
    for name, ips, ratio in rows:
        print(f"{name:45s} {ips:10.2f} {ratio:12.2f}x")
    print(f"U-Net training: {seg_epoch:.1f} s per 8 tiles of 128 px -> default 64 tiles x 30 epochs ≈ {seg_epoch * 8 * 30 / 60:.1f} min")
    print(f"classifier training: {clf_epoch:.1f} s per epoch of 64 images (128 px)")


if __name__ == "__main__":
    main()
