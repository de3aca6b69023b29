"""Overlays (contours coloured by status) and PSD plots, saved as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from crystalloop._plotting import pyplot, save_figure, save_png
from crystalloop.vision._validate import check_image, check_pixel_size, check_same_shape
from crystalloop.vision.preprocess import to_uint8
from crystalloop.vision.psd import fit_lognormal, lognormal_q3

__all__ = ["overlay", "save_overlay", "plot_psd", "STATUS_COLORS", "scale_bar_length", "draw_scale_bar"]

#: RGB contour colours: kept (used for the PSD), edge (cut by the frame), out of focus.
STATUS_COLORS = {"kept": (0, 200, 0), "edge": (255, 150, 0), "out_of_focus": (60, 120, 255)}


def scale_bar_length(image_width_px: int, pixel_size_um: float, *, fraction: float = 0.2) -> float:
    """A round scale-bar length (1, 2 or 5 × 10^k µm) close to ``fraction`` of the image width.

    >>> scale_bar_length(1280, 1.5)
    200.0
    """
    target = max(image_width_px * fraction * pixel_size_um, 1e-12)
    k = np.floor(np.log10(target))
    best = max((m * 10.0**k for m in (1.0, 2.0, 5.0, 10.0) if m * 10.0**k <= target), default=10.0**k)
    return float(best)


def draw_scale_bar(rgb: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """Draw a scale bar with its length (in µm, written ``um``) in the lower right corner, in
    place; white on a dark box so it reads on any background. Returns ``rgb``."""
    h, w = rgb.shape[:2]
    length_um = scale_bar_length(w, pixel_size_um)
    n = max(int(round(length_um / pixel_size_um)), 1)
    text = f"{length_um:g} um" if length_um >= 1 else f"{length_um * 1000:g} nm"
    scale = max(0.35, min(w, h) / 1400)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    bar_h = max(3, h // 160)
    m = max(6, w // 100)
    box_w = max(n, tw) + 2 * m
    box_h = th + base + bar_h + 3 * m // 2
    x1, y1 = w - m, h - m
    x0, y0 = max(x1 - box_w, 0), max(y1 - box_h, 0)
    sub = rgb[y0:y1, x0:x1]
    sub[:] = (sub.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken the box
    bx1 = x1 - m // 2
    bx0 = max(bx1 - n, 0)
    cv2.rectangle(rgb, (bx0, y1 - m // 2 - bar_h), (bx1 - 1, y1 - m // 2 - 1), (255, 255, 255), -1)
    cv2.putText(rgb, text, (bx1 - tw, y1 - m // 2 - bar_h - m // 2 - base + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return rgb


def overlay(image: np.ndarray, labels: np.ndarray, particles: pd.DataFrame | None = None,
            *, thickness: int = 1, pixel_size_um: float | None = None) -> np.ndarray:
    """RGB uint8 image with each particle's outline coloured by status (:data:`STATUS_COLORS`).

    ``particles`` needs ``label``, ``edge`` and (optionally) ``in_focus`` columns; without it
    every object is drawn as kept. With ``pixel_size_um`` a scale bar is drawn (lower right).
    """
    img = check_image(image)
    lab = np.asarray(check_image(labels, "labels", allow_color=False)).astype(np.int32)
    check_same_shape(lab, img, "labels", "image")
    if img.ndim == 3:
        rgb = np.stack([to_uint8(img[:, :, c]) if img.dtype != np.uint8 else img[:, :, c] for c in range(3)], axis=2)
    else:
        g = img if img.dtype == np.uint8 else to_uint8(img, saturate=0.1)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    if pixel_size_um is not None:
        pixel_size_um = check_pixel_size(pixel_size_um)
    if lab.max() == 0:
        return rgb if pixel_size_um is None else draw_scale_bar(rgb, pixel_size_um)
    status = np.zeros(int(lab.max()) + 1, np.int8)  # 0 none, 1 kept, 2 edge, 3 out of focus
    if particles is None or len(particles) == 0:
        status[1:] = 1
    else:
        ids = particles["label"].to_numpy(int)
        st = np.ones(len(ids), np.int8)
        if "in_focus" in particles:
            st[~particles["in_focus"].to_numpy(bool)] = 3
        st[particles["edge"].to_numpy(bool)] = 2
        status[ids] = st
    labf = lab.astype(np.float32)
    k = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    boundary = (lab > 0) & (cv2.erode(labf, k, borderType=cv2.BORDER_CONSTANT, borderValue=0) != labf)
    s = status[lab]
    for code, name in ((1, "kept"), (2, "edge"), (3, "out_of_focus")):
        rgb[boundary & (s == code)] = STATUS_COLORS[name]
    return rgb if pixel_size_um is None else draw_scale_bar(rgb, pixel_size_um)


def save_overlay(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray,
                 particles: pd.DataFrame | None = None, *, pixel_size_um: float | None = None) -> Path:
    """Write :func:`overlay` (with a scale bar when ``pixel_size_um`` is given) as a PNG."""
    return save_png(overlay(image, labels, particles, pixel_size_um=pixel_size_um), path)


def plot_psd(table: pd.DataFrame, path: str | os.PathLike | None = None, *, sizes=None,
             title: str = "Particle size distribution", size_label: str = "ECD") -> Path | object:
    """q3 bars + Q3 curve (+ the log-normal fit when ``sizes`` are given) on log size axis.

    Returns the path written, or the matplotlib Figure when ``path`` is None.
    """
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if len(table):
        lo, hi = table["size_lower_um"].to_numpy(), table["size_upper_um"].to_numpy()
        ax.bar(lo, table["q3"].to_numpy(), width=hi - lo, align="edge", color="#9ecae1", edgecolor="#3182bd",
               label="q3 (1/µm)")
        ax.set_xscale("log" if lo[0] > 0 else "linear")
        ax2 = ax.twinx()
        ax2.plot(hi, table["Q3"].to_numpy(), "o-", color="#de2d26", ms=3, label="Q3")
        if sizes is not None and len(sizes):
            x50, s = fit_lognormal(np.asarray(sizes), r=3)
            if np.isfinite(x50) and s > 0:
                xx = np.geomspace(max(lo[0], 1e-3), hi[-1], 200)
                ax2.plot(xx, lognormal_q3(xx, x50, s), "--", color="k",
                         label=f"log-normal x50,3={x50:.1f} µm, s={s:.2f}")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("Q3 (cumulative volume fraction)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no particles", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"{size_label} (µm)")
    ax.set_ylabel("q3 (1/µm)")
    ax.set_title(title)
    fig.tight_layout()
    if path is None:
        return fig
    return save_figure(fig, path)
