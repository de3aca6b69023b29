"""The :class:`ExperimentStore` class: the pieces of the store package behind one object (private)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from crystalloop.errors import ConfigError, StoreError, StoreNotFoundError
from crystalloop.store._export import Export
from crystalloop.store._schema import DEFAULT_STORE_NAME, SYNCHRONOUS
from crystalloop.store._values import check_number
from crystalloop.store._writers import Writers


class ExperimentStore(Export, Writers):
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

    The methods come from the package's modules: opening and schema (``_schema``), writer
    liveness and :meth:`recover` (``_recovery``), ``start_run``/``log_*``/``finish_run``
    (``_writers``), the DataFrame readers (``_readers``) and :meth:`export` (``_export``).
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
        self.timeout_s = check_number(timeout_s, "timeout_s", finite=True)
        self.stale_after_s = check_number(stale_after_s, "stale_after_s", finite=True)
        if self.timeout_s < 0 or self.stale_after_s <= 0:
            raise ConfigError(f"timeout_s must be >= 0 and stale_after_s > 0, got {timeout_s!r} and {stale_after_s!r}")
        if str(synchronous).lower() not in SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {list(SYNCHRONOUS)}, got {synchronous!r}")
        self.synchronous = str(synchronous).lower()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns = {}
        self._closed = False
        self._identify_writer()

        if not p.exists():
            if not create:
                raise StoreNotFoundError(f"No experiment store at {p}: the file does not exist")
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

    def __enter__(self) -> ExperimentStore:
        return self
