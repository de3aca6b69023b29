"""Writers: start and finish runs, log samples, images, CQAs and events, record models (private).

Every method here is one transaction committed before it returns; a batch with one bad row
writes nothing and raises a :class:`~crystalloop.errors.ConfigError` naming the row. Every
``log_*`` call also refreshes the run's heartbeat (see :mod:`crystalloop.store._recovery`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, StoreError
from crystalloop.profiles import ThermocycleProfile
from crystalloop.store._recovery import Recovery
from crystalloop.store._schema import EVENT_LEVELS, RUN_STATUSES
from crystalloop.store._values import (
    check_name,
    check_number,
    check_run_id,
    iso,
    sample_tuples,
    to_json,
    utc_now,
)


class Writers(Recovery):
    """The write half of :class:`~crystalloop.store.ExperimentStore`."""

    # ---- runs -----------------------------------------------------------------------------

    def start_run(
        self,
        recipe: ThermocycleProfile | Mapping[str, Any] | None = None,
        backend: str = "sim://",
        seed: int | None = None,
        kind: str = "recipe",
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a new run with status ``running`` and return its id.

        Parameters
        ----------
        recipe : ThermocycleProfile, dict or None
            A profile is stored as its ``to_dict()`` JSON and comes back from :meth:`run_recipe`
            as a profile; a dict is stored as JSON and comes back as a dict.
        backend : str
            Backend URL the run uses (``sim://?seed=3``, ``julabo:///dev/ttyUSB0``).
        seed : int, optional
            Random seed of the run (simulator, noise).
        kind : str
            What sort of run: ``"recipe"``, ``"simulation"``, ``"campaign"``, ``"calibration"``...
        meta : dict, optional
            Anything else worth keeping (operator, compound, controller settings), as JSON.
        """
        if recipe is None:
            recipe_json, recipe_type = None, None
        elif isinstance(recipe, ThermocycleProfile):
            recipe_json, recipe_type = to_json(recipe.to_dict(), "recipe"), "ThermocycleProfile"
        elif isinstance(recipe, Mapping):
            recipe_json, recipe_type = to_json(dict(recipe), "recipe"), "dict"
        else:
            raise ConfigError(f"recipe must be a ThermocycleProfile, a dict or None, got {type(recipe).__name__}")
        if not isinstance(backend, str):
            raise ConfigError(f"backend must be a URL string such as 'sim://', got {backend!r}")
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                    or not -(2**63) <= int(seed) < 2**63:
                raise ConfigError(f"seed must be a 64-bit integer or None, got {seed!r}")
            seed = int(seed)
        kind = check_name(kind, "kind")
        if meta is not None and not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a dict or None, got {type(meta).__name__}")
        meta_json = to_json(dict(meta or {}), "meta")
        now = iso(utc_now())
        with self._write("start a run") as c:
            cur = c.execute(
                "INSERT INTO runs (kind, status, recipe, recipe_type, backend, seed, meta, started, "
                "writer_pid, writer_host, writer_start, heartbeat) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, recipe_json, recipe_type, backend, seed, meta_json, now,
                 os.getpid(), self._host, self._start_token, now),
            )
            run_id = int(cur.lastrowid)
        return run_id

    def _touch(self, c: sqlite3.Connection, run_id: int) -> None:
        """Refresh the run's heartbeat inside the current transaction; raise if the run does not exist."""
        if c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (iso(utc_now()), run_id)).rowcount == 0:
            raise self._no_run(run_id)

    def heartbeat(self, run_id: int) -> None:
        """Tell readers the writer of ``run_id`` is alive (every ``log_*`` call does this too)."""
        with self._write("update the heartbeat") as c:
            self._touch(c, check_run_id(run_id))

    def finish_run(self, run_id: int, status: str = "completed", reason: str | None = None) -> None:
        """End a running run with a final status and an optional reason (why it failed or was aborted).

        Raises
        ------
        ConfigError
            ``status`` is not one of completed, failed, aborted, interrupted.
        StoreError
            The run does not exist or has already finished.
        """
        run_id = check_run_id(run_id)
        if status not in RUN_STATUSES[1:]:
            raise ConfigError(f"status must be one of {list(RUN_STATUSES[1:])}, got {status!r}")
        if reason is not None and not isinstance(reason, str):
            raise ConfigError(f"reason must be a string or None, got {reason!r}")
        now = iso(utc_now())
        with self._write("finish a run") as c:
            row = c.execute("SELECT status, writer_pid, writer_host, writer_start FROM runs WHERE id = ?",
                            (run_id,)).fetchone()
            if row is None:
                raise self._no_run(run_id)
            if row[0] != "running" and not (row[0] == "interrupted" and self._is_me(row[1], row[2], row[3])):
                raise StoreError(f"Run {run_id} in {self.path} has already finished with status "
                                 f"'{row[0]}'; only a running run can be finished")
            c.execute("UPDATE runs SET status = ?, ended = ?, reason = ?, heartbeat = ? WHERE id = ?",
                      (status, now, reason, now, run_id))

    def delete_run(self, run_id: int) -> None:
        """Delete a finished run with its samples, images records, CQAs and events (files stay on disk)."""
        run_id = check_run_id(run_id)
        with self._write("delete a run") as c:
            row = c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._no_run(run_id)
            if row[0] == "running":
                raise StoreError(f"Run {run_id} in {self.path} is still running; finish it before deleting")
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- logging ------------------------------------------------------------------------

    def log_samples(self, run_id: int, samples: Iterable[tuple[float, str, float]] | pd.DataFrame) -> int:
        """Append time-series samples in one transaction, committed before returning.

        Parameters
        ----------
        run_id : int
        samples : iterable of (time_s, channel, value), or DataFrame
            A DataFrame is either long (columns ``time_s, channel, value``) or wide (a
            ``time_s`` column and one numeric column per channel; NaN cells are skipped).
            ``value`` may be NaN or None (a missing reading, read back as NaN).

        Returns
        -------
        int
            Number of samples written. The batch is atomic: on a bad row nothing is written.
        """
        run_id = check_run_id(run_id)
        rows = self._sample_rows(run_id, sample_tuples(samples))
        with self._write("log samples") as c:
            self._touch(c, run_id)
            n = c.executemany("INSERT INTO samples (run_id, time_s, channel, value) VALUES (?, ?, ?, ?)",
                              rows).rowcount
        return max(int(n), 0)

    @staticmethod
    def _sample_rows(run_id: int, samples: Iterable[Any]) -> Iterator[tuple]:
        for i, row in enumerate(samples):
            try:
                t, ch, v = row
            except (TypeError, ValueError):
                raise ConfigError(f"sample {i}: expected a (time_s, channel, value) tuple, got {row!r}") from None
            yield (run_id, check_number(t, f"sample {i}: time_s", finite=True), check_name(ch, f"sample {i}: channel"),
                   check_number(v, f"sample {i} ({ch!r}): value", allow_none=True))

    def log_image(self, run_id: int, time_s: float, path: str | os.PathLike, pixel_size_um: float,
                  meta: Mapping[str, Any] | None = None) -> int:
        """Record an image file taken at ``time_s``; return its id.

        A path inside the store's directory is kept relative to it, so the project folder
        can be moved; :meth:`images` gives absolute paths.
        """
        run_id = check_run_id(run_id)
        t = check_number(time_s, "time_s", finite=True)
        px = check_number(pixel_size_um, "pixel_size_um", finite=True)
        if px <= 0:
            raise ConfigError(f"pixel_size_um must be > 0 µm, got {px!r}")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"path must be a file path, got {path!r}")
        if meta is not None and not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a dict or None, got {type(meta).__name__}")
        meta_json = to_json(dict(meta or {}), "image meta")
        with self._write("log an image") as c:
            self._touch(c, run_id)
            cur = c.execute("INSERT INTO images (run_id, time_s, path, pixel_size_um, meta) VALUES (?, ?, ?, ?, ?)",
                            (run_id, t, self._rel(path), px, meta_json))
            image_id = int(cur.lastrowid)
        return image_id

    def log_cqas(self, run_id: int, cqas: Mapping[str, float] | pd.Series) -> None:
        """Record CQAs of a run (``{"D50_um": 182.5, ...}``); a name logged again is replaced."""
        run_id = check_run_id(run_id)
        if not hasattr(cqas, "items"):
            raise ConfigError(f"cqas must be a mapping of name to value, got {type(cqas).__name__}")
        rows = [(run_id, check_name(k, "CQA name"), check_number(v, f"CQA {k!r}", allow_none=True)) for k, v in cqas.items()]
        with self._write("log CQAs") as c:
            self._touch(c, run_id)
            c.executemany("INSERT INTO cqas (run_id, name, value) VALUES (?, ?, ?) "
                          "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value", rows)

    def log_event(self, run_id: int, time_s: float, level: str, message: str) -> int:
        """Record an event (``level`` one of debug, info, warning, error, critical); return its id."""
        run_id = check_run_id(run_id)
        t = check_number(time_s, "time_s", finite=True)
        lv = level.lower() if isinstance(level, str) else level
        if lv not in EVENT_LEVELS:
            raise ConfigError(f"level must be one of {list(EVENT_LEVELS)}, got {level!r}")
        if not isinstance(message, str):
            raise ConfigError(f"message must be a string, got {type(message).__name__}")
        with self._write("log an event") as c:
            self._touch(c, run_id)
            event_id = int(c.execute("INSERT INTO events (run_id, time_s, level, message) VALUES (?, ?, ?, ?)",
                                     (run_id, t, lv, message)).lastrowid)
        return event_id

    def save_model(self, name: str, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> int:
        """Record a model artifact (a directory or file on disk) under ``name``; return its id."""
        name = check_name(name, "model name")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"path must be a file or directory path, got {path!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigError(f"metadata must be a dict or None, got {type(metadata).__name__}")
        md = to_json(dict(metadata or {}), "model metadata")
        with self._write("save a model") as c:
            model_id = int(c.execute("INSERT INTO models (name, path, metadata, created) VALUES (?, ?, ?, ?)",
                                     (name, self._rel(path), md, iso(utc_now()))).lastrowid)
        return model_id

    def _rel(self, path: str | os.PathLike) -> str:
        p = Path(path).expanduser().resolve()  # a relative path is relative to the working directory
        try:
            return p.relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return str(p)
