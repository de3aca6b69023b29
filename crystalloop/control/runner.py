"""Run a recipe or a feedback controller on any backend, logging everything as it goes.

:func:`run` opens the crystallizer behind a backend URL (``sim://``, ``julabo:///dev/ttyUSB0``,
...) and executes one batch with :class:`~crystalloop.control.loop.RunLoop`: a
:class:`~crystalloop.control.safety.SafeThermostat` in front of the thermostat, the loop on
the backend's clock (a :class:`~crystalloop.hardware.base.VirtualClock` runs as fast as the
model integrates, a real clock in real time; the code is the same):

* every ``control_interval_s``: read the temperatures (and counts or concentration when the
  controller asks for them), ask the controller for a setpoint, send it through the safety
  layer (limits, ramp);
* every ``sample_interval_s``: read every sensor and write the batch to the store at once
  (one transaction), so a crash loses nothing already read;
* every ``image_interval_s``: grab a frame, save it as PNG and log it (a camera fault is an
  error event and the run goes on; after ``watchdog.max_failures`` consecutive faults imaging
  stops for the rest of the run).

Every argument is checked (:class:`~crystalloop.control.options.RunOptions`, the backend URL,
the recipe against the limits, the controller and the sensors it needs) *before* a run is
created in the store. A watchdog trip, a device fault or a store error puts the plant in its
safe state and ends the run ``failed`` with the reason; Ctrl-C, SIGTERM and SIGHUP put it in
its safe state and end the run ``aborted``. A run that died without finishing (power cut,
killed process) is marked ``interrupted`` by the store when it is next opened:
:func:`run_status` reports how far it got, and ``run(..., resume_run_id=...)`` continues the
recipe from its last logged time as a new run linked to the old one (``meta.resumed_from``,
``meta.resumed_at_s``). A run is continued once: resuming it again continues its
continuation, or is refused when that one completed or is still running.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crystalloop.control.controller import CONTROLLERS
from crystalloop.control.factory import make_controller
from crystalloop.control.loop import RunLoop
from crystalloop.control.options import RunOptions
from crystalloop.control.result import RunResult, tracking_metrics
from crystalloop.errors import ConfigError
from crystalloop.hardware.base import Clock, Crystallizer, connect, parse_backend_url
from crystalloop.profiles import ThermocycleProfile

__all__ = ["CONTROLLERS", "RunOptions", "RunResult", "run", "make_controller", "tracking_metrics", "run_status",
           "continuation_of"]

_RESUMABLE = ("interrupted", "failed", "aborted")


def _as_profile(recipe: Any) -> ThermocycleProfile | None:
    if recipe is None or isinstance(recipe, ThermocycleProfile):
        return recipe
    if isinstance(recipe, dict):
        return ThermocycleProfile.from_dict(recipe)
    if isinstance(recipe, (str, Path)):
        return ThermocycleProfile.from_file(recipe)
    raise ConfigError(f"recipe must be a ThermocycleProfile, a dict or a YAML/JSON file path, got {type(recipe).__name__}")


def _open_store(store: Any):
    if store is None or not isinstance(store, (str, Path)):
        return store
    from crystalloop.store import ExperimentStore

    return ExperimentStore(store)


def run_status(store: Any, run_id: Any) -> dict[str, Any]:
    """How far a logged run got: ``status``, ``reason``, ``last_time_s``, ``n_samples``,
    ``recipe`` (a ThermocycleProfile or None), ``controller``, ``backend`` and
    ``fraction_done`` (of the recipe's batch time).

    Use it after a crash (the store marks a run whose process died ``interrupted``) to
    decide whether to continue it with ``run(..., resume_run_id=run_id)``.
    """
    db = _open_store(store)
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


def continuation_of(store: Any, run_id: Any) -> Any:
    """Id of the run that continues ``run_id`` (``meta.resumed_from``), or None.

    When a run was continued more than once (by an older version), the latest continuation.
    """
    db = _open_store(store)
    runs = db.runs()
    nxt = [int(r) for r, m in zip(runs["run_id"], runs["meta"], strict=True)
           if isinstance(m, dict) and str(m.get("resumed_from")) == str(run_id)]
    return max(nxt) if nxt else None


def _resume_target(db: Any, run_id: Any) -> tuple[Any, dict[str, Any]]:
    """The run a ``resume_run_id`` request really continues: the run itself, or the end of its
    chain of continuations. Refuses a chain that ended completed or is still running."""
    if db is None:
        raise ConfigError("resume_run_id needs the store the run was logged in (store=)")
    chain, target = [run_id], run_id
    while (nxt := continuation_of(db, target)) is not None:
        if nxt in chain:
            break
        chain.append(nxt)
        target = nxt
    st = run_status(db, target)
    if st["status"] not in _RESUMABLE:
        if target == run_id:
            raise ConfigError(f"run {run_id!r} is {st['status']}; only an interrupted, failed or aborted run can be "
                              f"resumed")
        raise ConfigError(f"run {run_id!r} was already continued by run {target} ({' -> '.join(map(str, chain))}), "
                          f"which is {st['status']}; there is nothing left to resume")
    return target, st


def run(
    recipe: ThermocycleProfile | dict | str | Path | None = None,
    *,
    backend: str = "sim://",
    store: Any = None,
    options: RunOptions | None = None,
    crystallizer: Crystallizer | None = None,
    clock: Clock | None = None,
    resume_run_id: Any = None,
    image_root: str | Path | None = None,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
    **option_values: Any,
) -> RunResult:
    """Execute a recipe or controller on a backend and log everything to the store.

    Parameters
    ----------
    recipe : ThermocycleProfile, dict or path, optional
        The recipe (required by every named controller; for ``dnc``/``ssc`` it gives the
        initial conditions and the temperature range).
    backend : str
        Backend URL (``sim://?seed=1``, ``julabo:///dev/ttyUSB0``, ...); ignored when
        ``crystallizer`` is given. A simulated backend charges its vessel from the recipe.
    store : ExperimentStore or path, optional
        Where samples, images, events and CQAs go (in memory only when None).
    options : RunOptions, optional
        Controller, intervals, limits, safe state, ... (see :class:`RunOptions`).
    crystallizer : Crystallizer, optional
        An already-open crystallizer (not closed by :func:`run`).
    clock : Clock, optional
        Passed to :func:`~crystalloop.hardware.base.connect` (default: virtual for
        ``sim://``, real otherwise).
    resume_run_id : optional
        Continue this interrupted/failed/aborted run of ``store`` from its last logged time,
        as a new run (recipe and controller are taken from the store unless given). A run
        already continued is not continued twice: its continuation is (see :func:`continuation_of`).
    image_root : path, optional
        Folder under which ``run_<id>/`` holds the images (default: ``images`` next to the store).
    on_tick : callable(dict), optional
        Called after every control/sample instant with the latest values (live display).
    **option_values
        Fields of :class:`RunOptions` (``controller="pid"``, ``sample_interval_s=30``, ...),
        applied over ``options``.

    Returns
    -------
    RunResult
        With status ``completed``, ``failed`` (device fault, watchdog, store error; plant in
        its safe state) or ``aborted`` (Ctrl-C, SIGTERM, SIGHUP; plant in its safe state).

    Raises
    ------
    ConfigError, LimitError, SafetyError, BackendError
        Bad input: unknown controller/backend/option, recipe incompatible with the limits,
        non-positive intervals, a run that cannot be resumed. Raised before anything is sent
        to the device or a run is created in the store.
    """
    opts = options if options is not None else RunOptions()
    if not isinstance(opts, RunOptions):
        raise ConfigError(f"options must be a RunOptions, got {type(opts).__name__}")
    if option_values:
        opts = opts.with_(**option_values)
    if crystallizer is None:
        parse_backend_url(backend)  # a malformed URL is refused before the store is touched
    db = _open_store(store)
    own_store = db is not None and db is not store
    try:
        offset_s, resumed_from = 0.0, None
        if resume_run_id is not None:
            resumed_from, st = _resume_target(db, resume_run_id)
            recipe = recipe if recipe is not None else st["recipe"]
            if "controller" not in option_values and options is None and st["controller"] in CONTROLLERS:
                opts = opts.with_(controller=st["controller"])
            offset_s = st["last_time_s"]
        profile = _as_profile(recipe)
        own = crystallizer is None
        cz = connect(backend, clock=clock, recipe=profile) if own else crystallizer
        try:
            loop = RunLoop(cz, profile, opts, store=db, image_root=image_root, offset_s=offset_s,
                           resumed_from=resumed_from, on_tick=on_tick)
            loop.prepare()  # every check before the run exists in the store
            return loop.execute()
        finally:
            if own:
                cz.close()
    finally:
        if own_store:
            db.close()

