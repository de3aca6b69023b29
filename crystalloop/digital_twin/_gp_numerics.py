"""Numerics of the GP twin (:mod:`crystalloop.digital_twin.gp`): its kernel, fits and fast prediction.

A private module: :func:`make_kernel` (constant × Matérn 5/2 + white noise), :func:`fit_gp`
(scikit-learn's ``GaussianProcessRegressor`` on it), :func:`fit_isotropic` (the same isotropic fit
without scikit-learn's per-call overhead, for the thousands of fits of a forward selection) and
:class:`FastPredictor` (the fitted GP's mean and std in a few matrix products).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, Product, Sum, WhiteKernel

__all__ = ["make_kernel", "fit_gp", "fit_isotropic", "FastPredictor", "ISO_BOUNDS", "one_blas_thread"]


@functools.lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context manager: BLAS on one thread. The GP's matrices are small (20-40 training rows), so one
    thread is fastest, and several spin against each other on a busy machine (4.5x slower fits at
    load 6); it also makes the results independent of the thread count."""
    return _controller().limit(limits=1, user_api="blas")


def make_kernel(n_dim: int, ard: bool):
    """Constant × Matérn 5/2 (one length scale, or one per input with ``ard``) + white noise, on
    standardized inputs and normalized targets."""
    ls = np.ones(n_dim) if ard and n_dim > 1 else 1.0
    return (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=ls, nu=2.5, length_scale_bounds=(5e-2, 1e2))
            + WhiteKernel(1e-2, (1e-5, 1.0)))


def fit_gp(A: np.ndarray, y: np.ndarray, *, ard: bool, restarts: int, seed: int) -> GaussianProcessRegressor:
    """``GaussianProcessRegressor`` on :func:`make_kernel`, ``normalize_y``, hyperparameters by maximum
    marginal likelihood (``restarts`` extra random starts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(make_kernel(A.shape[1], ard), normalize_y=True, n_restarts_optimizer=restarts,
                                        random_state=seed).fit(A, y)


#: bounds of (log constant, log length scale, log noise) in :func:`make_kernel`
ISO_BOUNDS = np.log([[1e-2, 1e2], [5e-2, 1e2], [1e-5, 1.0]])
_SQRT5 = np.sqrt(5.0)


def fit_isotropic(A: np.ndarray, yn: np.ndarray) -> np.ndarray:
    """Maximise the log marginal likelihood of the isotropic :func:`make_kernel` (constant × Matérn 5/2 +
    white noise) for standardized inputs ``A`` and normalized targets ``yn``, as
    ``GaussianProcessRegressor(normalize_y=True, n_restarts_optimizer=0)`` does (same objective,
    gradient, start, bounds and L-BFGS-B), with the distances computed once; returns the fitted
    covariance matrix K (noise included, without the 1e-10 jitter)."""
    from scipy.linalg import cho_solve, cholesky
    from scipy.optimize import minimize

    n = len(A)
    sq = np.einsum("ij,ij->i", A, A)
    r0 = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (A @ A.T), 0.0))
    np.fill_diagonal(r0, 0.0)
    eye = np.eye(n)
    const = 0.5 * n * np.log(2 * np.pi)

    def parts(theta):
        c, ls, w = np.exp(theta)
        z = _SQRT5 * r0 / ls
        e = np.exp(-z)
        M = (1.0 + z + z * z / 3.0) * e
        return c, w, z, e, M

    def objective(theta):
        c, w, z, e, M = parts(theta)
        K = c * M + (w + 1e-10) * eye
        try:
            L = cholesky(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros(3)
        alpha = cho_solve((L, True), yn, check_finite=False)
        lml = -0.5 * yn @ alpha - np.log(np.diag(L)).sum() - const
        W = np.outer(alpha, alpha) - cho_solve((L, True), eye, check_finite=False)
        dM = c * z * z / 3.0 * (1.0 + z) * e  # d(c M)/d log(length scale)
        grad = 0.5 * np.array([np.sum(W * (c * M)), np.sum(W * dM), w * np.trace(W)])
        return -lml, -grad

    res = minimize(objective, np.log([1.0, 1.0, 1e-2]), method="L-BFGS-B", jac=True, bounds=ISO_BOUNDS)
    c, w, _, _, M = parts(np.clip(res.x, ISO_BOUNDS[:, 0], ISO_BOUNDS[:, 1]))
    return c * M + w * eye


class FastPredictor:
    """``gp.predict(A, return_std=True)`` for the kernel of :func:`make_kernel` (constant × Matérn 5/2 +
    white noise, normalized targets) in a few matrix products: the distances to the training rows
    by one product, the std through the precomputed inverse Cholesky factor instead of a
    triangular solve per call. Equal to scikit-learn's to float rounding (tested); built once per
    fitted GP (cached on it)."""

    def __init__(self, gp: GaussianProcessRegressor) -> None:
        from scipy.linalg import solve_triangular

        k = gp.kernel_
        c, m, w = k.k1.k1.constant_value, k.k1.k2, k.k2.noise_level
        ls = np.asarray(m.length_scale, dtype=float)
        self.Xs = np.ascontiguousarray(gp.X_train_ / ls)  # one memory layout: the same sums, bit for bit
        self.ls, self.c, self.prior_var = ls, float(c), float(c) + float(w)
        self.sq = np.einsum("ij,ij->i", self.Xs, self.Xs)
        self.alpha = np.ravel(gp.alpha_)
        self.Linv = solve_triangular(gp.L_, np.eye(len(gp.L_)), lower=True)
        self.y_mean = float(np.ravel(gp._y_train_mean)[0])
        self.y_std = float(np.ravel(gp._y_train_std)[0])

    @staticmethod
    def of(gp: GaussianProcessRegressor) -> FastPredictor | None:
        k = gp.kernel_
        if not (isinstance(k, Sum) and isinstance(k.k1, Product) and isinstance(k.k1.k1, ConstantKernel)
                and isinstance(k.k1.k2, Matern) and k.k1.k2.nu == 2.5 and isinstance(k.k2, WhiteKernel)
                and gp.normalize_y and np.ndim(gp._y_train_mean) == 0):
            return None
        cached = gp.__dict__.get("_crystalloop_fast")
        if cached is None or cached[0] is not gp.L_:  # built for this fit of the GP
            cached = gp.__dict__["_crystalloop_fast"] = (gp.L_, FastPredictor(gp))
        return cached[1]

    def __call__(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        As = np.ascontiguousarray(A / self.ls)
        d2 = np.einsum("ij,ij->i", As, As)[:, None] + self.sq[None, :] - 2.0 * (As @ self.Xs.T)
        z = np.sqrt(5.0 * np.maximum(d2, 0.0))
        Kt = self.c * ((1.0 + z + z * z / 3.0) * np.exp(-z))
        mu = self.y_std * (Kt @ self.alpha) + self.y_mean
        V = Kt @ self.Linv.T
        var = np.maximum(self.prior_var - np.einsum("ij,ij->i", V, V), 0.0)
        return mu, self.y_std * np.sqrt(var)
