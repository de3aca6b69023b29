"""The time loop of the kinetic cohort model (:mod:`crystalloop.digital_twin.kinetic`), compiled.

A private module. :func:`integrate` advances every recipe through its own time grid and then
takes the volume-weighted median of its cohorts, one recipe per loop iteration compiled by numba
(the cohorts of one recipe stay in cache, no temporaries per step; a ``prange`` over recipes for
calls of :data:`PARALLEL_MIN_ROWS` or more): the arithmetic of the numpy version in
``kinetic._integrate_numpy`` and ``kinetic._summaries_numpy``, row by row, equal to it to float
rounding (tested to 1e-9 relative). Without numba the caller keeps the numpy path.
"""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["have_numba", "integrate", "N_ACC", "PARALLEL_MIN_ROWS"]

#: accumulators returned per recipe, in this order: c, M, sig_max, sig_int, t_high, diss, grown,
#: grown_high, seed_min, sig_last, sig2_last, m_last
N_ACC = 12
#: calls with fewer recipes run on one thread
PARALLEL_MIN_ROWS = 2048
_KERNEL = None


def have_numba() -> bool:
    """Whether numba imports (the compiled loop); otherwise the numpy path runs."""
    return importlib.util.find_spec("numba") is not None


def _build():
    from numba import njit, prange

    @njit(cache=True, nogil=True)
    def row(i, T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, acc, summ):  # pragma: no cover
        n_steps = T.shape[1] - 1
        nsc = Ls.shape[0]
        n_coh = nsc + n_steps
        Lnew = np.empty(n_coh)
        N = np.zeros(n_coh)
        L = np.zeros(n_coh)
        for q in range(nsc):
            L[q] = Ls[q]
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
                    N[q] = Ns[i, q]
                    L[q] = Ls[q]
                M = M + m_seed[i]
                seeded = True
            csj = cs[i, j + 1]
            sig = (c - csj) / csj
            pos = sig if sig > 0.0 else 0.0
            B = kb * pos**b * (M + m0)
            k = nsc + j + 1
            N[k - 1] = B * h
            if sig > 0:
                G = kg * pos**g * arr[i, j + 1]
            else:
                G = -kd * (-sig if -sig > 0.0 else 0.0)
            dL = G * h
            s = 0.0
            for q in range(k):
                v = L[q] + dL
                v = v if v > 0.0 else 0.0
                Lnew[q] = v
                s += N[q] * v**3
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
                        v = L[q] + dL * f
                        v = v if v > 0.0 else 0.0
                        Lnew[q] = v
                        s += N[q] * v**3
                    Mnew = A * s
                    dMf = Mnew - M
                    if not (abs(dMf) > room * 1.0001):
                        break
                    f = f * room / max(abs(dMf), 1e-300)
                dM = Mnew - M
            for q in range(k):
                if Lnew[q] <= 0.0:
                    N[q] = 0.0
                L[q] = Lnew[q]
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
                    s += N[q] * L[q] ** 3
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
        # the volume-weighted median and the moments (as kinetic._summaries_numpy)
        vol = np.empty(n_coh)
        total = 0.0
        number = 0.0
        seed_vol = 0.0
        nl4 = 0.0
        for q in range(n_coh):
            vol[q] = N[q] * L[q] ** 3
            total += vol[q]
            number += N[q]
            nl4 += N[q] * L[q] ** 4
            if q < nsc:
                seed_vol += vol[q]
        order = np.argsort(L, kind="mergesort")
        den = max(total, 1e-300)
        q3 = np.empty(n_coh)
        cum = 0.0
        below = 0
        for r in range(n_coh):
            cum += vol[order[r]]
            q3[r] = cum / den
            if q3[r] < 0.5:
                below += 1
        idx = min(max(below, 1), n_coh - 1)
        q_lo = q3[idx - 1]
        q_hi = q3[idx]
        w = (0.5 - q_lo) / max(q_hi - q_lo, 1e-12)
        w = min(max(w, 0.0), 1.0)
        l_lo = L[order[idx - 1]]
        l_hi = L[order[idx]]
        summ[i, 0] = total
        summ[i, 1] = l_lo + w * (l_hi - l_lo)
        summ[i, 2] = number
        summ[i, 3] = seed_vol
        summ[i, 4] = nl4

    @njit(parallel=True, cache=True, nogil=True)
    def run_parallel(T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, acc, summ):  # pragma: no cover
        for i in prange(T.shape[0]):
            row(i, T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, acc, summ)

    @njit(cache=True, nogil=True)
    def run_serial(T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, acc, summ):  # pragma: no cover
        for i in range(T.shape[0]):
            row(i, T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, kg, g, kb, b, kd, A, acc, summ)

    return run_serial, run_parallel


def integrate(T: np.ndarray, cs: np.ndarray, arr: np.ndarray, dt: np.ndarray, c0: np.ndarray, m_seed: np.ndarray,
              Ns: np.ndarray, Ls: np.ndarray, t_seed: np.ndarray, rates: tuple[float, float, float, float, float],
              *, A: float, n_coh: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the compiled loop; returns the accumulators (n, :data:`N_ACC`) and the summaries of the
    final population (n, 5: total volume, volume-weighted median size, number, seed volume, Σ N L⁴).

    ``rates`` are ``(k_g, g, k_b, b, k_d)``; ``A`` is ρ k_v (mg/µm³). Arrays as in ``kinetic._simulate``."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build()
    n = T.shape[0]
    acc = np.empty((n, N_ACC))
    summ = np.empty((n, 5))
    kg, g, kb, b, kd = (float(v) for v in rates)
    f64 = np.ascontiguousarray
    # small calls on one thread (a parallel region costs milliseconds to start on a busy machine);
    # every row is computed by the same code either way, so the results do not depend on it
    run = _KERNEL[0] if n < PARALLEL_MIN_ROWS else _KERNEL[1]
    run(f64(T, dtype=float), f64(cs, dtype=float), f64(arr, dtype=float), f64(dt, dtype=float), f64(c0, dtype=float),
        f64(m_seed, dtype=float), f64(Ns, dtype=float), f64(Ls, dtype=float), f64(t_seed, dtype=float),
        kg, g, kb, b, kd, float(A), acc, summ)
    return acc, summ
