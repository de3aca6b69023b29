"""Experiment store: every run, sample, image, CQA, event and model of a project in one SQLite file.

The store is an embedded SQLite database (stdlib :mod:`sqlite3`) in WAL mode, so readers
(a notebook, ``crystalloop runs``, a live plot) work while a run writes. Every write is one
transaction committed at once: a crash (SIGKILL, power loss with ``synchronous="full"``)
loses at most the batch in flight. A run left ``running`` by a writer that died is marked
``interrupted`` the next time the store is opened (see :meth:`ExperimentStore.recover`).

Tables (schema version :data:`SCHEMA_VERSION`)::

    meta     key, value                                  (application, schema_version, created)
    runs     id, kind, status, recipe (JSON), recipe_type, backend, seed, meta (JSON),
             started, ended (wall-clock ISO 8601, UTC), reason,
             writer_pid, writer_host, writer_start, heartbeat
    samples  run_id, time_s, channel, value              (index on run_id, channel, time_s)
    images   id, run_id, time_s, path, pixel_size_um, meta (JSON)
    cqas     run_id, name, value                         (one value per run and name)
    events   id, run_id, time_s, level, message
    models   id, name, path, metadata (JSON), created

Examples
--------
>>> import tempfile, pathlib
>>> from crystalloop.profiles import Segment, ThermocycleProfile
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> store = ExperimentStore(tmp / "project.db")
>>> recipe = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, 0.2)])
>>> run = store.start_run(recipe, backend="sim://?seed=3", seed=3)
>>> store.log_samples(run, [(0.0, "T_reactor_c", 60.0), (0.0, "T_jacket_c", 59.5),
...                         (60.0, "T_reactor_c", 59.8), (60.0, "T_jacket_c", 59.3)])
4
>>> store.log_cqas(run, {"D50_um": 182.5, "DoA_pct": 12.0})
>>> store.finish_run(run)
>>> store.samples(run, wide=True)
   time_s  T_jacket_c  T_reactor_c
0     0.0        59.5         60.0
1    60.0        59.3         59.8
>>> store.run_recipe(run) == recipe
True
>>> store.close()
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, StoreError
from crystalloop.profiles import ThermocycleProfile

__all__ = [
    "ExperimentStore",
    "SCHEMA_VERSION",
    "RUN_STATUSES",
    "EVENT_LEVELS",
    "DEFAULT_STORE_NAME",
    "default_store_path",
    "plot_samples",
]

SCHEMA_VERSION = 1
"""Version of the table layout written by this crystalloop; newer files are refused."""

APPLICATION_ID = 0x43524C50  # "CRLP" in the SQLite header: marks the file as a crystalloop store
DEFAULT_STORE_NAME = "crystalloop.db"
RUN_STATUSES = ("running", "completed", "failed", "aborted", "interrupted")
EVENT_LEVELS = ("debug", "info", "warning", "error", "critical")
_SYNCHRONOUS = ("off", "normal", "full", "extra")

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in RUN_STATUSES)})),
        recipe TEXT,
        recipe_type TEXT,
        backend TEXT,
        seed INTEGER,
        meta TEXT NOT NULL DEFAULT '{{}}',
        started TEXT NOT NULL,
        ended TEXT,
        reason TEXT,
        writer_pid INTEGER,
        writer_host TEXT,
        writer_start TEXT,
        heartbeat TEXT)""",
    """CREATE TABLE samples (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        time_s REAL NOT NULL,
        channel TEXT NOT NULL,
        value REAL)""",
    "CREATE INDEX samples_run_channel_time ON samples (run_id, channel, time_s)",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        time_s REAL NOT NULL,
        path TEXT NOT NULL,
        pixel_size_um REAL NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX images_run_time ON images (run_id, time_s)",
    """CREATE TABLE cqas (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, name))""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        time_s REAL NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL)""",
    "CREATE INDEX events_run_time ON events (run_id, time_s)",
    """CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL)""",
    "CREATE INDEX models_name ON models (name, id)",
]

_FORK_ORPHANS: list[sqlite3.Connection] = []  # connections inherited over fork: kept open, never touched

_RUN_COLUMNS = ["id", "kind", "status", "started", "ended", "backend", "seed", "recipe", "recipe_type",
                "meta", "reason", "writer_pid", "writer_host", "writer_start", "heartbeat"]


def default_store_path() -> Path:
    """The store used when none is given: ``$CRYSTALLOOP_STORE`` or ``./crystalloop.db``."""
    return Path(os.environ.get("CRYSTALLOOP_STORE") or DEFAULT_STORE_NAME)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, datetime)):
        return str(obj) if isinstance(obj, Path) else obj.isoformat()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON-serialisable")


def _to_json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, default=_json_default, sort_keys=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} cannot be stored as JSON: {e}") from None


def _from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _number(x: Any, what: str, *, finite: bool = False, allow_none: bool = False) -> float | None:
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


def _name(x: Any, what: str) -> str:
    if not isinstance(x, str) or not x.strip() or "\x00" in x:
        raise ConfigError(f"{what} must be a non-empty string without NUL characters, got {x!r}")
    return x


def _run_id(run_id: Any) -> int:
    if isinstance(run_id, (bool, np.bool_)):
        raise ConfigError(f"run_id must be an integer, got {run_id!r}")
    if isinstance(run_id, (int, np.integer)):
        return int(run_id)
    if isinstance(run_id, str) and run_id.strip().isdigit():
        return int(run_id)
    raise ConfigError(f"run_id must be an integer, got {run_id!r}")


def _proc_start_token(pid: int) -> str | None:
    """Start time of a live Linux process (``/proc/PID/stat`` field 22); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and ')'
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _pid_alive(pid: int, start_token: str | None) -> bool | None:
    """Whether process ``pid`` (started at ``start_token``) still runs on this host; None if unknown."""
    if sys.platform.startswith("linux") and os.path.exists("/proc/self/stat"):
        token = _proc_start_token(pid)
        if token is None:
            return False
        return start_token is None or token == start_token  # a different start time: PID reused
    if os.name == "posix":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return None  # e.g. Windows: decided by the heartbeat


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


class ExperimentStore:
    """A project's experiment store: one SQLite file holding runs, samples, images, CQAs, events, models.

    Parameters
    ----------
    path : str or Path
        The store file (created with its parent directories if missing). A directory means
        ``path / "crystalloop.db"``.
    create : bool
        Create the file if it does not exist; with ``False`` a missing file is a :class:`StoreError`.
    recover : bool
        On opening, mark runs whose writer has died as ``interrupted`` (:meth:`recover`).
    timeout_s : float
        How long a writer waits for another writer's transaction (SQLite ``busy_timeout``).
    stale_after_s : float
        A ``running`` run whose writer lives on another host (or whose liveness cannot be
        checked) counts as dead when its heartbeat is older than this.
    synchronous : {"full", "normal", "extra", "off"}
        SQLite ``synchronous`` setting. ``"full"`` (default) makes every committed batch
        survive power loss; ``"normal"`` survives process crashes only and writes faster.

    Raises
    ------
    StoreError
        The file is not a crystalloop store, has a newer schema, is corrupt, or its directory
        cannot be created or written; the message names the path.

    Notes
    -----
    Thread-safe: each thread uses its own SQLite connection, writers are serialised by
    SQLite's lock (``BEGIN IMMEDIATE`` + ``busy_timeout``) and readers never block writers
    (WAL). Several processes may open the same file. After ``fork`` the child opens its own
    connections. Sample times ``time_s`` come from the run's clock (real or virtual);
    ``started``/``ended``/``heartbeat``/``created`` are wall-clock UTC.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        create: bool = True,
        recover: bool = True,
        timeout_s: float = 30.0,
        stale_after_s: float = 600.0,
        synchronous: str = "full",
    ) -> None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / DEFAULT_STORE_NAME
        self.path = p
        self.timeout_s = _number(timeout_s, "timeout_s", finite=True)
        self.stale_after_s = _number(stale_after_s, "stale_after_s", finite=True)
        if self.timeout_s < 0 or self.stale_after_s <= 0:
            raise ConfigError(f"timeout_s must be >= 0 and stale_after_s > 0, got {timeout_s!r} and {stale_after_s!r}")
        if str(synchronous).lower() not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {list(_SYNCHRONOUS)}, got {synchronous!r}")
        self.synchronous = str(synchronous).lower()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._pid = os.getpid()
        self._closed = False
        self._host = socket.gethostname()
        self._start_token = _proc_start_token(self._pid)

        if not p.exists():
            if not create:
                raise StoreError(f"No experiment store at {p} (create=False)")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"Cannot create the directory {p.parent} for experiment store {p}: {e.strerror or e}"
                ) from None
        elif not p.is_file():
            raise StoreError(f"Experiment store path {p} exists but is not a regular file")
        try:
            self._open_schema()
            if recover:
                self.recover()
        except BaseException:
            self.close()
            raise

    # ---- connections and transactions ----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        with self._errors("open"):
            c = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None,
                                check_same_thread=False)
            try:
                c.execute("PRAGMA foreign_keys = ON")
                c.execute("PRAGMA journal_mode = WAL")
                c.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            except BaseException:
                c.close()
                raise
        return c

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"Experiment store {self.path} is closed")
        if os.getpid() != self._pid:  # forked: never use (or close) a connection of the parent
            _FORK_ORPHANS.extend(self._conns.values())
            self._pid, self._local, self._conns = os.getpid(), threading.local(), {}
            self._start_token = _proc_start_token(self._pid)
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._connect()
            self._local.conn = c
            with self._lock:
                for t in [t for t in self._conns if not t.is_alive()]:
                    self._conns.pop(t).close()
                self._conns[threading.current_thread()] = c
        return c

    def close(self) -> None:
        """Close every connection of this store object (call once the threads using it are done)."""
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        self._local = threading.local()
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken connection
                pass

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentStore({str(self.path)!r})"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into StoreErrors that name the path and say what to do."""
        try:
            yield
        except sqlite3.Error as e:
            msg = str(e)
            p = self.path
            if "not a database" in msg:
                text = f"{p} is not a crystalloop experiment store (not an SQLite database)"
            elif "malformed" in msg or "corrupt" in msg:
                text = (f"Experiment store {p} is corrupt ({msg}) while trying to {action}; restore it "
                        f"from a backup or salvage it with `sqlite3 {p} .recover`")
            elif "unable to open" in msg:
                text = (f"Cannot open experiment store {p}: unable to open the file; check that "
                        f"{p.parent} exists and is writable")
            elif "readonly" in msg or "read-only" in msg:
                text = f"Cannot {action} in experiment store {p}: the file or its directory is read-only"
            elif "locked" in msg or "busy" in msg:
                text = (f"Experiment store {p} stayed locked by another writer for more than "
                        f"timeout_s={self.timeout_s:g} s while trying to {action}")
            else:
                text = f"Experiment store {p}: cannot {action}: {msg}"
            raise StoreError(text) from e

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), rolled back on any error."""
        c = self._conn()
        with self._errors(action):
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = (), action: str = "read") -> list[tuple]:
        c = self._conn()
        with self._errors(action):
            return c.execute(sql, tuple(params)).fetchall()

    # ---- schema -------------------------------------------------------------------------

    def _open_schema(self) -> None:
        c = self._conn()
        with self._errors("open"):
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                c.execute("BEGIN IMMEDIATE")
                try:  # re-check under the write lock: another process may be creating it too
                    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if not tables:
                        from crystalloop import __version__

                        for stmt in _SCHEMA:
                            c.execute(stmt)
                        c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                            ("application", "crystalloop"),
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("created", _iso(_now())),
                            ("created_by", f"crystalloop {__version__}"),
                        ])
                        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
                tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                shown = ", ".join(sorted(tables)[:8])
                raise StoreError(f"{self.path} is an SQLite database but not a crystalloop experiment store "
                                 f"(no 'meta' table; it has: {shown})")
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") != "crystalloop":
            raise StoreError(f"{self.path} is not a crystalloop experiment store "
                             f"(meta.application = {meta.get('application')!r}, expected 'crystalloop')")
        try:
            version = int(meta["schema_version"])
        except (KeyError, ValueError):
            raise StoreError(f"Experiment store {self.path} is corrupt: meta.schema_version is "
                             f"{meta.get('schema_version')!r}, expected an integer") from None
        if version > SCHEMA_VERSION:
            from crystalloop import __version__

            raise StoreError(f"Experiment store {self.path} has schema version {version}, newer than "
                             f"version {SCHEMA_VERSION} understood by crystalloop {__version__}; "
                             f"upgrade crystalloop to open it")
        if version < 1:
            raise StoreError(f"Experiment store {self.path} has invalid schema version {version}")
        self.schema_version = version

    def check(self) -> None:
        """Run SQLite's ``PRAGMA integrity_check``; raise :class:`StoreError` listing problems."""
        rows = self._query("PRAGMA integrity_check", action="check integrity")
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            raise StoreError(f"Experiment store {self.path} failed the integrity check: "
                             + "; ".join(problems[:5]))

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
            recipe_json, recipe_type = _to_json(recipe.to_dict(), "recipe"), "ThermocycleProfile"
        elif isinstance(recipe, Mapping):
            recipe_json, recipe_type = _to_json(dict(recipe), "recipe"), "dict"
        else:
            raise ConfigError(f"recipe must be a ThermocycleProfile, a dict or None, got {type(recipe).__name__}")
        if not isinstance(backend, str):
            raise ConfigError(f"backend must be a URL string such as 'sim://', got {backend!r}")
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                    or not -(2**63) <= int(seed) < 2**63:
                raise ConfigError(f"seed must be a 64-bit integer or None, got {seed!r}")
            seed = int(seed)
        kind = _name(kind, "kind")
        if meta is not None and not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a dict or None, got {type(meta).__name__}")
        meta_json = _to_json(dict(meta or {}), "meta")
        now = _iso(_now())
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
        if c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (_iso(_now()), run_id)).rowcount == 0:
            raise self._no_run(run_id)

    def _no_run(self, run_id: int) -> StoreError:
        n = self._conn().execute("SELECT count(*), min(id), max(id) FROM runs").fetchone()
        have = f"it has runs {n[1]}..{n[2]}" if n[0] else "it has no runs"
        return StoreError(f"Run {run_id} not found in experiment store {self.path} ({have})")

    def heartbeat(self, run_id: int) -> None:
        """Tell readers the writer of ``run_id`` is alive (every ``log_*`` call does this too)."""
        with self._write("update the heartbeat") as c:
            self._touch(c, _run_id(run_id))

    def finish_run(self, run_id: int, status: str = "completed", reason: str | None = None) -> None:
        """End a running run with a final status and an optional reason (why it failed or was aborted).

        Raises
        ------
        ConfigError
            ``status`` is not one of completed, failed, aborted, interrupted.
        StoreError
            The run does not exist or has already finished.
        """
        run_id = _run_id(run_id)
        if status not in RUN_STATUSES[1:]:
            raise ConfigError(f"status must be one of {list(RUN_STATUSES[1:])}, got {status!r}")
        if reason is not None and not isinstance(reason, str):
            raise ConfigError(f"reason must be a string or None, got {reason!r}")
        now = _iso(_now())
        with self._write("finish a run") as c:
            row = c.execute("SELECT status, writer_pid, writer_host, writer_start FROM runs WHERE id = ?",
                            (run_id,)).fetchone()
            if row is None:
                raise self._no_run(run_id)
            me = (row[1], row[2], row[3]) == (os.getpid(), self._host, self._start_token)
            if row[0] != "running" and not (row[0] == "interrupted" and me):
                raise StoreError(f"Run {run_id} in {self.path} has already finished with status "
                                 f"'{row[0]}'; only a running run can be finished")
            c.execute("UPDATE runs SET status = ?, ended = ?, reason = ?, heartbeat = ? WHERE id = ?",
                      (status, now, reason, now, run_id))

    def delete_run(self, run_id: int) -> None:
        """Delete a finished run with its samples, images records, CQAs and events (files stay on disk)."""
        run_id = _run_id(run_id)
        with self._write("delete a run") as c:
            row = c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._no_run(run_id)
            if row[0] == "running":
                raise StoreError(f"Run {run_id} in {self.path} is still running; finish it before deleting")
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def recover(self) -> list[int]:
        """Mark ``running`` runs whose writer is dead as ``interrupted``; return their ids.

        A writer on this host is dead when its process id no longer runs (or now belongs
        to a process started at another time, i.e. the PID was reused). A writer on another
        host, or where liveness cannot be checked, is dead when its heartbeat is older than
        ``stale_after_s``. A live concurrent writer in another process is left alone.
        """
        rows = self._query("SELECT id, writer_pid, writer_host, writer_start, heartbeat FROM runs "
                           "WHERE status = 'running'", action="look for interrupted runs")
        now = _now()
        dead = []
        for run_id, pid, host, start, beat in rows:
            alive = _pid_alive(pid, start) if (pid is not None and host == self._host) else None
            if alive is None:
                age = (now - datetime.fromisoformat(beat)).total_seconds() if beat else math.inf
                if age <= self.stale_after_s:
                    continue
                why = (f"no heartbeat from writer process {pid} on {host} for {age:.0f} s "
                       f"(stale_after_s={self.stale_after_s:g})")
            elif alive:
                continue
            else:
                why = f"writer process {pid} on {host} ended without finishing the run"
            dead.append((run_id, beat, why))
        marked = []
        if dead:
            with self._write("mark interrupted runs") as c:
                for run_id, beat, why in dead:
                    cur = c.execute(
                        "UPDATE runs SET status = 'interrupted', ended = ?, reason = ? "
                        "WHERE id = ? AND status = 'running' AND heartbeat IS ?",
                        (beat, f"{why}; last heartbeat {beat}; found by {socket.gethostname()} "
                               f"pid {os.getpid()} at {_iso(now)}", run_id, beat))
                    if cur.rowcount:
                        marked.append(run_id)
        return marked

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
        run_id = _run_id(run_id)
        rows = self._sample_rows(run_id, _sample_tuples(samples))
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
            yield (run_id, _number(t, f"sample {i}: time_s", finite=True), _name(ch, f"sample {i}: channel"),
                   _number(v, f"sample {i} ({ch!r}): value", allow_none=True))

    def log_image(self, run_id: int, time_s: float, path: str | os.PathLike, pixel_size_um: float,
                  meta: Mapping[str, Any] | None = None) -> int:
        """Record an image file taken at ``time_s``; return its id.

        A path inside the store's directory is kept relative to it, so the project folder
        can be moved; :meth:`images` gives absolute paths.
        """
        run_id = _run_id(run_id)
        t = _number(time_s, "time_s", finite=True)
        px = _number(pixel_size_um, "pixel_size_um", finite=True)
        if px <= 0:
            raise ConfigError(f"pixel_size_um must be > 0 µm, got {px!r}")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"path must be a file path, got {path!r}")
        if meta is not None and not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a dict or None, got {type(meta).__name__}")
        meta_json = _to_json(dict(meta or {}), "image meta")
        with self._write("log an image") as c:
            self._touch(c, run_id)
            cur = c.execute("INSERT INTO images (run_id, time_s, path, pixel_size_um, meta) VALUES (?, ?, ?, ?, ?)",
                            (run_id, t, self._rel(path), px, meta_json))
            image_id = int(cur.lastrowid)
        return image_id

    def log_cqas(self, run_id: int, cqas: Mapping[str, float] | pd.Series) -> None:
        """Record CQAs of a run (``{"D50_um": 182.5, ...}``); a name logged again is replaced."""
        run_id = _run_id(run_id)
        if not hasattr(cqas, "items"):
            raise ConfigError(f"cqas must be a mapping of name to value, got {type(cqas).__name__}")
        rows = [(run_id, _name(k, "CQA name"), _number(v, f"CQA {k!r}", allow_none=True)) for k, v in cqas.items()]
        with self._write("log CQAs") as c:
            self._touch(c, run_id)
            c.executemany("INSERT INTO cqas (run_id, name, value) VALUES (?, ?, ?) "
                          "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value", rows)

    def log_event(self, run_id: int, time_s: float, level: str, message: str) -> int:
        """Record an event (``level`` one of debug, info, warning, error, critical); return its id."""
        run_id = _run_id(run_id)
        t = _number(time_s, "time_s", finite=True)
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
        name = _name(name, "model name")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"path must be a file or directory path, got {path!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigError(f"metadata must be a dict or None, got {type(metadata).__name__}")
        md = _to_json(dict(metadata or {}), "model metadata")
        with self._write("save a model") as c:
            model_id = int(c.execute("INSERT INTO models (name, path, metadata, created) VALUES (?, ?, ?, ?)",
                                     (name, self._rel(path), md, _iso(_now()))).lastrowid)
        return model_id

    def _rel(self, path: str | os.PathLike) -> str:
        p = Path(path).expanduser().resolve()  # a relative path is relative to the working directory
        try:
            return p.relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return str(p)

    def _abs(self, stored: str) -> str:
        p = Path(stored)
        return str(p if p.is_absolute() else self.path.parent.resolve() / p)

    # ---- queries --------------------------------------------------------------------------

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
        cols = list(_RUN_COLUMNS)
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
        run_id = _run_id(run_id)
        rows = self._query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,), "read a run")
        if not rows:
            raise self._no_run(run_id)
        return _tidy_runs(pd.DataFrame(rows, columns=_RUN_COLUMNS)).iloc[0].to_dict()

    def run_recipe(self, run_id: int) -> ThermocycleProfile | dict[str, Any] | None:
        """The recipe a run was started with: a ThermocycleProfile, a dict, or None."""
        run_id = _run_id(run_id)
        rows = self._query("SELECT recipe, recipe_type FROM runs WHERE id = ?", (run_id,), "read a recipe")
        if not rows:
            raise self._no_run(run_id)
        recipe, rtype = _from_json(rows[0][0]), rows[0][1]
        if rtype == "ThermocycleProfile":
            return ThermocycleProfile.from_dict(recipe, source=f"{self.path} run {run_id} recipe")
        return recipe

    def _require_run(self, run_id: Any) -> int:
        run_id = _run_id(run_id)
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
                _name(ch, "channel")
            sql += f" AND channel IN ({', '.join('?' * len(wanted))})"
            params += wanted
        if start_s is not None:
            sql += " AND time_s >= ?"
            params.append(_number(start_s, "start_s"))
        if end_s is not None:
            sql += " AND time_s <= ?"
            params.append(_number(end_s, "end_s"))
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
        df["meta"] = [_from_json(m) for m in df["meta"]]
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
            sql, params = sql + " WHERE name = ?", [_name(name, "model name")]
        df = pd.DataFrame(self._query(sql + " ORDER BY id", params, "read models"),
                          columns=["model_id", "name", "path", "metadata", "created"])
        df["path"] = [self._abs(p) for p in df["path"]]
        df["metadata"] = [_from_json(m) for m in df["metadata"]]
        df["created"] = pd.to_datetime(df["created"], utc=True, format="ISO8601")
        return df.astype({"model_id": "int64"})

    def latest_model(self, name: str) -> dict[str, Any]:
        """The most recently saved model record called ``name`` (a :meth:`models` row as a dict)."""
        df = self.models(name)
        if df.empty:
            known = sorted(set(self.models()["name"]))
            raise StoreError(f"No model named {name!r} in experiment store {self.path} (models: {known})")
        return df.iloc[-1].to_dict()

    # ---- export -------------------------------------------------------------------------------

    def export(self, run_id: int, out_dir: str | os.PathLike, fmt: str = "csv", *,
               plot: bool = False) -> dict[str, Path]:
        """Write one run to ``out_dir/run_<id>/`` for use outside crystalloop.

        Files: ``run.json`` (the run record with recipe and meta), and ``samples``,
        ``samples_wide``, ``images``, ``cqas``, ``events`` as CSV or Parquet (JSON-valued
        columns as JSON text). CSV floats are written with full precision; read them back
        with ``pd.read_csv(..., float_precision="round_trip")`` for bit-exact values.
        With ``plot``, also ``samples.png``: every channel against time (:func:`plot_samples`).

        Returns
        -------
        dict
            Table name → path written.
        """
        fmt = str(fmt).lower()
        if fmt not in ("csv", "parquet"):
            raise ConfigError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
        run_id = self._require_run(run_id)
        dest = Path(out_dir) / f"run_{run_id}"
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"Cannot create export directory {dest}: {e.strerror or e}") from None
        record = self.run(run_id)
        for k in ("started", "ended", "heartbeat"):
            record[k] = None if pd.isna(record[k]) else record[k].isoformat()
        record["seed"] = None if pd.isna(record["seed"]) else int(record["seed"])
        images = self.images(run_id)
        images["meta"] = [json.dumps(m) for m in images["meta"]]
        tables = {
            "samples": self.samples(run_id),
            "samples_wide": self.samples(run_id, wide=True),
            "images": images,
            "cqas": self.cqas(run_id)[["name", "value"]],
            "events": self.events(run_id),
        }
        written = {"run": dest / "run.json"}
        try:
            written["run"].write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")
            for name, df in tables.items():
                f = dest / f"{name}.{fmt}"
                if fmt == "csv":
                    df.to_csv(f, index=False)
                else:
                    df.to_parquet(f, index=False)
                written[name] = f
            if plot:
                written["plot"] = plot_samples(tables["samples_wide"], dest / "samples.png",
                                               title=f"{self.path.name} run {run_id} ({record['status']})")
        except OSError as e:
            raise StoreError(f"Cannot write export of run {run_id} to {dest}: {e.strerror or e}") from None
        return written


def plot_samples(wide: pd.DataFrame, path: str | os.PathLike, *, title: str = "",
                 max_channels: int = 12) -> Path:
    """Plot a wide samples frame (``time_s`` + one column per channel) as stacked panels; save a PNG.

    Parameters
    ----------
    wide : DataFrame
        As returned by ``ExperimentStore.samples(run_id, wide=True)``.
    path : str or Path
        PNG file to write.
    title : str
        Figure title.
    max_channels : int
        At most this many channels are drawn (the first ones in column order).

    Returns
    -------
    Path
        The file written.
    """
    from crystalloop._plotting import pyplot

    plt = pyplot()

    if "time_s" not in wide.columns:
        raise ConfigError(f"plot_samples needs a 'time_s' column, got columns {list(wide.columns)}")
    chans = [c for c in wide.columns if c != "time_s"][:max_channels]
    n = max(len(chans), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n + 0.8), sharex=True, squeeze=False)
    t_min = wide["time_s"].to_numpy(dtype=float) / 60.0
    for ax, ch in zip(axes[:, 0], chans, strict=False):
        y = wide[ch].to_numpy(dtype=float)
        ok = np.isfinite(y)
        ax.plot(t_min[ok], y[ok], lw=1.0, marker="." if ok.sum() < 50 else None)
        ax.set_ylabel(ch, fontsize=8)
        ax.grid(alpha=0.3)
    if not chans:
        axes[0, 0].text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("time (min)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _sample_tuples(samples: Any) -> Iterable[Any]:
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


def _tidy_runs(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"id": "run_id"})
    for k in ("started", "ended", "heartbeat"):
        df[k] = pd.to_datetime(df[k], utc=True, format="ISO8601")
    df["seed"] = df["seed"].astype("Int64")
    df["writer_pid"] = df["writer_pid"].astype("Int64")
    df["run_id"] = df["run_id"].astype("int64")
    df["recipe"] = [_from_json(r) for r in df["recipe"]]
    df["meta"] = [_from_json(m) for m in df["meta"]]
    return df
