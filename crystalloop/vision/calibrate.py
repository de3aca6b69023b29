"""Calibration of the pipeline's hyperparameters against an offline reference PSD.

The seed-000/002 workflow: a few probe images of a sample whose PSD was also measured offline
(laser diffraction, sieving, microscopy). :func:`calibrate` searches threshold offset, minimum
size, watershed strength and focus cut-off so that the pooled image PSD matches the reference
(percentile errors + KS distance), and returns settings that :meth:`PipelineSettings.save`
stores for reuse (``crystalloop psd --settings fitted.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision._validate import check_pixel_size
from crystalloop.vision.io import iter_images
from crystalloop.vision.measure import measure_particles
from crystalloop.vision.pipeline import (
    PipelineSettings,
    flag_particles,
    prepare_signal,
    segment_signal,
)
from crystalloop.vision.psd import compare_psd

__all__ = ["CalibrationResult", "calibrate", "read_reference", "DEFAULT_SEARCH_SPACE"]

#: Parameter → (low, high, scale) searched by default; scale "log" samples log-uniformly.
DEFAULT_SEARCH_SPACE: dict[str, tuple[float, float, str]] = {
    "threshold_offset": (-0.4, 0.6, "linear"),
    "min_size_px": (4.0, 200.0, "log"),
    "watershed_strength": (0.0, 1.0, "linear"),
    "min_focus": (0.0, 0.35, "linear"),
}


@dataclass
class CalibrationResult:
    """Best settings, their loss and comparison, and every trial (``history``)."""

    settings: PipelineSettings
    loss: float
    comparison: dict
    history: pd.DataFrame

    def save(self, path: str | os.PathLike) -> Path:
        """JSON with ``settings`` (loadable by :meth:`PipelineSettings.load`), loss and comparison."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.comparison.items()}
        p.write_text(json.dumps({"settings": self.settings.to_dict(), "loss": self.loss, "comparison": clean},
                                indent=2))
        return p


def read_reference(path: str | os.PathLike):
    """Read an offline PSD from CSV: a class table (``size_um``/``size_upper_um`` + ``Q3``/``Q0``)
    is returned as a DataFrame, a particle list (``size_um`` or ``ecd_um``) as an array of µm."""
    p = Path(path)
    try:
        df = pd.read_csv(p)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read reference PSD {str(p)!r}: {exc}") from exc
    if ("Q3" in df or "Q0" in df) and ("size_um" in df or "size_upper_um" in df):
        return df
    for col in ("size_um", "ecd_um"):
        if col in df:
            x = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
            if not np.isfinite(x).all() or (x <= 0).any():
                raise SchemaError(f"reference {str(p)!r} column {col!r} must hold sizes > 0 µm")
            return x
    raise SchemaError(f"reference {str(p)!r} needs a 'size_um' or 'ecd_um' column (particle sizes) or a class "
                      f"table with 'size_um'/'size_upper_um' and 'Q3'/'Q0'; got columns {list(df.columns)}")


def _loss(cmp: dict) -> float:
    errs = [abs(cmp[f"{n}_err_pct"]) for n in ("x10", "x50", "x90")]
    return float(np.mean(errs) / 100.0 + cmp["ks"])


def calibrate(
    images,
    reference,
    *,
    pixel_size_um: float,
    settings: PipelineSettings | None = None,
    search_space: Mapping[str, tuple[float, float, str]] | None = None,
    r: int = 3,
    n_trials: int = 40,
    seed: int | None = 0,
    progress=None,
) -> CalibrationResult:
    """Fit pipeline hyperparameters so the image PSD matches a reference PSD.

    Parameters
    ----------
    images : paths, folders, globs, arrays (see :func:`~crystalloop.vision.io.iter_images`)
    reference : sizes (µm), a particle table, or a PSD table with ``size_um``/``Q3`` (or ``Q0``)
    pixel_size_um : float
    settings : PipelineSettings, optional
        Starting point; parameters not searched are kept from it.
    search_space : mapping, optional
        ``{name: (low, high, "linear"|"log")}`` over settings fields (default
        :data:`DEFAULT_SEARCH_SPACE`).
    r : {0, 3}
        Compare number (0) or volume (3) distributions.
    n_trials : int
        Evaluations: half seeded random (Latin-hypercube-like) exploration, half local refinement
        around the best point with a shrinking step.
    seed : int, optional
    progress : callable, optional
        ``progress(trial, n_trials)``.

    Returns
    -------
    CalibrationResult
        Loss = mean |x10, x50, x90 error| (fraction) + KS distance.
    """
    px = check_pixel_size(pixel_size_um)
    base = settings or PipelineSettings()
    space = dict(DEFAULT_SEARCH_SPACE if search_space is None else search_space)
    if not space:
        raise ConfigError("search_space is empty: name at least one setting to calibrate")
    fields = set(base.to_dict())
    for name, spec in space.items():
        if name not in fields:
            raise ConfigError(f"cannot calibrate unknown setting {name!r}; known: {sorted(fields)}")
        if len(spec) != 3 or not spec[0] < spec[1] or spec[2] not in ("linear", "log"):
            raise ConfigError(f"search range for {name!r} must be (low < high, 'linear'|'log'), got {spec!r}")
        if spec[2] == "log" and spec[0] <= 0:
            raise ConfigError(f"log search range for {name!r} needs low > 0, got {spec!r}")
    if n_trials < 2:
        raise ConfigError(f"n_trials must be ≥ 2, got {n_trials!r}")
    frames = [img for _, img in iter_images(images)]
    if not frames:
        raise ConfigError("calibration needs at least one image")
    # the background/signal does not depend on the searched parameters: compute once
    prepared = [(img, prepare_signal(img, base)[0]) for img in frames]
    names = list(space)
    rng = np.random.default_rng(seed)

    def to_value(name, u):
        lo, hi, sc = space[name]
        v = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if sc == "log" else lo + u * (hi - lo)
        return float(v)

    def evaluate(u):
        vals = {n: to_value(n, float(np.clip(x, 0, 1))) for n, x in zip(names, u, strict=True)}
        s = base.replace(**vals)
        tabs = []
        for img, sig in prepared:
            lab = segment_signal(sig, s)
            if lab.max() == 0:
                continue
            t = flag_particles(measure_particles(lab, img, pixel_size_um=px, focus_image=sig,
                                                  focus_background=0.0 if s.background is not None else None,
                                                  skeleton_min_aspect=s.skeleton_min_aspect), s, lab.shape)
            tabs.append(t[t["kept"]])
        parts = pd.concat(tabs, ignore_index=True) if tabs else pd.DataFrame()
        if len(parts) < 3:
            return np.inf, {}, s
        cmp = compare_psd(parts, reference, r=r, size=s.size, weights=parts["weight"].to_numpy(float))
        return _loss(cmp), cmp, s

    n_explore = max(1, n_trials // 2)
    d = len(names)
    # stratified exploration: each dimension's n_explore strata visited once (Latin hypercube)
    lhs = (np.argsort(rng.random((n_explore, d)), axis=0) + rng.random((n_explore, d))) / n_explore
    history = []
    best = (np.inf, {}, base, None)
    for k in range(n_trials):
        if k < n_explore:
            u = lhs[k]
        else:
            step = 0.25 * (0.5 ** ((k - n_explore) / max(1, (n_trials - n_explore) / 3)))
            u = np.clip(best[3] + rng.normal(0, step, d), 0, 1) if best[3] is not None else rng.random(d)
        loss, cmp, s = evaluate(u)
        row = {n: getattr(s, n) for n in names}
        row.update({"trial": k, "loss": loss})
        history.append(row)
        if loss < best[0]:
            best = (loss, cmp, s, np.array(u, dtype=float))
        if progress:
            progress(k + 1, n_trials)
    if not np.isfinite(best[0]):
        raise ConfigError("calibration found no setting that detects particles in these images")
    return CalibrationResult(settings=best[2], loss=float(best[0]), comparison=best[1],
                             history=pd.DataFrame(history))


