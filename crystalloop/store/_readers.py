"""DataFrame readers: runs, samples (long or wide), images, CQAs, events and models (private).

Every reader returns a pandas DataFrame with fixed columns and dtypes, also when empty;
timestamps are tz-aware UTC, JSON columns come back as dicts, and file paths stored relative
to the store's folder come back absolute.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from crystalloop.errors import ConfigError, StoreNotFoundError
from crystalloop.profiles import ThermocycleProfile
from crystalloop.store._schema import RUN_COLUMNS, RUN_STATUSES, Connections
from crystalloop.store._values import check_name, check_number, check_run_id, from_json


def _tidy_runs(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"id": "run_id"})
    for k in ("started", "ended", "heartbeat"):
        df[k] = pd.to_datetime(df[k], utc=True, format="ISO8601")
    df["seed"] = df["seed"].astype("Int64")
    df["writer_pid"] = df["writer_pid"].astype("Int64")
    df["run_id"] = df["run_id"].astype("int64")
    df["recipe"] = [from_json(r) for r in df["recipe"]]
    df["meta"] = [from_json(m) for m in df["meta"]]
    return df


class Readers(Connections):
    """The read half of :class:`~crystalloop.store.ExperimentStore`."""

    def runs(self, *, status: str | None = None, kind: str | None = None, with_counts: bool = False,
             with_cqas: bool = False) -> pd.DataFrame:
        """All runs, oldest first, as a DataFrame.

        Columns: ``run_id, kind, status, started, ended`` (UTC timestamps), ``backend, seed,
        recipe`` (dict or None), ``recipe_type, meta`` (dict), ``reason, writer_pid, writer_host,
        writer_start, heartbeat``; with ``with_counts`` also ``n_samples, n_images, n_events,
        n_cqas``; with ``with_cqas`` one more column per CQA name (NaN where not logged).
        """
        where, params = [], []
        if status is not None:
            if status not in RUN_STATUSES:
                raise ConfigError(f"status must be one of {list(RUN_STATUSES)}, got {status!r}")
            where.append("status = ?")
            params.append(status)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        cols = list(RUN_COLUMNS)
        sel = ", ".join(f"r.{c}" for c in cols)
        if with_counts:
            counts = ["samples", "images", "events", "cqas"]
            sel += "".join(f", (SELECT count(*) FROM {t} x WHERE x.run_id = r.id)" for t in counts)
            cols += [f"n_{t}" for t in counts]
        sql = f"SELECT {sel} FROM runs r" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id"
        df = _tidy_runs(pd.DataFrame(self._query(sql, params, "list runs"), columns=cols))
        if with_cqas:
            cq = self.cqas(wide=True)
            df = df.merge(cq[cq["run_id"].isin(df["run_id"])], on="run_id", how="left")
        return df

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's record as a dict (the :meth:`runs` columns)."""
        run_id = check_run_id(run_id)
        rows = self._query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,), "read a run")
        if not rows:
            raise self._no_run(run_id)
        return _tidy_runs(pd.DataFrame(rows, columns=RUN_COLUMNS)).iloc[0].to_dict()

    def run_recipe(self, run_id: int) -> ThermocycleProfile | dict[str, Any] | None:
        """The recipe a run was started with: a ThermocycleProfile, a dict, or None."""
        run_id = check_run_id(run_id)
        rows = self._query("SELECT recipe, recipe_type FROM runs WHERE id = ?", (run_id,), "read a recipe")
        if not rows:
            raise self._no_run(run_id)
        recipe, rtype = from_json(rows[0][0]), rows[0][1]
        if rtype == "ThermocycleProfile":
            return ThermocycleProfile.from_dict(recipe, source=f"{self.path} run {run_id} recipe")
        return recipe

    def _require_run(self, run_id: Any) -> int:
        run_id = check_run_id(run_id)
        if not self._query("SELECT 1 FROM runs WHERE id = ?", (run_id,), "read a run"):
            raise self._no_run(run_id)
        return run_id

    def channels(self, run_id: int) -> list[str]:
        """Names of the channels a run has samples for, sorted."""
        run_id = self._require_run(run_id)
        return [r[0] for r in self._query("SELECT DISTINCT channel FROM samples WHERE run_id = ? ORDER BY channel",
                                          (run_id,), "list channels")]

    def samples(self, run_id: int, channels: str | Iterable[str] | None = None, wide: bool = False, *,
                start_s: float | None = None, end_s: float | None = None) -> pd.DataFrame:
        """A run's samples, sorted by time (ties in logging order).

        Parameters
        ----------
        run_id : int
        channels : str or list of str, optional
            Only these channels (all if None).
        wide : bool
            False: long frame ``time_s, channel, value``. True: one row per distinct time and
            one column per channel (NaN where a channel has no sample at that time; if a
            channel was logged twice at the same time the last value wins). With
            ``channels`` given, the columns follow that order (missing channels are all-NaN).
        start_s, end_s : float, optional
            Only samples with ``start_s <= time_s <= end_s`` (e.g. what arrived since the last poll).
        """
        run_id = self._require_run(run_id)
        sql, params = "SELECT time_s, channel, value FROM samples WHERE run_id = ?", [run_id]
        wanted = None
        if channels is not None:
            wanted = [channels] if isinstance(channels, str) else list(channels)
            for ch in wanted:
                check_name(ch, "channel")
            sql += f" AND channel IN ({', '.join('?' * len(wanted))})"
            params += wanted
        if start_s is not None:
            sql += " AND time_s >= ?"
            params.append(check_number(start_s, "start_s"))
        if end_s is not None:
            sql += " AND time_s <= ?"
            params.append(check_number(end_s, "end_s"))
        sql += " ORDER BY time_s, rowid"
        rows = self._query(sql, params, "read samples")
        df = pd.DataFrame(rows, columns=["time_s", "channel", "value"])
        df = df.astype({"time_s": "float64", "channel": "object", "value": "float64"})
        if not wide:
            return df
        order = list(dict.fromkeys(wanted)) if wanted is not None else sorted(df["channel"].unique())
        if df.empty:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in ["time_s", *order]})
        w = df.drop_duplicates(["time_s", "channel"], keep="last").pivot(index="time_s", columns="channel",
                                                                         values="value")
        w = w.reindex(columns=order).astype("float64")
        w.columns.name = None
        return w.reset_index()

    def images(self, run_id: int) -> pd.DataFrame:
        """A run's image records: ``image_id, time_s, path`` (absolute), ``pixel_size_um, meta`` (dict)."""
        run_id = self._require_run(run_id)
        rows = self._query("SELECT id, time_s, path, pixel_size_um, meta FROM images WHERE run_id = ? "
                           "ORDER BY time_s, id", (run_id,), "read images")
        df = pd.DataFrame(rows, columns=["image_id", "time_s", "path", "pixel_size_um", "meta"])
        df["path"] = [self._abs(p) for p in df["path"]]
        df["meta"] = [from_json(m) for m in df["meta"]]
        return df.astype({"image_id": "int64", "time_s": "float64", "pixel_size_um": "float64"})

    def cqas(self, run_id: int | None = None, *, wide: bool = False) -> pd.DataFrame:
        """CQAs of one run or of all runs.

        Long (default): ``run_id, name, value``. Wide: one row per run (``run_id`` column)
        and one column per CQA name, in first-logged order — a DoE-style table.
        """
        if run_id is None:
            rows = self._query("SELECT run_id, name, value FROM cqas ORDER BY run_id, rowid", (), "read CQAs")
        else:
            run_id = self._require_run(run_id)
            rows = self._query("SELECT run_id, name, value FROM cqas WHERE run_id = ? ORDER BY rowid",
                               (run_id,), "read CQAs")
        df = pd.DataFrame(rows, columns=["run_id", "name", "value"]).astype(
            {"run_id": "int64", "name": "object", "value": "float64"})
        if not wide:
            return df
        names = list(dict.fromkeys(df["name"]))
        if df.empty:
            return pd.DataFrame({"run_id": pd.Series(dtype="int64")})
        w = df.pivot(index="run_id", columns="name", values="value").reindex(columns=names)
        w.columns.name = None
        return w.reset_index()

    def events(self, run_id: int) -> pd.DataFrame:
        """A run's events: ``event_id, time_s, level, message``, in time order."""
        run_id = self._require_run(run_id)
        rows = self._query("SELECT id, time_s, level, message FROM events WHERE run_id = ? ORDER BY time_s, id",
                           (run_id,), "read events")
        return pd.DataFrame(rows, columns=["event_id", "time_s", "level", "message"]).astype(
            {"event_id": "int64", "time_s": "float64"})

    def models(self, name: str | None = None) -> pd.DataFrame:
        """Saved model records: ``model_id, name, path`` (absolute), ``metadata`` (dict), ``created``."""
        sql, params = "SELECT id, name, path, metadata, created FROM models", []
        if name is not None:
            sql, params = sql + " WHERE name = ?", [check_name(name, "model name")]
        df = pd.DataFrame(self._query(sql + " ORDER BY id", params, "read models"),
                          columns=["model_id", "name", "path", "metadata", "created"])
        df["path"] = [self._abs(p) for p in df["path"]]
        df["metadata"] = [from_json(m) for m in df["metadata"]]
        df["created"] = pd.to_datetime(df["created"], utc=True, format="ISO8601")
        return df.astype({"model_id": "int64"})

    def latest_model(self, name: str) -> dict[str, Any]:
        """The most recently saved model record called ``name`` (a :meth:`models` row as a dict)."""
        df = self.models(name)
        if df.empty:
            known = sorted(set(self.models()["name"]))
            raise StoreNotFoundError(f"No model named {name!r} in experiment store {self.path} (models: {known})")
        return df.iloc[-1].to_dict()

    def _abs(self, stored: str) -> str:
        p = Path(stored)
        return str(p if p.is_absolute() else self.path.parent.resolve() / p)
