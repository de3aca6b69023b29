"""End-of-batch critical quality attributes and PSD tables from a population balance state.

Definitions (names are the shared CQA contract):

- ``D10_um``, ``D50_um``, ``D90_um``: percentiles of the *volume* distribution ``Q3`` of the
  crystalline particles (primary crystals and agglomerates, each by its volume-equivalent
  size), with ``Q3`` linear inside each size class (what a laser-diffraction report gives).
- ``DoA_pct``: degree of agglomeration, the volume share of crystalline solid that sits in
  agglomerates (particles ≥ ``doa_min_size_um`` only, as an image analyser ignores fines).
- ``crystallinity_pct``: crystalline mass / (crystalline + amorphous mass), as PXRD/TGA report.
- ``yield_pct``: solid mass formed (crystalline + amorphous − seeds) / solute initially dissolved.
- ``batch_time_min``: duration of the batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crystalloop.cqa import CQA_NAMES

__all__ = ["CQA_NAMES", "volume_percentiles", "psd_frame", "compute_cqas"]



def volume_percentiles(edges_um: np.ndarray, volume: np.ndarray, q=(0.1, 0.5, 0.9)) -> np.ndarray:
    """Sizes at which the cumulative volume fraction reaches ``q``.

    Parameters
    ----------
    edges_um : ndarray, shape (n + 1,)
        Class edges.
    volume : ndarray, shape (n,)
        Volume (or mass) per class (any scale).
    q : sequence of float in [0, 1]

    Returns
    -------
    ndarray
        Percentile sizes in µm (NaN when there is no volume).

    Examples
    --------
    >>> volume_percentiles(np.array([0., 10., 20.]), np.array([1., 1.]), q=(0.5,))
    array([10.])
    """
    v = np.asarray(volume, dtype=float)
    tot = v.sum()
    if not tot > 0:
        return np.full(len(q), np.nan)
    Q = np.concatenate(([0.0], np.cumsum(v) / tot))
    Q[-1] = 1.0
    # strictly increasing support for interpolation: drop flat runs
    keep = np.concatenate(([True], np.diff(Q) > 0))
    return np.interp(np.asarray(q, dtype=float), Q[keep], np.asarray(edges_um)[keep])


def psd_frame(edges_um: np.ndarray, centers_um: np.ndarray, Np: np.ndarray, Na: np.ndarray,
              volume_m3: float) -> pd.DataFrame:
    """PSD table: one row per size class.

    Columns: ``size_um`` (class centre), ``size_lower_um``, ``size_upper_um`` (the PSD table schema of
    :mod:`crystalloop.vision.psd`, so this table goes straight into ``compare_psd``), ``number_density``
    (#/m³/µm, all crystals), ``number_per_m3`` (#/m³ in the class), ``primary_per_m3``,
    ``agglomerate_per_m3``, ``q0`` (number density, 1/µm), ``Q0``, ``q3`` (volume density,
    1/µm) and ``Q3`` (cumulative volume fraction at the class upper edge).
    """
    dL = np.diff(edges_um)
    N = (Np + Na) / volume_m3
    vol = N * centers_um**3
    ntot, vtot = N.sum(), vol.sum()
    q0 = N / ntot / dL if ntot > 0 else np.zeros_like(N)
    q3 = vol / vtot / dL if vtot > 0 else np.zeros_like(N)
    return pd.DataFrame({
        "size_um": centers_um,
        "size_lower_um": edges_um[:-1],
        "size_upper_um": edges_um[1:],
        "number_density": N / dL,
        "number_per_m3": N,
        "primary_per_m3": Np / volume_m3,
        "agglomerate_per_m3": Na / volume_m3,
        "q0": q0,
        "Q0": np.cumsum(q0 * dL),
        "q3": q3,
        "Q3": np.cumsum(q3 * dL),
    })


def compute_cqas(pbm, batch_time_s: float, M_solute0: float | None = None) -> dict[str, float]:
    """CQAs (see module docstring) of a :class:`~crystalloop.hardware.sim.pbm.PopulationBalance`."""
    k = pbm.kinetics
    vol_p = pbm.Np * pbm.L3
    vol_a = pbm.Na * pbm.L3
    d10, d50, d90 = volume_percentiles(pbm.grid.edges_um, vol_p + vol_a)
    big = pbm.L >= k.doa_min_size_um
    vtot = float(vol_p[big].sum() + vol_a[big].sum())
    doa = 100.0 * float(vol_a[big].sum()) / vtot if vtot > 0 else 0.0
    m_cryst = pbm.crystal_mass()
    solid = m_cryst + pbm.M_am
    cryst = 100.0 * m_cryst / solid if solid > 0 else float("nan")
    m0 = pbm.M_total - pbm.M_seed if M_solute0 is None else M_solute0
    yld = 100.0 * (solid - pbm.M_seed) / m0 if m0 > 0 else float("nan")
    return {
        "D10_um": float(d10),
        "D50_um": float(d50),
        "D90_um": float(d90),
        "DoA_pct": float(doa),
        "crystallinity_pct": float(cryst),
        "yield_pct": float(yld),
        "batch_time_min": float(batch_time_s) / 60.0,
    }
