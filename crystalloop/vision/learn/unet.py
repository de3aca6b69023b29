"""Compact U-Net pixel classifier (seed 002) with tiling, class weights and instance post-processing.

>>> from crystalloop.vision.learn import UNetSegmenter
>>> seg = UNetSegmenter(n_classes=2, epochs=2, tiles_per_epoch=4, tile_size=32, base_filters=4)
>>> import numpy as np
>>> img = np.zeros((40, 40), np.uint8); img[10:20, 10:20] = 200
>>> seg = seg.fit([img], [(img > 0).astype(int)])
>>> seg.predict([img])[0].shape
(40, 40)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision.learn.augment import Augmentation, median_frequency_weights, predict_tiled
from crystalloop.vision.learn.data import check_image, normalize_image
from crystalloop.vision.learn.train import TorchEstimator, fit_network, resolve_device, seeded

__all__ = ["UNetSegmenter", "SEED002_CLASSES"]

SEED002_CLASSES = ("dark_background", "light_background", "crystal")


def _unet(in_ch: int, n_classes: int, base: int, depth: int):
    import torch
    from torch import nn

    def block(i, o):
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
            nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base * 2**i for i in range(depth + 1)]
            self.enc = nn.ModuleList([block(in_ch if i == 0 else ch[i - 1], ch[i]) for i in range(depth)])
            self.pool = nn.MaxPool2d(2)
            self.mid = block(ch[depth - 1], ch[depth])
            self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth))])
            self.dec = nn.ModuleList([block(2 * ch[i], ch[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(ch[0], n_classes, 1)

        def forward(self, x):
            skips = []
            for enc in self.enc:
                x = enc(x)
                skips.append(x)
                x = self.pool(x)
            x = self.mid(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
                x = dec(torch.cat([up(x), skip], dim=1))
            return self.head(x)

    return UNet()


class UNetSegmenter(TorchEstimator):
    """Encoder-decoder CNN that assigns every pixel one of ``n_classes`` classes.

    Parameters
    ----------
    n_classes : int
        2 for binary (background/object); 3 for seed 002 (dark background, light background,
        crystal) or for background/interior/boundary targets from :func:`labels_to_classes`.
    class_names : list of str, optional
        Names for reports; default ``class_0..``, or :data:`SEED002_CLASSES` when ``n_classes=3``
        is not given names explicitly it stays generic.
    object_classes : list of int, optional
        Classes that count as "object" for :meth:`segment_instances` (default: every class but 0;
        for boundary targets use ``[1]`` so boundaries separate touching objects).
    channels : {1, 3}
        Gray or RGB input.
    input_channel : int, optional
        Take this channel of colour images as the gray input (``channels=1``), at fit and predict.
    base_filters, depth : int
        Width of the first level and number of down-sampling levels (``2**depth`` must divide the
        tile size).
    tile_size : int
        Side of the random square crops used for training, in pixels.
    tiles_per_epoch, batch_size, epochs, lr, weight_decay
        Training schedule (Adam).
    class_weight : "median_frequency", None or sequence of float
        Per-class loss weights; ``"median_frequency"`` computes the seed-002 weights from the masks.
    augmentation : "seed002", None or dict
        Random affine augmentation (see :class:`Augmentation`).
    normalize : {"percentile", "dtype"}
        Intensity normalization (:func:`normalize_image`).
    validation_fraction : float
        Fraction of the images (at least one, when there are ≥ 2) held out to report validation
        pixel accuracy per epoch.
    predict_tile, overlap : int
        Tiling of large images at prediction time.
    random_state, n_threads, device, progress
        Reproducibility, CPU threads during fit (None: leave torch's setting), ``"auto"`` picks
        CUDA when present, tqdm bar over epochs.
    """

    _state_attrs = ("class_weights_", "classes_")

    def __init__(
        self,
        n_classes: int = 2,
        class_names: Sequence[str] | None = None,
        object_classes: Sequence[int] | None = None,
        channels: int = 1,
        input_channel: int | None = None,
        base_filters: int = 16,
        depth: int = 3,
        tile_size: int = 128,
        tiles_per_epoch: int = 64,
        batch_size: int = 8,
        epochs: int = 30,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        class_weight="median_frequency",
        augmentation="seed002",
        normalize: str = "percentile",
        validation_fraction: float = 0.0,
        predict_tile: int = 512,
        overlap: int = 32,
        random_state: int | None = 0,
        n_threads: int | None = None,
        device: str = "auto",
        progress: bool = False,
    ):
        self.n_classes = n_classes
        self.class_names = class_names
        self.object_classes = object_classes
        self.channels = channels
        self.input_channel = input_channel
        self.base_filters = base_filters
        self.depth = depth
        self.tile_size = tile_size
        self.tiles_per_epoch = tiles_per_epoch
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.augmentation = augmentation
        self.normalize = normalize
        self.validation_fraction = validation_fraction
        self.predict_tile = predict_tile
        self.overlap = overlap
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.progress = progress

    # --- helpers ---------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if int(self.n_classes) < 2:
            raise ConfigError(f"n_classes={self.n_classes}; a pixel classifier needs at least 2 classes")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels={self.channels}; expected 1 (gray) or 3 (RGB)")
        m = 2 ** int(self.depth)
        for name in ("tile_size", "predict_tile"):
            v = int(getattr(self, name))
            if v % m or v < m:
                raise ConfigError(f"{name}={v} must be a positive multiple of 2**depth = {m}")
        if self.class_names is not None and len(self.class_names) != self.n_classes:
            raise ConfigError(f"class_names has {len(self.class_names)} names for n_classes={self.n_classes}")
        if not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ConfigError(f"validation_fraction={self.validation_fraction} must lie in [0, 1)")

    def _build_network(self):
        return _unet(self.channels, int(self.n_classes), int(self.base_filters), int(self.depth))

    def _prep(self, images, name="images") -> list[np.ndarray]:
        if isinstance(images, np.ndarray) and images.ndim in (2,) :
            raise ImageError(f"{name} is a single 2-D image of shape {images.shape}; pass a list of images (or an (N, H, W) stack)")
        out = []
        for i, im in enumerate(images):
            if self.input_channel is not None and np.ndim(im) == 3:
                k = int(self.input_channel)
                if not 0 <= k < np.shape(im)[2]:
                    raise ImageError(f"{name}[{i}] has {np.shape(im)[2]} channels; input_channel={k} does not exist")
                im = np.asarray(im)[:, :, k]
            arr = normalize_image(check_image(im, channels=self.channels, name=f"{name}[{i}]"), self.normalize)
            out.append(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (C, H, W)
        if not out:
            raise ImageError(f"{name} is empty; expected at least one image")
        return out

    @property
    def classes_names_(self) -> list[str]:
        return list(self.class_names) if self.class_names is not None else [f"class_{i}" for i in range(self.n_classes)]

    # --- fit ---------------------------------------------------------------------------------
    def fit(self, images, masks) -> UNetSegmenter:
        """Learn from images and per-pixel class masks (values ``0..n_classes-1``).

        Parameters
        ----------
        images : sequence of ndarray
            ``(H, W)`` or ``(H, W, C)`` each; sizes may differ between images.
        masks : sequence of ndarray
            Integer class maps of the same ``(H, W)`` as their image.
        """
        import torch
        import torch.nn.functional as F

        self._validate_params()
        xs = self._prep(images)
        if len(masks) != len(xs):
            raise ImageError(f"got {len(xs)} images but {len(masks)} masks")
        ys = []
        for i, (x, m) in enumerate(zip(xs, masks, strict=True)):
            m = np.asarray(m)
            if m.shape != x.shape[1:]:
                raise ImageError(f"mask {i} is {m.shape[0]}×{m.shape[1]} px but image {i} is {x.shape[1]}×{x.shape[2]} px")
            if m.dtype.kind not in "iub":
                raise ImageError(f"mask {i} has dtype {m.dtype}; expected integer class indices")
            if m.min() < 0 or m.max() >= self.n_classes:
                raise ImageError(f"mask {i} holds values {int(m.min())}..{int(m.max())}; expected 0..{self.n_classes - 1} (n_classes={self.n_classes})")
            ys.append(m.astype(np.int64))
        if isinstance(self.class_weight, str):
            if self.class_weight != "median_frequency":
                raise ConfigError(f"class_weight={self.class_weight!r}; expected 'median_frequency', None or a sequence")
            weights = median_frequency_weights(ys, self.n_classes, class_names=self.classes_names_)
        elif self.class_weight is None:
            weights = np.ones(self.n_classes, np.float32)
        else:
            weights = np.asarray(self.class_weight, np.float32)
            if weights.shape != (self.n_classes,) or (weights <= 0).any():
                raise ConfigError(f"class_weight has shape {weights.shape} / values {weights}; expected {self.n_classes} positive numbers")
        aug = Augmentation.resolve(self.augmentation)
        dev = resolve_device(self.device)
        with seeded(self.random_state, self.n_threads) as rng:
            n_val = 0
            if self.validation_fraction > 0 and len(xs) >= 2:
                n_val = max(1, int(round(self.validation_fraction * len(xs))))
            order = rng.permutation(len(xs))
            val_idx, tr_idx = order[:n_val], order[n_val:]
            tr_x, tr_y = [xs[i] for i in tr_idx], [ys[i] for i in tr_idx]
            net = self._build_network().to(dev)
            w_t = torch.as_tensor(weights, device=dev)
            ts = int(self.tile_size)

            def batches(r):
                n = int(self.tiles_per_epoch)
                for s in range(0, n, int(self.batch_size)):
                    bx, by = [], []
                    for _ in range(min(int(self.batch_size), n - s)):
                        k = int(r.integers(len(tr_x)))
                        x, y = _random_crop(tr_x[k], tr_y[k], ts, r)
                        if aug is not None:
                            xa, y = aug(x.transpose(1, 2, 0), y, r)
                            x = xa.reshape(ts, ts, -1).transpose(2, 0, 1)
                        bx.append(x)
                        by.append(y)
                    yield torch.from_numpy(np.stack(bx).astype(np.float32)), torch.from_numpy(np.stack(by))

            def loss(out, y):
                return F.cross_entropy(out, y, weight=w_t)

            validate = None
            if n_val:
                def validate():
                    acc = [float((self._predict_one(net, xs[i]).argmax(0) == ys[i]).mean()) for i in val_idx]
                    return {"val_pixel_accuracy": float(np.mean(acc))}

            self.history_ = fit_network(
                net, batches, loss, epochs=self.epochs, lr=self.lr, rng=rng, device=dev,
                weight_decay=self.weight_decay, validate=validate, progress=self.progress, desc="U-Net",
            )
        self.network_ = net
        self.class_weights_ = weights
        self.classes_ = np.arange(self.n_classes)
        return self

    # --- predict -----------------------------------------------------------------------------
    def _predict_one(self, net, x: np.ndarray) -> np.ndarray:
        import torch

        dev = next(net.parameters()).device

        def fn(t):
            with torch.no_grad():
                out = net(torch.from_numpy(np.ascontiguousarray(t)).unsqueeze(0).to(dev))
                return torch.softmax(out, 1)[0].float().cpu().numpy()

        return predict_tiled(fn, x, tile=int(self.predict_tile), overlap=int(self.overlap), multiple=2 ** int(self.depth))

    def predict_proba(self, images):
        """Per-pixel class probabilities, ``(n_classes, H, W)`` float32 per image."""
        self._check_fitted()
        self.network_.eval()
        probs = [self._predict_one(self.network_, x) for x in self._prep(images)]
        return np.stack(probs) if isinstance(images, np.ndarray) else probs

    def predict(self, images):
        """Per-pixel class index maps ``(H, W)`` (uint8) per image."""
        p = self.predict_proba(images)
        if isinstance(p, np.ndarray):
            return p.argmax(1).astype(np.uint8)
        return [q.argmax(0).astype(np.uint8) for q in p]

    def score(self, images, masks) -> float:
        """Mean pixel accuracy over the images."""
        from crystalloop.vision.learn.metrics import pixel_accuracy

        return float(np.mean([pixel_accuracy(m, p) for m, p in zip(masks, self.predict(list(images)), strict=True)]))

    def segment_instances(self, images, **postprocess) -> list[np.ndarray]:
        """Predict, merge the object classes into a foreground probability and split it into instances.

        Keyword arguments go to the classical seed-002 post-processing
        :func:`crystalloop.vision.mask_to_labels` (binarize at ``probability_threshold``,
        ``min_size_px``, ``closing_radius_px``, ``fill``, ``remove_border``, ``watershed``,
        ``circularity_range``). Returns one int32 label image per input image.
        """
        from crystalloop.vision.segment import mask_to_labels

        obj = self._object_classes()
        return [mask_to_labels(np.clip(p[obj].sum(0), 0.0, 1.0), **postprocess) for p in self.predict_proba(list(images))]

    def predict_labels(self, image, **postprocess) -> np.ndarray:
        """Instance label image (int32, 0 background) of one image — the segmenter interface.

        A model whose ``class_names`` include ``background``, ``interior`` and ``boundary`` (the
        three-class targets of :meth:`Annotation.targets`) separates touching objects with
        :func:`~crystalloop.vision.learn.instances.probabilities_to_labels` (keywords go there);
        any other model goes through :meth:`segment_instances`.
        """
        names = self.classes_names_
        if "background" in names and ("interior" in names or "object" in names):
            from crystalloop.vision.learn.instances import probabilities_to_labels

            prob = self.predict_proba([image])[0]
            return probabilities_to_labels(np.moveaxis(prob, 0, -1), classes=names, **postprocess)
        return self.segment_instances([image], **postprocess)[0]

    def measure(self, images, *, pixel_size_um: float, **postprocess):
        """Particle tables (µm, :func:`crystalloop.vision.measure_particles`) of each image's instances."""
        from crystalloop.vision.measure import empty_particle_table, measure_particles

        images = list(images)
        out = []
        for img, lab in zip(images, self.segment_instances(images, **postprocess), strict=True):
            out.append(measure_particles(lab, np.asarray(img), pixel_size_um=pixel_size_um) if lab.max() else empty_particle_table())
        return out

    def _object_classes(self) -> list[int]:
        obj = list(self.object_classes) if self.object_classes is not None else list(range(1, self.n_classes))
        bad = [c for c in obj if not 0 <= int(c) < self.n_classes]
        if bad or not obj:
            raise ConfigError(f"object_classes {obj} must be non-empty classes of this model (0..{self.n_classes - 1})")
        return [int(c) for c in obj]


def _random_crop(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    c, h, w = x.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")
        y = np.pad(y, ((0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")
        h, w = y.shape
    r = int(rng.integers(0, h - size + 1))
    q = int(rng.integers(0, w - size + 1))
    return x[:, r : r + size, q : q + size], y[r : r + size, q : q + size]
