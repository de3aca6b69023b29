"""Server-side downsampling of long time series that keeps every extreme.

A 20-hour run sampled every second has 72,000 points per channel; a browser chart is about
1,000 pixels wide. :func:`downsample` sends at most ``n_out`` points per channel: the time
axis is cut into ``n_out / 2`` equal buckets and the minimum and the maximum of each bucket
are kept (``tsdownsample``'s MinMax, the Rust implementation behind plotly-resampler). Drawn
as a line this is the series' envelope at two points per bucket, so no spike, dip or alarm
excursion disappears. (MinMaxLTTB, which thins the envelope further by Largest-Triangle-
Three-Buckets, was tried and rejected: with few points it can drop the global extreme.)
"""

from __future__ import annotations

import numpy as np

from crystalloop.errors import ConfigError

__all__ = ["downsample", "DEFAULT_POINTS"]

#: points per channel sent to the browser for a whole run (about two per pixel of a wide chart)
DEFAULT_POINTS = 2000


def downsample(t: np.ndarray, y: np.ndarray, n_out: int = DEFAULT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a time series to at most ``n_out`` points, keeping its extremes.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Times (s), non-decreasing.
    y : ndarray, shape (n,)
        Values; NaN (a missing reading) is dropped before downsampling.
    n_out : int
        Most points returned (>= 4). A series this short or shorter is returned unchanged.

    Returns
    -------
    t_out, y_out : ndarray, shape (m,), m <= n_out
        A subsequence of the finite points, in time order: the minimum and maximum of each
        of ``n_out // 2`` equal-width time buckets (so also the global minimum and maximum).

    Raises
    ------
    ConfigError
        ``n_out`` below 4, arrays of different lengths, or times that decrease.

    Examples
    --------
    >>> t = np.arange(100_000, dtype=float)
    >>> y = np.sin(t / 5000.0); y[12_345] = 9.0
    >>> ts, ys = downsample(t, y, 500)
    >>> len(ts) <= 500, float(ys.max()), float(ts[ys.argmax()])
    (True, 9.0, 12345.0)
    """
    if isinstance(n_out, bool) or int(n_out) != n_out or n_out < 4:
        raise ConfigError(f"n_out must be a whole number >= 4 (points per channel), got {n_out!r}")
    t = np.ascontiguousarray(t, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ConfigError(f"t and y must be 1-D arrays of one length, got shapes {t.shape} and {y.shape}")
    ok = np.isfinite(y) & np.isfinite(t)
    if not ok.all():
        t, y = np.ascontiguousarray(t[ok]), np.ascontiguousarray(y[ok])
    if t.size > 1 and np.any(np.diff(t) < 0):
        i = int(np.flatnonzero(np.diff(t) < 0)[0])
        raise ConfigError(f"times must be non-decreasing; time {float(t[i + 1])!r} s follows {float(t[i])!r} s")
    if t.size <= n_out:
        return t, y
    from tsdownsample import MinMaxDownsampler

    idx = MinMaxDownsampler().downsample(t, y, n_out=int(n_out) // 2 * 2, parallel=False)
    idx = np.asarray(idx, dtype=np.int64)
    return t[idx], y[idx]
