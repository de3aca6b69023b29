"""Read-only access to an experiment store for the dashboard.

The dashboard never writes: every connection is opened with SQLite's ``mode=ro`` URI, so it
cannot create, migrate, recover or lock the file for writing. The store is in WAL mode, so
these readers never block the run that writes (and the writer never blocks them). Each
request opens its own short-lived connection: a store that is replaced, truncated or
corrupted while the server runs gives a clear :class:`~crystalloop.errors.StoreError` on
the next request instead of a stale answer.

The queries here are the ones a live view needs and :class:`~crystalloop.store.ExperimentStore`
does not offer: per-channel series for downsampling, and "everything after row N" for the
live stream (the table's ``rowid`` grows with every insert).
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from crystalloop.dashboard._downsample import DEFAULT_POINTS, downsample
from crystalloop.errors import CrystalloopError, StoreError, StoreNotFoundError
from crystalloop.store import RUN_STATUSES, schema_version_of

__all__ = ["StoreReader", "channel_group", "solubility_function", "ALARM_LEVELS"]

_SERIES_CACHE: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # downsampled series of finished runs
_SERIES_LOCK = threading.Lock()
_SERIES_CACHE_SIZE = 16

#: event levels shown as alarms (watchdog, safe state, device warnings)
ALARM_LEVELS = ("warning", "error", "critical")

_RUN_COLS = ("id", "kind", "status", "recipe", "recipe_type", "backend", "seed", "meta", "started", "ended",
             "reason", "heartbeat")

# channel -> (chart, label); other T_*_c channels go to the temperature chart, the rest to "other"
_KNOWN = {
    "T_ref_c": ("temperature", "recipe"),
    "T_set_c": ("temperature", "setpoint"),
    "T_target_c": ("temperature", "target"),
    "T_bath_c": ("temperature", "bath"),
    "T_jacket_c": ("temperature", "jacket"),
    "T_reactor_c": ("temperature", "reactor"),
    "conc_kg_kg": ("concentration", "concentration"),
    "csat_kg_kg": ("concentration", "solubility"),
    "supersaturation": ("other", "supersaturation"),
    "counts": ("counts", "counts"),
    "image_counts": ("counts", "image counts"),
    "transmissivity_pct": ("counts", "transmissivity (%)"),
}


def channel_group(channel: str) -> tuple[str, str]:
    """Chart (``temperature``, ``concentration``, ``counts``, ``other``) and legend label of a channel."""
    if channel in _KNOWN:
        return _KNOWN[channel]
    if channel.startswith("T_") and channel.endswith("_c"):
        return "temperature", channel[2:-2].replace("_", " ")
    if channel.startswith("csat") or channel.startswith("solubility"):
        return "concentration", channel
    if channel.startswith("conc"):
        return "concentration", channel
    return "other", channel


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


class StoreReader:
    """Read-only view of one experiment store file.

    Parameters
    ----------
    path : str or Path
        The store (a directory means ``path / "crystalloop.db"``, as for
        :class:`~crystalloop.store.ExperimentStore`).
    timeout_s : float
        How long a read waits if SQLite reports the file busy (a checkpoint in progress).

    Notes
    -----
    Every method opens and closes its own connection (:meth:`connect`), so one reader serves
    many threads. Errors are :class:`~crystalloop.errors.StoreError` naming the file.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "crystalloop.db"
        self.path = p
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"StoreReader({str(self.path)!r})"

    # ---- connections ----------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A validated read-only connection, closed on exit; SQLite errors become StoreErrors."""
        conn = self.open()
        try:
            yield conn
        finally:
            conn.close()

    def open(self) -> sqlite3.Connection:
        """A validated read-only connection that the caller closes (e.g. one per live stream)."""
        if not self.path.exists():
            raise StoreNotFoundError(f"No experiment store at {self.path}")
        if not self.path.is_file():
            raise StoreError(f"Experiment store path {self.path} exists but is not a regular file")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        with self.errors("open"):
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout_s, check_same_thread=False)
        try:
            with self.errors("open"):
                self._validate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def data_version(self, conn: sqlite3.Connection) -> int:
        """SQLite's ``PRAGMA data_version`` of ``conn``: changes when another connection commits."""
        return int(self._q(conn, "PRAGMA data_version", (), "watch for changes")[0][0])

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into StoreErrors that name the file and what was being done."""
        try:
            yield
        except sqlite3.Error as e:
            msg, p = str(e), self.path
            if "not a database" in msg:
                text = f"{p} is not a crystalloop experiment store (not an SQLite database)"
            elif "malformed" in msg or "corrupt" in msg:
                text = (f"Experiment store {p} is corrupt ({msg}) while trying to {action}; restore it from a "
                        f"backup or salvage it with `sqlite3 {p} .recover`")
            elif "unable to open" in msg:
                text = f"Cannot open experiment store {p} read-only: {msg}"
            elif "locked" in msg or "busy" in msg:
                text = (f"Experiment store {p} stayed busy for more than {self.timeout_s:g} s while trying to "
                        f"{action}")
            else:
                text = f"Experiment store {p}: cannot {action}: {msg}"
            raise StoreError(text) from e

    def _validate(self, conn: sqlite3.Connection) -> None:
        schema_version_of(conn, self.path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = {"runs", "samples", "images", "cqas", "events"} - tables
        if missing:
            raise StoreError(f"Experiment store {self.path} is corrupt: tables {sorted(missing)} are missing")

    def _q(self, conn: sqlite3.Connection, sql: str, params: tuple = (), action: str = "read") -> list[tuple]:
        with self.errors(action):
            return conn.execute(sql, params).fetchall()

    # ---- runs -------------------------------------------------------------------------------

    def run_ids(self) -> tuple[int | None, int | None, int]:
        """(smallest id, largest id, number of runs)."""
        with self.connect() as c:
            lo, hi, n = self._q(c, "SELECT min(id), max(id), count(*) FROM runs")[0]
        return lo, hi, n

    def kinds(self) -> list[str]:
        """Run kinds present in the store, sorted."""
        with self.connect() as c:
            return [r[0] for r in self._q(c, "SELECT DISTINCT kind FROM runs ORDER BY kind")]

    def runs(self, *, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, with recipe summary, progress, counts, alarms and CQAs."""
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = (f"SELECT {', '.join(_RUN_COLS)} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC")
        with self.connect() as c:
            rows = self._q(c, sql, tuple(params), "list runs")
            out = [self._run_record(c, row, full=False) for row in rows]
        return out

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run's record with its CQAs, channels and counts; None if there is no such run."""
        with self.connect() as c:
            rows = self._q(c, f"SELECT {', '.join(_RUN_COLS)} FROM runs WHERE id = ?", (int(run_id),), "read a run")
            return self._run_record(c, rows[0], full=True) if rows else None

    def _run_record(self, c: sqlite3.Connection, row: tuple, *, full: bool) -> dict[str, Any]:
        r = dict(zip(_RUN_COLS, row, strict=True))
        rid = r.pop("id")
        meta = _json(r["meta"]) or {}
        recipe = _json(r["recipe"])
        rec: dict[str, Any] = {"run_id": rid, **{k: r[k] for k in ("kind", "status", "backend", "seed", "started",
                                                                    "ended", "reason", "heartbeat")}}
        rec["meta"] = meta if isinstance(meta, dict) else {"meta": meta}
        rec["recipe"] = recipe
        rec["controller"] = rec["meta"].get("controller")
        rec["campaign_run"] = rec["meta"].get("campaign_run")
        rec.update(self._recipe_summary(recipe, r["recipe_type"]))
        last = self._q(c, "SELECT max(time_s) FROM samples WHERE run_id = ? AND channel = ?", (rid, "T_reactor_c"))[0][0]
        if last is None:
            last = self._q(c, "SELECT max(time_s) FROM samples WHERE rowid = (SELECT max(rowid) FROM samples "
                              "WHERE run_id = ?)", (rid,))[0][0]
        rec["last_time_s"] = _finite(last)
        bt = rec.get("batch_time_min")
        if rec["status"] == "completed":
            rec["progress"] = 1.0
        elif bt and last is not None:
            rec["progress"] = float(min(max(last / 60.0 / bt, 0.0), 1.0))
        else:
            rec["progress"] = None
        rec["n_samples"] = self._q(c, "SELECT count(*) FROM samples WHERE run_id = ?", (rid,))[0][0]
        rec["n_images"] = self._q(c, "SELECT count(*) FROM images WHERE run_id = ?", (rid,))[0][0]
        lv = dict(self._q(c, "SELECT level, count(*) FROM events WHERE run_id = ? GROUP BY level", (rid,)))
        rec["n_events"] = int(sum(lv.values()))
        rec["n_alarms"] = int(sum(lv.get(k, 0) for k in ALARM_LEVELS))
        last = self._q(c, f"SELECT message FROM events WHERE run_id = ? AND level IN ({', '.join('?' * len(ALARM_LEVELS))}) "
                          "ORDER BY id DESC LIMIT 1", (rid, *ALARM_LEVELS)) if rec["n_alarms"] else []
        rec["last_alarm"] = last[0][0] if last else None
        rec["cqas"] = {n: _finite(v) for n, v in self._q(c, "SELECT name, value FROM cqas WHERE run_id = ? "
                                                             "ORDER BY rowid", (rid,))}
        if full:
            rec["channels"] = [x[0] for x in self._q(c, "SELECT DISTINCT channel FROM samples WHERE run_id = ? "
                                                        "ORDER BY channel", (rid,))]
        return rec

    @staticmethod
    def _recipe_summary(recipe: Any, rtype: str | None) -> dict[str, Any]:
        if not isinstance(recipe, dict):
            return {"recipe_name": None, "recipe_text": "-", "batch_time_min": None}
        name = recipe.get("name") or None
        if rtype != "ThermocycleProfile":
            return {"recipe_name": name, "recipe_text": name or "custom", "batch_time_min": None}
        from crystalloop.profiles import ThermocycleProfile

        try:
            prof = ThermocycleProfile.from_dict(recipe, source="stored recipe")
        except Exception as e:  # noqa: BLE001 - an old or hand-edited recipe: shown, not fatal
            return {"recipe_name": name, "recipe_text": f"unreadable recipe ({type(e).__name__})",
                    "batch_time_min": None}
        segs = " → ".join(f"{s.target_c:g} °C" for s in prof.segments)
        text = (f"{prof.c0_mg_g:g} mg/g, seeds {prof.seed_loading:g}, {prof.t_start_c:g} °C → {segs}"
                f" ({prof.batch_time_min / 60:.1f} h)")
        return {"recipe_name": name, "recipe_text": text, "batch_time_min": float(prof.batch_time_min)}

    # ---- samples ----------------------------------------------------------------------------

    def series(self, run_id: int, *, n_out: int = DEFAULT_POINTS) -> dict[str, Any]:
        """Every channel of a run downsampled to at most ``n_out`` points (extremes kept).

        Returns ``{"channels": {name: {"t": [...], "y": [...], "n": raw count, "group", "label"}},
        "tracking_error": {"t", "y", "reference"} or None, "after": rowid of the last sample read}``.
        A finished run's result is kept in a small in-process cache (keyed by the file, the run,
        its end time and sample count), so reopening a long run costs one count query.
        """
        rid = int(run_id)
        out: dict[str, Any] = {}
        raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with self.connect() as c:
            rec = self._q(c, "SELECT recipe, recipe_type, status, ended, backend FROM runs WHERE id = ?", (rid,),
                          "read a run")
            profile = _profile(*rec[0][:2]) if rec else None
            after = self._q(c, "SELECT max(rowid) FROM samples")[0][0] or 0
            key = None
            if rec and rec[0][2] != "running":  # a finished run no longer changes: its series is cached
                st = self.path.stat()
                n = self._q(c, "SELECT count(*) FROM samples WHERE run_id = ?", (rid,))[0][0]
                key = (str(self.path.resolve()), st.st_dev, st.st_ino, rid, rec[0][3], n, int(n_out))
                with _SERIES_LOCK:
                    hit = _SERIES_CACHE.get(key)
                    if hit is not None:
                        _SERIES_CACHE.move_to_end(key)
                        return {**hit, "after": int(after)}
            chans = [x[0] for x in self._q(c, "SELECT DISTINCT channel FROM samples WHERE run_id = ?", (rid,))]
            for ch in sorted(chans):
                rows = self._q(c, "SELECT time_s, value FROM samples WHERE run_id = ? AND channel = ? AND rowid <= ? "
                                  "ORDER BY time_s", (rid, ch, after), "read samples")
                a = np.array(rows, dtype=np.float64).reshape(-1, 2)
                t, y = a[:, 0], a[:, 1]
                if ch in ("T_reactor_c", "T_ref_c", "T_set_c"):
                    raw[ch] = (t, y)
                ts, ys = downsample(t, y, n_out)
                grp, label = channel_group(ch)
                out[ch] = {"t": ts.tolist(), "y": ys.tolist(), "n": int(len(t)), "group": grp, "label": label}
        sol = solubility_function(rec[0][4], rec[0][0], rec[0][1]) if rec else None
        has_conc = any(channel_group(ch)[0] == "concentration" for ch in out)
        if (sol is not None and has_conc and "T_reactor_c" in raw
                and not any(channel_group(ch)[1] == "solubility" for ch in out)):
            tr, yr = raw["T_reactor_c"]
            ts, ys = downsample(tr, yr, n_out)
            out["csat_kg_kg"] = {"t": ts.tolist(), "y": [sol(v) for v in ys], "n": int(len(tr)),
                                 "group": "concentration", "label": "solubility", "computed": True}
        res = {"channels": out, "tracking_error": _tracking_error(raw, n_out, profile), "after": int(after)}
        if key is not None:
            with _SERIES_LOCK:
                _SERIES_CACHE[key] = res
                while len(_SERIES_CACHE) > _SERIES_CACHE_SIZE:
                    _SERIES_CACHE.popitem(last=False)
        return res

    def increment(self, conn: sqlite3.Connection, run_id: int, after: int, *, limit: int = 20000
                  ) -> tuple[dict[str, dict[str, list[float]]], int]:
        """Samples of ``run_id`` stored after row ``after`` (at most ``limit`` rows), by channel.

        Returns ``({channel: {"t": [...], "y": [...]}}, new_after)``. The scan uses the table's
        rowid order, so it costs only the new rows however long the run is.
        """
        top = self._q(conn, "SELECT max(rowid) FROM samples")[0][0] or 0
        rows = self._q(conn, "SELECT rowid, time_s, channel, value FROM samples WHERE rowid > ? AND rowid <= ? "
                             "AND +run_id = ? ORDER BY rowid LIMIT ?", (int(after), int(top), int(run_id), int(limit)),
                       "read new samples")
        if len(rows) < limit:
            new_after = max(int(after), int(top))  # every row up to ``top`` was committed when it was read
        else:
            new_after = int(rows[-1][0])
        by: dict[str, dict[str, list[float]]] = {}
        for _, t, ch, v in rows:
            if v is None or not math.isfinite(v):
                continue
            d = by.setdefault(ch, {"t": [], "y": []})
            d["t"].append(float(t))
            d["y"].append(float(v))
        return by, new_after

    # ---- images, events, CQAs ----------------------------------------------------------------

    def images(self, run_id: int, *, after_id: int = 0, conn: sqlite3.Connection | None = None) -> list[dict]:
        """Image records of a run (``image_id, time_s, path`` absolute, ``pixel_size_um, meta``)."""
        sql = ("SELECT id, time_s, path, pixel_size_um, meta FROM images WHERE run_id = ? AND id > ? "
               "ORDER BY time_s, id")
        if conn is None:
            with self.connect() as c:
                rows = self._q(c, sql, (int(run_id), int(after_id)), "read images")
        else:
            rows = self._q(conn, sql, (int(run_id), int(after_id)), "read images")
        return [{"image_id": i, "time_s": t, "path": self._abs(p), "pixel_size_um": px, "meta": _json(m)}
                for i, t, p, px, m in rows]

    def image(self, image_id: int) -> dict | None:
        """One image record by id, or None."""
        with self.connect() as c:
            rows = self._q(c, "SELECT id, run_id, time_s, path, pixel_size_um, meta FROM images WHERE id = ?",
                           (int(image_id),), "read an image")
        if not rows:
            return None
        i, rid, t, p, px, m = rows[0]
        return {"image_id": i, "run_id": rid, "time_s": t, "path": self._abs(p), "pixel_size_um": px, "meta": _json(m)}

    def events(self, run_id: int, *, after_id: int = 0, conn: sqlite3.Connection | None = None) -> list[dict]:
        """Events of a run after event id ``after_id``, in id order."""
        sql = "SELECT id, time_s, level, message FROM events WHERE run_id = ? AND id > ? ORDER BY id"
        if conn is None:
            with self.connect() as c:
                rows = self._q(c, sql, (int(run_id), int(after_id)), "read events")
        else:
            rows = self._q(conn, sql, (int(run_id), int(after_id)), "read events")
        return [{"event_id": i, "time_s": t, "level": lv, "message": m} for i, t, lv, m in rows]

    def status(self, conn: sqlite3.Connection, run_id: int) -> tuple[str | None, str | None]:
        """(status, reason) of a run; (None, None) if it was deleted."""
        rows = self._q(conn, "SELECT status, reason FROM runs WHERE id = ?", (int(run_id),), "read a run")
        return rows[0] if rows else (None, None)

    def cqas(self, run_id: int, conn: sqlite3.Connection) -> dict[str, float | None]:
        """CQAs of a run in logging order."""
        return {n: _finite(v) for n, v in self._q(conn, "SELECT name, value FROM cqas WHERE run_id = ? ORDER BY rowid",
                                                  (int(run_id),), "read CQAs")}

    def campaign_runs(self) -> list[dict[str, Any]]:
        """Runs of kind ``campaign`` with their meta and CQAs (oldest first)."""
        with self.connect() as c:
            rows = self._q(c, "SELECT id, status, meta FROM runs WHERE kind = 'campaign' ORDER BY id", (),
                           "list campaign runs")
            out = []
            for rid, st, m in rows:
                out.append({"run_id": rid, "status": st, "meta": _json(m) or {}, "cqas": self.cqas(rid, c)})
        return out

    def solubility(self, run_id: int) -> Any:
        """The run's solubility curve ``c*(T_c)`` (kg/kg) where known (:func:`solubility_function`)."""
        with self.connect() as c:
            rows = self._q(c, "SELECT backend, recipe, recipe_type FROM runs WHERE id = ?", (int(run_id),), "read a run")
        return solubility_function(*rows[0]) if rows else None

    def _abs(self, stored: str) -> str:
        p = Path(stored)
        return str(p if p.is_absolute() else self.path.parent.resolve() / p)

    @staticmethod
    def statuses() -> tuple[str, ...]:
        """Run statuses a store may hold."""
        return RUN_STATUSES


@functools.lru_cache(maxsize=32)
def solubility_function(backend: str | None, recipe: str | None, rtype: str | None) -> Any:
    """``c*(T_c)`` in kg/kg of a run's compound where the backend knows it, else None.

    A simulated backend (:func:`crystalloop.hardware.base.is_simulated`) is opened in memory
    with the run's recipe and asked through its :class:`~crystalloop.hardware.base.GroundTruth`;
    a real backend is never opened (the dashboard must not touch a thermostat), so real runs
    show a solubility only when they log a ``csat_kg_kg`` channel.
    """
    if not backend:
        return None
    from crystalloop.hardware.base import connect, is_simulated

    try:
        if not is_simulated(backend):
            return None
        cz = connect(backend, recipe=_profile(recipe, rtype))
    except (CrystalloopError, ValueError):
        return None
    try:
        gt = cz.ground_truth
        if gt is None:
            return None
        sol = gt.solubility_kg_kg
        sol(20.0)  # fails here, not in a page, if the model cannot answer
        return sol
    except Exception:  # noqa: BLE001 - no solubility curve: the page says "not recorded"
        return None
    finally:
        cz.close()


def _profile(recipe: str | None, rtype: str | None) -> Any:
    """The run's ThermocycleProfile, or None (no recipe, a dict recipe, an unreadable one)."""
    if rtype != "ThermocycleProfile" or recipe is None:
        return None
    from crystalloop.profiles import ThermocycleProfile

    try:
        return ThermocycleProfile.from_dict(json.loads(recipe), source="stored recipe")
    except Exception:  # noqa: BLE001 - shown without a recipe-based tracking error
        return None


def _tracking_error(raw: dict[str, tuple[np.ndarray, np.ndarray]], n_out: int, profile: Any = None
                    ) -> dict[str, Any] | None:
    """Reactor temperature minus the reference, at the reactor's sample times.

    The reference is the recipe's setpoint ``profile.setpoint_at(t)`` when the run has a
    ThermocycleProfile (the figure :func:`crystalloop.control.tracking_metrics` reports), else
    the logged ``T_ref_c`` (or ``T_set_c``) interpolated linearly.
    """
    if "T_reactor_c" not in raw:
        return None
    tr, yr = raw["T_reactor_c"]
    ok = np.isfinite(yr) & np.r_[np.diff(tr) != 0, True]  # a time logged twice: the last reading counts
    tr, yr = tr[ok], yr[ok]
    if tr.size == 0:
        return None
    if profile is not None:
        ref_name, ref = "recipe", profile.setpoint_at(tr)
    else:
        ref_name = "T_ref_c" if "T_ref_c" in raw else ("T_set_c" if "T_set_c" in raw else None)
        if ref_name is None:
            return None
        tf, yf = raw[ref_name]
        okf = np.isfinite(yf)
        tf, yf = tf[okf], yf[okf]
        if tf.size == 0:
            return None
        inside = (tr >= tf[0]) & (tr <= tf[-1])
        tr, yr = tr[inside], yr[inside]
        ref = np.interp(tr, tf, yf)
    err = yr - np.asarray(ref, dtype=float)
    if err.size == 0:
        return None
    ts, es = downsample(tr, err, n_out)
    return {"t": ts.tolist(), "y": es.tolist(), "reference": ref_name, "rms_c": float(np.sqrt(np.mean(err**2))),
            "max_abs_c": float(np.abs(err).max())}
