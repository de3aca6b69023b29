"""Run a recipe or a feedback controller on any backend, logging everything as it goes.

:func:`run` opens the crystallizer behind a backend URL (``sim://``, ``julabo:///dev/ttyUSB0``,
...), puts a :class:`~crystalloop.control.safety.SafeThermostat` in front of its thermostat,
and loops on the backend's clock (a :class:`~crystalloop.hardware.base.VirtualClock` runs
as fast as the model integrates, a real clock in real time; the code is the same):

* every ``control_interval_s``: read the temperatures (and counts for DNC), ask the
  controller for a setpoint, send it through the safety layer (limits, ramp);
* every ``sample_interval_s``: read every sensor and write the batch to the store at
  once (one transaction), so a crash loses nothing already read;
* every ``image_interval_s``: grab a frame, save it as PNG next to the store and log it
  (a camera fault is logged as an error event and the run goes on; after
  ``watchdog.max_failures`` consecutive faults imaging stops for the rest of the run).

A watchdog trip puts the plant in its safe state and marks the run ``failed`` with the
reason; Ctrl-C (:class:`KeyboardInterrupt`) applies the safe state and marks it
``aborted``. A run that died without finishing (power cut, killed process) is marked
``interrupted`` by the store when it is next opened: :func:`run_status` reports how far it
got, and ``run(..., resume_run_id=...)`` continues the recipe from its last logged time as
a new run linked to the old one (``meta.resumed_from``, ``meta.resumed_at_s``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.control.dnc import DirectNucleationController, ImageCounter
from crystalloop.control.pid import CascadePID, Observation, ProfileTracker
from crystalloop.control.safety import SafeThermostat, Watchdog
from crystalloop.errors import ConfigError, DeviceError, WatchdogError
from crystalloop.hardware.base import Clock, Crystallizer, connect, parse_backend_url
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ThermocycleProfile

__all__ = ["CONTROLLERS", "RunResult", "run", "make_controller", "tracking_metrics", "run_status"]

CONTROLLERS = ("track", "pid", "nmpc", "dnc", "ssc")
_BASE_CHANNELS = ("T_ref_c", "T_set_c", "T_jacket_c", "T_reactor_c")


def _as_profile(recipe: Any) -> ThermocycleProfile | None:
    if recipe is None or isinstance(recipe, ThermocycleProfile):
        return recipe
    if isinstance(recipe, dict):
        return ThermocycleProfile.from_dict(recipe)
    if isinstance(recipe, (str, Path)):
        return ThermocycleProfile.from_file(recipe)
    raise ConfigError(f"recipe must be a ThermocycleProfile, a dict or a YAML/JSON file path, got {type(recipe).__name__}")


def make_controller(kind: str, profile: ThermocycleProfile, *, crystallizer: Crystallizer | None = None,
                    dt_s: float = 60.0, limits: ThermostatLimits | None = None, **options: Any):
    """Build a controller by name for ``profile``.

    Parameters
    ----------
    kind : {"track", "pid", "nmpc", "dnc", "ssc"}
    profile : ThermocycleProfile
        The recipe (reference trajectory; for DNC: start temperature, end temperature,
        rates).
    crystallizer : Crystallizer, optional
        For NMPC: the thermal model is taken from ``crystallizer.plant.thermal_params``
        (``sim://``) unless ``model=`` is given.
    dt_s : float
        Control interval, s.
    limits : ThermostatLimits, optional
        Setpoint range and rate for the controller's own constraints.
    **options
        Passed to the controller (e.g. ``kp=``, ``horizon=``, ``counts_setpoint=``,
        ``delta_c_setpoint=``; for ``ssc`` the solubility curve comes from the virtual plant
        unless ``solubility=`` is given).
    """
    if kind not in CONTROLLERS:
        raise ConfigError(f"unknown controller {kind!r}; expected one of {', '.join(CONTROLLERS)}")
    lim = (limits.min_c, limits.max_c) if limits is not None else (-20.0, 80.0)
    rate = limits.max_rate_c_min if limits is not None and math.isfinite(limits.max_rate_c_min) else 5.0
    if kind == "track":
        if options:
            raise ConfigError(f"controller 'track' takes no options, got {sorted(options)}")
        return ProfileTracker(profile)
    if kind == "pid":
        options.setdefault("setpoint_limits", lim)
        options.setdefault("rate_limit_c_min", rate)
        return CascadePID(profile, **options)
    if kind == "nmpc":
        from crystalloop.control.nmpc import NMPCController

        model = options.pop("model", None)
        if model is None:
            plant = getattr(crystallizer, "plant", None)
            model = getattr(plant, "thermal", None) if plant is not None else None
            if model is not None and getattr(plant, "ideal_thermal", False):
                raise ConfigError("controller 'nmpc' on sim://?thermal=ideal has nothing to control (the reactor "
                                  "follows the setpoint exactly); use the jacketed thermal model")
            if model is None:
                raise ConfigError("controller 'nmpc' needs a thermal model: pass model=ThermalModel(...) "
                                  "(identified for this reactor) or use a sim:// backend")
        options.setdefault("setpoint_limits", lim)
        options.setdefault("rate_limit_c_min", rate)
        options.setdefault("dt_s", dt_s)
        return NMPCController(profile, model, **options)
    if kind == "ssc":
        from crystalloop.control.ssc import SupersaturationController

        sol = options.pop("solubility", None)
        if sol is None:
            plant = getattr(crystallizer, "plant", None)
            sol = getattr(plant, "csat_kg_kg", None)
            if sol is None:
                raise ConfigError("controller 'ssc' needs solubility= (a callable T_c -> c* in kg/kg) "
                                  "on a backend without a virtual plant")
        if "delta_c_setpoint" not in options:
            raise ConfigError("controller 'ssc' needs delta_c_setpoint= (wanted supersaturation c - c*, kg/kg)")
        options.setdefault("t_min_c", profile.end_temperature_c)
        options.setdefault("t_max_c", profile.t_start_c)
        options.setdefault("max_rate_c_min", rate)
        return SupersaturationController(sol, options.pop("delta_c_setpoint"), **options)
    # dnc
    if "counts_setpoint" not in options:
        raise ConfigError("controller 'dnc' needs counts_setpoint= (wanted particle count per measurement) "
                          "and band= (half width of the dead band)")
    options.setdefault("band", 0.1 * options["counts_setpoint"])
    options.setdefault("t_min_c", profile.end_temperature_c)
    options.setdefault("t_max_c", profile.t_start_c)
    options.setdefault("cooling_rate_c_min", profile.segments[0].rate_c_min)
    if len(profile.segments) > 1:
        options.setdefault("heating_rate_c_min", profile.segments[1].rate_c_min)
    return DirectNucleationController(options.pop("counts_setpoint"), options.pop("band"), **options)


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


def tracking_metrics(timeseries: pd.DataFrame, profile: ThermocycleProfile) -> dict[str, float]:
    """Tracking quality of the reactor temperature against the recipe.

    Returns ``rms_error_c`` (RMS of ``T_reactor_c - setpoint(t)`` over all samples),
    ``max_abs_error_c`` and ``overshoot_c``: the largest excursion of the reactor past a
    segment's target in the segment's direction (above for heating, below for cooling),
    from the start of that segment to the end of the next one.
    """
    ts = timeseries.dropna(subset=["T_reactor_c"])
    if ts.empty:
        raise ConfigError("timeseries has no T_reactor_c samples to compute tracking metrics from")
    t = ts["time_s"].to_numpy(float)
    y = ts["T_reactor_c"].to_numpy(float)
    err = y - profile.setpoint_at(t)
    knots_t, _ = profile.knots
    bounds, prev, acc = [0.0], profile.t_start_c, 0.0
    for s in profile.segments:
        acc += abs(s.target_c - prev) / s.rate_c_min * 60.0 + s.hold_min * 60.0
        bounds.append(acc)
        prev = s.target_c
    over = 0.0
    for k, (s, d) in enumerate(zip(profile.segments, profile.directions(), strict=True)):
        lo, hi = bounds[k], bounds[min(k + 2, len(bounds) - 1)]
        if k + 1 == len(profile.segments):
            hi = max(hi, t.max())
        m = (t >= lo) & (t <= hi)
        if not m.any():
            continue
        exc = (y[m] - s.target_c) if d == "heat" else (s.target_c - y[m])
        over = max(over, float(exc.max()))
    return {"rms_error_c": float(np.sqrt(np.mean(err**2))), "max_abs_error_c": float(np.abs(err).max()),
            "overshoot_c": over}


@dataclass
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    run_id : int or str or None
        Id in the store (None without a store).
    status : str
        ``"completed"``, ``"failed"`` or ``"aborted"``.
    reason : str or None
        Why the run failed or was aborted.
    controller : str
    timeseries : pandas.DataFrame
        Wide table, one row per sample instant: ``time_s`` and one column per channel
        (``T_ref_c``, ``T_set_c``, ``T_jacket_c``, ``T_reactor_c``, ``counts``, ...).
    events : pandas.DataFrame
        ``time_s, level, message``.
    samples : pandas.DataFrame
        Every logged sample, long format ``time_s, channel, value`` (as in the store).
    images : list of Path
        PNG files written.
    cqas : dict
        Ground-truth CQAs of the virtual crystallizer at the end (empty for real hardware).
    profile : ThermocycleProfile or None
    store_path, image_dir : Path or None
    solve_times_s : list of float
        NMPC solve wall times (empty for other controllers).
    """

    run_id: Any
    status: str
    reason: str | None
    controller: str
    timeseries: pd.DataFrame
    events: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["time_s", "channel", "value"]))
    images: list[Path] = field(default_factory=list)
    cqas: dict[str, float] = field(default_factory=dict)
    profile: ThermocycleProfile | None = None
    store_path: Path | None = None
    image_dir: Path | None = None
    solve_times_s: list[float] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """:func:`tracking_metrics` of this run (needs a recipe)."""
        if self.profile is None:
            raise ConfigError("this run had no recipe; tracking metrics need one")
        return tracking_metrics(self.timeseries, self.profile)

    def plot(self, path: str | Path) -> Path:
        """Save temperatures (and counts if measured) over time as a PNG."""
        from crystalloop._plotting import pyplot

        plt = pyplot()

        ts = self.timeseries
        has_counts = "counts" in ts and ts["counts"].notna().any()
        fig, axes = plt.subplots(2 if has_counts else 1, 1, figsize=(9, 6 if has_counts else 4),
                                 sharex=True, squeeze=False)
        ax = axes[0, 0]
        t_h = ts["time_s"] / 3600.0
        styles = {"T_ref_c": ("recipe", "k--"), "T_set_c": ("setpoint", "C0-"),
                  "T_jacket_c": ("jacket", "C1-"), "T_reactor_c": ("reactor", "C3-")}
        for col, (label, st) in styles.items():
            if col in ts and ts[col].notna().any():
                ax.plot(t_h, ts[col], st, lw=1.2, label=label)
        ax.set_ylabel("temperature (°C)")
        ax.legend(loc="best", fontsize=8)
        ax.set_title(f"run {self.run_id if self.run_id is not None else ''} ({self.controller}): {self.status}")
        if has_counts:
            axes[1, 0].plot(t_h, ts["counts"], "C2-", lw=1)
            axes[1, 0].set_ylabel("counts")
        axes[-1, 0].set_xlabel("time (h)")
        fig.tight_layout()
        from crystalloop._plotting import save_figure

        return save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------


class _Recorder:
    """Keeps every sample in memory and writes each batch to the store at once."""

    def __init__(self, store: Any, run_id: Any) -> None:
        self.store, self.run_id = store, run_id
        self.rows: list[tuple[float, str, float]] = []
        self.events: list[tuple[float, str, str]] = []
        self.images: list[Path] = []

    def samples(self, batch: list[tuple[float, str, float]]) -> None:
        batch = [(float(t), str(c), float(v)) for t, c, v in batch if v is not None and np.isfinite(v)]
        if not batch:
            return
        self.rows.extend(batch)
        if self.store is not None:
            self.store.log_samples(self.run_id, batch)

    def event(self, t: float, level: str, message: str) -> None:
        self.events.append((float(t), level, message))
        if self.store is not None:
            self.store.log_event(self.run_id, float(t), level, message)

    def image(self, t: float, path: Path, pixel_size_um: float, meta: dict) -> None:
        self.images.append(path)
        if self.store is not None:
            self.store.log_image(self.run_id, float(t), str(path), pixel_size_um, meta=meta)

    def wide(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame({"time_s": pd.Series(dtype=float)})
        long = pd.DataFrame(self.rows, columns=["time_s", "channel", "value"])
        wide = long.pivot_table(index="time_s", columns="channel", values="value", aggfunc="last")
        wide = wide.reset_index()
        wide.columns.name = None
        return wide


def _open_store(store: Any):
    if store is None:
        return None, None
    if isinstance(store, (str, Path)):
        from crystalloop.store import ExperimentStore

        return ExperimentStore(store), Path(store)
    return store, Path(getattr(store, "path", "")) if getattr(store, "path", None) else None


def _save_png(path: Path, image: np.ndarray) -> None:
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        img = ((img - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    if img.ndim == 3:
        img = img[..., ::-1]  # RGB -> BGR for OpenCV
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write image {path}")


def _next_due(due: float, period: float, now: float) -> float:
    """The next due time after ``now`` on the grid ``due + k * period`` (skips missed ticks
    when a real-time run fell behind)."""
    due += period
    if due <= now:
        due += math.ceil((now - due) / period + 1e-12) * period
        if due <= now:
            due += period
    return due


def run_status(store: Any, run_id: Any) -> dict[str, Any]:
    """How far a logged run got: ``status``, ``reason``, ``last_time_s``, ``n_samples``,
    ``recipe`` (a ThermocycleProfile or None), ``controller``, ``backend`` and
    ``fraction_done`` (of the recipe's batch time).

    Use it after a crash (the store marks a run whose process died ``interrupted``) to
    decide whether to continue it with ``run(..., resume_run_id=run_id)``.
    """
    db, _ = _open_store(store)
    info = db.run(run_id)
    samples = db.samples(run_id)
    last = float(samples["time_s"].max()) if len(samples) else 0.0
    recipe = db.run_recipe(run_id)
    recipe = recipe if isinstance(recipe, ThermocycleProfile) else None
    meta = info.get("meta") or {}
    offset = float(meta.get("resumed_at_s", 0.0)) if isinstance(meta, dict) else 0.0
    last = max(last, offset)
    frac = min(last / recipe.batch_time_s, 1.0) if recipe is not None and recipe.batch_time_s > 0 else math.nan
    return {"run_id": run_id, "status": str(info.get("status")), "reason": info.get("reason"),
            "last_time_s": last, "n_samples": int(len(samples)), "recipe": recipe,
            "controller": meta.get("controller") if isinstance(meta, dict) else None,
            "backend": info.get("backend"), "fraction_done": frac}


def run(
    recipe: ThermocycleProfile | dict | str | Path | None = None,
    *,
    backend: str = "sim://",
    controller: str | Any = "track",
    store: Any = None,
    sample_interval_s: float = 60.0,
    control_interval_s: float | None = None,
    image_interval_s: float | None = None,
    image_dir: str | Path | None = None,
    clock: Clock | None = None,
    limits: ThermostatLimits | None = None,
    recipe_margin_c: float = 10.0,
    safe_state: str = "hold",
    watchdog: Watchdog | None = None,
    duration_s: float | None = None,
    controller_options: dict[str, Any] | None = None,
    crystallizer: Crystallizer | None = None,
    resume_run_id: Any = None,
    counts_from: str = "counter",
    on_tick: Callable[[dict[str, Any]], None] | None = None,
    meta: dict[str, Any] | None = None,
) -> RunResult:
    """Execute a recipe or controller on a backend and log everything to the store.

    Parameters
    ----------
    recipe : ThermocycleProfile, dict or path, optional
        The recipe (required for ``track``/``pid``/``nmpc``; for ``dnc`` it gives the
        initial conditions and temperature range).
    backend : str
        Backend URL (``sim://?seed=1``, ``julabo:///dev/ttyUSB0``, ...); ignored when
        ``crystallizer`` is given.
    controller : {"track", "pid", "nmpc", "dnc", "ssc"} or controller object
        A name (built by :func:`make_controller` with ``controller_options``) or an object
        with ``reset(obs)``, ``setpoint(obs)``, ``finished(obs)`` and ``duration_s``.
    store : ExperimentStore or path, optional
        Where samples, images, events and CQAs go (in memory only when None).
    sample_interval_s, control_interval_s, image_interval_s : float
        Periods in seconds of sampling, control (default: the sample interval) and
        images (None: no images).
    image_dir : path, optional
        Where PNGs go; default ``<store dir>/images/run_<id>`` (or ``./images``).
    clock : Clock, optional
        Passed to :func:`~crystalloop.hardware.base.connect` (default: virtual for
        ``sim://``, real otherwise).
    limits : ThermostatLimits, optional
        Extra software limits; always intersected with the device's limits and with
        ``ThermostatLimits.for_recipe(recipe, margin_c=recipe_margin_c)``.
    safe_state : {"hold", "stop"}
        Safe state on a watchdog trip or Ctrl-C.
    watchdog : Watchdog, optional
    duration_s : float, optional
        Stop after this run time (default: the controller's duration).
    controller_options : dict, optional
    crystallizer : Crystallizer, optional
        An already-open crystallizer (not closed by :func:`run`).
    resume_run_id : optional
        Continue this interrupted/failed/aborted run of ``store`` from its last logged
        time, as a new run (recipe and controller are taken from the store unless given).
    counts_from : {"counter", "camera"}
        Where DNC gets its counts: the backend's particle counter (FBRM-like), or image
        counts of the camera frames through the vision pipeline (:class:`ImageCounter`,
        logged as channel ``image_counts``).
    on_tick : callable(dict), optional
        Called after every control/sample instant with the latest values (live display).
    meta : dict, optional
        Stored with the run.

    Returns
    -------
    RunResult
        With status ``completed``, ``failed`` (watchdog; plant in its safe state) or
        ``aborted`` (Ctrl-C; plant in its safe state).

    Raises
    ------
    ConfigError, LimitError, SafetyError, BackendError
        Bad input: unknown controller/backend, recipe incompatible with the limits,
        non-positive intervals. Raised before anything is sent to the device.
    """
    for nm, v in (("sample_interval_s", sample_interval_s), ("control_interval_s", control_interval_s),
                  ("image_interval_s", image_interval_s), ("duration_s", duration_s)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ConfigError(f"{nm} must be a finite number > 0 s, got {v!r}")
    control_interval_s = float(control_interval_s or sample_interval_s)
    db, store_path = _open_store(store)
    own_store = db is not None and db is not store
    try:
        offset_s = 0.0
        if resume_run_id is not None:
            if db is None:
                raise ConfigError("resume_run_id needs the store the run was logged in (store=)")
            st = run_status(db, resume_run_id)
            if st["status"] in ("completed", "running"):
                raise ConfigError(f"run {resume_run_id!r} is {st['status']}; only an interrupted, failed or "
                                  f"aborted run can be resumed")
            recipe = recipe if recipe is not None else st["recipe"]
            if isinstance(controller, str) and controller == "track" and st["controller"]:
                controller = st["controller"]
            offset_s = st["last_time_s"]
        profile = _as_profile(recipe)
        kind = controller if isinstance(controller, str) else getattr(controller, "name", type(controller).__name__)
        if isinstance(controller, str):
            if controller not in CONTROLLERS:
                raise ConfigError(f"unknown controller {controller!r}; expected one of {', '.join(CONTROLLERS)}")
            if profile is None:
                raise ConfigError(f"controller {controller!r} needs a recipe (a ThermocycleProfile, dict or YAML/JSON file)")

        own = crystallizer is None
        if own:
            parsed = parse_backend_url(backend)
            kw = {"recipe": profile} if parsed.scheme == "sim" and profile is not None else {}
            crystallizer = connect(backend, clock=clock, **kw)
        try:
            return _execute(crystallizer, profile, controller, kind, db, store_path, offset_s, resume_run_id,
                            sample_interval_s=float(sample_interval_s), control_interval_s=control_interval_s,
                            image_interval_s=image_interval_s, image_dir=image_dir, limits=limits,
                            recipe_margin_c=recipe_margin_c, safe_state=safe_state, watchdog=watchdog,
                            duration_s=duration_s, controller_options=controller_options or {},
                            on_tick=on_tick, meta=meta or {}, counts_from=counts_from,
                            backend=crystallizer.url if not own else backend)
        finally:
            if own:
                crystallizer.close()
    finally:
        if own_store:
            db.close()


def _execute(cz: Crystallizer, profile, controller, kind, db, store_path, offset_s, resume_run_id, *,
             sample_interval_s, control_interval_s, image_interval_s, image_dir, limits, recipe_margin_c,
             safe_state, watchdog, duration_s, controller_options, on_tick, meta, counts_from,
             backend) -> RunResult:
    clock = cz.clock
    eff = limits
    if profile is not None:
        rl = ThermostatLimits.for_recipe(profile, margin_c=recipe_margin_c)
        eff = rl if eff is None else eff.intersect(rl)
    safe = SafeThermostat(cz.thermostat, limits=eff, watchdog=watchdog, safe_state=safe_state)
    if profile is not None:  # refuse a recipe the device cannot follow before sending anything
        safe.check_profile(profile)
    ctrl = controller
    if isinstance(controller, str):
        ctrl = make_controller(controller, profile, crystallizer=cz, dt_s=control_interval_s,
                               limits=safe.limits, **controller_options)
    end_s = duration_s if duration_s is not None else float(getattr(ctrl, "duration_s", math.inf))
    if not np.isfinite(end_s):
        raise ConfigError(f"controller {kind!r} has no natural end: pass duration_s")

    counter = cz.counter
    wanted = tuple(getattr(ctrl, "measurements", ()))
    needs_counts = "counts" in wanted
    needs_conc = "conc_kg_kg" in wanted
    if needs_conc and cz.concentration is None:
        raise ConfigError(f"controller {kind!r} needs a concentration sensor; backend {backend!r} has none")
    if counts_from not in ("counter", "camera"):
        raise ConfigError(f"counts_from must be 'counter' or 'camera', got {counts_from!r}")
    if counts_from == "camera":
        if cz.camera is None:
            raise ConfigError(f"counts_from='camera' needs a camera; backend {backend!r} has none")
        counter = ImageCounter(cz.camera)
    if needs_counts and counter is None:
        raise ConfigError(f"controller 'dnc' needs a particle counter; backend {backend!r} has none "
                          f"(use counts_from='camera' for image-based counts)")

    # --- store
    run_id = None
    if db is not None:
        run_meta = {"controller": kind, "counts_from": counts_from if needs_counts else None,
                    "sample_interval_s": sample_interval_s,
                    "control_interval_s": control_interval_s, "image_interval_s": image_interval_s,
                    "safe_state": safe_state,
                    "limits": {"min_c": safe.limits.min_c, "max_c": safe.limits.max_c,
                               "max_rate_c_min": safe.limits.max_rate_c_min}, **meta}
        if resume_run_id is not None:
            run_meta.update(resumed_from=resume_run_id, resumed_at_s=offset_s)
        seed = parse_backend_url(backend).options.get("seed")
        run_id = db.start_run(recipe=profile, backend=str(backend),
                              seed=int(seed) if seed is not None and str(seed).isdigit() else None,
                              kind=kind, meta=run_meta)
    rec = _Recorder(db, run_id)
    t0 = float(clock.now())

    def rt() -> float:  # run time
        return float(clock.now()) - t0 + offset_s

    safe.on_event = lambda t, level, msg: rec.event(t - t0 + offset_s, level, msg)
    if hasattr(ctrl, "on_event"):
        ctrl.on_event = lambda t, level, msg: rec.event(t, level, msg)
    if resume_run_id is not None:
        note = (" (the virtual plant restarts from its initial state: sim:// state is not persisted)"
                if cz.plant is not None else "")
        rec.event(offset_s, "warning", f"continues run {resume_run_id} from its last logged time "
                                       f"t={offset_s:.0f} s{note}")
    else:
        rec.event(0.0, "info", f"run started: controller {kind}, backend {backend}")

    if image_dir is None:
        base = store_path.parent if store_path is not None else Path(".")
        image_dir = base / "images" / (f"run_{run_id}" if run_id is not None else "run")
    image_dir = Path(image_dir)
    latest: dict[str, float] = {}
    status, reason = "completed", None
    camera = cz.camera if image_interval_s else None
    cam_failures = 0

    def read_temps(batch: list) -> Observation:
        rb = safe.read_bath()
        batch.append((rb.time_s - t0 + offset_s, "T_jacket_c", rb.value))
        rp = safe.read_process()
        batch.append((rp.time_s - t0 + offset_s, "T_reactor_c", rp.value))
        latest["T_jacket_c"], latest["T_reactor_c"] = rb.value, rp.value
        n = c = math.nan
        if needs_counts:
            r = safe.call("read", counter.read, device=f"counter '{counter.name}'")
            n = latest[r.channel or "counts"] = r.value
            batch.append((r.time_s - t0 + offset_s, r.channel or "counts", r.value))
        if needs_conc:
            dev = cz.concentration
            r = safe.call("read", dev.read, device=f"concentration sensor '{dev.name}'")
            c = latest[r.channel or "conc_kg_kg"] = r.value
            batch.append((r.time_s - t0 + offset_s, r.channel or "conc_kg_kg", r.value))
        return Observation(rt(), rp.value, rb.value, latest.get("T_set_c", math.nan), n, c)

    next_ctrl = next_sample = offset_s
    next_image = offset_s if camera is not None else math.inf
    batch: list = []  # readings of the current tick; flushed even when the tick fails
    try:
        status0 = safe.status()
        if status0.alarms:
            rec.event(rt(), "warning", f"thermostat '{safe.name}' reports {'; '.join(status0.alarms)} at the start")
        if not status0.running:  # a circulator left stopped would not follow any setpoint
            safe.start()
            rec.event(rt(), "info", f"started the circulator of thermostat '{safe.name}'")
        obs = read_temps(batch)
        cur = safe.get_setpoint()
        latest["T_set_c"] = cur
        obs = Observation(obs.time_s, obs.T_reactor_c, obs.T_jacket_c, cur, obs.counts, obs.conc_kg_kg)
        ctrl.reset(obs)
        rec.samples(batch)
        while True:
            t = rt()
            batch = []
            did = False
            if t >= next_ctrl - 1e-9:
                obs = read_temps(batch)
                sp = ctrl.setpoint(obs)
                sent = safe.set_setpoint(sp)
                latest["T_set_c"], latest["T_target_c"] = sent, sp
                latest["T_ref_c"] = float(ctrl.reference(obs.time_s))
                batch += [(t, "T_set_c", sent), (t, "T_ref_c", latest["T_ref_c"])]
                next_ctrl = _next_due(next_ctrl, control_interval_s, t)
                did = True
            else:
                sent = safe.update()
                latest["T_set_c"] = sent
            if t >= next_sample - 1e-9:
                if not did:
                    read_temps(batch)
                    batch += [(t, "T_set_c", latest["T_set_c"])]
                    if "T_ref_c" in latest:
                        batch.append((t, "T_ref_c", float(ctrl.reference(t))))
                for role, dev in cz.sensors().items():
                    if did and ((role == "counter" and needs_counts and counts_from == "counter")
                                or (role == "concentration" and needs_conc)):
                        continue  # already read for control at this instant
                    r = safe.call("read", dev.read, device=f"{role} '{dev.name}'")
                    latest[r.channel or role] = r.value
                    batch.append((r.time_s - t0 + offset_s, r.channel or role, r.value))
                next_sample = _next_due(next_sample, sample_interval_s, t)
                did = True
            rec.samples(batch)
            batch = []
            if t >= next_image - 1e-9:
                next_image = _next_due(next_image, image_interval_s, t)
                try:
                    frame = camera.grab()
                    image_dir.mkdir(parents=True, exist_ok=True)
                    path = image_dir / f"t{int(round(t)):07d}s.png"
                    _save_png(path, frame.image)
                except Exception as e:  # a camera fault must not end a crystallization
                    cam_failures += 1
                    rec.event(t, "error", f"image at t={t:.0f} s from camera '{camera.name}' failed "
                                          f"({cam_failures}/{safe.watchdog.max_failures}): {type(e).__name__}: {e}")
                    if cam_failures >= safe.watchdog.max_failures:
                        rec.event(t, "error", f"imaging stopped after {cam_failures} consecutive camera failures; "
                                              f"the run continues without images")
                        camera = None
                        next_image = math.inf
                else:
                    cam_failures = 0
                    rec.image(t, path, frame.pixel_size_um, {"camera": camera.name})
            if did and on_tick is not None:
                on_tick({"time_s": t, "end_s": end_s, **latest})
            if t >= end_s - 1e-9 or ctrl.finished(Observation(t, latest.get("T_reactor_c", math.nan),
                                                              latest.get("T_jacket_c", math.nan),
                                                              latest.get("T_set_c", math.nan),
                                                              latest.get("counts", math.nan))):
                break
            wake = min(next_ctrl, next_sample, next_image, end_s)
            if wake <= t:  # never spin: every due action above has moved its next time forward
                raise RuntimeError(f"runner scheduling error at t={t} s (next wake {wake} s)")
            clock.sleep(max(wake - rt(), 0.0))
    except WatchdogError as e:
        rec.samples(batch)
        status, reason = "failed", str(e)
    except KeyboardInterrupt:
        rec.samples(batch)
        status, reason = "aborted", "aborted by the user (KeyboardInterrupt)"
        safe.enter_safe_state(reason)
    except DeviceError as e:  # a device error outside the watchdog
        rec.samples(batch)
        status, reason = "failed", f"{type(e).__name__}: {e}"
        safe.enter_safe_state(reason)
    except BaseException as e:
        status, reason = "failed", f"unexpected {type(e).__name__}: {e}"
        try:
            rec.samples(batch)
            safe.enter_safe_state(reason)
        finally:
            rec.event(rt(), "error", reason)
            if db is not None:
                db.finish_run(run_id, status=status, reason=reason)
        raise
    cqas: dict[str, float] = {}
    plant_cqas = getattr(cz.plant, "cqas", None) if cz.plant is not None else None
    if callable(plant_cqas):
        plant_cqas = plant_cqas()
    if isinstance(plant_cqas, dict):
        cqas = {k: float(v) for k, v in plant_cqas.items() if v is not None}
    rec.event(rt(), "info" if status == "completed" else "error",
              f"run {status}" + (f": {reason}" if reason else ""))
    if db is not None:
        if cqas and status == "completed":
            db.log_cqas(run_id, cqas)
        db.finish_run(run_id, status=status, reason=reason)
    return RunResult(
        run_id=run_id, status=status, reason=reason, controller=kind, timeseries=rec.wide(),
        events=pd.DataFrame(rec.events, columns=["time_s", "level", "message"]),
        samples=pd.DataFrame(rec.rows, columns=["time_s", "channel", "value"]), images=rec.images,
        cqas=cqas, profile=profile, store_path=store_path, image_dir=image_dir if rec.images else None,
        solve_times_s=list(getattr(ctrl, "solve_times_s_", [])),
    )
