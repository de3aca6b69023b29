"""The PSD → particle list step: draw one frame's particles from a number distribution.

The virtual crystallizer's camera calls :func:`sample_particles` with the population balance's
size classes and the expected count per class in the imaged volume, then renders the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision._validate import check_pixel_size
from crystalloop.vision.render.shapes import KINDS, area_factors

__all__ = ["sample_particles"]


def sample_particles(
    sizes_um: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    shape: tuple[int, int] = (960, 1280),
    pixel_size_um: float,
    aspect_ratio: float | tuple[float, float] = 1.0,
    kind: str | Mapping[str, float] = "ellipse",
    agglomerate_fraction: float = 0.0,
    n_particles: int | None = None,
    depth_range: tuple[float, float] = (0.0, 1.0),
    min_size_um: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Draw the particle list of one frame from a number distribution.

    Parameters
    ----------
    sizes_um : array of float, shape (n_classes,)
        Class centres (increasing) of the size grid; the size is the particle's area-equivalent
        diameter (ECD) in the image plane.
    counts : array of float, shape (n_classes,)
        Expected number of particles per class *in this frame* (≥ 0).
    shape, pixel_size_um
        Frame shape (rows, cols) and pixel size.
    aspect_ratio : float or (low, high)
        Length/width, fixed or drawn uniformly from the range (≥ 1).
    kind : str or mapping
        One kind for all, or ``{kind: fraction}`` drawn at random.
    agglomerate_fraction : float
        Share of particles turned into agglomerates of 2–6 primaries.
    n_particles : int, optional
        Exact number of particles; by default Poisson with mean ``sum(counts)``.
    depth_range : (low, high)
        Depths drawn uniformly in this range.
    min_size_um : float
        Sizes below this are dropped (sub-pixel particles a camera cannot see).
    seed : int or Generator, optional

    Returns
    -------
    DataFrame
        ``x_px, y_px, length_um, width_um, angle_deg, kind, depth, n_primary, size_um`` — ready for
        :func:`render_particles`.
    """
    px = check_pixel_size(pixel_size_um)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(sizes_um, dtype=float).ravel()
    c = np.asarray(counts, dtype=float).ravel()
    if x.shape != c.shape or x.size == 0:
        raise SchemaError(f"sizes_um and counts must be non-empty and of equal length, got {x.size} and {c.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(c))) or np.any(c < 0) or np.any(x <= 0):
        raise SchemaError("sizes_um must be finite and > 0 µm and counts finite and ≥ 0")
    if x.size > 1 and np.any(np.diff(x) <= 0):
        raise SchemaError("sizes_um must be strictly increasing class centres")
    if not 0 <= agglomerate_fraction <= 1:
        raise ConfigError(f"agglomerate_fraction must lie in [0, 1], got {agglomerate_fraction!r}")
    total = c.sum()
    n = int(rng.poisson(total)) if n_particles is None else int(n_particles)
    if n_particles is not None and n_particles < 0:
        raise ConfigError(f"n_particles must be ≥ 0, got {n_particles!r}")
    if n == 0 or total <= 0:
        return _empty_particles()
    # class edges: geometric midpoints, extrapolated at the ends
    if x.size > 1:
        mids = np.sqrt(x[1:] * x[:-1])
        edges = np.r_[x[0] ** 2 / mids[0], mids, x[-1] ** 2 / mids[-1]]
    else:
        edges = np.array([x[0] * 0.95, x[0] * 1.05])
    k = rng.choice(x.size, size=n, p=c / total)
    size = np.exp(rng.uniform(np.log(edges[k]), np.log(edges[k + 1])))
    size = np.maximum(size, 1e-6)
    if np.ndim(aspect_ratio) == 0:
        ar = np.full(n, float(aspect_ratio))
    else:
        lo, hi = aspect_ratio
        ar = rng.uniform(float(lo), float(hi), n)
    if np.any(ar < 1):
        raise ConfigError(f"aspect_ratio must be ≥ 1 (length/width), got {aspect_ratio!r}")
    if isinstance(kind, str):
        kinds = np.full(n, kind, dtype=object)
        if kind not in KINDS:
            raise ConfigError(f"unknown particle kind {kind!r}; expected one of {list(KINDS)}")
    else:
        names = list(kind)
        bad = [k_ for k_ in names if k_ not in KINDS]
        if bad:
            raise ConfigError(f"unknown particle kind(s) {bad}; expected one of {list(KINDS)}")
        fr = np.array([float(kind[k_]) for k_ in names])
        if np.any(fr < 0) or fr.sum() <= 0:
            raise ConfigError(f"kind fractions must be ≥ 0 with a positive sum, got {dict(kind)!r}")
        kinds = np.array(names, dtype=object)[rng.choice(len(names), size=n, p=fr / fr.sum())]
    agg = rng.random(n) < agglomerate_fraction
    kinds[agg] = "agglomerate"
    n_primary = np.where(agg, rng.integers(2, 7, n), 1)
    factor = area_factors(kinds, ar)
    length = size * np.sqrt(np.pi * ar / (4 * factor))
    # agglomerates: the size is that of the cluster; primaries are derived from it
    length = np.where(agg, size * 1.25, length)
    ar = np.where(agg, np.maximum(ar, 1.5), ar)
    width = length / ar
    h, w = shape
    d0, d1 = depth_range
    cols = {
        "x_px": rng.uniform(-0.5, w - 0.5, n),
        "y_px": rng.uniform(-0.5, h - 0.5, n),
        "length_um": length, "width_um": width,
        "angle_deg": rng.uniform(0, 180, n),
        "kind": kinds.astype(str),
        "depth": rng.uniform(d0, d1, n),
        "n_primary": n_primary.astype(int),
        "size_um": size,
    }
    keep = size >= max(min_size_um, 0.0)
    _ = px  # validated above; sizes are physical and the caller's frame is in pixels
    if not keep.all():  # filter the arrays, not the frame (pandas indexing costs ~1 ms a call)
        cols = {k: v[keep] for k, v in cols.items()}
    return pd.DataFrame(cols)


def _empty_particles() -> pd.DataFrame:
    """The particle table of an empty frame (same columns and dtypes as a full one)."""
    f = np.zeros(0)
    return pd.DataFrame({"x_px": f, "y_px": f, "length_um": f, "width_um": f, "angle_deg": f,
                         "kind": np.zeros(0, dtype=object), "depth": f,
                         "n_primary": np.zeros(0, dtype=int), "size_um": f})
