"""Common machinery of the learned estimators: devices, seeding, the training loop, save/load.

Every estimator in :mod:`crystalloop.vision.learn` derives from :class:`TorchEstimator`, which gives
it a scikit-learn-like surface (``get_params``/``set_params``, fitted state ending in ``_``) and
persistence as a directory holding ``model.pt`` (the network ``state_dict``, tensors only) and
``config.json`` (constructor parameters, fitted non-tensor state and the training history).
Nothing is pickled and nothing is downloaded.

Reproducibility: :func:`seeded` seeds numpy and torch, switches torch to deterministic algorithms
and (optionally) fixes the number of CPU threads for the duration of a fit; two fits with the same
``random_state`` on the CPU give identical weights.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crystalloop._plotting import pyplot, save_figure
from crystalloop.errors import ConfigError, ModelError

__all__ = [
    "TorchEstimator",
    "resolve_device",
    "seeded",
    "fit_network",
    "recalibrate_batchnorm",
    "load_model",
    "plot_history",
]

_FORMAT_VERSION = 1


def resolve_device(device: str | None = "auto"):
    """Return the :class:`torch.device` to train/predict on.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or None
        ``"auto"``/None picks CUDA when torch sees a GPU, else the CPU.
    """
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a torch device; expected 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return dev


@contextlib.contextmanager
def seeded(random_state: int | None, n_threads: int | None = None) -> Iterator[np.random.Generator]:
    """Seed numpy/torch, enable deterministic algorithms and fix threads inside the block.

    Yields a :class:`numpy.random.Generator` for data shuffling and augmentation. The previous
    deterministic-algorithms flag and thread count are restored on exit.
    """
    import torch

    seed = 0 if random_state is None else int(random_state)
    old_det = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if n_threads is not None:
        if int(n_threads) < 1:
            raise ConfigError(f"n_threads={n_threads!r} must be a positive integer or None")
        torch.set_num_threads(int(n_threads))
    try:
        yield np.random.default_rng(seed)
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def fit_network(
    net,
    batches: Callable[[np.random.Generator], Iterator[tuple]],
    loss_fn: Callable,
    *,
    epochs: int,
    lr: float,
    rng: np.random.Generator,
    device,
    weight_decay: float = 0.0,
    validate: Callable[[], dict[str, float]] | None = None,
    progress: bool = False,
    desc: str = "training",
) -> list[dict[str, float]]:
    """Train ``net`` with Adam and return the per-epoch history.

    Parameters
    ----------
    net : torch.nn.Module
        Already on ``device``.
    batches : callable
        ``batches(rng)`` yields tuples of CPU tensors ``(inputs, targets[, ...])`` for one epoch.
    loss_fn : callable
        ``loss_fn(net_output, *targets_on_device) -> scalar tensor``.
    epochs, lr, weight_decay
        Adam settings.
    validate : callable, optional
        Called after each epoch (network in eval mode); returns extra metrics for the history.
    progress : bool
        Show a tqdm progress bar over epochs.

    Returns
    -------
    list of dict
        ``{"epoch", "loss", "time_s", **validate()}`` per epoch.
    """
    import torch

    if int(epochs) < 1:
        raise ConfigError(f"epochs={epochs!r} must be at least 1")
    opt = torch.optim.Adam(net.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    history: list[dict[str, float]] = []
    it = range(int(epochs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(it, desc=desc, unit="epoch")
        it = bar
    t0 = time.perf_counter()
    for epoch in it:
        net.train()
        total, n = 0.0, 0
        for batch in batches(rng):
            inputs = batch[0].to(device)
            targets = [b.to(device) for b in batch[1:]]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(inputs), *targets)
            if not torch.isfinite(loss):
                raise ModelError(
                    f"training diverged at epoch {epoch + 1}: loss is {loss.item()}; lower lr={lr} "
                    "or check the inputs for NaN"
                )
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(inputs)
            n += len(inputs)
        row = {"epoch": epoch + 1, "loss": total / max(n, 1), "time_s": time.perf_counter() - t0}
        if validate is not None:
            net.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in validate().items()})
        history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    recalibrate_batchnorm(net, batches, rng, device)
    net.eval()
    return history


def recalibrate_batchnorm(net, batches, rng: np.random.Generator, device, max_batches: int = 50) -> bool:
    """Recompute BatchNorm running statistics as exact averages over training batches.

    The running averages kept during training (momentum 0.1) lag behind the weights, which
    matters when a model trains for only a few hundred steps; one extra pass without gradients
    in train mode, with cumulative averaging, makes eval-mode predictions match the final
    weights ("precise BN"). Returns False when the network has no BatchNorm layer.
    """
    import torch
    from torch import nn

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    with torch.no_grad():
        for k, batch in enumerate(batches(rng)):
            if k >= max_batches:
                break
            net(batch[0].to(device))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    return True


class TorchEstimator:
    """Base class: parameters, fitted-state checks and directory persistence.

    Subclasses implement ``_build_network()`` (from the constructor parameters and the fitted
    state returned by ``_fitted_state``) and list their fitted, JSON-serializable attributes in
    ``_state_attrs``. The network lives in ``self.network_`` once fitted.
    """

    _state_attrs: tuple[str, ...] = ()

    # --- sklearn-style parameters ------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> TorchEstimator:
        names = self._param_names()
        for k, v in params.items():
            if k not in names:
                raise ConfigError(f"{type(self).__name__} has no parameter {k!r}; valid: {names}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- fitted state ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if getattr(self, "network_", None) is None:
            raise ModelError(f"this {type(self).__name__} is not fitted yet; call fit(...) or load(...) first")

    def _build_network(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device_(self):
        import torch

        self._check_fitted()
        return next(self.network_.parameters(), torch.empty(0)).device

    def to(self, device: str) -> TorchEstimator:
        """Move the fitted network to ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``)."""
        self._check_fitted()
        self.network_.to(resolve_device(device))
        return self

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``model.pt`` (state_dict) and ``config.json`` into directory ``path``."""
        import torch

        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.network_.state_dict().items()}
        torch.save(state, path / "model.pt")
        config = {
            "format_version": _FORMAT_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": _jsonable(self.get_params()),
            "state": _jsonable({k: getattr(self, k) for k in self._state_attrs}),
            "history": _jsonable(getattr(self, "history_", [])),
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = "auto") -> TorchEstimator:
        """Load an estimator written by :meth:`save` (weights only, ``weights_only=True``)."""
        import torch

        path = Path(path)
        config = read_config(path)
        name = config.get("class", "")
        if name.rsplit(".", 1)[-1] != cls.__name__ and cls is not TorchEstimator:
            raise ModelError(f"{path} holds a {name}, not a {cls.__name__}; use crystalloop.vision.learn.load_model")
        est = cls(**config.get("params", {}))
        for k in cls._state_attrs:
            if k not in config.get("state", {}):
                raise ModelError(f"{path / 'config.json'} lacks fitted state {k!r}; the file is incomplete")
            setattr(est, k, _unjson(config["state"][k]))
        est.history_ = config.get("history", [])
        net = est._build_network()
        try:
            state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except FileNotFoundError as exc:
            raise ModelError(f"model weights {path / 'model.pt'} are missing") from exc
        except (RuntimeError, KeyError, EOFError, ValueError) as exc:
            raise ModelError(f"weights in {path / 'model.pt'} do not fit {name} with the saved config: {exc}") from exc
        net.to(resolve_device(device))
        net.eval()
        est.network_ = net
        return est


def read_config(path: Path) -> dict:
    """The ``config.json`` of a saved model folder, checked for its format version."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelError(f"{path} is not a saved crystalloop model: {cfg} not found")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{cfg} is not valid JSON: {exc}") from exc
    if config.get("format_version") != _FORMAT_VERSION:
        raise ModelError(f"{cfg} has format_version={config.get('format_version')!r}; expected {_FORMAT_VERSION}")
    return config


def load_model(path: str | Path, *, device: str | None = "auto") -> TorchEstimator:
    """Load any estimator saved by :meth:`TorchEstimator.save`, dispatching on its class name."""
    path = Path(path)
    config = read_config(path)
    modname, _, clsname = config.get("class", "").rpartition(".")
    if not modname.startswith("crystalloop.vision.learn"):
        raise ModelError(f"{path}: class {config.get('class')!r} is not a crystalloop.vision.learn estimator")
    try:
        klass = getattr(importlib.import_module(modname), clsname)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"{path}: cannot import model class {config.get('class')!r}") from exc
    return klass.load(path, device=device)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    raise ConfigError(f"cannot store {type(obj).__name__} value {obj!r} in a JSON model config")


def _unjson(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: _unjson(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unjson(v) for v in obj]
    return obj


def plot_history(history: list[dict[str, float]], path: str | Path, *, title: str = "training") -> Path:
    """Save the training curves (loss and any validation metrics per epoch) as a PNG."""
    if not history:
        raise ModelError("no training history to plot; fit the model first")
    plt = pyplot()
    keys = [k for k in history[0] if k not in ("epoch", "time_s")]
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [h.get(k, np.nan) for h in history], marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
