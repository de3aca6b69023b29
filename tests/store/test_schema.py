"""Tests of crystalloop.store opening: schema, identity, versions, corrupt files, bad arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_helpers import PROFILE, raw_sqlite

from crystalloop.errors import ConfigError, StoreError
from crystalloop.store import SCHEMA_VERSION, ExperimentStore, default_store_path


@pytest.fixture
def store(tmp_path):
    """A fresh store ``project.db`` in the test's temporary folder, closed afterwards."""
    s = ExperimentStore(tmp_path / "project.db")
    yield s
    s.close()

# ---- opening and schema ----------------------------------------------------------------------


def test_new_store_has_schema_wal_and_identity(tmp_path):
    path = tmp_path / "sub" / "dir" / "p.db"  # parent directories are created
    with ExperimentStore(path) as s:
        assert s.path == path and s.schema_version == SCHEMA_VERSION
    c = raw_sqlite(path)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA application_id").fetchone()[0] == 0x43524C50
    meta = dict(c.execute("SELECT key, value FROM meta"))
    assert meta["application"] == "crystalloop" and meta["schema_version"] == str(SCHEMA_VERSION)
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "runs", "samples", "images", "cqas", "events", "models"} <= tables


def test_directory_path_means_default_file_and_env_default(tmp_path, monkeypatch):
    with ExperimentStore(tmp_path) as s:
        assert s.path == tmp_path / "crystalloop.db"
    monkeypatch.setenv("CRYSTALLOOP_STORE", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"
    monkeypatch.delenv("CRYSTALLOOP_STORE")
    assert default_store_path() == Path("crystalloop.db")


def test_data_persists_across_reopen(tmp_path):
    path = tmp_path / "p.db"
    with ExperimentStore(path) as s:
        run = s.start_run(PROFILE, seed=7)
        s.log_samples(run, [(1.0, "T_reactor_c", 55.5)])
        s.finish_run(run)
    with ExperimentStore(path, create=False) as s:
        assert s.run(run)["status"] == "completed"
        assert s.samples(run)["value"].tolist() == [55.5]
        assert s.run_recipe(run) == PROFILE



# ---- error paths -----------------------------------------------------------------------------


def test_not_a_database(tmp_path):
    p = tmp_path / "notes.db"
    p.write_bytes(b"this is a lab notebook, not a database" * 200)
    with pytest.raises(StoreError, match=r"notes\.db is not a crystalloop experiment store \(not an SQLite database\)"):
        ExperimentStore(p)


def test_foreign_sqlite_database(tmp_path):
    p = tmp_path / "other.db"
    with raw_sqlite(p) as c:
        c.execute("CREATE TABLE measurements (x REAL)")
    with pytest.raises(StoreError, match=r"other\.db is an SQLite database but not a crystalloop .*measurements"):
        ExperimentStore(p)


def test_newer_schema_refused(tmp_path):
    p = tmp_path / "future.db"
    ExperimentStore(p).close()
    with raw_sqlite(p) as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=rf"future\.db has schema version {SCHEMA_VERSION + 1}, newer .* upgrade"):
        ExperimentStore(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "broken.db"
    with ExperimentStore(p) as s:
        s.log_samples(s.start_run(), [(float(i), "x", float(i)) for i in range(2000)])
    with raw_sqlite(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(p.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the schema page
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"broken\.db is corrupt .*\.recover"):
        ExperimentStore(p)


def test_integrity_check_reports_damage(tmp_path):
    p = tmp_path / "damaged.db"
    with ExperimentStore(p) as s:
        s.log_samples(s.start_run(), [(float(i), "x", float(i)) for i in range(5000)])
        s.check()
    with raw_sqlite(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = c.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(p.read_bytes())
    data[-3 * page:-page] = b"\x00\xff" * page  # trash two pages of sample/index data
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged\.db (failed the integrity check|is corrupt)"):
        with ExperimentStore(p) as s:
            s.check()


def test_unwritable_or_missing_locations(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"Cannot create the directory .*a_file/sub for experiment store"):
        ExperimentStore(blocker / "sub" / "p.db")
    with pytest.raises(StoreError, match=r"No experiment store at .*missing\.db: the file does not exist"):
        ExperimentStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory(tmp_path):  # pragma: no cover - CI runs as a normal user
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=r"ro/p\.db"):
            ExperimentStore(ro / "p.db")
    finally:
        ro.chmod(0o700)


def test_bad_arguments(store):
    run = store.start_run()
    with pytest.raises(StoreError, match=rf"Run 99 not found in experiment store .*project\.db \(it has runs 1\.\.{run}\)"):
        store.log_samples(99, [(0.0, "a", 1.0)])
    with pytest.raises(StoreError, match="Run 99 not found"):
        store.samples(99)
    with pytest.raises(ConfigError, match=r"run_id must be an integer, got 1\.5"):
        store.samples(1.5)
    with pytest.raises(ConfigError, match=r"status must be one of \['completed', 'failed', 'aborted', 'interrupted'\], got 'done'"):
        store.finish_run(run, "done")
    with pytest.raises(ConfigError, match="recipe must be a ThermocycleProfile, a dict or None, got list"):
        store.start_run([1, 2])
    with pytest.raises(ConfigError, match=r"seed must be a 64-bit integer or None, got 1\.5"):
        store.start_run(seed=1.5)
    with pytest.raises(ConfigError, match="meta cannot be stored as JSON: object value"):
        store.start_run(meta={"x": object()})
    with pytest.raises(ConfigError, match="synchronous must be one of"):
        ExperimentStore(store.path, synchronous="sometimes")
    store.finish_run(run)
    with pytest.raises(StoreError, match=rf"Run {run} .* has already finished with status 'completed'"):
        store.finish_run(run, "failed")
    assert store.run(str(run))["status"] == "completed"  # CLI passes ids as text
    store.close()
    with pytest.raises(StoreError, match=r"project\.db is closed"):
        store.runs()
