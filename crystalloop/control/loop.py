"""The run loop of one batch, as a class whose steps can be read and tested one by one.

:class:`RunLoop` executes a recipe or controller on an open
:class:`~crystalloop.hardware.base.Crystallizer`:

1. :meth:`~RunLoop.prepare` — safety layer, recipe check against the limits, controller,
   sensors; raises before anything is sent to a device or written to the store;
2. :meth:`~RunLoop.open_run` — the run's row in the store;
3. :meth:`~RunLoop.start` — thermostat status, circulator on, first readings, controller reset;
4. :meth:`~RunLoop.tick` — one instant: control when due (read, controller step, setpoint
   through the safety layer), sample every sensor when due (one store transaction), image
   when due; :meth:`~RunLoop.wait` sleeps on the backend's clock until the next due action;
5. :meth:`~RunLoop.stop` — on a fault, a signal or Ctrl-C: the thermostat to its safe state
   *first*, then the reason recorded;
6. :meth:`~RunLoop.finish` — ground-truth CQAs (simulated backends), the run's end in the
   store, the :class:`~crystalloop.control.result.RunResult`.

:meth:`~RunLoop.execute` runs them in order with the failure handling: SIGTERM and SIGHUP end
the run like Ctrl-C (``aborted``); any exception ends it ``failed`` with the reason. When the
store itself fails (a full disk), what could not be written is kept in memory, written at the
end if the store accepts writes again, and otherwise the run's end is printed on stderr.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop._plotting import save_png
from crystalloop.control._signals import RunTerminated, deferred_signals, stop_signals
from crystalloop.control.controller import Controller
from crystalloop.control.dnc import ImageCounter
from crystalloop.control.factory import make_controller
from crystalloop.control.options import RunOptions
from crystalloop.control.pid import Observation
from crystalloop.control.result import RunResult
from crystalloop.control.safety import SafeThermostat
from crystalloop.errors import ConfigError, CrystalloopError, StoreError, WatchdogError
from crystalloop.hardware.base import Crystallizer
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ThermocycleProfile

__all__ = ["RunLoop"]


class _Recorder:
    """Every sample, event and image in memory; samples committed to the store in batches.

    Samples are committed when they are read if ``commit_s`` wall seconds have passed since the
    last commit (every instant of a real-time run), otherwise with the next commit (a
    virtual-clock run commits about once per ``commit_s`` instead of once per instant); events,
    images and the run's end commit what is buffered first, so the store keeps their order.
    A :class:`~crystalloop.errors.StoreError` is raised once (it ends the run); from then on
    writes are kept in order and :meth:`flush` tries them again at the end of the run.
    """

    def __init__(self, store: Any, commit_s: float = 0.0) -> None:
        self.store = store
        self.commit_s = float(commit_s)
        self._buffer: list[tuple[float, str, float]] = []
        self._last_commit = -math.inf
        self.run_id: Any = None
        self.rows: list[tuple[float, str, float]] = []
        self.events: list[tuple[float, str, str]] = []
        self.images: list[Path] = []
        self.store_error: StoreError | None = None
        self._pending: list[tuple[str, tuple, dict]] = []

    def _write(self, method: str, *args: Any, **kw: Any) -> None:
        if self.store is None:
            return
        if self.store_error is not None:
            self._pending.append((method, args, kw))
            return
        try:
            getattr(self.store, method)(*args, **kw)
        except StoreError as e:
            self.store_error = e
            self._pending.append((method, args, kw))
            raise

    def flush(self) -> StoreError | None:
        """Write what the store refused earlier; return the error if it still refuses."""
        while self._pending:
            method, args, kw = self._pending[0]
            try:
                getattr(self.store, method)(*args, **kw)
            except StoreError as e:
                return e
            self._pending.pop(0)
        return None

    def samples(self, batch: list[tuple[float, str, float]]) -> None:
        batch = [(float(t), str(c), float(v)) for t, c, v in batch if v is not None and np.isfinite(v)]
        if not batch:
            return
        self.rows.extend(batch)
        self._buffer.extend(batch)
        if time.monotonic() - self._last_commit >= self.commit_s:
            self.commit()

    def commit(self) -> None:
        """Write the buffered samples (one transaction)."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._last_commit = time.monotonic()
            self._write("log_samples", self.run_id, batch)

    def event(self, t: float, level: str, message: str) -> None:
        self.events.append((float(t), level, message))
        self.commit()
        self._write("log_event", self.run_id, float(t), level, message)

    def image(self, t: float, path: Path, pixel_size_um: float, meta: dict) -> None:
        self.images.append(path)
        self.commit()
        self._write("log_image", self.run_id, float(t), str(path), pixel_size_um, meta=meta)

    def wide(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame({"time_s": pd.Series(dtype=float)})
        long = pd.DataFrame(self.rows, columns=["time_s", "channel", "value"])
        wide = long.pivot_table(index="time_s", columns="channel", values="value", aggfunc="last")
        wide = wide.reset_index()
        wide.columns.name = None
        return wide


def _next_due(due: float, period: float, now: float) -> float:
    """The next due time after ``now`` on the grid ``due + k * period`` (skips missed ticks
    when a real-time run fell behind)."""
    due += period
    if due <= now:
        due += math.ceil((now - due) / period + 1e-12) * period
        if due <= now:
            due += period
    return due


class RunLoop:
    """One batch on an open crystallizer (see the module docstring for the steps).

    Parameters
    ----------
    crystallizer : Crystallizer
        Open devices (not closed here).
    profile : ThermocycleProfile or None
        The recipe (required by the named controllers ``track``/``pid``/``nmpc``/``dnc``/``ssc``).
    options : RunOptions
    store : ExperimentStore, optional
        Where the run goes (None: memory only).
    image_root : path, optional
        Folder under which ``run_<id>/`` holds the images when ``options.image_dir`` is not
        set (default: the store's folder + ``images``, or ``./images``).
    offset_s : float
        Run time at which this run starts (a continuation starts where its run stopped).
    resumed_from : optional
        Id of the run this one continues.
    on_tick : callable(dict), optional
        Called after every control/sample instant with the latest values.
    """

    def __init__(self, crystallizer: Crystallizer, profile: ThermocycleProfile | None, options: RunOptions, *,
                 store: Any = None, image_root: str | Path | None = None, offset_s: float = 0.0,
                 resumed_from: Any = None, on_tick: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cz = crystallizer
        self.profile = profile
        self.options = options
        self.store = store
        self.image_root = Path(image_root) if image_root is not None else None
        self.offset_s = float(offset_s)
        self.resumed_from = resumed_from
        self.on_tick = on_tick
        self.rec = _Recorder(store, options.commit_interval_s)
        self.latest: dict[str, float] = {}
        self.status: str | None = None
        self.reason: str | None = None
        self.safe: SafeThermostat | None = None
        self.controller: Controller | None = None
        self.t0: float | None = None
        self.image_dir: Path | None = None
        self.batch: list = []

    # ------------------------------------------------------------------ 1. prepare
    def prepare(self) -> None:
        """Safety layer, recipe check, controller, sensors. Sends and stores nothing.

        Raises
        ------
        ConfigError, LimitError, SafetyError
            A recipe outside the limits, a controller that cannot be built, a sensor the
            controller needs that the backend lacks.
        """
        o, cz, profile = self.options, self.cz, self.profile
        if isinstance(o.controller, str) and profile is None:
            raise ConfigError(f"controller {o.controller!r} needs a recipe (a ThermocycleProfile, dict or YAML/JSON file)")
        eff = o.limits
        if profile is not None:
            rl = ThermostatLimits.for_recipe(profile, margin_c=o.recipe_margin_c)
            eff = rl if eff is None else eff.intersect(rl)
        self.safe = SafeThermostat(cz.thermostat, limits=eff, watchdog=o.watchdog, safe_state=o.safe_state)
        if profile is not None:  # refuse a recipe the device cannot follow before sending anything
            self.safe.check_profile(profile)
        if isinstance(o.controller, str):
            self.controller = make_controller(o.controller, profile, ground_truth=cz.ground_truth,
                                              dt_s=o.control_period_s, limits=self.safe.limits,
                                              **dict(o.controller_options))
        else:
            self.controller = o.controller
        self.end_s = o.duration_s if o.duration_s is not None else float(self.controller.duration_s)
        if not np.isfinite(self.end_s):
            raise ConfigError(f"controller {o.controller_name!r} has no natural end: pass duration_s")
        wanted = tuple(self.controller.measurements)
        self.needs_counts = "counts" in wanted
        self.needs_conc = "conc_kg_kg" in wanted
        self.counter = cz.counter
        if self.needs_conc and cz.concentration is None:
            raise ConfigError(f"controller {o.controller_name!r} needs a concentration sensor; backend "
                              f"{cz.url!r} has none")
        if o.counts_from == "camera":
            if cz.camera is None:
                raise ConfigError(f"counts_from='camera' needs a camera; backend {cz.url!r} has none")
            self.counter = ImageCounter(cz.camera)
        if self.needs_counts and self.counter is None:
            raise ConfigError(f"controller {o.controller_name!r} needs a particle counter; backend {cz.url!r} has "
                              f"none (use counts_from='camera' for image-based counts)")
        self.camera = cz.camera if o.image_interval_s else None

    # ------------------------------------------------------------------ 2. open the run
    def open_run(self) -> Any:
        """Create the run's row in the store (status ``running``); returns its id (None without a store)."""
        o, safe = self.options, self.safe
        if self.store is not None:
            lim = safe.limits
            meta = {"controller": o.controller_name, "counts_from": o.counts_from if self.needs_counts else None,
                    "sample_interval_s": o.sample_interval_s, "control_interval_s": o.control_period_s,
                    "image_interval_s": o.image_interval_s, "safe_state": o.safe_state,
                    "limits": {"min_c": lim.min_c, "max_c": lim.max_c, "max_rate_c_min": lim.max_rate_c_min},
                    **dict(o.meta)}
            if self.resumed_from is not None:
                meta.update(resumed_from=self.resumed_from, resumed_at_s=self.offset_s)
            seed = self.cz.meta.get("seed")
            self.rec.run_id = self.store.start_run(recipe=self.profile, backend=str(self.cz.url),
                                                   seed=int(seed) if isinstance(seed, (int, np.integer)) else None,
                                                   kind=o.kind or o.controller_name, meta=meta)
        run_id = self.rec.run_id
        if o.image_dir is not None:
            self.image_dir = Path(o.image_dir)
        else:
            root = self.image_root
            if root is None:
                root = (Path(self.store.path).parent if self.store is not None else Path(".")) / "images"
            self.image_dir = root / (f"run_{run_id}" if run_id is not None else "run")
        return run_id

    # ------------------------------------------------------------------ 3. start
    def _rt(self) -> float:
        """Run time, s."""
        return float(self.cz.clock.now()) - self.t0 + self.offset_s

    def start(self) -> Observation:
        """Thermostat status, circulator on, first readings logged, controller reset."""
        self.t0 = float(self.cz.clock.now())
        safe, rec = self.safe, self.rec
        safe.on_event = lambda t, level, msg: rec.event(t - self.t0 + self.offset_s, level, msg)
        self.controller.on_event = lambda t, level, msg: rec.event(t, level, msg)
        if self.resumed_from is not None:
            note = (" (the simulated plant restarts from its initial state: its state is not persisted)"
                    if self.cz.ground_truth is not None else "")
            rec.event(self.offset_s, "warning", f"continues run {self.resumed_from} from its last logged time "
                                                f"t={self.offset_s:.0f} s{note}")
        else:
            rec.event(0.0, "info", f"run started: controller {self.options.controller_name}, backend {self.cz.url}")
        self.next_ctrl = self.next_sample = self.offset_s
        self._tick_t = -math.inf
        self.next_image = self.offset_s if self.camera is not None else math.inf
        self.cam_failures = 0
        self.batch: list = []
        status0 = safe.status()
        if status0.alarms:
            rec.event(self._rt(), "warning", f"thermostat '{safe.name}' reports {'; '.join(status0.alarms)} at the start")
        if not status0.running:  # a circulator left stopped would not follow any setpoint
            safe.start()
            rec.event(self._rt(), "info", f"started the circulator of thermostat '{safe.name}'")
        obs = self._read(self.batch)
        cur = safe.get_setpoint()
        self.latest["T_set_c"] = cur
        obs = Observation(obs.time_s, obs.T_reactor_c, obs.T_jacket_c, cur, obs.counts, obs.conc_kg_kg)
        self.controller.reset(obs)
        rec.samples(self.batch)
        self.batch = []
        return obs

    def _read(self, batch: list) -> Observation:
        """Read the temperatures (and what the controller measures) into ``batch``."""
        safe, latest, off = self.safe, self.latest, self.offset_s - self.t0
        rb = safe.read_bath()
        batch.append((rb.time_s + off, "T_jacket_c", rb.value))
        rp = safe.read_process()
        batch.append((rp.time_s + off, "T_reactor_c", rp.value))
        latest["T_jacket_c"], latest["T_reactor_c"] = rb.value, rp.value
        n = c = math.nan
        if self.needs_counts:
            r = safe.call("read", self.counter.read, device=f"counter '{self.counter.name}'")
            n = latest[r.channel or "counts"] = r.value
            batch.append((r.time_s + off, r.channel or "counts", r.value))
        if self.needs_conc:
            dev = self.cz.concentration
            r = safe.call("read", dev.read, device=f"concentration sensor '{dev.name}'")
            c = latest[r.channel or "conc_kg_kg"] = r.value
            batch.append((r.time_s + off, r.channel or "conc_kg_kg", r.value))
        return Observation(self._rt(), rp.value, rb.value, latest.get("T_set_c", math.nan), n, c)

    # ------------------------------------------------------------------ 4. one instant
    def tick(self) -> bool:
        """Do what is due now (control, sampling, imaging); return True when the batch is over."""
        o, safe, ctrl, latest, rec = self.options, self.safe, self.controller, self.latest, self.rec
        t = self._tick_t = self._rt()
        self.batch = batch = []
        did = False
        if t >= self.next_ctrl - 1e-9:
            obs = self._read(batch)
            sp = ctrl.setpoint(obs)
            sent = safe.set_setpoint(sp)
            latest["T_set_c"], latest["T_target_c"] = sent, sp
            latest["T_ref_c"] = float(ctrl.reference(obs.time_s))
            batch += [(t, "T_set_c", sent), (t, "T_ref_c", latest["T_ref_c"])]
            self.next_ctrl = _next_due(self.next_ctrl, o.control_period_s, t)
            did = True
        else:
            latest["T_set_c"] = safe.update()
        if t >= self.next_sample - 1e-9:
            if not did:
                self._read(batch)
                batch.append((t, "T_set_c", latest["T_set_c"]))
                if "T_ref_c" in latest:
                    batch.append((t, "T_ref_c", float(ctrl.reference(t))))
            for role, dev in self.cz.sensors().items():
                if did and ((role == "counter" and self.needs_counts and o.counts_from == "counter")
                            or (role == "concentration" and self.needs_conc)):
                    continue  # already read for control at this instant
                r = safe.call("read", dev.read, device=f"{role} '{dev.name}'")
                latest[r.channel or role] = r.value
                batch.append((r.time_s - self.t0 + self.offset_s, r.channel or role, r.value))
            self.next_sample = _next_due(self.next_sample, o.sample_interval_s, t)
            did = True
            rec.samples(batch)  # what was read is kept even if the unit now reports a fault
            batch.clear()
            safe.check_health()  # a device alarm puts the unit in its safe state and ends the run
        rec.samples(batch)
        self.batch = []
        if t >= self.next_image - 1e-9:
            self._image(t)
        if did and self.on_tick is not None:
            self.on_tick({"time_s": t, "end_s": self.end_s, **latest})
        return t >= self.end_s - 1e-9 or ctrl.finished(Observation(
            t, latest.get("T_reactor_c", math.nan), latest.get("T_jacket_c", math.nan),
            latest.get("T_set_c", math.nan), latest.get("counts", math.nan), latest.get("conc_kg_kg", math.nan)))

    def _image(self, t: float) -> None:
        """Grab, save and log a frame; a camera fault is an error event, not the end of the run."""
        camera, rec, limit = self.camera, self.rec, self.safe.watchdog.max_failures
        self.next_image = _next_due(self.next_image, self.options.image_interval_s, t)
        try:
            frame = camera.grab()
            self.image_dir.mkdir(parents=True, exist_ok=True)
            path = self.image_dir / f"t{int(round(t)):07d}s.png"
            save_png(frame.image, path)
        except Exception as e:  # a camera fault must not end a crystallization
            self.cam_failures += 1
            rec.event(t, "error", f"image at t={t:.0f} s from camera '{camera.name}' failed "
                                  f"({self.cam_failures}/{limit}): {type(e).__name__}: {e}")
            if self.cam_failures >= limit:
                rec.event(t, "error", f"imaging stopped after {self.cam_failures} consecutive camera failures; "
                                      f"the run continues without images")
                self.camera, self.next_image = None, math.inf
        else:
            self.cam_failures = 0
            rec.image(t, path, frame.pixel_size_um, {"camera": camera.name})

    def wait(self) -> None:
        """Sleep on the backend's clock until the next due action."""
        t = self._rt()
        wake = min(self.next_ctrl, self.next_sample, self.next_image, self.end_s)
        if wake <= t:
            if t > self._tick_t:
                return  # a real clock moved on while the tick ran (slow device): the next tick is due now
            # never spin: every due action in tick() has moved its next time past the tick's time
            raise RuntimeError(f"runner scheduling error at t={t} s (next wake {wake} s)")
        self.cz.clock.sleep(max(wake - self._rt(), 0.0))

    # ------------------------------------------------------------------ 5. stop on a fault
    def stop(self, status: str, reason: str) -> None:
        """The thermostat to its safe state first (unless the watchdog already did), then the
        readings of the interrupted instant and the reason recorded (as far as the store allows)."""
        self.status, self.reason = status, reason
        if self.safe.tripped is None:
            self.safe.enter_safe_state(reason)
        try:
            self.rec.samples(self.batch)
            self.rec.commit()
        except StoreError:
            pass  # kept for the retry in finish()
        self.batch = []

    # ------------------------------------------------------------------ 6. finish
    def finish(self) -> RunResult:
        """Ground-truth CQAs, the run's end in the store, the result."""
        status = self.status or "completed"
        reason, rec, gt = self.reason, self.rec, self.cz.ground_truth
        cqas: dict[str, float] = {}
        if gt is not None:
            try:
                cqas = {k: float(v) for k, v in gt.cqas().items() if v is not None}
            except Exception as e:  # a failed run's state may not be worth its CQAs
                if status == "completed":
                    raise
                rec.events.append((self._rt(), "warning", f"no ground-truth CQAs: {type(e).__name__}: {e}"))
        t_end = self._rt() if self.t0 is not None else self.offset_s
        store_error = None
        try:
            rec.event(t_end, "info" if status == "completed" else "error",
                      f"run {status}" + (f": {reason}" if reason else ""))
            if cqas and status == "completed":
                rec._write("log_cqas", rec.run_id, cqas)
            rec._write("finish_run", rec.run_id, status=status, reason=reason)
        except StoreError:
            pass
        if rec.store_error is not None:
            err = rec.flush()
            if err is not None:
                store_error = f"{type(err).__name__}: {err}"
                print(f"crystalloop: run {rec.run_id} {status}" + (f": {reason}" if reason else "")
                      + f"; the store could not record it ({store_error}); {len(rec.rows)} samples kept in memory",
                      file=sys.stderr, flush=True)
        return RunResult(
            run_id=rec.run_id, status=status, reason=reason, controller=self.options.controller_name,
            timeseries=rec.wide(), events=pd.DataFrame(rec.events, columns=["time_s", "level", "message"]),
            samples=pd.DataFrame(rec.rows, columns=["time_s", "channel", "value"]), images=rec.images,
            cqas=cqas, profile=self.profile, store_path=Path(self.store.path) if self.store is not None else None,
            image_dir=self.image_dir if rec.images else None,
            solve_times_s=list(self.controller.solve_times_s), store_error=store_error)

    # ------------------------------------------------------------------ all steps
    def execute(self) -> RunResult:
        """Run every step; a fault, a signal or Ctrl-C ends the run in the safe state with its reason.

        Returns
        -------
        RunResult
            ``completed``, ``failed`` (a device fault, the watchdog, the store) or
            ``aborted`` (Ctrl-C, SIGTERM, SIGHUP).

        Raises
        ------
        Exception
            An unexpected error (a bug, not a device or store fault) is re-raised after the
            safe state and the run's end are recorded.
        """
        if self.safe is None:
            self.prepare()
        self.open_run()
        unexpected: BaseException | None = None
        try:
            with stop_signals():
                self.start()
                while not self.tick():
                    self.wait()
        except BaseException as e:  # noqa: BLE001 - every way out goes through the safe state
            with deferred_signals():
                if isinstance(e, WatchdogError):
                    self.stop("failed", str(e))
                elif isinstance(e, KeyboardInterrupt):
                    self.stop("aborted", "aborted by the user (KeyboardInterrupt: Ctrl-C or SIGINT)")
                elif isinstance(e, RunTerminated):
                    self.stop("aborted", f"aborted: {e} (the process was asked to stop)")
                elif isinstance(e, CrystalloopError):
                    self.stop("failed", f"{type(e).__name__}: {e}")
                else:
                    self.stop("failed", f"unexpected {type(e).__name__}: {e}")
                    unexpected = e
                result = self.finish()
            if unexpected is not None:
                raise
            return result
        with deferred_signals():
            return self.finish()
