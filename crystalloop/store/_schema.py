"""Schema and opening: the table layout, per-thread connections, transactions, SQLite errors (private).

:class:`Connections` is the base of :class:`~crystalloop.store.ExperimentStore`: it owns the
file, one SQLite connection per thread (fresh ones after ``fork``), the write transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error), the translation of ``sqlite3``
errors into :class:`~crystalloop.errors.StoreError` messages that name the path and say what to
do, and the creation or check of the schema when a file is opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crystalloop.errors import StoreAccessError, StoreError, StoreNotFoundError
from crystalloop.store._values import iso, utc_now

SCHEMA_VERSION = 1
"""Version of the table layout written by this crystalloop; newer files are refused."""

APPLICATION_ID = 0x43524C50  # "CRLP" in the SQLite header: marks the file as a crystalloop store
DEFAULT_STORE_NAME = "crystalloop.db"
RUN_STATUSES = ("running", "completed", "failed", "aborted", "interrupted")
EVENT_LEVELS = ("debug", "info", "warning", "error", "critical")
SYNCHRONOUS = ("off", "normal", "full", "extra")

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

RUN_COLUMNS = ["id", "kind", "status", "started", "ended", "backend", "seed", "recipe", "recipe_type",
                "meta", "reason", "writer_pid", "writer_host", "writer_start", "heartbeat"]

_FORK_ORPHANS: list[sqlite3.Connection] = []  # connections inherited over fork: kept open, never touched


def default_store_path() -> Path:
    """The store used when none is given: ``$CRYSTALLOOP_STORE`` or ``./crystalloop.db``."""
    return Path(os.environ.get("CRYSTALLOOP_STORE") or DEFAULT_STORE_NAME)



def schema_version_of(conn: sqlite3.Connection, path: Any) -> int:
    """The schema version of the crystalloop store open on ``conn`` (file ``path``, for messages).

    Raises
    ------
    StoreError
        The database is not a crystalloop store (no ``meta`` table, another application), its
        version is not an integer, below 1, or newer than this crystalloop understands.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        shown = ", ".join(sorted(tables)[:8]) or "no tables"
        raise StoreError(f"{path} is an SQLite database but not a crystalloop experiment store "
                         f"(no 'meta' table; it has: {shown})")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("application") != "crystalloop":
        raise StoreError(f"{path} is not a crystalloop experiment store "
                         f"(meta.application = {meta.get('application')!r}, expected 'crystalloop')")
    try:
        version = int(meta["schema_version"])
    except (KeyError, ValueError):
        raise StoreError(f"Experiment store {path} is corrupt: meta.schema_version is "
                         f"{meta.get('schema_version')!r}, expected an integer") from None
    if version > SCHEMA_VERSION:
        from crystalloop import __version__

        raise StoreError(f"Experiment store {path} has schema version {version}, newer than "
                         f"version {SCHEMA_VERSION} understood by crystalloop {__version__}; "
                         f"upgrade crystalloop to open it")
    if version < 1:
        raise StoreError(f"Experiment store {path} has invalid schema version {version}")
    return version


class Connections:
    """Connections, transactions, error translation and schema of one store file (a base class).

    The subclass sets ``path``, ``timeout_s``, ``synchronous``, ``_lock``, ``_local``, ``_conns``,
    ``_pid``, ``_closed`` and ``_start_token`` before the first connection is made.
    """

    path: Path
    timeout_s: float
    synchronous: str
    schema_version: int
    _lock: threading.Lock
    _local: threading.local
    _conns: dict[threading.Thread, sqlite3.Connection]
    _pid: int
    _closed: bool
    _start_token: str | None

    def _on_fork(self) -> None:
        """Hook for state tied to the process (the writer identity); called in a forked child."""

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
            self._on_fork()
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

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into StoreErrors that name the path and say what to do."""
        try:
            yield
        except sqlite3.Error as e:
            msg = str(e)
            p = self.path
            cls = StoreAccessError if any(k in msg for k in ("not a database", "unable to open", "readonly",
                                                               "read-only")) else StoreError
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
                        f"{self.timeout_s:g} s while trying to {action}")
            else:
                text = f"Experiment store {p}: cannot {action}: {msg}"
            raise cls(text) from e

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

    def _open_schema(self) -> None:
        """Create the tables in an empty file, or check that the file is a store this version can read."""
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
                            ("created", iso(utc_now())),
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
            version = schema_version_of(c, self.path)
        self.schema_version = version

    def check(self) -> None:
        """Run SQLite's ``PRAGMA integrity_check``; raise :class:`StoreError` listing problems."""
        rows = self._query("PRAGMA integrity_check", action="check integrity")
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            raise StoreError(f"Experiment store {self.path} failed the integrity check: "
                             + "; ".join(problems[:5]))

    def _no_run(self, run_id: int) -> StoreError:
        n = self._conn().execute("SELECT count(*), min(id), max(id) FROM runs").fetchone()
        have = f"it has runs {n[1]}..{n[2]}" if n[0] else "it has no runs"
        return StoreNotFoundError(f"Run {run_id} not found in experiment store {self.path} ({have})")
