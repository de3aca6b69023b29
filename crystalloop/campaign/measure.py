"""Measure a campaign run from its probe images: the vision pipeline, pooled particles, x50,3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["measure_images"]


def measure_images(frames: Sequence[Any], *, settings: Any = None, min_particles: int = 30) -> dict[str, Any]:
    """Product D50 from probe frames: the vision pipeline on each frame, particle tables
    pooled, ``x50,3`` of the kept particles (volume-weighted by the particles' ECD).

    Returns ``{"D50_image_um", "D10_image_um", "D90_image_um", "n_particles", "n_frames", "particles"}``;
    sizes are NaN when fewer than ``min_particles`` particles were kept.
    """
    from crystalloop.vision import analyze_images

    if not frames:
        return {"D50_image_um": np.nan, "D10_image_um": np.nan, "D90_image_um": np.nan, "n_particles": 0,
                "n_frames": 0, "particles": pd.DataFrame()}
    px = float(frames[0].pixel_size_um)
    b = analyze_images([(f"frame{i:02d}", f.image) for i, f in enumerate(frames)], pixel_size_um=px,
                       settings=settings)
    n = int(b.summary["particles_kept"])
    ok = n >= int(min_particles)
    return {"D50_image_um": float(b.summary["x50_3_um"]) if ok else np.nan,
            "D10_image_um": float(b.summary["x10_3_um"]) if ok else np.nan,
            "D90_image_um": float(b.summary["x90_3_um"]) if ok else np.nan,
            "n_particles": n, "n_frames": len(frames), "particles": b.particles}
