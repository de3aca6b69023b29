"""Particle size distributions: Q0/q0 and Q3/q3 tables, percentiles, mean sizes, log-normal fit,
comparison with a reference PSD, chord length distributions.

One PSD class-table schema is shared by every area (the simulator's
:func:`~crystalloop.hardware.sim.cqa.psd_frame` writes it too): :data:`PSD_CLASS_COLUMNS`
(``size_lower_um``, ``size_upper_um``, ``size_um``) plus at least one cumulative column ``Q0``/``Q3``
(at the class upper edge) or a number column (``count``, ``number_fraction``, ``number_per_m3``, or
``q0``). Every function below that takes particles also takes such a class table.

Notation (ISO 9276-1/2): ``Qr(x)`` is the cumulative distribution of quantity type ``r``
(0 = number, 3 = volume, with particle volume ∝ x³), ``qr`` its density per µm, ``xP,r`` the
size below which P % of the quantity lies. Percentiles come from the particle sizes themselves
(linear interpolation of the empirical cumulative distribution, not from class tables).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special

from crystalloop.errors import ConfigError, SchemaError

__all__ = [
    "PSD_CLASS_COLUMNS",
    "is_psd_table",
    "size_classes",
    "psd_table",
    "percentile",
    "mean_size",
    "fit_lognormal",
    "lognormal_q3",
    "psd_summary",
    "compare_psd",
    "chord_lengths",
    "chord_length_distribution",
    "pool_particles",
]


#: Class columns every PSD table carries (µm): lower edge, upper edge, class centre.
PSD_CLASS_COLUMNS = ("size_lower_um", "size_upper_um", "size_um")

_NUMBER_COLUMNS = ("number_fraction", "number_per_m3", "number_weighted", "count")


def is_psd_table(x) -> bool:
    """True if ``x`` is a PSD class table (a DataFrame with ``size_lower_um`` and ``size_upper_um``)."""
    return isinstance(x, pd.DataFrame) and "size_lower_um" in x.columns and "size_upper_um" in x.columns


def _table_edges(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lo = t["size_lower_um"].to_numpy(float)
    hi = t["size_upper_um"].to_numpy(float)
    if lo.size == 0:
        return np.array([]), np.array([])
    if np.any(hi <= lo) or np.any(np.abs(lo[1:] - hi[:-1]) > 1e-9 * np.maximum(hi[:-1], 1.0)):
        raise SchemaError("PSD table classes must be contiguous and increasing (size_lower_um[i+1] == "
                          "size_upper_um[i] > size_lower_um[i])")
    centre = t["size_um"].to_numpy(float) if "size_um" in t.columns else 0.5 * (lo + hi)
    return np.r_[lo[0], hi], centre


def _table_number(t: pd.DataFrame) -> np.ndarray:
    """Number (any unit) per class of a PSD table."""
    for c in _NUMBER_COLUMNS:
        if c in t.columns:
            return t[c].to_numpy(float)
    if "q0" in t.columns:
        return t["q0"].to_numpy(float) * (t["size_upper_um"] - t["size_lower_um"]).to_numpy(float)
    if "Q0" in t.columns:
        return np.diff(np.r_[0.0, t["Q0"].to_numpy(float)])
    raise SchemaError(f"PSD table needs a number column ({', '.join(_NUMBER_COLUMNS)}, q0 or Q0); "
                      f"columns: {list(t.columns)}")


def _table_cdf(t: pd.DataFrame, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative ``Qr`` of a PSD table at its class edges (normalised to end at 1)."""
    edges, centre = _table_edges(t)
    if edges.size == 0:
        return edges, edges
    qcol = f"Q{r}"
    if qcol in t.columns:
        q = np.r_[0.0, t[qcol].to_numpy(float)]
    else:
        q = np.r_[0.0, np.cumsum(_table_number(t) * centre**r)]
    if not np.all(np.isfinite(q)) or q[-1] <= 0:
        raise SchemaError(f"PSD table {qcol} never rises above 0 (no particles in any class)")
    if np.any(np.diff(q) < -1e-9 * q[-1]):
        raise SchemaError(f"PSD table {qcol} must be non-decreasing over the classes")
    return edges, q / q[-1]


def _sizes(x, size: str = "ecd_um") -> np.ndarray:
    if is_psd_table(x):
        raise SchemaError("this function needs particle sizes, not a PSD class table")
    if isinstance(x, pd.DataFrame):
        if size not in x.columns:
            raise SchemaError(f"particle table has no size column {size!r}; columns: {list(x.columns)}")
        x = x[size]
    a = np.asarray(x, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if np.any(a < 0):
        raise ConfigError("particle sizes must be ≥ 0 µm")
    return a


def _check_r(r: int) -> int:
    if r not in (0, 1, 2, 3):
        raise ConfigError(f"quantity type r must be 0 (number), 1, 2 or 3 (volume), got {r!r}")
    return int(r)


def size_classes(
    sizes=None, *, n_classes: int = 30, spacing: str = "log", x_min: float | None = None,
    x_max: float | None = None, width_um: float | None = None,
) -> np.ndarray:
    """Class edges (µm) on a linear or logarithmic grid covering ``sizes`` (or ``[x_min, x_max]``).

    ``width_um`` gives fixed-width linear classes (seed 002: 10 µm) starting at 0.
    """
    x = _sizes(sizes) if sizes is not None else np.array([])
    if spacing not in ("log", "linear"):
        raise ConfigError(f"class spacing must be 'log' or 'linear', got {spacing!r}")
    lo = x_min if x_min is not None else (float(x[x > 0].min()) if np.any(x > 0) else 1.0)
    hi = x_max if x_max is not None else (float(x.max()) if x.size else 1000.0)
    if width_um is not None:
        if width_um <= 0:
            raise ConfigError(f"class width must be > 0 µm, got {width_um!r}")
        top = np.ceil(hi * (1 + 1e-9) / width_um) * width_um
        return np.arange(0.0, max(top, width_um) + 0.5 * width_um, width_um)
    if n_classes < 1:
        raise ConfigError(f"n_classes must be ≥ 1, got {n_classes!r}")
    if hi <= lo:
        lo, hi = lo * 0.9, lo * 1.1 + 1e-9
    if spacing == "log":
        if lo <= 0:
            raise ConfigError(f"logarithmic classes need x_min > 0 µm, got {lo!r}")
        return np.geomspace(lo * 0.999, hi * 1.001, n_classes + 1)
    return np.linspace(max(lo * 0.999, 0.0), hi * 1.001, n_classes + 1)


def psd_table(particles, *, size: str = "ecd_um", edges=None, n_classes: int = 30, spacing: str = "log",
              weights=None) -> pd.DataFrame:
    """Class table of the number (0) and volume (3) distributions.

    Parameters
    ----------
    particles : DataFrame or array of sizes (µm)
    size : str
        Size column (``ecd_um``, ``feret_max_um``, ``feret_min_um``, ...).
    edges : array, optional
        Class edges in µm (default: :func:`size_classes` with ``n_classes`` and ``spacing``).
    weights : array, optional
        Number weight per particle (e.g. counts, inverse sampling probability).

    Returns
    -------
    DataFrame
        ``size_lower_um, size_upper_um, size_um`` (class centre: geometric for log classes),
        ``count`` (particles measured in the class), ``number_weighted`` (their summed weights;
        = ``count`` without weights), ``number_fraction`` (weighted), ``q0`` (1/µm), ``Q0``, ``volume_fraction``, ``q3`` (1/µm),
        ``Q3`` — Q at the class upper edge.
    """
    x = _sizes(particles, size)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != x.shape:
        raise ConfigError(f"weights must have one value per particle ({x.size}), got {w.size}")
    e = np.asarray(edges, dtype=float) if edges is not None else size_classes(x, n_classes=n_classes, spacing=spacing)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ConfigError("class edges must be a strictly increasing 1-D array of at least 2 values")
    raw, _ = np.histogram(x, bins=e)
    cnt, _ = np.histogram(x, bins=e, weights=w)
    vol, _ = np.histogram(x, bins=e, weights=w * x**3)
    dx = np.diff(e)
    n_tot, v_tot = cnt.sum(), vol.sum()
    nf = cnt / n_tot if n_tot > 0 else np.zeros_like(cnt, dtype=float)
    vf = vol / v_tot if v_tot > 0 else np.zeros_like(vol, dtype=float)
    geometric = e[0] > 0 and np.allclose(np.diff(np.log(e)), np.log(e[1] / e[0]), rtol=1e-6)
    centre = np.sqrt(e[:-1] * e[1:]) if geometric else 0.5 * (e[:-1] + e[1:])
    return pd.DataFrame({
        "size_lower_um": e[:-1], "size_upper_um": e[1:], "size_um": centre,
        "count": raw, "number_weighted": cnt, "number_fraction": nf, "q0": nf / dx, "Q0": np.cumsum(nf),
        "volume_fraction": vf, "q3": vf / dx, "Q3": np.cumsum(vf),
    })


def _weighted_cdf(x: np.ndarray, r: int, weights=None):
    order = np.argsort(x)
    xs = x[order]
    w = np.ones_like(xs) if weights is None else np.asarray(weights, float).ravel()[order]
    w = w * xs**r
    c = np.cumsum(w)
    return xs, w, c


def percentile(particles, p: float | Sequence[float] = (10, 50, 90), *, r: int = 0, size: str = "ecd_um",
               weights=None):
    """Sizes ``xP,r`` (µm) below which ``p`` % of the number (r=0) or volume (r=3) lies.

    Uses the mid-point rule on the sorted sizes (each particle's quantity centred on its size),
    so a single particle gives its own size. NaN for an empty set. A PSD class table (see
    :data:`PSD_CLASS_COLUMNS`) is interpolated linearly in its cumulative ``Qr`` within classes.
    """
    r = _check_r(r)
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    if np.any((ps < 0) | (ps > 100)):
        raise ConfigError(f"percentiles must lie in [0, 100], got {p!r}")
    if is_psd_table(particles):
        out = _table_percentiles(particles, ps, r)
        return float(out[0]) if np.ndim(p) == 0 else out
    x = _sizes(particles, size)
    if x.size == 0:
        out = np.full(ps.shape, np.nan)
    else:
        xs, w, c = _weighted_cdf(x, r, weights)
        tot = c[-1]
        if tot <= 0:
            out = np.full(ps.shape, np.nan)
        else:
            mid = (c - 0.5 * w) / tot * 100
            out = np.interp(ps, mid, xs)
    return float(out[0]) if np.ndim(p) == 0 else out


def _table_percentiles(t: pd.DataFrame, ps: np.ndarray, r: int) -> np.ndarray:
    edges, q = _table_cdf(t, r)
    if edges.size == 0:
        return np.full(ps.shape, np.nan)
    # support of the inverse: the last edge of every flat run (Q rises right after it), and the
    # first edge where Q reaches 1
    keep = np.r_[np.diff(q) > 0, False]
    top = int(np.argmax(q >= 1.0 - 1e-12))
    keep[top] = True
    keep[top + 1 :] = False
    return np.interp(ps / 100.0, q[keep], edges[keep])


def _table_sizes(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Class centres and number weights of a PSD table (classes with particles only)."""
    _, centre = _table_edges(t)
    n = _table_number(t)
    sel = n > 0
    return centre[sel], n[sel]


def mean_size(particles, p: int = 1, q: int = 0, *, size: str = "ecd_um", weights=None) -> float:
    """Moment-ratio mean diameter D[p,q] = (Σx^p / Σx^q)^(1/(p−q)): D[1,0] number mean,
    D[3,2] Sauter, D[4,3] De Brouckere (volume-weighted mean).

    A PSD class table counts every particle of a class at its centre ``size_um``.
    """
    if is_psd_table(particles):
        if weights is not None:
            raise ConfigError("weights apply to particle sizes; a PSD table already carries its numbers")
        particles, weights = _table_sizes(particles)
    x = _sizes(particles, size)
    if p == q:
        raise ConfigError("mean_size needs p ≠ q")
    if x.size == 0:
        return float("nan")
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    den = np.sum(w * x**q)
    if den <= 0:
        return float("nan")
    return float((np.sum(w * x**p) / den) ** (1.0 / (p - q)))


def fit_lognormal(particles, *, r: int = 3, size: str = "ecd_um", weights=None) -> tuple[float, float]:
    """Log-normal fit ``Qr(x) = ½[1 + erf(ln(x/x50,r)/(√2 s))]``: maximum likelihood of the
    ``x^r``-weighted log sizes (class centres for a PSD table). Returns ``(x50_r_um, s_lnd)``."""
    r = _check_r(r)
    if is_psd_table(particles):
        particles, weights = _table_sizes(particles)
    x = _sizes(particles, size)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    if w.shape != x.shape:
        raise ConfigError(f"weights must have one value per particle ({x.size}), got {w.size}")
    pos = x > 0
    x, w = x[pos], w[pos] * x[pos] ** r
    if x.size == 0 or w.sum() <= 0:
        return float("nan"), float("nan")
    lx = np.log(x)
    mu = np.sum(w * lx) / w.sum()
    s = np.sqrt(np.sum(w * (lx - mu) ** 2) / w.sum())
    return float(np.exp(mu)), float(s)


def lognormal_q3(x, x50_um: float, s_lnd: float) -> np.ndarray:
    """Cumulative log-normal ``½[1 + erf(ln(x/x50)/(√2 s))]`` (DOMAIN.md §2)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return 0.5 * (1.0 + special.erf(np.log(np.maximum(x, 1e-300) / x50_um) / (np.sqrt(2) * max(s_lnd, 1e-12))))


def psd_summary(particles, *, size: str = "ecd_um", weights=None) -> dict:
    """Counts, x10/x50/x90 for Q0 and Q3, spans, mean sizes and the Q3 log-normal fit (µm).

    For a PSD class table, percentiles come from its cumulative columns and means from the class
    centres; ``n_particles`` is the sum of its ``count`` column (NaN when it has none).
    """
    if is_psd_table(particles):
        t = particles
        s = {"n_particles": int(t["count"].sum()) if "count" in t.columns else float("nan")}
        x, weights = _table_sizes(t)
        pct = lambda r: percentile(t, (10, 50, 90), r=r)  # noqa: E731
    else:
        x = _sizes(particles, size)
        s = {"n_particles": int(x.size)}
        pct = lambda r: percentile(x, (10, 50, 90), r=r, weights=weights)  # noqa: E731
    for r in (0, 3):
        v = pct(r)
        s[f"x10_{r}_um"], s[f"x50_{r}_um"], s[f"x90_{r}_um"] = (float(t) for t in v)
        s[f"span_{r}"] = float((v[2] - v[0]) / v[1]) if x.size and v[1] > 0 else float("nan")
    s["d10_um"] = mean_size(x, 1, 0, weights=weights)
    s["d32_um"] = mean_size(x, 3, 2, weights=weights)
    s["d43_um"] = mean_size(x, 4, 3, weights=weights)
    s["lognormal_x50_3_um"], s["lognormal_s"] = fit_lognormal(x, r=3, weights=weights)
    return s


def _psd_cdf(obj, r: int, size: str, role: str, weights=None):
    """(x10/x50/x90, cdf support x, cdf Q) of particles or a PSD class table."""
    if is_psd_table(obj):
        if len(obj) == 0:
            raise ConfigError(f"cannot compare an empty {role} PSD table (no classes)")
        x, q = _table_cdf(obj, r)
        return _table_percentiles(obj, np.array([10.0, 50.0, 90.0]), r), x, q
    qcol = f"Q{r}"
    if isinstance(obj, pd.DataFrame) and qcol in obj.columns:
        # a cumulative curve without class edges (e.g. an offline analyser's export): Q at size_um
        xcol = "size_upper_um" if "size_upper_um" in obj.columns else "size_um"
        if xcol not in obj.columns:
            raise SchemaError(f"the {role} PSD table has {qcol!r} but no size column: it needs "
                              f"{list(PSD_CLASS_COLUMNS)} or at least 'size_um'; columns: {list(obj.columns)}")
        x, q = obj[xcol].to_numpy(float), obj[qcol].to_numpy(float)
        if q.size == 0 or not np.isfinite(q[-1]) or q[-1] <= 0:
            raise SchemaError(f"the {role} PSD table's {qcol} never rises above 0")
        q = q / q[-1]
        return np.interp([0.1, 0.5, 0.9], q, x), x, q
    x = _sizes(obj, size)
    if x.size == 0:
        raise ConfigError(f"cannot compare an empty {role} PSD (no particles)")
    xs, _, c = _weighted_cdf(x, r, weights)
    if c[-1] <= 0:
        raise ConfigError(f"the {role} PSD has no {('number', 'length', 'area', 'volume')[r]} (all sizes 0)")
    return percentile(x, (10, 50, 90), r=r, weights=weights), xs, c / c[-1]


def compare_psd(measured, reference, *, r: int = 3, size: str = "ecd_um", weights=None) -> dict:
    """Compare a measured PSD with a reference PSD.

    Parameters
    ----------
    measured, reference : DataFrame, array of sizes (µm), or PSD class table
        Particle tables (column ``size``), arrays of sizes, or class tables with
        :data:`PSD_CLASS_COLUMNS` and ``Q0``/``Q3`` or a number column — e.g.
        :func:`psd_table`'s output or the simulator's final PSD.
    r : {0, 1, 2, 3}
    size : str
        Size column of particle tables.
    weights : array, optional
        Number weight of each measured particle (e.g. the pipeline's Miles–Lantuéjoul ``weight``).

    Returns
    -------
    dict
        ``x10_err_pct``, ``x50_err_pct``, ``x90_err_pct`` (measured vs reference, relative %),
        ``ks`` (max |ΔQ|), ``wasserstein_um`` (∫|ΔQ| dx, the earth mover's distance in µm),
        and the percentiles of both.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).lognormal(np.log(40), 0.3, 2000)
    >>> c = compare_psd(x, psd_table(x, n_classes=60), r=3)
    >>> abs(c["x50_err_pct"]) < 2
    True
    """
    r = _check_r(r)
    mp, mx, mq = _psd_cdf(measured, r, size, "measured", weights=weights)
    ref_pct, rx, rq = _psd_cdf(reference, r, size, "reference")
    grid = np.unique(np.concatenate([mx, rx]))
    qm = np.interp(grid, mx, mq, left=0.0, right=1.0)
    qr = np.interp(grid, rx, rq, left=0.0, right=1.0)
    diff = np.abs(qm - qr)
    w = float(np.sum(0.5 * (diff[1:] + diff[:-1]) * np.diff(grid))) if grid.size > 1 else 0.0
    out = {"r": r, "ks": float(diff.max()), "wasserstein_um": w}
    for name, a, b in zip(("x10", "x50", "x90"), mp, ref_pct, strict=True):
        out[f"{name}_{r}_um"] = float(a)
        out[f"{name}_{r}_ref_um"] = float(b)
        out[f"{name}_err_pct"] = float(100.0 * (a - b) / b) if b > 0 else float("nan")
    return out


def chord_lengths(labels: np.ndarray, *, pixel_size_um: float, n_directions: int = 4,
                  exclude_edge: bool = True) -> np.ndarray:
    """Chord lengths (µm) of the particles in a label image along 2 or 4 scan directions.

    Mimics a focused-beam probe sweeping straight lines through randomly oriented particles:
    every maximal run of one label along a scan line is a chord, so larger particles produce
    proportionally more chords (FBRM sampling). Directions: 0°, 90°, 45°, 135° (and, with 8,
    the knight-move lines at ±26.6°, ±63.4°); diagonal chords are scaled by the step length.
    Particles touching the frame are left out by default (their chords are truncated).
    """
    from crystalloop.vision._validate import check_image, check_pixel_size

    px = check_pixel_size(pixel_size_um)
    lab = np.asarray(check_image(labels, "labels", allow_color=False)).astype(np.int64)
    if n_directions not in (2, 4):
        raise ConfigError(f"n_directions must be 2 or 4, got {n_directions!r}")
    if exclude_edge:
        from crystalloop.vision.segment import clear_border

        lab = clear_border(lab)
    out = []
    out.append(_runs(lab) * px)
    out.append(_runs(lab.T) * px)
    if n_directions == 4:
        out.append(_runs(_shear(lab)) * px * np.sqrt(2))
        out.append(_runs(_shear(lab[:, ::-1])) * px * np.sqrt(2))
    return np.concatenate(out)


def _shear(a: np.ndarray, k: int = 1) -> np.ndarray:
    """Rows of the result are the 45° diagonals ``col = row + c`` of ``a`` (zero-padded)."""
    h, w = a.shape
    rr = np.arange(h)[:, None]
    cc = np.arange(w + k * h)[None, :] - k * rr
    valid = (cc >= 0) & (cc < w)
    out = np.zeros((h, w + k * h), a.dtype)
    out[np.broadcast_to(valid, out.shape)] = a[np.broadcast_to(rr, cc.shape)[valid], cc[valid]]
    return out.T


def _runs(a: np.ndarray) -> np.ndarray:
    """Lengths of maximal runs of equal non-zero values along the rows of ``a``."""
    pad = np.zeros((a.shape[0], a.shape[1] + 2), a.dtype)
    pad[:, 1:-1] = a
    flat = pad.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = change[:-1]
    lengths = np.diff(change)
    vals = flat[starts]
    return lengths[vals != 0].astype(float)


def chord_length_distribution(chords, *, edges=None, n_classes: int = 30, spacing: str = "log") -> pd.DataFrame:
    """Number distribution of chord lengths (``chord_um`` classes, ``count``, ``q0``, ``Q0``)."""
    x = _sizes(chords)
    t = psd_table(x, edges=edges, n_classes=n_classes, spacing=spacing)
    return t.rename(columns={"size_lower_um": "chord_lower_um", "size_upper_um": "chord_upper_um",
                             "size_um": "chord_um"})[["chord_lower_um", "chord_upper_um", "chord_um", "count", "q0", "Q0"]]


def pool_particles(tables: Sequence[pd.DataFrame], *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Concatenate per-image particle tables, adding an ``image`` column (name or index)."""
    frames = []
    for k, t in enumerate(tables):
        t = t.copy()
        t.insert(0, "image", names[k] if names is not None else k)
        frames.append(t)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
