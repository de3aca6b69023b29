"""Few-shot pixel classifier in the ilastik style: a random forest on multi-scale filter responses.

Training needs one or two annotated images, full or partial (labelled pixels only are learned
from), and takes seconds on a CPU: features (:mod:`~crystalloop.vision.learn.features`) of every
labelled pixel are subsampled to ``samples_per_class`` per class (balanced), and a
:class:`~sklearn.ensemble.RandomForestClassifier` learns background / object interior / object
boundary (or background / object from scribbles). Prediction computes features in row bands with a
halo wide enough for the largest filter, so memory stays bounded on large images; instances come
from :func:`~crystalloop.vision.learn.instances.probabilities_to_labels`.

The model saves to a folder as ``forest.skops`` (scikit-learn's trees through skops, loaded
with an explicit trusted-type list, never pickle) and ``settings.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError, ImageError, ModelError, UntrustedModelError
from crystalloop.vision.learn.annotations import TARGET_CLASSES
from crystalloop.vision.learn.features import (
    DEFAULT_SIGMAS,
    FEATURE_KINDS,
    feature_names,
    pixel_features,
    prepare_channels,
)
from crystalloop.vision.learn.instances import INSTANCE_METHODS, probabilities_to_labels

__all__ = ["PixelClassifier", "SKOPS_TRUSTED_TYPES"]

_CLASS_NAMES = {v: k for k, v in TARGET_CLASSES.items()}
#: The only non-builtin types a saved forest may contain (checked before anything is loaded).
SKOPS_TRUSTED_TYPES = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)
_BAND_ROWS = 256


class PixelClassifier:
    """Random-forest pixel classifier with instance separation (``predict_labels``).

    Parameters
    ----------
    sigmas : sequence of float
        Feature scales in pixels (default ilastik's 0.7, 1.0, 1.6, 3.5, 5.0, 10.0).
    kinds : sequence of str
        Filter families (default all of :data:`~crystalloop.vision.learn.features.FEATURE_KINDS`).
    channel : int, optional
        Use one channel of colour images; default every channel.
    n_estimators, max_depth, min_samples_leaf
        Random forest size (ilastik uses 100 trees; 48 of depth ≤ 20 train in seconds).
    samples_per_class : int
        Labelled pixels drawn per class across all training images (balanced classes).
    prior_power : float
        Balanced sampling makes rare classes (the thin boundary) look as common as background,
        which widens objects; probabilities are multiplied by (labelled share / sampled share) of
        each class to this power and renormalized (0: no correction, 1: the labelled priors).
    instance_method : {"auto", "boundary", "distance"}
        Instance separation (:func:`~crystalloop.vision.learn.instances.probabilities_to_labels`).
    threshold, smooth_sigma, h_px, min_size_px
        Post-processing: foreground probability threshold, probability smoothing (px), depth of
        distance maxima that start an object (px), smallest object kept (px).
    n_jobs : int, optional
        Threads of the forest (None: scikit-learn's default, 1).
    random_state : int
        Seeds the pixel sampling and the forest (same data + seed → identical model).
    """

    def __init__(
        self,
        *,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        kinds: Sequence[str] = FEATURE_KINDS,
        channel: int | None = None,
        n_estimators: int = 48,
        max_depth: int | None = 20,
        min_samples_leaf: int = 2,
        samples_per_class: int = 5000,
        prior_power: float = 0.5,
        instance_method: str = "auto",
        threshold: float = 0.5,
        smooth_sigma: float = 1.0,
        h_px: float = 1.0,
        min_size_px: int = 20,
        n_jobs: int | None = None,
        random_state: int = 0,
    ):
        self.sigmas = sigmas
        self.kinds = kinds
        self.channel = channel
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.samples_per_class = samples_per_class
        self.prior_power = prior_power
        self.instance_method = instance_method
        self.threshold = threshold
        self.smooth_sigma = smooth_sigma
        self.h_px = h_px
        self.min_size_px = min_size_px
        self.n_jobs = n_jobs
        self.random_state = random_state

    _PARAMS = ("sigmas", "kinds", "channel", "n_estimators", "max_depth", "min_samples_leaf", "samples_per_class",
               "prior_power",
               "instance_method", "threshold", "smooth_sigma", "h_px", "min_size_px", "n_jobs", "random_state")

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments (scikit-learn convention)."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> PixelClassifier:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ConfigError(f"PixelClassifier has no parameter {k!r}; expected one of {list(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"PixelClassifier(n_estimators={self.n_estimators}, sigmas={list(self.sigmas)}, channel={self.channel})"

    # --- features ------------------------------------------------------------------------------
    def _features(self, image) -> np.ndarray:
        return pixel_features(image, sigmas=self.sigmas, kinds=self.kinds, channel=self.channel)

    def _halo(self) -> int:
        s = max(float(v) for v in self.sigmas)
        return int(np.ceil(4.5 * s)) + 2  # structure tensor: inner σ/2 then outer σ, each to 3σ

    def _channels_of(self, image) -> int:
        a = np.asarray(image)
        if self.channel is not None or a.ndim == 2:
            return 1
        return min(a.shape[2], 3)

    # --- fit -------------------------------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> PixelClassifier:
        """Learn from labelled pixels.

        Parameters
        ----------
        images : sequence of ndarray
            ``(H, W)`` or ``(H, W, C)`` each, any numeric dtype; same channel count for all.
        targets : sequence of ndarray of int, shape (H, W)
            Class maps: 0 unlabelled (ignored), 1 background, 2 object interior, 3 object
            boundary (:meth:`~crystalloop.vision.learn.annotations.Annotation.targets`).
        """
        from sklearn.ensemble import RandomForestClassifier

        self._check_params()
        images, targets = list(images), list(targets)
        if not images or len(images) != len(targets):
            raise ConfigError(f"got {len(images)} images and {len(targets)} target maps; expected as many of each (≥ 1)")
        nch = {self._channels_of(im) for im in images}
        if len(nch) > 1:
            raise ImageError(f"training images mix {sorted(nch)} channels; give all grey or all colour (or set channel=)")
        rng = np.random.default_rng(self.random_state)
        per_class: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, (im, t) in enumerate(zip(images, targets, strict=True)):
            t = np.asarray(t)
            if t.shape != np.asarray(im).shape[:2]:
                raise ImageError(f"target map {i} is {t.shape} px but image {i} is {np.asarray(im).shape[:2]} px")
            if t.dtype.kind not in "iu" or (t.size and (t.min() < 0 or t.max() > 3)):
                raise ImageError(f"target map {i} must hold integers 0..3 (0 unlabelled, 1 background, 2 interior, "
                                 f"3 boundary); got dtype {t.dtype}, values {np.unique(t)[:6].tolist()}")
            for c in (1, 2, 3):
                idx = np.flatnonzero(t.ravel() == c)
                if idx.size:
                    per_class.setdefault(c, []).append((i, idx))
        if 1 not in per_class or 2 not in per_class:
            raise ConfigError(f"annotations label classes {sorted(_CLASS_NAMES[c] for c in per_class)}; need at least "
                              "background and object pixels")
        n = int(self.samples_per_class)
        picks: dict[int, list[np.ndarray]] = {}
        for c in sorted(per_class):
            total = sum(idx.size for _, idx in per_class[c])
            take = min(n, total)
            flat = rng.choice(total, size=take, replace=False)
            flat.sort()
            off = 0
            for i, idx in per_class[c]:
                sel = flat[(flat >= off) & (flat < off + idx.size)] - off
                if sel.size:
                    picks.setdefault(i, []).append((c, idx[sel]))
                off += idx.size
        X, y = [], []
        for i in sorted(picks):
            f = self._features(images[i])
            f = f.reshape(-1, f.shape[2])
            for c, idx in picks[i]:
                X.append(f[idx])
                y.append(np.full(idx.size, c, np.int64))
        X, y = np.concatenate(X), np.concatenate(y)
        labelled = np.array([sum(idx.size for _, idx in per_class[c]) for c in sorted(per_class)], float)
        sampled = np.array([(y == c).sum() for c in sorted(per_class)], float)
        self.class_weights_ = ((labelled / labelled.sum()) / (sampled / sampled.sum())) ** float(self.prior_power)
        rf = RandomForestClassifier(
            n_estimators=int(self.n_estimators), max_depth=self.max_depth, min_samples_leaf=int(self.min_samples_leaf),
            max_features="sqrt", n_jobs=self.n_jobs, random_state=int(self.random_state),
        )
        rf.fit(X, y)
        self.forest_ = rf
        self.classes_ = [int(c) for c in rf.classes_]
        self.class_names_ = [_CLASS_NAMES[c] for c in self.classes_]
        self.n_channels_ = nch.pop()
        self.n_features_in_ = int(X.shape[1])
        self.feature_names_ = feature_names(self.n_channels_, sigmas=self.sigmas, kinds=self.kinds)
        self.n_samples_ = {self.class_names_[k]: int((y == c).sum()) for k, c in enumerate(self.classes_)}
        return self

    def _check_params(self) -> None:
        if self.instance_method not in INSTANCE_METHODS:
            raise ConfigError(f"instance_method={self.instance_method!r}; expected one of {list(INSTANCE_METHODS)}")
        for name in ("n_estimators", "samples_per_class", "min_samples_leaf"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name}={v!r}; expected a positive integer")

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise ModelError("PixelClassifier is not fitted; call fit() or PixelClassifier.load(folder) first")

    # --- predict ---------------------------------------------------------------------------------
    def predict_proba(self, image) -> np.ndarray:
        """Class probabilities ``(H, W, n_classes)`` float32, classes in :attr:`class_names_` order."""
        self._check_fitted()
        a = np.asarray(image)
        if self._channels_of(a) != self.n_channels_:
            raise ImageError(f"image has {self._channels_of(a)} channel(s) but the model was trained on {self.n_channels_}"
                             f"{' (channel=' + str(self.channel) + ')' if self.channel is not None else ''}")
        chans = prepare_channels(a, channel=self.channel)  # one normalization for all bands
        h = a.shape[0]
        halo = self._halo()
        out = np.empty(a.shape[:2] + (len(self.classes_),), np.float32)
        for r0 in range(0, h, _BAND_ROWS):
            r1 = min(h, r0 + _BAND_ROWS)
            b0, b1 = max(0, r0 - halo), min(h, r1 + halo)
            f = pixel_features(chans[b0:b1], sigmas=self.sigmas, kinds=self.kinds, normalize=False)[r0 - b0 : r1 - b0]
            p = self.forest_.predict_proba(f.reshape(-1, f.shape[2]))
            out[r0:r1] = p.reshape(r1 - r0, a.shape[1], -1)
        out *= self.class_weights_.astype(np.float32)
        out /= out.sum(axis=2, keepdims=True)
        return out

    def predict(self, image) -> np.ndarray:
        """Most probable class per pixel (1 background, 2 interior, 3 boundary), uint8 ``(H, W)``."""
        p = self.predict_proba(image)
        return np.asarray(self.classes_, np.uint8)[p.argmax(axis=2)]

    def predict_labels(self, image) -> np.ndarray:
        """Instance label image (int32, 0 background) of one image — the segmenter interface."""
        return probabilities_to_labels(
            self.predict_proba(image), classes=self.class_names_, method=self.instance_method,
            threshold=self.threshold, smooth_sigma=self.smooth_sigma, h_px=self.h_px, min_size_px=self.min_size_px,
        )

    # --- persistence ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``forest.skops`` and ``settings.json`` into ``folder`` (created)."""
        import skops.io as sio

        self._check_fitted()
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        sio.dump(self.forest_, d / "forest.skops")
        params = self.get_params()
        params["sigmas"], params["kinds"] = [float(s) for s in self.sigmas], [str(k) for k in self.kinds]
        settings = {
            "kind": "pixel_classifier", "format": 1, "params": params, "classes": self.classes_,
            "class_names": self.class_names_, "n_channels": self.n_channels_, "n_features": self.n_features_in_,
            "feature_names": self.feature_names_, "n_samples": self.n_samples_,
            "class_weights": [float(w) for w in self.class_weights_],
        }
        (d / "settings.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, folder: str | Path) -> PixelClassifier:
        """Read a model folder written by :meth:`save` (skops with :data:`SKOPS_TRUSTED_TYPES` only)."""
        import skops.io as sio

        d = Path(folder)
        sp, fp = d / "settings.json", d / "forest.skops"
        for p in (sp, fp):
            if not p.is_file():
                raise ModelError(f"{str(d)!r} is not a pixel-classifier model folder: {p.name} is missing")
        try:
            s = json.loads(sp.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{str(sp)!r} is not valid JSON: {exc}") from exc
        if not isinstance(s, dict) or s.get("kind") != "pixel_classifier":
            raise ModelError(f"{str(sp)!r} does not describe a pixel classifier (kind={s.get('kind') if isinstance(s, dict) else None!r})")
        found = _archive_types(fp)
        extra = sorted(n for n in found if n not in SKOPS_TRUSTED_TYPES and n.split(".", 1)[0] not in ("builtins", "numpy"))
        if extra:
            raise UntrustedModelError(f"{str(fp)!r} contains types outside the trusted list: {extra}; refusing to load it")
        est = cls(**s["params"])
        est.forest_ = sio.load(fp, trusted=list(SKOPS_TRUSTED_TYPES))
        if type(est.forest_).__name__ != "RandomForestClassifier":
            raise UntrustedModelError(f"{str(fp)!r} holds a {type(est.forest_).__name__}; expected a RandomForestClassifier")
        est.classes_ = [int(c) for c in s["classes"]]
        est.class_names_ = [str(c) for c in s["class_names"]]
        est.n_channels_ = int(s["n_channels"])
        est.n_features_in_ = int(s["n_features"])
        est.feature_names_ = list(s["feature_names"])
        est.n_samples_ = dict(s.get("n_samples", {}))
        est.class_weights_ = np.asarray(s["class_weights"], float)
        return est


def _archive_types(path: Path) -> set[str]:
    """Every ``module.class`` a skops archive would build (read from its schema, nothing loaded)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            schema = json.loads(z.read("schema.json"))
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{str(path)!r} is not a readable skops file: {exc}") from exc
    found: set[str] = set()
    stack = [schema]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if "__class__" in o:
                found.add(f"{o.get('__module__', '')}.{o['__class__']}")
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return found
