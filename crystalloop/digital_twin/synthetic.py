"""Synthetic DoE rows from SDV 2.x generators with the profile feasibility enforced during training.

The profile constraint (seed 003 Eqs. 2–4: temperatures alternate down/up, unused cycles are
empty, everything inside the bounds) is an SDV ``sdv.cag`` programmable constraint,
:class:`ProfileFeasibility`. Like SDV's own ``Inequality`` it is a *reparameterisation*: before
the synthesizer sees the data, each used segment's target temperature becomes the fraction of the
way it travels from the previous temperature to the bound in its direction, each rate becomes its
position inside the cooling or heating rate bounds, and unused slots become missing. The generator
learns and samples in that space and the reverse transform maps every sample back to a feasible
profile, so no sample is discarded (the paper found enforcing constraints in training better than
filtering afterwards).

Generators: ``"gaussian_copula"``, ``"ctgan"`` and ``"tvae"`` (SDV single-table synthesizers).
CTGAN and TVAE train with torch on the CPU; ``epochs`` sets the cost.
"""

from __future__ import annotations

import contextlib
import io
import random
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crystalloop.errors import ConfigError, ModelError
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds, ThermocycleProfile, feature_names

__all__ = ["GENERATORS", "ProfileFeasibility", "SyntheticGenerator", "profile_validity"]

GENERATORS: tuple[str, ...] = ("gaussian_copula", "ctgan", "tvae")
_TABLE = "doe"


def _slots(max_cycles: int) -> int:
    return 2 * int(max_cycles) + 1


def _encode(df: pd.DataFrame, max_cycles: int, bounds: ProfileBounds) -> pd.DataFrame:
    """Feature columns → unconstrained columns (see module doc); other columns pass through."""
    S = _slots(max_cycles)
    fn = feature_names(max_cycles)
    out = df.drop(columns=fn).copy()
    lo_t, hi_t = bounds.temperature_c
    out["c0_mg_g"] = df["c0_mg_g"].to_numpy(float)
    out["seed_loading"] = df["seed_loading"].to_numpy(float)
    out["t_start_c"] = df["t_start_c"].to_numpy(float)
    nseg = np.rint(df["n_segments"].to_numpy(float)).astype(int)
    out["n_segments"] = nseg.astype(str)
    prev = df["t_start_c"].to_numpy(float)
    for k in range(1, S + 1):
        T = df[f"T{k}_c"].to_numpy(float)
        r = df[f"rate{k}_c_min"].to_numpy(float)
        h = df[f"hold{k}_min"].to_numpy(float)
        used = k <= nseg
        cool = k % 2 == 1
        if cool:
            room = prev - lo_t
            frac = np.where(room > 0, (prev - T) / np.where(room > 0, room, 1.0), np.nan)
            rlo, rhi = bounds.cooling_rate_c_min
        else:
            room = hi_t - prev
            frac = np.where(room > 0, (T - prev) / np.where(room > 0, room, 1.0), np.nan)
            rlo, rhi = bounds.heating_rate_c_min
        u = (r - rlo) / (rhi - rlo) if rhi > rlo else np.full_like(r, 0.5)
        out[f"frac{k}"] = np.where(used, np.clip(frac, 0.0, 1.0), np.nan)
        out[f"urate{k}"] = np.where(used, np.clip(u, 0.0, 1.0), np.nan)
        out[f"hold{k}"] = np.where(used, h, np.nan)
        prev = np.where(used, T, prev)
    return out


def _decode(df: pd.DataFrame, max_cycles: int, bounds: ProfileBounds, fill: dict[str, float]) -> pd.DataFrame:
    """Inverse of :func:`_encode`; every row becomes a feasible canonical feature vector."""
    S = _slots(max_cycles)
    lo_t, hi_t = bounds.temperature_c
    n = len(df)

    def col(name):
        v = pd.to_numeric(df[name], errors="coerce").to_numpy(float) if name in df else np.full(n, np.nan)
        return np.where(np.isnan(v), fill.get(name, 0.5), v)

    c0 = np.clip(col("c0_mg_g"), *bounds.c0_mg_g)
    seed = np.clip(col("seed_loading"), *bounds.seed_loading)
    t0 = np.clip(col("t_start_c"), lo_t, hi_t)
    nseg = pd.to_numeric(df["n_segments"], errors="coerce").to_numpy(float)
    nseg = np.where(np.isnan(nseg), fill.get("n_segments", 1), nseg)
    nseg = np.clip(np.rint(nseg), 1, S).astype(int)
    # a cooling first segment needs room below the start temperature
    t0 = np.maximum(t0, lo_t + 1e-3)
    feats = {"c0_mg_g": c0, "seed_loading": seed, "t_start_c": t0, "n_segments": nseg.astype(float),
             "n_cycles": (nseg // 2).astype(float)}
    prev = t0.copy()
    min_frac = 0.01
    for k in range(1, S + 1):
        used = k <= nseg
        cool = k % 2 == 1
        frac = np.clip(col(f"frac{k}"), min_frac, 1.0)
        u = np.clip(col(f"urate{k}"), 0.0, 1.0)
        h = np.clip(col(f"hold{k}"), *bounds.hold_min)
        if cool:
            T = prev - frac * (prev - lo_t)
            rlo, rhi = bounds.cooling_rate_c_min
        else:
            T = prev + frac * (hi_t - prev)
            rlo, rhi = bounds.heating_rate_c_min
        # a segment must move: if there is no room left in its direction, end the profile here
        stuck = used & np.isclose(T, prev)
        nseg = np.where(stuck, k - 1, nseg)
        used = used & ~stuck
        feats[f"T{k}_c"] = np.where(used, T, prev)
        feats[f"rate{k}_c_min"] = np.where(used, rlo + u * (rhi - rlo), 0.0)
        feats[f"hold{k}_min"] = np.where(used, h, 0.0)
        prev = np.where(used, T, prev)
    feats["n_segments"] = np.maximum(nseg, 1).astype(float)
    feats["n_cycles"] = (np.maximum(nseg, 1) // 2).astype(float)
    out = pd.DataFrame(feats, index=df.index)[feature_names(max_cycles)]
    rest = [c for c in df.columns if not (c in ("c0_mg_g", "seed_loading", "t_start_c", "n_segments")
                                          or c.startswith(("frac", "urate", "hold")))]
    return pd.concat([out, df[rest]], axis=1)


def profile_validity(df: pd.DataFrame, max_cycles: int, bounds: ProfileBounds | None = DEFAULT_BOUNDS) -> pd.Series:
    """Boolean Series: does each row's feature vector encode a feasible canonical profile?"""
    fn = feature_names(max_cycles)
    X = df[fn].to_numpy(float)
    ok = np.zeros(len(df), dtype=bool)
    for i, x in enumerate(X):
        try:
            p = ThermocycleProfile.from_features(x, max_cycles)
        except Exception:
            continue
        ok[i] = np.allclose(p.to_features(max_cycles), x, atol=1e-6) and (bounds is None or p.is_feasible(bounds))
    return pd.Series(ok, index=df.index)


class ProfileFeasibility:
    """SDV ``sdv.cag`` constraint: profile feature columns stay feasible (seed 003 Eqs. 2–4).

    Implements the ``sdv.cag.SingleTableProgrammableConstraint`` interface; :meth:`for_sdv`
    returns an instance of a subclass of that SDV class (SDV is imported only then, which keeps
    ``import crystalloop.digital_twin`` fast).

    Parameters
    ----------
    max_cycles : int
        Cycle slots of the feature columns.
    bounds : dict, optional
        :meth:`ProfileBounds.to_dict` output; default :data:`DEFAULT_BOUNDS`.
    fixed : dict, optional
        Encoded columns that are constant in the training data (e.g. the slots of cycles no run
        uses, or holds that are always 0), ``{column: value}``: they are left out of what the
        synthesizer learns and restored on the way back. Fewer columns, much faster CTGAN/TVAE.
    table_name : str, optional
    """

    def __init__(self, max_cycles: int = 4, bounds: dict | None = None, fixed: dict | None = None,
                 table_name: str | None = None):
        self.max_cycles = int(max_cycles)
        self.bounds = bounds
        self.fixed = fixed
        self.table_name = table_name
        self._fill: dict[str, float] = {}

    def for_sdv(self):
        """This constraint as an ``sdv.cag.SingleTableProgrammableConstraint`` instance."""
        return _sdv_constraint_class()(self.max_cycles, self.bounds, self.fixed, self.table_name)

    @property
    def _b(self) -> ProfileBounds:
        return DEFAULT_BOUNDS if self.bounds is None else ProfileBounds.from_dict(self.bounds)

    def validate(self, metadata):
        table = self.table_name or next(iter(metadata.tables))
        cols = metadata.tables[table].columns
        missing = [c for c in feature_names(self.max_cycles) if c not in cols]
        if missing:
            raise ModelError(f"ProfileFeasibility: metadata lacks feature column(s) {missing[:5]}")

    def validate_input_data(self, data):
        bad = ~profile_validity(data, self.max_cycles, self._b)
        if bad.any():
            raise ModelError(f"ProfileFeasibility: {int(bad.sum())} training row(s) are infeasible profiles, "
                             f"e.g. index {data.index[bad][0]!r}")

    def get_updated_metadata(self, metadata):
        table = self.table_name or next(iter(metadata.tables))
        d = metadata.to_dict()
        cols = d["tables"][table]["columns"]
        for c in feature_names(self.max_cycles):
            cols.pop(c, None)
        cols["c0_mg_g"] = {"sdtype": "numerical"}
        cols["seed_loading"] = {"sdtype": "numerical"}
        cols["t_start_c"] = {"sdtype": "numerical"}
        cols["n_segments"] = {"sdtype": "categorical"}
        for k in range(1, _slots(self.max_cycles) + 1):
            cols[f"frac{k}"] = {"sdtype": "numerical"}
            cols[f"urate{k}"] = {"sdtype": "numerical"}
            cols[f"hold{k}"] = {"sdtype": "numerical"}
        for c in self.fixed or {}:
            cols.pop(c, None)
        return type(metadata).load_from_dict(d)

    def fit(self, data, metadata):
        enc = _encode(data, self.max_cycles, self._b)
        fill = {}
        for c in enc.columns:
            if c == "n_segments":
                fill[c] = float(pd.to_numeric(enc[c]).median())
            elif pd.api.types.is_numeric_dtype(enc[c]) and enc[c].notna().any():
                fill[c] = float(enc[c].median())
        self._fill = fill

    def transform(self, data):
        enc = _encode(data, self.max_cycles, self._b)
        return enc.drop(columns=[c for c in (self.fixed or {}) if c in enc.columns])

    def reverse_transform(self, transformed_data):
        df = transformed_data.copy()
        for c, v in (self.fixed or {}).items():
            df[c] = v
        return _decode(df, self.max_cycles, self._b, self._fill)

    def is_valid(self, synthetic_data):
        return profile_validity(synthetic_data, self.max_cycles, self._b)


_SDV_CLASS: list = []


def _sdv_constraint_class():
    if not _SDV_CLASS:
        from sdv.cag import SingleTableProgrammableConstraint

        cls = type("ProfileFeasibilityConstraint", (ProfileFeasibility, SingleTableProgrammableConstraint),
                   {"__module__": __name__, "__doc__": ProfileFeasibility.__doc__})
        _SDV_CLASS.append(cls)
    return _SDV_CLASS[0]


def __getattr__(name):
    if name == "ProfileFeasibilityConstraint":
        return _sdv_constraint_class()
    raise AttributeError(name)


@contextlib.contextmanager
def _seeded(seed: int | None):
    if seed is None:
        yield
        return
    import torch

    np_state, py_state, t_state = np.random.get_state(), random.getstate(), torch.random.get_rng_state()
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest, and the machine is shared
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.random.set_rng_state(t_state)
        torch.set_num_threads(n_threads)


@contextlib.contextmanager
def _no_tqdm():
    """Silence SDV's sampling progress bars (tqdm writes to the stderr of the moment)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


class SyntheticGenerator(BaseEstimator):
    """An SDV single-table synthesizer for DoE rows (profile features + CQA columns).

    Parameters
    ----------
    kind : {"gaussian_copula", "ctgan", "tvae"}
    max_cycles : int
        Cycle slots of the profile feature columns.
    constrained : bool, default True
        Enforce :class:`ProfileFeasibility` during training (False: the raw columns are modelled
        and infeasible rows can come out, for comparison).
    bounds : ProfileBounds, optional
    epochs : int, default 300
        Training epochs of CTGAN/TVAE (ignored by the Gaussian copula).
    random_state : int, optional

    Attributes
    ----------
    synthesizer_ : sdv synthesizer
    columns_ : list of str
    """

    def __init__(self, kind: Literal["gaussian_copula", "ctgan", "tvae"] = "gaussian_copula", *,
                 max_cycles: int = 4, constrained: bool = True, bounds: ProfileBounds | None = None,
                 epochs: int = 300, random_state: int | None = None):
        self.kind = kind
        self.max_cycles = max_cycles
        self.constrained = constrained
        self.bounds = bounds
        self.epochs = epochs
        self.random_state = random_state

    def fit(self, data: pd.DataFrame) -> SyntheticGenerator:
        """Train on a DataFrame with the feature columns and any numeric CQA columns."""
        from sdv.metadata import Metadata

        if self.kind not in GENERATORS:
            raise ConfigError(f"Unknown generator {self.kind!r}; expected one of {list(GENERATORS)}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"epochs must be a whole number >= 1, got {self.epochs!r}")
        fn = feature_names(self.max_cycles)
        missing = [c for c in fn if c not in data.columns]
        if missing:
            raise ModelError(f"generator training data lacks feature column(s) {missing[:5]} (max_cycles={self.max_cycles})")
        if len(data) < 3:
            raise ModelError(f"a generator needs at least 3 rows to learn from, got {len(data)}")
        data = data.reset_index(drop=True).astype(float)
        md = Metadata()
        md.add_table(_TABLE)
        for c in data.columns:
            md.add_column(c, table_name=_TABLE, sdtype="numerical")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            syn = self._make(md)
        if self.constrained:
            b = self.bounds or DEFAULT_BOUNDS
            enc = _encode(data, self.max_cycles, b)
            fixed = {}
            for c in enc.columns:
                v = enc[c]
                if v.isna().all():
                    fixed[c] = float("nan")
                elif v.nunique(dropna=False) == 1:
                    fixed[c] = v.iloc[0] if c == "n_segments" else float(v.iloc[0])
            syn.add_constraints([ProfileFeasibility(self.max_cycles, b.to_dict(), fixed).for_sdv()])
        with _seeded(self.random_state), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            md.validate()
            syn.fit({_TABLE: data})
        self.synthesizer_ = syn
        self.metadata_ = md
        self.columns_ = list(data.columns)
        self.training_data_ = data
        return self

    def _make(self, md):
        if self.kind == "gaussian_copula":
            from sdv.single_table import GaussianCopulaSynthesizer

            return GaussianCopulaSynthesizer(md, enforce_min_max_values=True, default_distribution="truncnorm")
        if self.kind == "ctgan":
            from sdv.single_table import CTGANSynthesizer

            return CTGANSynthesizer(md, enforce_min_max_values=True, epochs=int(self.epochs), batch_size=50,
                                    pac=5, enable_gpu=False)
        from sdv.single_table import TVAESynthesizer

        return TVAESynthesizer(md, enforce_min_max_values=True, epochs=int(self.epochs), batch_size=50,
                               enable_gpu=False)

    def sample(self, n: int, *, random_state: int | None = None) -> pd.DataFrame:
        """``n`` synthetic rows with the training columns (feature vectors are canonical).

        ``random_state`` overrides the generator's own for this draw (default: the one given at
        construction, so repeated calls give the same rows).
        """
        if not hasattr(self, "synthesizer_"):
            raise ModelError("SyntheticGenerator is not fitted; call fit(data) first")
        if int(n) != n or n < 1:
            raise ConfigError(f"number of synthetic rows must be a whole number >= 1, got {n!r}")
        rs = self.random_state if random_state is None else random_state
        with _seeded(None if rs is None else rs + 1), warnings.catch_warnings(), _no_tqdm():
            warnings.simplefilter("ignore")
            self.synthesizer_.reset_sampling()
            out = self.synthesizer_.sample(int(n))
        if isinstance(out, dict):
            out = out[_TABLE]
        return out[self.columns_].reset_index(drop=True)

    def quality_score(self, synthetic: pd.DataFrame, real: pd.DataFrame | None = None) -> float:
        """SDV's quality score (``sdv.evaluation.evaluate_quality``; column shapes and pair trends, 0–1)."""
        from sdv.evaluation import evaluate_quality

        real = self.training_data_ if real is None else real
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = evaluate_quality(real[self.columns_], synthetic[self.columns_], self.metadata_, verbose=False)
        return float(rep.get_score())

    def get_info(self) -> dict[str, Any]:
        return {"kind": self.kind, "epochs": int(self.epochs), "constrained": bool(self.constrained),
                "max_cycles": int(self.max_cycles)}
