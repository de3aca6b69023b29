"""Image regression (seed 004): a small CNN from an image to one scalar property.

Defaults follow the seed: rolling-ball background subtraction (radius 50 px) + histogram
equalization; 3 × (conv 3×3 + ReLU + max-pool 2×2) with 4/8/16 filters, dense 10 + ReLU,
dropout 0.5, one linear output; Adam lr 1e-4, batch 16, MSE loss; vertical/horizontal flips and
the 180° rotation quadruple the training data. :func:`leave_one_group_out` reproduces the seed's
Table 2 (relative error of each left-out sample, without and with augmentation).

>>> from crystalloop.vision.learn import ImageRegressor, make_regression_set
>>> X, y, g = make_regression_set(3, 2, shape=(64, 64), seed=0)
>>> reg = ImageRegressor(input_size=64, epochs=2).fit(X, y)
>>> reg.predict(X[:2]).shape
(2,)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, ImageError, ModelError
from crystalloop.vision.learn.augment import flips_rot180
from crystalloop.vision.learn.data import check_image
from crystalloop.vision.learn.train import TorchEstimator, fit_network, resolve_device, seeded

__all__ = ["ImageRegressor", "preprocess_seed004", "leave_one_group_out"]


def preprocess_seed004(image, *, radius_px: float = 50.0, equalize: bool = True) -> np.ndarray:
    """Rolling-ball background subtraction then histogram equalization (uint8 result).

    Uses :func:`crystalloop.vision.subtract_background` (features made positive, not divided by
    the background) and :func:`crystalloop.vision.equalize_histogram`.
    """
    from crystalloop.vision.preprocess import equalize_histogram, subtract_background, to_uint8

    img = check_image(image, channels=1)[:, :, 0]
    radius = min(float(radius_px), max(min(img.shape) / 2.0, 1.0))
    sig = subtract_background(img.astype(np.float32), radius=radius, method="rolling_ball", normalize=False)
    return equalize_histogram(sig) if equalize else to_uint8(sig)


def _regressor_net(in_ch: int, size: int, filters: Sequence[int], dense: int, dropout: float):
    from torch import nn

    layers, c = [], in_ch
    for f in filters:
        layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = f
    side = size // 2 ** len(filters)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, dense), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(dense, 1))


class ImageRegressor(TorchEstimator):
    """CNN regressor, seed-004 architecture and training settings by default.

    Parameters
    ----------
    input_size : int
        Preprocessed images are resized to ``input_size × input_size`` (divisible by
        ``2**len(filters)``).
    preprocess : {"seed004", None}
        Rolling ball (``rolling_ball_radius_px``, at the original resolution) + equalization.
    filters, dense, dropout
        Network (seed: (4, 8, 16), 10, 0.5).
    augment : bool
        Train on the original + vertical flip + horizontal flip + 180° rotation of every image.
    epochs, batch_size, lr
        Adam schedule (seed: lr 1e-4, batch 16).
    standardize_target : bool
        Learn ``(y - mean) / std`` (predictions are transformed back).
    """

    _state_attrs = ("y_mean_", "y_std_")

    def __init__(self, input_size: int = 128, channels: int = 1, preprocess: str | None = "seed004",
                 rolling_ball_radius_px: float = 50.0, filters: Sequence[int] = (4, 8, 16), dense: int = 10,
                 dropout: float = 0.5, augment: bool = True, epochs: int = 300, batch_size: int = 16, lr: float = 1e-4,
                 standardize_target: bool = True, random_state: int | None = 0, n_threads: int | None = None,
                 device: str = "auto", progress: bool = False):
        self.input_size = input_size
        self.channels = channels
        self.preprocess = preprocess
        self.rolling_ball_radius_px = rolling_ball_radius_px
        self.filters = filters
        self.dense = dense
        self.dropout = dropout
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.standardize_target = standardize_target
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.progress = progress

    def _build_network(self):
        return _regressor_net(self.channels, int(self.input_size), list(self.filters), int(self.dense), float(self.dropout))

    def _prep(self, images) -> np.ndarray:
        import cv2

        if self.preprocess not in ("seed004", None):
            raise ConfigError(f"preprocess={self.preprocess!r}; expected 'seed004' or None")
        if self.channels != 1 and self.preprocess == "seed004":
            raise ConfigError("the seed-004 preprocessing works on gray images; use channels=1")
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise ImageError(f"images is a single 2-D image of shape {images.shape}; pass a list or an (N, H, W) stack")
        s = int(self.input_size)
        out = []
        for i, im in enumerate(images):
            a = check_image(im, channels=self.channels, name=f"images[{i}]")
            if self.preprocess == "seed004":
                a = preprocess_seed004(a, radius_px=self.rolling_ball_radius_px)[:, :, None]
            a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else max(float(np.abs(a).max()), 1.0))
            if a.shape[:2] != (s, s):
                a = cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA).reshape(s, s, -1)
            out.append(a.transpose(2, 0, 1))
        if not out:
            raise ImageError("images is empty; expected at least one image")
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)

    def fit(self, X, y, *, X_prepared: np.ndarray | None = None) -> ImageRegressor:
        """Train on images ``X`` and targets ``y`` (finite floats, one per image)."""
        import torch
        import torch.nn.functional as F

        if int(self.input_size) % (2 ** len(self.filters)):
            raise ConfigError(f"input_size={self.input_size} must be divisible by 2**len(filters) = {2 ** len(self.filters)}")
        x = self._prep(X) if X_prepared is None else X_prepared
        t = np.asarray(y, dtype=np.float64).ravel()
        if len(t) != len(x):
            raise ModelError(f"got {len(x)} images but {len(t)} targets")
        if not np.isfinite(t).all():
            raise ModelError("targets y contain NaN or infinite values")
        if len(t) < 2:
            raise ModelError(f"need at least 2 training images, got {len(t)}")
        self.y_mean_ = float(t.mean()) if self.standardize_target else 0.0
        self.y_std_ = float(t.std()) if self.standardize_target and t.std() > 0 else 1.0
        z = ((t - self.y_mean_) / self.y_std_).astype(np.float32)
        if self.augment:
            x = flips_rot180(x)
            z = np.repeat(z, 4)
        dev = resolve_device(self.device)
        with seeded(self.random_state, self.n_threads) as rng:
            net = self._build_network().to(dev)
            bs = int(self.batch_size)

            def batches(r):
                order = r.permutation(len(z))
                for s in range(0, len(order), bs):
                    b = order[s : s + bs]
                    yield torch.from_numpy(np.ascontiguousarray(x[b])), torch.from_numpy(z[b])

            self.history_ = fit_network(net, batches, lambda out, tt: F.mse_loss(out[:, 0], tt), epochs=self.epochs,
                                        lr=self.lr, rng=rng, device=dev, progress=self.progress, desc="regressor")
        self.network_ = net
        return self

    def predict(self, X, *, X_prepared: np.ndarray | None = None) -> np.ndarray:
        """Predicted property per image, in the units of ``y``."""
        import torch

        self._check_fitted()
        x = self._prep(X) if X_prepared is None else X_prepared
        self.network_.eval()
        with torch.no_grad():
            z = np.concatenate([self.network_(torch.from_numpy(x[s : s + 64]).to(self.device_))[:, 0].float().cpu().numpy()
                                for s in range(0, len(x), 64)])
        return z.astype(np.float64) * self.y_std_ + self.y_mean_

    def score(self, X, y) -> float:
        """Coefficient of determination R²."""
        from sklearn.metrics import r2_score

        return float(r2_score(np.asarray(y, float), self.predict(X)))


def leave_one_group_out(estimator: ImageRegressor, X, y, groups, *, compare_augmentation: bool = False,
                        progress: bool = False) -> pd.DataFrame:
    """Leave-one-group-out cross-validation with per-group relative errors (seed 004, Table 2).

    For each group (a formulation/sample with one or more images), a fresh copy of
    ``estimator`` is trained on all other groups and predicts the left-out images; the group's
    prediction is the mean over its images and ``rel_error = |pred - true| / |true|``.

    Parameters
    ----------
    compare_augmentation : bool
        Also run with the augmentation switched off and report both columns, as the seed does
        (``rel_error_original``, ``rel_error_augmented``).

    Returns
    -------
    DataFrame indexed by group: ``y_true``, ``y_pred`` (``y_pred_original``/``y_pred_augmented``)
    and the relative errors, plus a final ``mean`` row.
    """
    t = np.asarray(y, float).ravel()
    g = np.asarray(groups).ravel()
    if len(t) != len(g) or len(t) != len(X):
        raise ModelError(f"X, y and groups must have equal length, got {len(X)}, {len(t)}, {len(g)}")
    names = list(dict.fromkeys(g.tolist()))
    if len(names) < 2:
        raise ModelError(f"leave-one-group-out needs at least 2 groups, got {names}")
    for name in names:
        vals = t[g == name]
        if np.ptp(vals) > 1e-12 * max(1.0, abs(vals).max()):
            raise ModelError(f"group {name!r} has different targets {sorted(set(vals.tolist()))}; a group is one sample with one value")
    xp = estimator._prep(X)
    settings = {"augmented": True, "original": False} if compare_augmentation else {"": bool(estimator.augment)}
    rows = {n: {"y_true": float(t[g == n][0])} for n in names}
    it = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="leave-one-group-out")
    for name in it:
        test = g == name
        for label, aug in settings.items():
            est = type(estimator)(**{**estimator.get_params(), "augment": aug, "progress": False})
            est.fit(None, t[~test], X_prepared=xp[~test])
            pred = float(est.predict(None, X_prepared=xp[test]).mean())
            suffix = f"_{label}" if label else ""
            rows[name][f"y_pred{suffix}"] = pred
            rows[name][f"rel_error{suffix}"] = abs(pred - rows[name]["y_true"]) / max(abs(rows[name]["y_true"]), 1e-300)
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    out.loc["mean"] = out.mean(numeric_only=True)
    return out
