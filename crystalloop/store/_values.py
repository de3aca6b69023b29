"""Value checks and JSON conversion shared by the store's writers and readers (private).

Every argument that reaches SQL goes through one of these, so a bad value is a
:class:`~crystalloop.errors.ConfigError` naming the parameter and the value received, and
never a half-written batch or an ``sqlite3`` error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, datetime)):
        return str(obj) if isinstance(obj, Path) else obj.isoformat()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON-serialisable")


def to_json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, default=json_default, sort_keys=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} cannot be stored as JSON: {e}") from None


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_number(x: Any, what: str, *, finite: bool = False, allow_none: bool = False) -> float | None:
    if x is None and allow_none:
        return None
    if isinstance(x, (str, bytes)) or x is None:
        raise ConfigError(f"{what} must be a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {x!r}") from None
    if finite and not math.isfinite(v):
        raise ConfigError(f"{what} must be finite, got {v!r}")
    return v


def check_name(x: Any, what: str) -> str:
    if not isinstance(x, str) or not x.strip() or "\x00" in x:
        raise ConfigError(f"{what} must be a non-empty string without NUL characters, got {x!r}")
    return x


def check_run_id(run_id: Any) -> int:
    if isinstance(run_id, (bool, np.bool_)):
        raise ConfigError(f"run_id must be an integer, got {run_id!r}")
    if isinstance(run_id, (int, np.integer)):
        return int(run_id)
    if isinstance(run_id, str) and run_id.strip().isdigit():
        return int(run_id)
    raise ConfigError(f"run_id must be an integer, got {run_id!r}")


def sample_tuples(samples: Any) -> Iterable[Any]:
    """Long or wide DataFrame → (time_s, channel, value) tuples; other iterables pass through."""
    if isinstance(samples, pd.DataFrame):
        cols = set(samples.columns)
        if "time_s" not in cols:
            raise ConfigError(f"samples DataFrame needs a 'time_s' column, got columns {list(samples.columns)}")
        if {"channel", "value"} <= cols:
            return zip(samples["time_s"].tolist(), samples["channel"].tolist(), samples["value"].tolist(),
                       strict=True)
        long = samples.melt(id_vars="time_s", var_name="channel", value_name="value").dropna(subset=["value"])
        return zip(long["time_s"].tolist(), long["channel"].tolist(), long["value"].tolist(), strict=True)
    if isinstance(samples, (str, bytes, Mapping)) or not isinstance(samples, Iterable):
        raise ConfigError(f"samples must be an iterable of (time_s, channel, value) tuples or a DataFrame, "
                          f"got {type(samples).__name__}")
    return samples
