"""Multi-label crystal image classifier (seed 001) with per-label thresholds tuned on validation data.

>>> from crystalloop.vision.learn import CrystalClassifier, make_crystal_images
>>> X, Y = make_crystal_images(24, shape=(64, 64), seed=0)
>>> clf = CrystalClassifier(input_size=64, epochs=1, filters=(4, 8), validation_fraction=0.25).fit(X, Y)
>>> clf.predict_proba(X[:2]).shape
(2, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, ImageError, ModelError
from crystalloop.vision.learn.data import check_image, normalize_image
from crystalloop.vision.learn.train import TorchEstimator, fit_network, resolve_device, seeded

__all__ = ["CrystalClassifier", "multilabel_report", "as_label_matrix", "tune_thresholds"]


def conv_net(in_ch: int, n_out: int, filters: Sequence[int], dropout: float):
    """Small CNN (conv-BN-ReLU-pool per entry of ``filters``, global pooling, dropout, linear
    head with ``n_out`` outputs); shared by the classifier and the impurity models."""
    import torch
    from torch import nn

    layers, c = [], in_ch
    for f in filters:
        layers += [nn.Conv2d(c, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(inplace=True),
                   nn.Conv2d(f, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = f

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(2 * c, n_out)

        def forward(self, x):
            z = self.features(x)
            z = torch.cat([z.mean((2, 3)), z.amax((2, 3))], 1)  # average + max pooling
            return self.head(self.drop(z))

    return Net()


def as_label_matrix(Y, labels: Sequence[str], *, name: str = "Y") -> np.ndarray:
    """Coerce multi-label targets to an ``(n, len(labels))`` 0/1 int matrix.

    ``Y`` may be a DataFrame with one 0/1 column per label (extra or missing columns are an
    error), a list of label-name collections per image (``[["needle"], [], ...]``), or a 2-D
    array ordered like ``labels``.
    """
    labels = list(labels)
    if isinstance(Y, pd.DataFrame):
        unknown = [c for c in Y.columns if c not in labels]
        if unknown:
            raise ModelError(f"{name} has label column(s) {unknown} that are not labels of the model; known labels: {labels}")
        missing = [c for c in labels if c not in Y.columns]
        if missing:
            raise ModelError(f"{name} lacks label column(s) {missing}")
        arr = Y[labels].to_numpy()
    elif (len(Y) and not isinstance(Y, np.ndarray) and all(isinstance(r, (list, tuple, set, frozenset)) for r in Y)
          and all(isinstance(k, str) for r in Y for k in r)):
        idx = {k: i for i, k in enumerate(labels)}
        arr = np.zeros((len(Y), len(labels)), np.int64)
        for r, names in enumerate(Y):
            for k in names:
                if k not in idx:
                    raise ModelError(f"{name}[{r}] names label {k!r}, which is not a label of the model; known labels: {labels}")
                arr[r, idx[k]] = 1
    else:
        arr = np.asarray(Y)
        if arr.ndim != 2 or arr.shape[1] != len(labels):
            raise ModelError(f"{name} has shape {arr.shape}; expected (n_images, {len(labels)}) for labels {labels}")
    if not np.isin(arr, (0, 1)).all():
        raise ModelError(f"{name} must hold only 0/1 (or booleans) per label")
    return arr.astype(np.int64)


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray, *, metric: str = "f1", grid: np.ndarray | None = None,
                    default: float = 0.5) -> np.ndarray:
    """Per-label threshold maximizing ``metric`` on validation data.

    ``metric="f1"`` (the seed's figure of merit) or ``"balanced_accuracy"`` (mean of the true
    positive and true negative rates, which does not drift to "always present" for labels that
    most images carry). Labels without both positives and negatives in ``y_true`` keep ``default``.
    """
    if metric not in ("f1", "balanced_accuracy"):
        raise ConfigError(f"threshold metric={metric!r}; expected 'f1' or 'balanced_accuracy'")
    grid = np.linspace(0.05, 0.95, 19) if grid is None else np.asarray(grid)
    out = np.full(y_true.shape[1], float(default))
    for j in range(y_true.shape[1]):
        t = y_true[:, j].astype(bool)
        if not t.any() or (metric == "balanced_accuracy" and t.all()):
            continue
        pred = proba[:, j][:, None] >= grid[None, :]
        tp = (pred & t[:, None]).sum(0)
        fp = (pred & ~t[:, None]).sum(0)
        fn = (~pred & t[:, None]).sum(0)
        if metric == "f1":
            f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        else:
            tn = (~pred & ~t[:, None]).sum(0)
            f1 = 0.5 * (tp / max(t.sum(), 1) + tn / max((~t).sum(), 1))
        best = np.flatnonzero(f1 == f1.max())
        out[j] = float(grid[best[len(best) // 2]])  # middle of the plateau
    return out


def multilabel_report(y_true, y_pred, labels: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per label (the seed-001 table), plus a micro average."""
    t = as_label_matrix(y_true, labels, name="y_true").astype(bool)
    p = as_label_matrix(y_pred, labels, name="y_pred").astype(bool)
    if t.shape != p.shape:
        raise ModelError(f"y_true has shape {t.shape} but y_pred {p.shape}")
    tp, fp, fn = (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)

    def prf(tp, fp, fn):
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), np.nan)
        f1 = np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
        return prec, rec, f1

    prec, rec, f1 = prf(tp, fp, fn)
    rep = pd.DataFrame({"precision": prec, "recall": rec, "f1": f1, "support": t.sum(0)}, index=list(labels))
    mp, mr, mf = prf(tp.sum(), fp.sum(), fn.sum())
    rep.loc["micro avg"] = [float(mp), float(mr), float(mf), int(t.sum())]
    rep["support"] = rep["support"].astype(int)
    return rep


class CrystalClassifier(TorchEstimator):
    """Multi-label CNN: a per-label confidence for each image, thresholded per label.

    Parameters
    ----------
    labels : sequence of str, optional
        Label names; default: the DataFrame columns given to :meth:`fit` (or
        :data:`~crystalloop.vision.learn.synth.CRYSTAL_LABELS` for arrays).
    input_size : int
        Images are resized (area interpolation) to ``input_size × input_size``.
    channels : {1, 3}
    filters : sequence of int
        Filters of the conv blocks (each conv-conv-pool); ``input_size`` must be divisible by
        ``2**len(filters)``.
    dropout, epochs, batch_size, lr, weight_decay
        Training settings (Adam, binary cross-entropy with per-label positive weights
        ``n_neg/n_pos`` clipped to [1, 20] against label imbalance).
    augment : bool
        Random flips, 90° rotations and ±10 % brightness during training.
    validation_fraction : float
        Share of the images held out to tune per-label thresholds; 0 keeps 0.5.
    threshold_metric : {"f1", "balanced_accuracy"}
        What the per-label thresholds maximize on the validation images.
    normalize : {"dtype", "percentile"}
        ``dtype`` keeps absolute brightness (needed to tell empty from crowded frames).
    """

    _state_attrs = ("labels_", "thresholds_", "pos_weight_")

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        input_size: int = 128,
        channels: int = 1,
        filters: Sequence[int] = (16, 32, 64, 96),
        dropout: float = 0.3,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        augment: bool = True,
        validation_fraction: float = 0.2,
        threshold_metric: str = "f1",
        normalize: str = "dtype",
        random_state: int | None = 0,
        n_threads: int | None = None,
        device: str = "auto",
        progress: bool = False,
    ):
        self.labels = labels
        self.input_size = input_size
        self.channels = channels
        self.filters = filters
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.threshold_metric = threshold_metric
        self.normalize = normalize
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.progress = progress

    def _build_network(self):
        return conv_net(self.channels, len(self.labels_), list(self.filters), float(self.dropout))

    def _prep(self, images) -> np.ndarray:
        import cv2

        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise ImageError(f"images is a single 2-D image of shape {images.shape}; pass a list or an (N, H, W) stack")
        s = int(self.input_size)
        out = []
        for i, im in enumerate(images):
            a = normalize_image(check_image(im, channels=self.channels, name=f"images[{i}]"), self.normalize)
            if a.shape[:2] != (s, s):
                a = cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA).reshape(s, s, -1)
            out.append(a.transpose(2, 0, 1))
        if not out:
            raise ImageError("images is empty; expected at least one image")
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)

    def fit(self, X, Y) -> CrystalClassifier:
        """Train on images ``X`` and multi-label targets ``Y`` (see :func:`as_label_matrix`)."""
        import torch
        import torch.nn.functional as F

        from crystalloop.vision.learn.synth import CRYSTAL_LABELS

        if self.labels is not None:
            labels = list(self.labels)
        elif isinstance(Y, pd.DataFrame):
            labels = [str(c) for c in Y.columns]
        else:
            labels = list(CRYSTAL_LABELS)
        if self.threshold_metric not in ("f1", "balanced_accuracy"):
            raise ConfigError(f"threshold_metric={self.threshold_metric!r}; expected 'f1' or 'balanced_accuracy'")
        if len(set(labels)) != len(labels) or not labels:
            raise ConfigError(f"labels must be distinct and non-empty, got {labels}")
        m = 2 ** len(self.filters)
        if int(self.input_size) % m:
            raise ConfigError(f"input_size={self.input_size} must be divisible by 2**len(filters) = {m}")
        Ymat = as_label_matrix(Y, labels)
        x = self._prep(X)
        if len(x) != len(Ymat):
            raise ModelError(f"got {len(x)} images but {len(Ymat)} label rows")
        empty = [lab for lab, c in zip(labels, Ymat.sum(0), strict=True) if c == 0]
        if empty:
            raise ModelError(f"label(s) {empty} have no positive example in the training data; drop them (labels=...) or add examples")
        self.labels_ = labels
        dev = resolve_device(self.device)
        with seeded(self.random_state, self.n_threads) as rng:
            idx = rng.permutation(len(x))
            n_val = int(round(float(self.validation_fraction) * len(x)))
            val, tr = idx[:n_val], idx[n_val:]
            if len(tr) < 2:
                raise ModelError(f"only {len(tr)} training images after holding out {n_val} for validation")
            pos = Ymat[tr].sum(0)
            self.pos_weight_ = np.clip((len(tr) - pos) / np.maximum(pos, 1), 1.0, 20.0).astype(np.float32)
            pw = torch.as_tensor(self.pos_weight_, device=dev)
            net = self._build_network().to(dev)
            bs = int(self.batch_size)

            def batches(r):
                order = r.permutation(tr)
                for s in range(0, len(order), bs):
                    b = order[s : s + bs]
                    xb = x[b]
                    if self.augment:
                        xb = augment_batch(xb, r)
                    yield torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(Ymat[b].astype(np.float32))

            def loss(out, y):
                return F.binary_cross_entropy_with_logits(out, y, pos_weight=pw)

            validate = None
            if n_val:
                def validate():
                    p = self._proba(net, x[val])
                    return {"val_accuracy": float(((p >= 0.5) == Ymat[val]).mean())}

            self.history_ = fit_network(net, batches, loss, epochs=self.epochs, lr=self.lr, rng=rng, device=dev,
                                        weight_decay=self.weight_decay, validate=validate, progress=self.progress,
                                        desc="classifier")
        self.network_ = net
        if n_val:
            self.thresholds_ = tune_thresholds(Ymat[val], self._proba(net, x[val]), metric=self.threshold_metric)
        else:
            self.thresholds_ = np.full(len(labels), 0.5)
        return self

    def _proba(self, net, x: np.ndarray, batch: int = 64) -> np.ndarray:
        import torch

        dev = next(net.parameters()).device
        net.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(x), batch):
                out.append(torch.sigmoid(net(torch.from_numpy(x[s : s + batch]).to(dev))).float().cpu().numpy())
        return np.concatenate(out)

    def predict_proba(self, X) -> np.ndarray:
        """Per-label confidences in [0, 1], shape ``(n_images, n_labels)`` ordered as ``labels_``."""
        self._check_fitted()
        return self._proba(self.network_, self._prep(X))

    def predict(self, X) -> np.ndarray:
        """0/1 matrix: confidence ≥ the label's tuned threshold."""
        return (self.predict_proba(X) >= self.thresholds_[None, :]).astype(np.int64)

    def predict_frame(self, X) -> pd.DataFrame:
        """DataFrame with ``<label>_proba`` and ``<label>`` (0/1) columns per image."""
        p = self.predict_proba(X)
        d = {}
        for j, lab in enumerate(self.labels_):
            d[f"{lab}_proba"] = p[:, j]
            d[lab] = (p[:, j] >= self.thresholds_[j]).astype(int)
        return pd.DataFrame(d)

    def set_thresholds(self, thresholds: dict[str, float]) -> CrystalClassifier:
        """Override per-label thresholds by name."""
        self._check_fitted()
        for k, v in thresholds.items():
            if k not in self.labels_:
                raise ModelError(f"label {k!r} is not a label of this model; known labels: {self.labels_}")
            if not 0.0 < float(v) < 1.0:
                raise ConfigError(f"threshold for {k!r} is {v}; expected a value in (0, 1)")
            self.thresholds_[self.labels_.index(k)] = float(v)
        return self

    def report(self, X, Y) -> pd.DataFrame:
        """Precision/recall/F1 per label on ``(X, Y)`` at the tuned thresholds (seed-001 table)."""
        self._check_fitted()
        return multilabel_report(as_label_matrix(Y, self.labels_), self.predict(X), self.labels_)

    def score(self, X, Y) -> float:
        """Micro-averaged F1."""
        return float(self.report(X, Y).loc["micro avg", "f1"])


def augment_batch(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flip, 90° rotation and brightness ×0.9–1.1 of each image of a batch ``(N, C, H, W)``."""
    out = np.empty_like(x)
    for i in range(len(x)):
        a = x[i]
        if rng.random() < 0.5:
            a = a[:, :, ::-1]
        a = np.rot90(a, int(rng.integers(4)), axes=(1, 2))
        out[i] = a * np.float32(rng.uniform(0.9, 1.1))
    return out
