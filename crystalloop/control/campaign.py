"""The closed-loop campaign: learn → propose → run → measure (images) → learn again.

"Images in the loop of a data-driven design campaign". Each round of :func:`run_campaign`

1. **learns** a digital twin from every measured run so far (the starting DoE plus the
   campaign's own runs): :func:`~crystalloop.digital_twin.twin.fit_twin` with fast settings
   by default (``twin_options``), or any ``learn(frame, cqas, seed) -> twin``;
2. **proposes** ``batch_size`` recipes: NSGA-II on the twin
   (:func:`~crystalloop.digital_twin.optimize.optimize_design`) on an *acquisition* view of
   it — the mean, the pessimistic bound, or the optimistic bound ``mean ± κ·std``
   (exploration: where the twin is unsure, it may be better) — then :func:`select_batch`
   picks points spread along the predicted front that are not too close to a run already made;
3. **runs** each recipe on the backend with the real runner
   (:func:`~crystalloop.control.runner.run`: safety layer, store logging, ``kind="campaign"``,
   round and label in the run's meta) and grabs ``n_frames`` probe images at the end of the
   batch (and, with ``run_options={"image_interval_s": ...}``, during it);
4. **measures**: D50 from the *images* with the classical vision pipeline (x50,3 of the
   pooled particle tables of the final frames) and the offline CQAs (DoA, crystallinity)
   from a lab hook (:mod:`~crystalloop.control.offline`: simulated analytics on ``sim://``,
   a table the analyst fills in on real hardware). On ``sim://`` the plant's true CQAs are
   recorded next to them, so the image measurement error is visible;
5. appends the rows to the DoE, writes it (``doe.csv``, resumable: the round number lives in
   the run labels ``C{round}-{k}``), and reports the round (:mod:`~crystalloop.control.campaign_report`).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from crystalloop.control.offline import LabRequest, as_lab
from crystalloop.errors import BackendError, ConfigError
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame

__all__ = ["CampaignResult", "CampaignWarning", "run_campaign", "propose", "select_batch", "measure_images",
           "execute_recipe", "ACQUISITIONS", "DEFAULT_TWIN_OPTIONS", "campaign_rounds"]

ACQUISITIONS = ("mean", "pessimistic", "optimistic")
#: fast twin fitting for a campaign round (seconds, not minutes); override with ``twin_options``
DEFAULT_TWIN_OPTIONS: dict[str, Any] = {"grid": "fast", "n_splits": 20, "augment": False, "cv": 3,
                                        "test_size": 0.15, "n_jobs": 1}
_LABEL = re.compile(r"^C(\d+)-(\d+)$")


class CampaignWarning(UserWarning):
    """Something in a round did not go as planned (too few particles, a failed run, a short front)."""


@dataclass
class CampaignResult:
    """What :func:`run_campaign` did.

    Attributes
    ----------
    doe : DataFrame
        The DoE after the last round (``run_id``, features, measured CQAs), as written to ``doe.csv``.
    history : DataFrame
        One row per campaign run (all rounds of this campaign folder, resumed ones included):
        ``round, run_id, store_run_id, status, seed, batch_time_min``, ``{cqa}_pred`` /
        ``{cqa}_std`` (twin before the run), ``{cqa}`` (measured), ``D50_image_um``,
        ``n_particles``, ``plant_{cqa}`` (ground truth on ``sim://``), ``wall_s``.
    rounds : DataFrame
        One row per round: hypervolume of the measured runs, best objective under ``limit``,
        twin error and interval coverage on the round's new runs, image D50 error.
    hypervolume : list of float
        Hypervolume of the measured DoE before the first round of this call and after each round.
    twins : list
        Twin fitted in each round of this call.
    profiles : list of list of ThermocycleProfile
        Recipes run in each round of this call (as run: rounded to settable precision).
    out_dir : Path or None
    files : dict
        Paths written (``doe``, ``history``, ``rounds``, ``summary`` and the PNG plots).
    """

    doe: pd.DataFrame
    history: pd.DataFrame
    rounds: pd.DataFrame
    hypervolume: list[float] = field(default_factory=list)
    twins: list[Any] = field(default_factory=list)
    profiles: list[list[ThermocycleProfile]] = field(default_factory=list)
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def campaign_rounds(run_ids: Sequence[Any]) -> int:
    """Highest campaign round among DoE run ids (labels ``C{round}-{k}``); 0 if none."""
    rounds = [int(m.group(1)) for r in run_ids if (m := _LABEL.match(str(r)))]
    return max(rounds, default=0)


def _check_backend(backend: str) -> str:
    from crystalloop.hardware.base import parse_backend_url, registered_backends

    parsed = parse_backend_url(backend)
    if parsed.scheme not in registered_backends():
        raise BackendError(f"Unknown backend URL scheme {parsed.scheme!r} in {backend!r}; expected one of "
                           f"{', '.join(s + '://' for s in registered_backends())}")
    return parsed.scheme


def _with_seed(url: str, seed: int) -> str:
    """``sim://`` URL with this run's plant seed (a seed in the URL is the campaign's base seed)."""
    from crystalloop.hardware.base import parse_backend_url

    p = parse_backend_url(url)
    if p.scheme != "sim":
        return url
    opts = dict(p.options)
    base = int(opts.get("seed", 0))
    opts["seed"] = str(base * 100_003 + int(seed))
    return f"sim://{p.target}?{urlencode(opts)}"


class _CampaignStore:
    """The store as the runner sees it during a campaign: every run is started with
    ``kind="campaign"`` (the controller's name stays in the run's meta)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.path = store.path

    def start_run(self, recipe=None, backend="sim://", seed=None, kind="campaign", meta=None):
        return self._store.start_run(recipe=recipe, backend=backend, seed=seed, kind="campaign",
                                     meta={**(meta or {}), "controller": (meta or {}).get("controller", kind)})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _AcquisitionTwin:
    """A twin whose objective means are shifted to the optimistic bound (``mean + κ std`` for
    maximized, ``mean − κ std`` for minimized CQAs); stds unchanged."""

    def __init__(self, twin: Any, shifts: dict[str, float]) -> None:
        self.twin, self.shifts = twin, shifts
        self.cqas, self.max_cycles = list(twin.cqas), int(twin.max_cycles)
        self.feature_names = list(twin.feature_names)

    def predict(self, X, *, cqas=None, warn=True):
        import inspect

        params = inspect.signature(self.twin.predict).parameters
        kw = {k: v for k, v in (("cqas", cqas), ("warn", warn)) if k in params}
        P = self.twin.predict(X, **kw).copy()
        for c, s in self.shifts.items():
            if f"{c}_mean" in P and f"{c}_std" in P:
                P[f"{c}_mean"] = P[f"{c}_mean"] + s * np.nan_to_num(P[f"{c}_std"].to_numpy(float))
        return P


def _acquire(twin: Any, objectives, acquisition: str, kappa: float) -> tuple[Any, float]:
    """(twin for the optimizer, pessimistic k for DesignProblem)."""
    from crystalloop.digital_twin.design_spec import parse_objectives

    if acquisition not in ACQUISITIONS:
        raise ConfigError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ConfigError(f"kappa must be a number >= 0 (std multiples), got {kappa!r}")
    if acquisition == "pessimistic":
        return twin, float(kappa)
    if acquisition == "optimistic" and kappa > 0:
        objs = parse_objectives(objectives, list(twin.cqas))
        return _AcquisitionTwin(twin, {o.name: (kappa if o.direction == "max" else -kappa) for o in objs
                                       if o.name in twin.cqas}), 0.0
    return twin, 0.0


def _norm_features(A: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    return (A - lo) / span


def select_batch(front: pd.DataFrame, F: np.ndarray, Xf: np.ndarray, existing: np.ndarray, n: int, *,
                 min_distance: float = 0.05) -> list[int]:
    """Pick ``n`` rows of a predicted front: spread along it and away from runs already made.

    Rows closer than ``min_distance`` (RMS distance of feature vectors scaled to [0, 1] by
    the range of the DoE and the front) to an existing run or to a row already chosen are
    skipped; the extremes of each objective come first, then greedily the row farthest (in
    objectives scaled to [0, 1]) from those chosen — the rule of
    :func:`~crystalloop.digital_twin.selection.spread_points`. If too few rows are far enough,
    the remaining picks are the rows farthest from everything chosen and run.

    Parameters
    ----------
    front : DataFrame
        Front rows (only its length is used; the order of ``F`` and ``Xf`` follows it).
    F : ndarray, shape (m, n_obj)
        Objectives to minimize.
    Xf : ndarray, shape (m, n_features)
        Twin feature vectors of the rows.
    existing : ndarray, shape (k, n_features)
        Feature vectors of the runs already made.
    n : int
    min_distance : float

    Returns
    -------
    list of int
        Positions in ``front`` (at most ``min(n, len(front))``).
    """
    m = len(front)
    if m == 0:
        return []
    allX = np.vstack([Xf, existing]) if len(existing) else Xf
    lo, hi = allX.min(axis=0), allX.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    Zx = _norm_features(Xf, lo, span)
    Ex = _norm_features(existing, lo, span) if len(existing) else np.zeros((0, Xf.shape[1]))
    d_exist = (np.sqrt(((Zx[:, None, :] - Ex[None]) ** 2).mean(axis=2)).min(axis=1) if len(Ex)
               else np.full(m, np.inf))
    flo, fhi = F.min(axis=0), F.max(axis=0)
    Zf = (F - flo) / np.where(fhi > flo, fhi - flo, 1.0)
    chosen: list[int] = []

    def far_enough(i: int) -> bool:
        if d_exist[i] < min_distance:
            return False
        return all(np.sqrt(((Zx[i] - Zx[j]) ** 2).mean()) >= min_distance for j in chosen)

    for j in range(Zf.shape[1]):
        for i in np.argsort(Zf[:, j], kind="stable"):
            if far_enough(int(i)):
                if int(i) not in chosen:
                    chosen.append(int(i))
                break
        if len(chosen) >= n:
            return chosen[:n]
    while len(chosen) < min(n, m):
        cand = [i for i in range(m) if i not in chosen and far_enough(i)]
        if not cand:
            break
        d = np.min(np.linalg.norm(Zf[cand][:, None, :] - Zf[chosen][None], axis=2), axis=1) if chosen \
            else np.zeros(len(cand))
        chosen.append(cand[int(np.argmax(d))])
    while len(chosen) < min(n, m):  # relax: farthest in feature space from runs and picks
        rest = [i for i in range(m) if i not in chosen]
        ref = np.vstack([Ex, Zx[chosen]]) if chosen else Ex
        d = (np.sqrt(((Zx[rest][:, None, :] - ref[None]) ** 2).mean(axis=2)).min(axis=1) if len(ref)
             else np.zeros(len(rest)))
        chosen.append(rest[int(np.argmax(d))])
    return chosen


def propose(twin: Any, objectives: str | Sequence[str], n: int, *, existing: np.ndarray | None = None,
            cycles: str | int | Sequence[int] = "1-4", mixed: bool = True, constraints: Any = None,
            acquisition: str = "optimistic", kappa: float = 1.0, min_distance: float = 0.05,
            pop_size: int = 40, n_gen: int = 30, seed: int = 0, bounds: Any = None, limits: Any = None,
            callback: Callable[[str, int, int], None] | None = None) -> tuple[list[ThermocycleProfile], pd.DataFrame]:
    """``n`` recipes to run next: NSGA-II on the twin, then :func:`select_batch`.

    Parameters
    ----------
    twin : DigitalTwin
        Any object with ``cqas``, ``max_cycles``, ``feature_names``, ``predict``.
    objectives : str or sequence
        ``"max:D50,min:DoA"``.
    n : int
        Recipes wanted.
    existing : ndarray (k, n_features), optional
        Twin feature vectors of the runs already made (kept at a distance).
    cycles, mixed : see :func:`~crystalloop.digital_twin.optimize.optimize_design`
        Default: one instance where 1–4 cycles is itself a variable.
    constraints : optional
        Outcome constraints (``"crystallinity>=75"``) judged on the acquisition values.
    acquisition : {"mean", "pessimistic", "optimistic"}
        What NSGA-II optimizes: the predicted mean, ``mean ∓ κ std`` (pessimistic) or
        ``mean ± κ std`` (optimistic: explores where the twin is uncertain).
    kappa : float
        κ, in standard deviations.
    min_distance, pop_size, n_gen, seed, bounds, limits, callback
        Selection distance (features scaled to [0, 1]) and the NSGA-II settings.

    Returns
    -------
    profiles : list of ThermocycleProfile
    table : DataFrame
        The chosen front rows with the twin's *unshifted* ``{cqa}_mean``/``{cqa}_std``
        and ``selected_by`` (``front`` or ``random`` when the front was too short).
    """
    from crystalloop.digital_twin.optimize import optimize_design

    if int(n) != n or n < 1:
        raise ConfigError(f"batch size must be a whole number >= 1, got {n!r}")
    acq_twin, pess = _acquire(twin, objectives, acquisition, kappa)
    res = optimize_design(acq_twin, objectives, cycles=cycles, mixed=mixed, constraints=constraints,
                          pessimistic=pess, bounds=bounds, limits=limits, pop_size=pop_size, n_gen=n_gen,
                          seed=seed, n_jobs=1, callback=callback)
    front = res.front
    glob = np.flatnonzero(front["pareto_global"].to_numpy(bool))
    order = np.r_[glob, np.setdiff1d(np.arange(len(front)), glob)]
    profiles_all = [res.profiles[i] for i in order]
    sub = front.iloc[order].reset_index(drop=True)
    Xf = profiles_to_frame(profiles_all, int(twin.max_cycles))[list(twin.feature_names)].to_numpy(float)
    F = res.objective_matrix(order)
    ex = np.zeros((0, Xf.shape[1])) if existing is None else np.atleast_2d(np.asarray(existing, float))
    picks = select_batch(sub.iloc[: len(glob)] if len(glob) >= n else sub, F[: len(glob)] if len(glob) >= n else F,
                         Xf[: len(glob)] if len(glob) >= n else Xf, ex, int(n), min_distance=min_distance)
    chosen = [profiles_all[i] for i in picks]
    how = ["front"] * len(chosen)
    if len(chosen) < n:  # a front shorter than the batch: fill with random feasible profiles
        from crystalloop.digital_twin.design_space import DesignSpace
        from crystalloop.digital_twin.design_spec import parse_cycles

        ncs = parse_cycles(cycles)
        from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds

        b = (ProfileBounds.from_dict({**DEFAULT_BOUNDS.to_dict(), **bounds}) if isinstance(bounds, dict)
             else bounds or DEFAULT_BOUNDS)
        space = DesignSpace((ncs[0], ncs[-1]) if len(ncs) > 1 else ncs[0], bounds=b)
        extra = space.to_profiles(space.sample(int(n) - len(chosen), np.random.default_rng(seed)))
        warnings.warn(f"the predicted front has {len(chosen)} usable point(s) for a batch of {n}; "
                      f"{len(extra)} random feasible recipe(s) complete the batch", CampaignWarning, stacklevel=2)
        chosen += extra
        how += ["random"] * len(extra)
    import inspect

    quiet = {"warn": False} if "warn" in inspect.signature(twin.predict).parameters else {}
    pred = twin.predict(chosen, **quiet)  # optimize_design already warned about extrapolation once
    table = pd.concat([pd.DataFrame({"selected_by": how}), pred.reset_index(drop=True)], axis=1)
    return chosen, table


# ----------------------------------------------------------------------------- run + measure
def measure_images(frames: Sequence[Any], *, settings: Any = None, min_particles: int = 30) -> dict[str, Any]:
    """Product D50 from probe frames: the vision pipeline on each frame, particle tables
    pooled, ``x50,3`` of the kept particles (volume-weighted by the particles' ECD).

    Returns ``{"D50_image_um", "D10_image_um", "D90_image_um", "n_particles", "n_frames", "particles"}``;
    sizes are NaN when fewer than ``min_particles`` particles were kept.
    """
    from crystalloop.vision import analyze_images

    if not frames:
        return {"D50_image_um": np.nan, "D10_image_um": np.nan, "D90_image_um": np.nan, "n_particles": 0,
                "n_frames": 0, "particles": pd.DataFrame()}
    px = float(frames[0].pixel_size_um)
    b = analyze_images([(f"frame{i:02d}", f.image) for i, f in enumerate(frames)], pixel_size_um=px,
                       settings=settings)
    n = int(b.summary["particles_kept"])
    ok = n >= int(min_particles)
    return {"D50_image_um": float(b.summary["x50_3_um"]) if ok else np.nan,
            "D10_image_um": float(b.summary["x10_3_um"]) if ok else np.nan,
            "D90_image_um": float(b.summary["x90_3_um"]) if ok else np.nan,
            "n_particles": n, "n_frames": len(frames), "particles": b.particles}


def _save_png(path: Path, image: np.ndarray) -> None:
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        img = ((img - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    if not cv2.imwrite(str(path), img[..., ::-1] if img.ndim == 3 else img):
        raise OSError(f"could not write image {path}")


def execute_recipe(profile: ThermocycleProfile, *, label: str, round_: int, backend: str, seed: int, store: Any,
                   lab: Callable[[LabRequest], dict], image_dir: Path, controller: str = "track",
                   n_frames: int = 10, frame_interval_s: float = 5.0, vision_settings: Any = None,
                   min_particles: int = 30, d50_from: str = "image", run_options: dict | None = None,
                   backend_options: dict | None = None, meta: dict | None = None) -> dict[str, Any]:
    """Run one recipe on the backend, grab the final frames, measure, log; return the record.

    The run goes through :func:`~crystalloop.control.runner.run` with an open crystallizer
    (so the final frames come from the same plant); it is stored with ``kind="campaign"``.
    The measured CQAs are logged in the store under the standard names (``D50_um``, ...);
    on ``sim://`` the plant's true CQAs (logged by the runner) are kept as ``plant_{cqa}``,
    and the image figures as ``image_D50_um``, ``image_n_particles``.
    """
    from crystalloop.control.runner import run
    from crystalloop.hardware.base import connect, parse_backend_url

    url = _with_seed(backend, seed)
    scheme = parse_backend_url(url).scheme
    kw = dict(backend_options or {})
    if scheme == "sim":
        kw["recipe"] = profile
    t0 = time.perf_counter()
    cz = connect(url, **kw)
    frames: list = []
    try:
        res = run(profile, crystallizer=cz, controller=controller, store=_CampaignStore(store),
                  meta={"campaign_round": int(round_), "campaign_run": label, **(meta or {})},
                  **(run_options or {}))
        run_id = res.run_id
        if res.status == "completed" and cz.camera is not None and n_frames > 0:
            t_end = float(res.timeseries["time_s"].max()) if len(res.timeseries) else 0.0
            c0 = float(cz.clock.now())
            image_dir.mkdir(parents=True, exist_ok=True)
            for i in range(int(n_frames)):
                if i:
                    cz.clock.sleep(float(frame_interval_s))
                fr = cz.camera.grab()
                frames.append(fr)
                path = image_dir / f"final_{i:02d}.png"
                _save_png(path, fr.image)
                store.log_image(run_id, t_end + float(cz.clock.now()) - c0, str(path), fr.pixel_size_um,
                                meta={"stage": "final", "frame": i, "campaign_run": label})
    finally:
        cz.close()
    rec: dict[str, Any] = {"round": int(round_), "run_id": label, "store_run_id": run_id, "status": res.status,
                           "seed": int(seed), "batch_time_min": profile.batch_time_min}
    plant = dict(res.cqas)
    for k, v in plant.items():
        rec[f"plant_{k}"] = float(v)
    measured: dict[str, float] = {}
    if res.status == "completed":
        img = measure_images(frames, settings=vision_settings, min_particles=min_particles)
        rec.update({k: v for k, v in img.items() if k != "particles"})
        if len(img["particles"]):
            img["particles"].to_csv(image_dir / "particles.csv", index=False)
        if frames and not np.isfinite(img["D50_image_um"]):
            store.log_event(run_id, 0.0, "warning", f"{img['n_particles']} particles kept in {len(frames)} final "
                                                    f"frames (< {min_particles}): no image-based D50")
        measured = dict(lab(LabRequest(label, run_id, int(round_), profile, res.status, plant, int(seed))))
        if d50_from == "image":
            measured["D50_um"] = rec["D50_image_um"]
        log = {k: v for k, v in measured.items() if v is not None and np.isfinite(v)}
        log.update({f"plant_{k}": v for k, v in plant.items()})
        log.update({"image_D10_um": rec["D10_image_um"], "image_D50_um": rec["D50_image_um"],
                    "image_D90_um": rec["D90_image_um"], "image_n_particles": float(rec["n_particles"])})
        if plant:  # the runner logged the plant's truth under the standard names: replace by measured
            for k in plant:
                log.setdefault(k, None)
            log["batch_time_min"] = plant.get("batch_time_min", profile.batch_time_min)
        store.log_cqas(run_id, {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in log.items()})
    else:
        rec.update({"D50_image_um": np.nan, "n_particles": 0, "n_frames": 0})
        warnings.warn(f"campaign run {label} ended {res.status}: {res.reason}; its CQAs stay unmeasured",
                      CampaignWarning, stacklevel=2)
    for k, v in measured.items():
        rec[k] = float(v) if v is not None else np.nan
    rec["wall_s"] = time.perf_counter() - t0
    return rec


# ----------------------------------------------------------------------------- the campaign
def _default_learn(options: dict) -> Callable[[pd.DataFrame, list[str], int], Any]:
    def learn(frame: pd.DataFrame, cqas: list[str], seed: int):
        from crystalloop.digital_twin.twin import fit_twin

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sparse-CQA and replicate warnings, repeated every round
            return fit_twin(frame, cqas=cqas, random_state=seed, **options)
    return learn


def _objective_values(frame: pd.DataFrame, objs, max_cycles: int) -> pd.DataFrame:
    """Measured objective values (batch time from the profile) of every DoE row."""
    out = pd.DataFrame(index=frame.index)
    for o in objs:
        if o.name == "batch_time_min":
            X = frame[feature_names(max_cycles)].to_numpy(float)
            out[o.name] = [ThermocycleProfile.from_features(x, max_cycles).batch_time_min for x in X]
        else:
            out[o.name] = frame[o.name].to_numpy(float) if o.name in frame else np.nan
    return out


def run_campaign(
    doe: pd.DataFrame | str | Path | None = None,
    objectives: str | Sequence[str] = "max:D50,min:DoA",
    *,
    backend: str = "sim://",
    n_rounds: int = 1,
    batch_size: int = 2,
    out_dir: str | Path | None = "campaign",
    store: Any = None,
    constraints: Any = None,
    limit: str | None = "DoA<=10",
    cycles: str | int | Sequence[int] = "1-4",
    mixed: bool = True,
    acquisition: str = "optimistic",
    kappa: float = 1.0,
    min_distance: float = 0.05,
    pop_size: int = 40,
    n_gen: int = 30,
    bounds: Any = None,
    learn: Callable[[pd.DataFrame, list[str], int], Any] | None = None,
    twin_options: dict | None = None,
    lab: Any = None,
    d50_from: str = "image",
    n_frames: int = 10,
    frame_interval_s: float = 5.0,
    vision_settings: Any = None,
    min_particles: int = 30,
    controller: str = "track",
    run_options: dict | None = None,
    backend_options: dict | None = None,
    reference: Sequence[float] | None = None,
    seed: int = 0,
    progress: Callable[[str, dict], None] | None = None,
) -> CampaignResult:
    """Run ``n_rounds`` rounds of the closed loop (see the module docstring).

    Parameters
    ----------
    doe : DataFrame or path, optional
        Starting DoE (``read_doe`` format). Omitted: continue from ``out_dir/doe.csv``.
        A DoE that already holds campaign runs (``C{r}-{k}``) continues the round count.
    objectives : str or sequence
        ``"max:D50,min:DoA"`` (short or full CQA names; ``batch_time`` from the recipe).
    backend : str
        ``sim://`` (options such as ``?kinetics=default&n_classes=120``; each run gets its own
        plant seed) or a hardware URL (then ``lab=`` is required).
    n_rounds, batch_size : int
        Rounds to run now (>= 1) and recipes per round (>= 1).
    out_dir : path or None
        Campaign folder: ``doe.csv``, ``history.csv``, ``rounds.csv``, ``campaign.json``, plots,
        ``round_XX/`` (recipes, twin, images). None: a temporary folder.
    store : ExperimentStore or path, optional
        Default ``out_dir/campaign.sqlite``.
    constraints : optional
        Outcome constraints for the design (e.g. ``"crystallinity>=50"``).
    limit : str or None
        Report "best first objective with ``limit``" per round (e.g. ``"DoA<=10"``).
    cycles, mixed, acquisition, kappa, min_distance, pop_size, n_gen
        Proposal (:func:`propose`).
    bounds : ProfileBounds or dict, optional
        Design bounds (DOMAIN.md §1 by default; a dict overrides single fields, e.g.
        ``{"cooling_rate_c_min": (0.1, 0.3)}`` for shorter batches).
    learn : callable(frame, cqas, seed) -> twin, optional
        Replaces the default :func:`~crystalloop.digital_twin.twin.fit_twin` with
        ``twin_options`` (default :data:`DEFAULT_TWIN_OPTIONS`: fast grid, 20 MC-CV splits,
        no augmentation).
    lab : None, path or callable(LabRequest) -> dict
        Offline CQAs (:mod:`~crystalloop.control.offline`); None = simulated on ``sim://``.
    d50_from : {"image", "lab"}
        Source of the D50 written to the DoE.
    n_frames, frame_interval_s, vision_settings, min_particles
        Final probe frames per run and the vision pipeline (:func:`measure_images`).
    controller, run_options, backend_options
        Passed to the runner (``sample_interval_s``, ``image_interval_s``, ...) and to
        :func:`~crystalloop.hardware.base.connect` (e.g. ``camera=CameraOptics(...)`` on sim).
    reference : sequence of float, optional
        Hypervolume reference (natural units); default: worst measured value of each
        objective in the starting DoE, 10 % of its range beyond. Kept in ``campaign.json``.
    seed : int
    progress : callable(stage, info), optional
        Stages ``learn``, ``propose``, ``run``, ``measured``, ``round``.

    Raises
    ------
    ConfigError, OptimizationError, BackendError, SchemaError
        Bad rounds/batch size, unknown objective, unknown backend, unreadable DoE — before
        anything runs.
    """
    for nm, v in (("n_rounds", n_rounds), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or int(v) != v or v < 1:
            raise ConfigError(f"{nm} must be a whole number >= 1, got {v!r}")
    if d50_from not in ("image", "lab"):
        raise ConfigError(f"d50_from must be 'image' or 'lab', got {d50_from!r}")
    if int(n_frames) != n_frames or n_frames < (1 if d50_from == "image" else 0):
        raise ConfigError(f"n_frames must be a whole number >= 1 when D50 comes from the images, got {n_frames!r}")
    scheme = _check_backend(backend)
    if out_dir is None:
        import tempfile

        out_dir = tempfile.mkdtemp(prefix="crystalloop-campaign-")
    out = Path(out_dir)
    if doe is None:
        if not (out / "doe.csv").is_file():
            raise ConfigError(f"no DoE given and {out / 'doe.csv'} does not exist; pass a starting DoE table")
        doe = out / "doe.csv"
    # checks above are cheap; the design and twin modules import scikit-learn, pymoo and SDV
    from crystalloop.control.campaign_report import plot_campaign, round_summary
    from crystalloop.digital_twin.design_spec import parse_constraints, parse_objectives
    from crystalloop.digital_twin.doe import CQA_NAMES, read_doe
    from crystalloop.digital_twin.optimize import hypervolume

    table = read_doe(doe, extra_columns="error")
    mc = table.max_cycles
    objs = parse_objectives(objectives, list(CQA_NAMES))
    cons = parse_constraints(constraints, list(CQA_NAMES)) if constraints else []
    lim = parse_constraints(limit, list(CQA_NAMES)) if limit else []
    names = [o.name for o in objs]
    needed = list(dict.fromkeys([n for n in names + [c.name for c in cons] + [c.name for c in lim]
                                 if n != "batch_time_min"]))
    missing = [c for c in needed if c not in table.cqa_names]
    if missing:
        raise ConfigError(f"{table.source}: the DoE has no column {missing} needed by the objectives/constraints "
                          f"{[str(o) for o in objs]}; its CQA columns are {table.cqa_names}")
    cqa_cols = list(dict.fromkeys([*table.cqa_names, *needed]))
    lab_fn = as_lab(lab, scheme, [c for c in cqa_cols if not (c == "D50_um" and d50_from == "image")])
    learn_fn = learn or _default_learn({**DEFAULT_TWIN_OPTIONS, **(twin_options or {})})
    out.mkdir(parents=True, exist_ok=True)
    if store is None or isinstance(store, (str, Path)):
        from crystalloop.store import ExperimentStore

        store = ExperimentStore(store if store is not None else out / "campaign.sqlite")
    say = progress or (lambda stage, info: None)
    meta_path = out / "campaign.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    frame = table.to_frame()
    start_round = campaign_rounds(frame["run_id"]) + 1
    vals0 = _objective_values(frame, objs, mc).dropna()
    sign = np.array([o.sign for o in objs])
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
        if ref.shape != (len(objs),):
            raise ConfigError(f"reference needs one value per objective {names}, got {list(np.ravel(ref))}")
    elif meta.get("objectives") == names and "reference" in meta:
        ref = np.asarray(meta["reference"], dtype=float)
    else:
        if vals0.empty:
            raise ConfigError(f"the DoE has no row with every objective {names} measured; give reference=")
        V = vals0.to_numpy(float)
        nadir = np.where(sign > 0, V.max(axis=0), V.min(axis=0))
        rng_ = V.max(axis=0) - V.min(axis=0)
        ref = nadir + sign * 0.1 * np.where(rng_ > 0, rng_, np.maximum(np.abs(nadir), 1.0))
    meta.update({"objectives": names, "reference": [float(v) for v in ref], "backend": backend,
                 "acquisition": acquisition, "kappa": kappa, "batch_size": int(batch_size), "seed": int(seed)})
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    hist_path = out / "history.csv"
    history = pd.read_csv(hist_path) if hist_path.is_file() else pd.DataFrame()
    rounds_path = out / "rounds.csv"
    rounds_df = pd.read_csv(rounds_path) if rounds_path.is_file() else pd.DataFrame()
    hv = [hypervolume(vals0.to_numpy(float), objs, ref)]
    twins, proposed = [], []
    for r in range(start_round, start_round + int(n_rounds)):
        rdir = out / f"round_{r:02d}"
        measured_rows = frame[cqa_cols].notna().any(axis=1)
        say("learn", {"round": r, "n_runs": int(measured_rows.sum())})
        t_learn = time.perf_counter()
        twin = learn_fn(frame, needed, int(seed) + r)
        t_learn = time.perf_counter() - t_learn
        twins.append(twin)
        if hasattr(twin, "save"):
            twin_dir = twin.save(rdir / "twin")
            store.save_model("campaign-twin", twin_dir, {"round": r, "campaign_dir": str(out), "n_runs": len(frame),
                                                         "cqas": list(twin.cqas)})
        say("propose", {"round": r})
        t_prop = time.perf_counter()
        existing = frame[list(twin.feature_names)].to_numpy(float)
        profiles, pred = propose(twin, objectives, int(batch_size), existing=existing, cycles=cycles, mixed=mixed,
                                 constraints=constraints, acquisition=acquisition, kappa=kappa,
                                 min_distance=min_distance, pop_size=pop_size, n_gen=n_gen, seed=int(seed) + r,
                                 bounds=bounds)
        t_prop = time.perf_counter() - t_prop
        from crystalloop.digital_twin.selection import export_recipe

        ran, rows, recs = [], [], []
        for k, prof in enumerate(profiles, start=1):
            label = f"C{r}-{k}"
            paths = export_recipe(prof.with_(name=label), rdir / "recipes", stem=label, predicted=pred.iloc[k - 1])
            prof = ThermocycleProfile.from_file(paths["recipe"])  # what a thermostat can set
            ran.append(prof)
            say("run", {"round": r, "label": label, "k": k, "n": int(batch_size), "profile": prof})
            rec = execute_recipe(prof, label=label, round_=r, backend=backend, seed=int(seed) * 1000 + r * 100 + k,
                                 store=store, lab=lab_fn, image_dir=rdir / "images" / label, controller=controller,
                                 n_frames=n_frames, frame_interval_s=frame_interval_s,
                                 vision_settings=vision_settings, min_particles=min_particles, d50_from=d50_from,
                                 run_options=run_options, backend_options=backend_options,
                                 meta={"campaign_dir": str(out), "acquisition": acquisition})
            for c in twin.cqas:
                rec[f"{c}_pred"] = float(pred[f"{c}_mean"].iloc[k - 1])
                rec[f"{c}_std"] = float(pred[f"{c}_std"].iloc[k - 1])
            rec["selected_by"] = pred["selected_by"].iloc[k - 1]
            recs.append(rec)
            say("measured", rec)
            row = {"run_id": label, **profiles_to_frame([prof], mc).iloc[0].to_dict()}
            row.update({c: rec.get(c, np.nan) for c in cqa_cols})
            rows.append(row)
        proposed.append(ran)
        frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
        frame = frame[["run_id", *feature_names(mc), *cqa_cols]]
        frame.to_csv(out / "doe.csv", index=False)
        table = read_doe(out / "doe.csv")  # the written DoE is what the next round learns from
        frame = table.to_frame()
        new = pd.DataFrame(recs)
        history = pd.concat([history, new], ignore_index=True) if len(history) else new
        history.to_csv(hist_path, index=False)
        vals = _objective_values(frame, objs, mc).dropna()
        hv.append(hypervolume(vals.to_numpy(float), objs, ref))
        summ = round_summary(r, frame, new, objs, lim, ref, mc, twin_cqas=list(twin.cqas))
        summ.update({"learn_s": t_learn, "propose_s": t_prop, "run_measure_s": float(new["wall_s"].sum())})
        rounds_df = pd.concat([rounds_df, pd.DataFrame([summ])], ignore_index=True)
        rounds_df.to_csv(rounds_path, index=False)
        say("round", summ)
    files = plot_campaign(out, frame, history, rounds_df, objs, ref, mc, lim)
    files.update({"doe": out / "doe.csv", "history": hist_path, "rounds": rounds_path, "meta": meta_path})
    return CampaignResult(doe=frame, history=history, rounds=rounds_df, hypervolume=hv, twins=twins,
                          profiles=proposed, out_dir=out, files=files)

