"""Overlays (contours coloured by status) and PSD plots, saved as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from crystalloop.vision._validate import check_image, check_same_shape
from crystalloop.vision.preprocess import to_uint8
from crystalloop.vision.psd import fit_lognormal, lognormal_q3

__all__ = ["overlay", "save_overlay", "plot_psd", "STATUS_COLORS"]

#: RGB contour colours: kept (used for the PSD), edge (cut by the frame), out of focus.
STATUS_COLORS = {"kept": (0, 200, 0), "edge": (255, 150, 0), "out_of_focus": (60, 120, 255)}


def overlay(image: np.ndarray, labels: np.ndarray, particles: pd.DataFrame | None = None,
            *, thickness: int = 1) -> np.ndarray:
    """RGB uint8 image with each particle's outline coloured by status (:data:`STATUS_COLORS`).

    ``particles`` needs ``label``, ``edge`` and (optionally) ``in_focus`` columns; without it
    every object is drawn as kept.
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
    if lab.max() == 0:
        return rgb
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
    return rgb


def save_overlay(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray,
                 particles: pd.DataFrame | None = None) -> Path:
    """Write :func:`overlay` as a PNG."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(p), cv2.cvtColor(overlay(image, labels, particles), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not write overlay PNG {str(p)!r}")
    return p


def plot_psd(table: pd.DataFrame, path: str | os.PathLike | None = None, *, sizes=None,
             title: str = "Particle size distribution", size_label: str = "ECD") -> Path | object:
    """q3 bars + Q3 curve (+ the log-normal fit when ``sizes`` are given) on log size axis.

    Returns the path written, or the matplotlib Figure when ``path`` is None.
    """
    from crystalloop._plotting import pyplot

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
    from crystalloop._plotting import save_figure

    return save_figure(fig, path)
