"""Impurity detection (seed 000): product vs impurity crystals in image crops.

Two formulations, as the OpenCrystalData paper proposes:

- :class:`ImpurityClassifier` — binary CNN when the impurity's morphology is known, with the
  class imbalance handled by a positive-class loss weight (``class_weight="balanced"``) or by
  oversampling the minority class (``sampling="balanced"``);
- anomaly detection trained on product crystals only — :class:`AutoencoderDetector`
  (convolutional autoencoder, score = reconstruction error) or :class:`FeatureDetector`
  (shape descriptors of the central particle, score = robust Mahalanobis distance).

Scores are "impurity-ness": higher means more likely an impurity. :func:`impurity_scores`
reports ROC-AUC and precision at a fixed recall.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError, ImageError, ModelError
from crystalloop.vision.learn.data import check_image, normalize_image
from crystalloop.vision.learn.train import (
    TorchEstimator,
    fit_network,
    read_config,
    resolve_device,
    seeded,
)

__all__ = [
    "ImpurityClassifier",
    "AutoencoderDetector",
    "FeatureDetector",
    "impurity_scores",
    "precision_at_recall",
    "crop_features",
]


def precision_at_recall(y_true, scores, recall: float = 0.9) -> tuple[float, float]:
    """Highest precision among thresholds whose recall ≥ ``recall``; returns ``(precision, threshold)``."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y_true).astype(int)
    if y.min() == y.max():
        raise ModelError("precision_at_recall needs both classes (product 0 and impurity 1) in y_true")
    if not 0 < recall <= 1:
        raise ConfigError(f"recall={recall}; expected a value in (0, 1]")
    p, r, t = precision_recall_curve(y, np.asarray(scores, float))
    ok = r[:-1] >= recall
    k = int(np.argmax(np.where(ok, p[:-1], -1)))
    return float(p[k]), float(t[k])


def impurity_scores(y_true, scores, *, recall: float = 0.9) -> dict[str, float]:
    """ROC-AUC, average precision and precision at ``recall`` of impurity scores (1 = impurity)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, float)
    if y.shape != s.shape:
        raise ModelError(f"y_true has shape {y.shape} but scores {s.shape}")
    prec, thr = precision_at_recall(y, s, recall)
    return {"roc_auc": float(roc_auc_score(y, s)), "average_precision": float(average_precision_score(y, s)),
            f"precision_at_recall_{recall:g}": prec, "threshold": thr, "n_product": int((y == 0).sum()),
            "n_impurity": int((y == 1).sum())}


def _prep(images, channels: int, size: int, normalize: str = "dtype") -> np.ndarray:
    import cv2

    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise ImageError(f"images is a single 2-D crop of shape {images.shape}; pass a list or an (N, H, W) stack")
    out = []
    for i, im in enumerate(images):
        a = normalize_image(check_image(im, channels=channels, name=f"images[{i}]"), normalize)
        if a.shape[:2] != (size, size):
            a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, -1)
        out.append(a.transpose(2, 0, 1))
    if not out:
        raise ImageError("images is empty; expected at least one crop")
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _binary_targets(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ModelError("y must be a 1-D array of 0 (product) / 1 (impurity)")
    return y.astype(np.int64)


class ImpurityClassifier(TorchEstimator):
    """Binary CNN on crops: 0 = product, 1 = impurity.

    Parameters
    ----------
    input_size : int
        Crops are resized to ``input_size × input_size``.
    filters : sequence of int
        Conv block widths (conv-BN-ReLU-pool each).
    class_weight : {"balanced", None}
        ``balanced`` weights the impurity class by ``n_product / n_impurity`` in the loss.
    sampling : {None, "balanced"}
        ``balanced`` draws each batch with equal class shares (oversampling the minority).
    epochs, batch_size, lr, augment, random_state, n_threads, device, progress
        As for the other estimators; augmentation = flips and 90° rotations.
    """

    _state_attrs = ("classes_", "pos_weight_")

    def __init__(self, input_size: int = 64, channels: int = 1, filters=(8, 16, 32), class_weight: str | None = "balanced",
                 sampling: str | None = None, epochs: int = 20, batch_size: int = 32, lr: float = 2e-3,
                 augment: bool = True, random_state: int | None = 0, n_threads: int | None = None,
                 device: str = "auto", progress: bool = False):
        self.input_size = input_size
        self.channels = channels
        self.filters = filters
        self.class_weight = class_weight
        self.sampling = sampling
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.augment = augment
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.progress = progress

    def _build_network(self):
        from crystalloop.vision.learn.classify import conv_net

        return conv_net(self.channels, 1, list(self.filters), 0.2)

    def fit(self, X, y) -> ImpurityClassifier:
        import torch
        import torch.nn.functional as F

        from crystalloop.vision.learn.classify import augment_batch

        if self.class_weight not in ("balanced", None):
            raise ConfigError(f"class_weight={self.class_weight!r}; expected 'balanced' or None")
        if self.sampling not in ("balanced", None):
            raise ConfigError(f"sampling={self.sampling!r}; expected 'balanced' or None")
        x = _prep(X, self.channels, int(self.input_size))
        y = _binary_targets(y)
        if len(x) != len(y):
            raise ModelError(f"got {len(x)} crops but {len(y)} targets")
        n1 = int(y.sum())
        if n1 == 0 or n1 == len(y):
            raise ModelError(f"y holds only class {int(y[0])}; a binary classifier needs product (0) and impurity (1) crops. "
                             "For product-only training use AutoencoderDetector or FeatureDetector.")
        self.classes_ = np.array([0, 1])
        self.pos_weight_ = float((len(y) - n1) / n1) if self.class_weight == "balanced" else 1.0
        dev = resolve_device(self.device)
        with seeded(self.random_state, self.n_threads) as rng:
            net = self._build_network().to(dev)
            pw = torch.tensor([self.pos_weight_], device=dev)
            bs = int(self.batch_size)
            i0, i1 = np.flatnonzero(y == 0), np.flatnonzero(y == 1)

            def batches(r):
                if self.sampling == "balanced":
                    order = np.concatenate([r.choice(i0, len(y) // 2), r.choice(i1, len(y) - len(y) // 2)])
                    order = r.permutation(order)
                else:
                    order = r.permutation(len(y))
                for s in range(0, len(order), bs):
                    b = order[s : s + bs]
                    xb = augment_batch(x[b], r) if self.augment else x[b]
                    yield torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(y[b].astype(np.float32))

            def loss(out, t):
                return F.binary_cross_entropy_with_logits(out[:, 0], t, pos_weight=pw)

            self.history_ = fit_network(net, batches, loss, epochs=self.epochs, lr=self.lr, rng=rng, device=dev,
                                        progress=self.progress, desc="impurity")
        self.network_ = net
        return self

    def decision_function(self, X) -> np.ndarray:
        """Impurity logit per crop (higher = more impurity-like)."""
        import torch

        self._check_fitted()
        x = _prep(X, self.channels, int(self.input_size))
        dev = self.device_
        with torch.no_grad():
            return np.concatenate([self.network_(torch.from_numpy(x[s : s + 128]).to(dev))[:, 0].float().cpu().numpy()
                                   for s in range(0, len(x), 128)])

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 2)``: probabilities of product and impurity."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.c_[1 - p, p]

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def score(self, X, y) -> float:
        """ROC-AUC of the impurity probability."""
        return impurity_scores(y, self.decision_function(X))["roc_auc"]


def _autoencoder(in_ch: int, filters, latent: int):
    from torch import nn

    enc, c = [], in_ch
    for f in filters:
        enc += [nn.Conv2d(c, f, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        c = f
    enc += [nn.Conv2d(c, latent, 1), nn.ReLU(inplace=True)]
    dec, c = [nn.Conv2d(latent, filters[-1], 1), nn.ReLU(inplace=True)], filters[-1]
    for f in list(filters[:-1])[::-1] + [16]:
        dec += [nn.ConvTranspose2d(c, f, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        c = f
    dec += [nn.Conv2d(c, in_ch, 3, padding=1)]
    return nn.Sequential(nn.Sequential(*enc), nn.Sequential(*dec))


class AutoencoderDetector(TorchEstimator):
    """Anomaly detector trained on product crops only: score = reconstruction error.

    A small convolutional autoencoder (stride-2 encoder to a narrow ``latent``-channel code, a
    transposed-conv decoder) learns to reproduce product crystals; crops it reconstructs badly
    are flagged. ``threshold_`` is the ``quantile`` of the training scores (so about
    ``1 - quantile`` of product crops raise a false alarm).
    """

    _state_attrs = ("threshold_", "score_scale_")

    def __init__(self, input_size: int = 64, channels: int = 1, filters=(16, 32, 32), latent: int = 4, epochs: int = 30,
                 batch_size: int = 32, lr: float = 2e-3, augment: bool = True, quantile: float = 0.95,
                 random_state: int | None = 0, n_threads: int | None = None, device: str = "auto", progress: bool = False):
        self.input_size = input_size
        self.channels = channels
        self.filters = filters
        self.latent = latent
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.augment = augment
        self.quantile = quantile
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.progress = progress

    def _build_network(self):
        return _autoencoder(self.channels, list(self.filters), int(self.latent))

    def fit(self, X, y=None) -> AutoencoderDetector:
        """Train on product crops ``X`` (``y``, if given, must be all 0)."""
        import torch
        import torch.nn.functional as F

        from crystalloop.vision.learn.classify import augment_batch

        if int(self.input_size) % (2 ** len(self.filters)):
            raise ConfigError(f"input_size={self.input_size} must be divisible by 2**len(filters)")
        if not 0.5 <= float(self.quantile) < 1:
            raise ConfigError(f"quantile={self.quantile}; expected a value in [0.5, 1)")
        if y is not None and np.asarray(y).any():
            raise ModelError("anomaly detection trains on product crops only: y must be all 0 (or omitted)")
        x = _prep(X, self.channels, int(self.input_size))
        dev = resolve_device(self.device)
        with seeded(self.random_state, self.n_threads) as rng:
            net = self._build_network().to(dev)
            bs = int(self.batch_size)

            def batches(r):
                order = r.permutation(len(x))
                for s in range(0, len(order), bs):
                    xb = x[order[s : s + bs]]
                    xb = augment_batch(xb, r) if self.augment else xb
                    t = torch.from_numpy(np.ascontiguousarray(xb))
                    yield t, t

            self.history_ = fit_network(net, batches, lambda out, t: F.mse_loss(out, t), epochs=self.epochs, lr=self.lr,
                                        rng=rng, device=dev, progress=self.progress, desc="autoencoder")
        self.network_ = net
        self.score_scale_ = 1.0
        s = self._scores(x)
        self.score_scale_ = float(np.median(s))
        self.threshold_ = float(np.quantile(s / self.score_scale_, self.quantile))
        return self

    def _scores(self, x: np.ndarray) -> np.ndarray:
        import torch

        dev = self.device_
        out = []
        with torch.no_grad():
            for s in range(0, len(x), 128):
                t = torch.from_numpy(x[s : s + 128]).to(dev)
                out.append(((self.network_(t) - t) ** 2).mean((1, 2, 3)).float().cpu().numpy())
        return np.concatenate(out)

    def score_samples(self, X) -> np.ndarray:
        """Reconstruction error relative to the median product error (higher = more anomalous)."""
        self._check_fitted()
        return self._scores(_prep(X, self.channels, int(self.input_size))) / self.score_scale_

    decision_function = score_samples

    def predict(self, X) -> np.ndarray:
        """1 = impurity (score above ``threshold_``), 0 = product."""
        return (self.score_samples(X) > self.threshold_).astype(np.int64)


def crop_features(images) -> np.ndarray:
    """Shape descriptors of the particle nearest the centre of each crop.

    Otsu threshold of the (dark-particle) crop, then for the central connected component:
    log area, aspect ratio (ellipse major/minor from moments), circularity 4πA/P², solidity,
    extent (area / bounding-box area), relative Feret width, mean darkness, and the first three
    log Hu moments. Returns ``(n, 10)`` float.
    """
    import cv2

    feats = []
    for i, im in enumerate(images):
        a = check_image(im, channels=1, name=f"images[{i}]")[:, :, 0]
        g = cv2.normalize(a.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        _, bw = cv2.threshold(g, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        n, lab = cv2.connectedComponents(bw)
        h, w = bw.shape
        if n <= 1:
            feats.append(np.zeros(10))
            continue
        rr, cc = np.mgrid[0:h, 0:w]
        d = np.hypot(rr - h / 2, cc - w / 2)
        best = min(range(1, n), key=lambda k: d[lab == k].min())
        m = (lab == best).astype(np.uint8)
        cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cnt = max(cs, key=cv2.contourArea)
        area = float(m.sum())
        per = max(cv2.arcLength(cnt, True), 1.0)
        hull = max(cv2.contourArea(cv2.convexHull(cnt)), 1.0)
        mo = cv2.moments(m, binaryImage=True)
        cov = np.array([[mo["mu20"], mo["mu11"]], [mo["mu11"], mo["mu02"]]]) / max(mo["m00"], 1.0)
        ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
        ar = float(np.sqrt(max(ev[0], 1e-9) / max(ev[1], 1e-9)))
        (_, _), (rw, rh), _ = cv2.minAreaRect(cnt)
        hu = cv2.HuMoments(mo).ravel()[:3]
        feats.append(np.r_[np.log(area), np.log(ar), 4 * np.pi * area / per**2, area / hull,
                           area / max(rw * rh, 1.0), min(rw, rh) / max(rw, rh, 1.0), 1 - g[m > 0].mean() / 255.0,
                           -np.sign(hu) * np.log10(np.abs(hu) + 1e-12)])
    return np.asarray(feats, dtype=float)


class FeatureDetector:
    """Anomaly detector on shape descriptors (:func:`crop_features`) of product crops.

    Fits a robust (minimum covariance determinant) Gaussian to the product descriptors; the score
    is the Mahalanobis distance. ``threshold_`` is the ``quantile`` of the training scores.
    Saved as JSON only.
    """

    def __init__(self, quantile: float = 0.95, random_state: int | None = 0):
        self.quantile = quantile
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return {"quantile": self.quantile, "random_state": self.random_state}

    def set_params(self, **p) -> FeatureDetector:
        for k, v in p.items():
            if k not in self.get_params():
                raise ConfigError(f"FeatureDetector has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def fit(self, X, y=None) -> FeatureDetector:
        from sklearn.covariance import MinCovDet

        if y is not None and np.asarray(y).any():
            raise ModelError("anomaly detection trains on product crops only: y must be all 0 (or omitted)")
        f = crop_features(X)
        if len(f) < 2 * f.shape[1]:
            raise ModelError(f"FeatureDetector needs at least {2 * f.shape[1]} product crops, got {len(f)}")
        self.mean_ = f.mean(0)
        self.scale_ = f.std(0) + 1e-9
        mcd = MinCovDet(random_state=self.random_state).fit((f - self.mean_) / self.scale_)
        self.location_ = mcd.location_
        self.precision_ = mcd.get_precision()
        self.threshold_ = float(np.quantile(self._score(f), self.quantile))
        return self

    def _score(self, f: np.ndarray) -> np.ndarray:
        z = (f - self.mean_) / self.scale_ - self.location_
        return np.sqrt(np.einsum("ij,jk,ik->i", z, self.precision_, z))

    def score_samples(self, X) -> np.ndarray:
        if not hasattr(self, "precision_"):
            raise ModelError("this FeatureDetector is not fitted yet; call fit(...) or load(...) first")
        return self._score(crop_features(X))

    decision_function = score_samples

    def predict(self, X) -> np.ndarray:
        return (self.score_samples(X) > self.threshold_).astype(np.int64)

    def save(self, path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: np.asarray(getattr(self, k)).tolist() for k in ("mean_", "scale_", "location_", "precision_")}
        (path / "config.json").write_text(json.dumps({"format_version": 1, "class": f"{__name__}.FeatureDetector",
                                                      "params": self.get_params(), "state": state,
                                                      "threshold": self.threshold_}, indent=2))
        return path

    @classmethod
    def load(cls, path, *, device=None) -> FeatureDetector:
        cfg = read_config(Path(path))
        det = cls(**cfg["params"])
        for k, v in cfg["state"].items():
            setattr(det, k, np.asarray(v, float))
        det.threshold_ = float(cfg["threshold"])
        return det
