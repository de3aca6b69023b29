"""The time loop of the kinetic cohort model (:mod:`crystalloop.digital_twin.kinetic`), compiled.

A private module. :func:`integrate` advances every recipe through its own time grid, one recipe
per iteration of a ``prange`` loop compiled by numba (the cohorts of one recipe stay in cache,
no temporaries per step): the arithmetic of the numpy version in ``kinetic._simulate_numpy``, row
by row, equal to it to float rounding (tested to 1e-9 relative). Without numba the caller keeps
the numpy path.
"""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["have_numba", "integrate", "N_ACC"]

#: accumulators returned per recipe, in this order: c, M, sig_max, sig_int, t_high, diss, grown,
#: grown_high, seed_min, sig_last, sig2_last, m_last
N_ACC = 12
_KERNEL = None


def have_numba() -> bool:
    """Whether numba imports (the compiled loop); otherwise the numpy path runs."""
    return importlib.util.find_spec("numba") is not None


def _build():
    from numba import njit, prange

    @njit(parallel=True, cache=True, nogil=True)
    def run(T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, N, L, acc):  # pragma: no cover - compiled
        n, m = T.shape
        n_steps = m - 1
        nsc = Ls.shape[0]
        n_coh = N.shape[1]
        for i in prange(n):
            Lnew = np.empty(n_coh)
            for q in range(nsc):
                L[i, q] = Ls[q]
            seeded = False
            c = c0[i]
            m0 = 0.01 * m_seed[i]
            h = dt[i]
            M = 0.0
            sig_max = 0.0
            sig_int = 0.0
            t_high = 0.0
            diss = 0.0
            grown = 0.0
            grown_high = 0.0
            seed_min = 1.0
            sig_last = 0.0
            sig2_last = 0.0
            m_last = 0.0
            for j in range(n_steps):
                if (not seeded) and T[i, j + 1] <= t_seed[i]:
                    for q in range(nsc):
                        N[i, q] = Ns[i, q]
                        L[i, q] = Ls[q]
                    M = M + m_seed[i]
                    seeded = True
                csj = cs[i, j + 1]
                sig = (c - csj) / csj
                pos = sig if sig > 0.0 else 0.0
                B = kb * pos**b * (M + m0)
                k = nsc + j + 1
                N[i, k - 1] = B * h
                if sig > 0:
                    G = kg * pos**g * arr[i, j + 1]
                else:
                    G = -kd * (-sig if -sig > 0.0 else 0.0)
                dL = G * h
                s = 0.0
                for q in range(k):
                    v = L[i, q] + dL
                    v = v if v > 0.0 else 0.0
                    Lnew[q] = v
                    s += N[i, q] * v**3
                Mnew = A * s
                dM = Mnew - M
                if dM > 0:
                    room = c - csj
                else:
                    room = csj - c
                room = room if room > 0.0 else 0.0
                if abs(dM) > room:
                    f = room / max(abs(dM), 1e-300)
                    for _ in range(2):
                        s = 0.0
                        for q in range(k):
                            v = L[i, q] + dL * f
                            v = v if v > 0.0 else 0.0
                            Lnew[q] = v
                            s += N[i, q] * v**3
                        Mnew = A * s
                        dMf = Mnew - M
                        if not (abs(dMf) > room * 1.0001):
                            break
                        f = f * room / max(abs(dMf), 1e-300)
                    dM = Mnew - M
                for q in range(k):
                    if Lnew[q] <= 0.0:
                        N[i, q] = 0.0
                    L[i, q] = Lnew[q]
                c = c - dM
                M = Mnew
                sig_max = max(sig_max, sig)
                sig_int += pos * h
                if sig > 0.02:
                    t_high += h
                diss += max(-dM, 0.0)
                grown += max(dM, 0.0)
                grown_high += max(dM, 0.0) * pos
                if seeded:
                    s = 0.0
                    for q in range(nsc):
                        s += N[i, q] * L[i, q] ** 3
                    seed_min = min(seed_min, A * s / max(m_seed[i], 1e-300))
                if dM < 0:
                    sig_last = 0.0
                    sig2_last = 0.0
                    m_last = 0.0
                else:
                    sig_last = max(sig_last, sig)
                    sig2_last = sig2_last + pos**2 * h
                    m_last = m_last + max(dM, 0.0)
            acc[i, 0] = c
            acc[i, 1] = M
            acc[i, 2] = sig_max
            acc[i, 3] = sig_int
            acc[i, 4] = t_high
            acc[i, 5] = diss
            acc[i, 6] = grown
            acc[i, 7] = grown_high
            acc[i, 8] = seed_min
            acc[i, 9] = sig_last
            acc[i, 10] = sig2_last
            acc[i, 11] = m_last

    return run


def integrate(T: np.ndarray, cs: np.ndarray, arr: np.ndarray, dt: np.ndarray, c0: np.ndarray, m_seed: np.ndarray,
              Ns: np.ndarray, Ls: np.ndarray, t_seed: np.ndarray, rates: tuple[float, float, float, float, float],
              *, A: float, n_coh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the compiled loop; returns ``N``, ``L`` (n, n_coh) and the accumulators (n, :data:`N_ACC`).

    ``rates`` are ``(k_g, g, k_b, b, k_d)``; ``A`` is ρ k_v (mg/µm³). Arrays as in ``kinetic._simulate``."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build()
    n = T.shape[0]
    N = np.zeros((n, n_coh))
    L = np.zeros((n, n_coh))
    acc = np.empty((n, N_ACC))
    kg, g, kb, b, kd = (float(v) for v in rates)
    f64 = np.ascontiguousarray
    _KERNEL(f64(T, dtype=float), f64(cs, dtype=float), f64(arr, dtype=float), f64(dt, dtype=float),
               f64(c0, dtype=float), f64(m_seed, dtype=float), f64(Ns, dtype=float), f64(Ls, dtype=float),
               f64(t_seed, dtype=float), kg, g, kb, b, kd, float(A), N, L, acc)
    return N, L, acc
