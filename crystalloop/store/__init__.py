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

The package's modules (all private; use :class:`ExperimentStore`): ``_schema`` (table layout,
opening, per-thread connections, transactions, SQLite error messages), ``_recovery`` (writer
process liveness, :meth:`ExperimentStore.recover`), ``_writers`` (runs and ``log_*``),
``_readers`` (DataFrame readers), ``_export`` (CSV/Parquet files of one run). Plots of run data
live with the area that produces runs: :func:`crystalloop.control.plots.plot_samples`.

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

from crystalloop.store._schema import (
    DEFAULT_STORE_NAME,
    EVENT_LEVELS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    default_store_path,
    schema_version_of,
)
from crystalloop.store._store import ExperimentStore

__all__ = [
    "ExperimentStore",
    "SCHEMA_VERSION",
    "RUN_STATUSES",
    "EVENT_LEVELS",
    "DEFAULT_STORE_NAME",
    "default_store_path",
    "schema_version_of",
]
