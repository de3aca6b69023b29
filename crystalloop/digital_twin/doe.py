"""Design-of-experiments tables: reading, schema validation and per-CQA views.

A DoE table has one row per experiment (run) with

* the profile, either as the feature columns :func:`crystalloop.profiles.feature_names`
  (``c0_mg_g, seed_loading, t_start_c, n_segments, n_cycles, T1_c, rate1_c_min, ...``)
  or as a ``recipe`` column holding the path of a YAML/JSON recipe file per row
  (relative paths are resolved against the table's folder);
* zero or more CQA columns (:data:`CQA_NAMES`), numeric, with NaN (empty cell) where the CQA
  was not measured;
* optional ``run_id`` (unique) and free-text ``notes``/``name`` columns.

Every error names the file, the row (1-based data row, plus the ``run_id`` when present)
and the column, the value received and what was expected.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from crystalloop.cqa import CQA_NAMES
from crystalloop.errors import DoEWarning, ProfileError, SchemaError
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds, ThermocycleProfile, feature_names

__all__ = [
    "CQA_NAMES",
    "META_COLUMNS",
    "DoETable",
    "DoEWarning",
    "read_doe",
    "resolve_cqa",
    "infer_max_cycles",
]


#: Non-feature, non-CQA columns a DoE table may carry.
META_COLUMNS: tuple[str, ...] = ("run_id", "recipe", "name", "notes")

_UNIT_SUFFIXES = ("_um", "_pct", "_min", "_c", "_s", "_kg_kg", "_c_min")


def resolve_cqa(name: str, available: tuple[str, ...] | list[str] = CQA_NAMES) -> str:
    """Resolve a short CQA name (``"D50"``, ``"DoA"``) to its suffixed column name.

    Raises
    ------
    SchemaError
        If no available CQA matches.
    """
    if name in available:
        return name
    for cqa in available:
        stem = cqa
        for suf in sorted(_UNIT_SUFFIXES, key=len, reverse=True):
            if cqa.endswith(suf):
                stem = cqa[: -len(suf)]
                break
        if stem.lower() == str(name).lower():
            return cqa
    raise SchemaError(f"Unknown CQA {name!r}; expected one of {list(available)} (or the short names without the unit suffix)")


def infer_max_cycles(columns: list[str] | pd.Index) -> int | None:
    """``max_cycles`` implied by the ``T{k}_c`` columns present (None when there are none)."""
    ks = []
    for c in columns:
        c = str(c)
        if c.startswith("T") and c.endswith("_c") and c[1:-2].isdigit():
            ks.append(int(c[1:-2]))
    if not ks:
        return None
    slots = max(ks)
    return max(0, (slots - 1) // 2)


@dataclass
class DoETable:
    """A validated DoE table.

    Attributes
    ----------
    features : DataFrame, shape (n_runs, n_features)
        Canonical feature vectors (columns ``feature_names(max_cycles)``), index = run ids.
    cqas : DataFrame, shape (n_runs, n_cqas)
        Measured CQAs, NaN where not measured, same index.
    profiles : list of ThermocycleProfile
        The profile of every run.
    max_cycles : int
        Number of cycle slots of the feature vector.
    source : str
        File name (or ``"<DataFrame>"``), used in messages.
    """

    features: pd.DataFrame
    cqas: pd.DataFrame
    profiles: list[ThermocycleProfile]
    max_cycles: int
    source: str = "<DataFrame>"
    warnings_: list[str] = field(default_factory=list)

    @property
    def n_runs(self) -> int:
        return len(self.features)

    @property
    def cqa_names(self) -> list[str]:
        return list(self.cqas.columns)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    def n_measured(self) -> pd.Series:
        """Number of measured (non-NaN) rows per CQA."""
        return self.cqas.notna().sum()

    def xy(self, cqa: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        """Feature matrix, target and run ids of the rows where ``cqa`` was measured."""
        cqa = resolve_cqa(cqa, self.cqa_names)
        mask = self.cqas[cqa].notna().to_numpy()
        return (
            self.features.to_numpy(dtype=float)[mask],
            self.cqas[cqa].to_numpy(dtype=float)[mask],
            self.features.index[mask],
        )

    def to_frame(self) -> pd.DataFrame:
        """The table as one DataFrame (``run_id`` column, features, CQAs)."""
        out = pd.concat([self.features, self.cqas], axis=1)
        out.insert(0, "run_id", self.features.index.astype(str))
        return out.reset_index(drop=True)

    def data_hash(self) -> str:
        """SHA-256 of the canonical feature and CQA values (order-sensitive, 12 significant digits)."""
        h = hashlib.sha256()
        h.update(",".join(self.feature_names + self.cqa_names).encode())
        h.update(np.round(self.features.to_numpy(dtype=float), 9).tobytes())
        h.update(np.nan_to_num(np.round(self.cqas.to_numpy(dtype=float), 9), nan=-1e300).tobytes())
        return h.hexdigest()


def _read_any(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SchemaError(f"DoE file {path} does not exist")
    suf = path.suffix.lower()
    try:
        if suf in (".csv", ".txt"):
            return pd.read_csv(path)
        if suf in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suf in (".xlsx", ".xls"):
            return pd.read_excel(path)
    except (ValueError, OSError, ImportError) as e:
        raise SchemaError(f"DoE file {path} could not be read as {suf}: {e}") from None
    raise SchemaError(f"DoE file {path}: unsupported extension {suf!r}; use .csv, .parquet or .xlsx")


def _row_label(i: int, run_ids: list[str] | None) -> str:
    lab = f"row {i + 1}"
    if run_ids is not None:
        lab += f" (run_id {run_ids[i]!r})"
    return lab


def _numeric(df: pd.DataFrame, col: str, src: str, run_ids: list[str] | None, *, allow_nan: bool) -> np.ndarray:
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(vals) & raw.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(
            f"{src}, {_row_label(i, run_ids)}, column {col!r}: expected a number, got {raw.iloc[i]!r}"
        )
    if np.isinf(vals).any():
        i = int(np.flatnonzero(np.isinf(vals))[0])
        raise SchemaError(f"{src}, {_row_label(i, run_ids)}, column {col!r}: expected a finite number, got {vals[i]}")
    if not allow_nan and np.isnan(vals).any():
        i = int(np.flatnonzero(np.isnan(vals))[0])
        raise SchemaError(
            f"{src}, {_row_label(i, run_ids)}, column {col!r}: input value is missing (NaN); every "
            f"input must be given (only CQA columns may be empty)"
        )
    return vals


def read_doe(
    data: str | Path | pd.DataFrame,
    *,
    max_cycles: int | None = None,
    cqas: list[str] | None = None,
    bounds: ProfileBounds | None = DEFAULT_BOUNDS,
    extra_columns: Literal["error", "ignore"] = "error",
    duplicates: Literal["warn", "error", "mean"] = "warn",
    source: str | None = None,
) -> DoETable:
    """Read and validate a DoE table.

    Parameters
    ----------
    data : path or DataFrame
        CSV, Parquet or Excel file, or a DataFrame.
    max_cycles : int, optional
        Cycle slots of the feature vector; inferred from the ``T{k}_c`` columns (or 4 for
        recipe-only tables) when omitted.
    cqas : list of str, optional
        CQA columns to keep (short names allowed). Default: every :data:`CQA_NAMES` column present.
    bounds : ProfileBounds or None
        Feasibility bounds every profile must satisfy; ``None`` skips the bound check
        (alternation and positivity are always checked).
    extra_columns : {"error", "ignore"}
        What to do with columns that are neither features, CQAs nor :data:`META_COLUMNS`.
    duplicates : {"warn", "error", "mean"}
        Runs with identical inputs (replicates): warn, refuse, or average them into one row.
    source : str, optional
        Name used in messages (defaults to the file path).

    Returns
    -------
    DoETable

    Raises
    ------
    SchemaError
        Missing/unknown columns, non-numeric or missing inputs, non-numeric CQAs, duplicated
        run ids, infeasible profiles; the message names the file, row and column.
    """
    if isinstance(data, pd.DataFrame):
        df = data.copy()
        src = source or "<DataFrame>"
        base = Path.cwd()
    else:
        path = Path(data)
        df = _read_any(path)
        src = source or str(path)
        base = path.parent
    if duplicates not in ("warn", "error", "mean"):
        raise SchemaError(f"duplicates must be 'warn', 'error' or 'mean', got {duplicates!r}")
    if df.shape[0] == 0:
        raise SchemaError(f"{src}: the table has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    dup_cols = df.columns[df.columns.duplicated()].tolist()
    if dup_cols:
        raise SchemaError(f"{src}: column(s) {dup_cols} appear more than once")

    has_recipe = "recipe" in df.columns
    mc = max_cycles if max_cycles is not None else infer_max_cycles(df.columns)
    if mc is None:
        if not has_recipe:
            raise SchemaError(
                f"{src}: no profile columns found; give the feature columns {feature_names(4)[:8]}... "
                f"(see crystalloop.profiles.feature_names) or a 'recipe' column with recipe file paths"
            )
        mc = 4
    fnames = feature_names(mc)

    # ---- which CQAs
    present_cqas = [c for c in df.columns if c in CQA_NAMES]
    if cqas is None:
        cqa_cols = present_cqas
    else:
        cqa_cols = []
        for c in cqas:
            try:
                name = resolve_cqa(c)
            except SchemaError as e:
                raise SchemaError(f"{src}: {e}") from None
            if name not in df.columns:
                raise SchemaError(f"{src}: requested CQA column {name!r} is missing; columns present: {present_cqas}")
            cqa_cols.append(name)

    # ---- unknown columns
    known = set(fnames) | set(CQA_NAMES) | set(META_COLUMNS)
    unknown = [c for c in df.columns if c not in known]
    if unknown and extra_columns == "error":
        hint = ""
        other_mc = infer_max_cycles(unknown)
        if other_mc is not None:
            hint = f" (T{{k}}_c columns suggest a different max_cycles than {mc})"
        raise SchemaError(
            f"{src}: unknown column(s) {unknown}{hint}; expected feature columns "
            f"feature_names({mc}), CQA columns {list(CQA_NAMES)} and optional {list(META_COLUMNS)}; "
            f"pass extra_columns='ignore' to skip them"
        )

    # ---- run ids
    if "run_id" in df.columns:
        run_ids = [str(v) for v in df["run_id"].tolist()]
        seen: dict[str, int] = {}
        for i, r in enumerate(run_ids):
            if r in seen:
                raise SchemaError(f"{src}, row {i + 1}, column 'run_id': {r!r} already used in row {seen[r] + 1}; run ids must be unique")
            seen[r] = i
    else:
        run_ids = None
    index = run_ids if run_ids is not None else [f"row{i + 1}" for i in range(len(df))]

    # ---- profiles
    present_feats = [c for c in fnames if c in df.columns]
    if not has_recipe and len(present_feats) < len(fnames):
        missing = [c for c in fnames if c not in df.columns]
        raise SchemaError(f"{src}: missing feature column(s) {missing} (max_cycles={mc}); or give a 'recipe' column")
    feat_vals = {c: _numeric(df, c, src, run_ids, allow_nan=has_recipe) for c in present_feats}
    profiles: list[ThermocycleProfile] = []
    X = np.empty((len(df), len(fnames)))
    for i in range(len(df)):
        lab = _row_label(i, run_ids)
        rec = df["recipe"].iloc[i] if has_recipe else None
        use_recipe = has_recipe and isinstance(rec, str) and rec.strip() != ""
        if use_recipe:
            given = [c for c in present_feats if not np.isnan(feat_vals[c][i])]
            if given:
                raise SchemaError(
                    f"{src}, {lab}: gives both a recipe ({rec!r}) and feature column(s) {given[:3]}...; "
                    f"give one or the other"
                )
            rpath = Path(rec.strip())
            if not rpath.is_absolute():
                rpath = base / rpath
            try:
                prof = ThermocycleProfile.from_file(rpath)
            except ProfileError as e:
                raise SchemaError(f"{src}, {lab}, column 'recipe': {e}") from None
        else:
            if len(present_feats) < len(fnames):
                raise SchemaError(
                    f"{src}, {lab}, column 'recipe': empty, and the table lacks feature column(s) "
                    f"{[c for c in fnames if c not in df.columns][:4]}; give a recipe path"
                )
            x = np.array([feat_vals[c][i] for c in fnames])
            if np.isnan(x).any():
                c = fnames[int(np.flatnonzero(np.isnan(x))[0])]
                raise SchemaError(f"{src}, {lab}, column {c!r}: input value is missing (NaN) and no recipe is given")
            try:
                prof = ThermocycleProfile.from_features(x, mc, name=str(index[i]))
            except ProfileError as e:
                raise SchemaError(f"{src}, {lab}: {e}") from None
            canon = prof.to_features(mc)
            off = np.flatnonzero(~np.isclose(canon, x, rtol=1e-9, atol=1e-9))
            if off.size:
                c = fnames[int(off[0])]
                raise SchemaError(
                    f"{src}, {lab}, column {c!r}: got {x[off[0]]:g}, but the profile defined by the "
                    f"first n_segments={int(round(x[3]))} slots implies {canon[off[0]]:g} (n_cycles = "
                    f"n_segments // 2; unused slots repeat the last temperature with rate 0 and hold 0)"
                )
        if bounds is not None:
            v = prof.violations(bounds)
            if v:
                raise SchemaError(f"{src}, {lab}: infeasible profile: " + "; ".join(v))
        try:
            X[i] = prof.to_features(mc)
        except ProfileError as e:
            raise SchemaError(f"{src}, {lab}: {e}") from None
        profiles.append(prof)

    features = pd.DataFrame(X, columns=fnames, index=pd.Index(index, name="run_id"))
    Y = pd.DataFrame(
        {c: _numeric(df, c, src, run_ids, allow_nan=True) for c in cqa_cols},
        index=features.index,
    )
    table = DoETable(features, Y, profiles, mc, src)
    _check_quality(table, duplicates)
    return table


def _check_quality(table: DoETable, duplicates: str) -> None:
    """Warn (or raise) about replicates, constant columns and empty CQAs."""
    src = table.source
    F = table.features
    dup_mask = F.duplicated(keep=False).to_numpy()
    if dup_mask.any():
        groups = F[dup_mask].groupby(list(F.columns), sort=False).groups
        desc = "; ".join(", ".join(map(str, list(ix))) for ix in list(groups.values())[:5])
        msg = (
            f"{src}: runs with identical inputs (replicates): {desc}. Replicates can sit on both "
            f"sides of a CV split and make scores optimistic; average them with duplicates='mean' "
            f"or keep them if they are true replicates"
        )
        if duplicates == "error":
            raise SchemaError(msg)
        if duplicates == "mean":
            keys = [tuple(r) for r in np.round(F.to_numpy(), 12)]
            first: dict[tuple, int] = {}
            grp = np.array([first.setdefault(k, len(first)) for k in keys])
            keep = [int(np.flatnonzero(grp == g)[0]) for g in range(len(first))]
            newY = table.cqas.groupby(grp, sort=True).mean()
            table.features = F.iloc[keep]
            table.cqas = newY.set_axis(table.features.index)
            table.profiles = [table.profiles[k] for k in keep]
            msg = f"{src}: averaged {int(dup_mask.sum())} replicate rows into {len(set(grp[dup_mask]))}"
        warnings.warn(msg, DoEWarning, stacklevel=3)
        table.warnings_.append(msg)
    const_in = [c for c in ("c0_mg_g", "seed_loading", "t_start_c") if table.features[c].nunique() == 1]
    if const_in and table.n_runs > 1:
        msg = (
            f"{src}: input column(s) {const_in} are constant over all runs; the twin cannot learn "
            f"their effect and will extrapolate blindly if they change"
        )
        warnings.warn(msg, DoEWarning, stacklevel=3)
        table.warnings_.append(msg)
    for c in table.cqa_names:
        col = table.cqas[c]
        n = int(col.notna().sum())
        if n == 0:
            msg = f"{src}: CQA column {c!r} has no measured values (all NaN); drop it or measure it"
            warnings.warn(msg, DoEWarning, stacklevel=3)
            table.warnings_.append(msg)
        elif col.dropna().nunique() == 1 and n > 1:
            msg = (f"{src}: CQA column {c!r} is constant ({col.dropna().iloc[0]:g}) over its {n} measured "
                   f"runs; there is nothing to learn (R² is undefined)")
            warnings.warn(msg, DoEWarning, stacklevel=3)
            table.warnings_.append(msg)
