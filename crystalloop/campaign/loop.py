"""The closed-loop campaign: learn → propose → run → measure (images) → learn again.

"Images in the loop of a data-driven design campaign". Each round of :func:`run_campaign`

1. **learns** a digital twin from every measured run so far (the starting DoE plus the
   campaign's own runs): by default (``twin_model="hybrid"``) a
   :class:`~crystalloop.digital_twin.HybridTwin` (a kinetic model fitted to D50 under a GP per
   CQA, with the compound's solubility curve; the best twin on fresh plant recipes and in the
   campaign-vs-qNEHVI benchmark, docs/benchmarks.md), with ``twin_model="gp"`` a
   :class:`~crystalloop.digital_twin.FeatureGPTwin` (a GP per CQA on physical profile features),
   with ``twin_model="ensemble"`` the tree-ensemble :func:`~crystalloop.digital_twin.twin.fit_twin`
   with fast settings (``twin_options``), or any ``learn(frame, cqas, seed) -> twin``;
2. **proposes** ``batch_size`` recipes (:mod:`crystalloop.campaign.propose`): NSGA-II on an
   acquisition view of the twin, then a batch spread along the predicted front;
3. **runs** each recipe on the backend with the single-batch runner
   (:mod:`crystalloop.campaign.execute`: safety layer, store logging, ``kind="campaign"``)
   and grabs probe images at the end of the batch;
4. **measures** D50 from the images (:mod:`crystalloop.campaign.measure`) and the offline
   CQAs from a lab hook (:mod:`crystalloop.campaign.lab`);
5. appends the rows to the DoE, writes it (``doe.csv``; the round number lives in the run
   labels ``C{round}-{k}``), and reports the round (:mod:`crystalloop.campaign.report`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from crystalloop.campaign._labels import campaign_rounds, run_label
from crystalloop.campaign.execute import execute_recipe, finished_run, recover_recipe
from crystalloop.campaign.lab import as_lab
from crystalloop.campaign.propose import propose
from crystalloop.campaign.report import objective_values, plot_campaign, round_summary
from crystalloop.errors import CampaignWarning, ConfigError
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame

__all__ = ["CampaignResult", "run_campaign", "DEFAULT_TWIN_OPTIONS", "DEFAULT_GP_OPTIONS", "TWIN_MODELS",
           "SavableTwin"]

@runtime_checkable
class SavableTwin(Protocol):
    """A twin that can write itself to a model folder (the default ``fit_twin`` twin can; a
    stand-in ``learn=`` may not): each round's twin is then kept in ``round_XX/twin``."""

    def save(self, path: str | Path) -> Path:
        """Write the model folder; return its path."""
        ...


#: fast twin fitting for a campaign round (seconds, not minutes); override with ``twin_options``
DEFAULT_TWIN_OPTIONS: dict[str, Any] = {"grid": "fast", "n_splits": 20, "augment": False, "cv": 3,
                                        "test_size": 0.15, "n_jobs": 1}
#: settings of the GP twin of a round (``twin_model="gp"``): every physical feature (about a second)
DEFAULT_GP_OPTIONS: dict[str, Any] = {"features": "all"}
#: twins a campaign can learn each round
TWIN_MODELS = ("ensemble", "gp", "hybrid")


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


# ----------------------------------------------------------------------------- the campaign
def _learner(fit: Callable[..., Any], **options: Any) -> Callable[[pd.DataFrame, list[str], int], Any]:
    """``learn(frame, cqas, seed)`` calling ``fit`` quietly: its sparse-CQA, replicate and honesty warnings
    would repeat every round, and the round report scores the twin anyway."""
    def learn(frame: pd.DataFrame, cqas: list[str], seed: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fit(frame, cqas=cqas, random_state=seed, **options)
    return learn


def _plant_solubility(backend: str, backend_options: dict | None) -> Any:
    """The simulated plant's solubility curve (mg/g solvent, T in °C) through its :class:`GroundTruth`,
    as the exact polynomial when the curve is one (the kinetic sets are), else as a table on 0–90 °C."""
    from crystalloop.digital_twin.features import SolubilityCurve
    from crystalloop.hardware.base import GroundTruth, connect

    cz = connect(backend, **dict(backend_options or {}))
    try:
        gt = cz.ground_truth
        if not isinstance(gt, GroundTruth):
            return None
        T = np.arange(0.0, 91.0, 2.0)
        c = 1000.0 * np.array([gt.solubility_kg_kg(float(t)) for t in T])
    finally:
        cz.close()
    P = np.polynomial.polynomial
    for deg in range(1, 7):
        a = P.polyfit(T, c, deg)
        if np.max(np.abs(P.polyval(T, a) - c)) <= 1e-9 * np.max(np.abs(c)):
            return SolubilityCurve(coefficients=tuple(float(f"{v:.12g}") for v in a))
    return SolubilityCurve(table_t_c=tuple(T), table_mg_g=tuple(c))


def _check_twin_options(twin_model: str, twin_options: dict | None) -> None:
    """Refuse ``twin_options`` the GP or hybrid twin does not take (e.g. the ensemble's ``grid``), before anything runs."""
    import inspect

    from crystalloop.digital_twin.gp import FeatureGPRegressor, FeatureGPTwin
    from crystalloop.digital_twin.hybrid import HybridTwin

    fixed = {"self", "cqas", "solubility", "max_cycles", "random_state", "regressor_params"}
    classes = (HybridTwin,) if twin_model == "hybrid" else (FeatureGPTwin, FeatureGPRegressor)
    allowed = sorted({p for c in classes for p in inspect.signature(c.__init__).parameters} - fixed)
    bad = sorted(set(twin_options or {}) - set(allowed))
    if bad:
        raise ConfigError(f"twin_options {bad} do not apply to twin_model={twin_model!r} (they tune the tree-ensemble "
                          f"twin: add twin_model='ensemble'); the {twin_model} twin takes {allowed}")


def _fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a DoE's content (the same table read from another path has the same print)."""
    import hashlib

    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write a table so that a kill mid-write leaves the previous file, never half a table."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pending_rounds(out: Path) -> list[int]:
    """Rounds whose plan was saved but whose summary is not in ``rounds.csv`` (interrupted)."""
    rounds_path = out / "rounds.csv"
    done = set(pd.read_csv(rounds_path)["round"].astype(int)) if rounds_path.is_file() else set()
    planned = [int(d.name[len("round_"):]) for d in out.glob("round_*") if (d / "proposal.csv").is_file()
               and d.name[len("round_"):].isdigit()]
    return sorted(r for r in planned if r not in done)


def _save_plan(rdir: Path, r: int, profiles: list[ThermocycleProfile], pred: pd.DataFrame, cqas: list[str],
               learn_s: float, propose_s: float) -> dict[str, Any]:
    """Write the round's recipes (settable precision) and ``proposal.csv`` before anything runs."""
    from crystalloop.digital_twin.design import export_recipe

    labels, ran = [], []
    for k, prof in enumerate(profiles, start=1):
        label = run_label(r, k)
        paths = export_recipe(prof.with_(name=label), rdir / "recipes", stem=label, predicted=pred.iloc[k - 1])
        ran.append(ThermocycleProfile.from_file(paths["recipe"]))  # what a thermostat can set
        labels.append(label)
    table = pred.reset_index(drop=True).copy()
    table.insert(0, "run_id", labels)
    table["learn_s"], table["propose_s"] = learn_s, propose_s
    _write_csv(table, rdir / "proposal.csv")
    return {"labels": labels, "profiles": ran, "pred": table, "cqas": list(cqas), "learn_s": learn_s,
            "propose_s": propose_s}


def _load_plan(rdir: Path, max_cycles: int) -> dict[str, Any] | None:
    """The saved plan of an interrupted round, or None for a round not yet planned."""
    path = rdir / "proposal.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    labels = [str(v) for v in table["run_id"]]
    profiles = [ThermocycleProfile.from_file(rdir / "recipes" / f"{lb}.yaml") for lb in labels]
    cqas = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    return {"labels": labels, "profiles": profiles, "pred": table, "cqas": cqas,
            "learn_s": float(table["learn_s"].iloc[0]), "propose_s": float(table["propose_s"].iloc[0])}


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
    acquisition: str = "ehvi",
    kappa: float = 1.0,
    min_distance: float = 0.05,
    pop_size: int = 80,
    n_gen: int = 50,
    bounds: Any = None,
    learn: Callable[[pd.DataFrame, list[str], int], Any] | None = None,
    twin_model: str = "hybrid",
    twin_options: dict | None = None,
    solubility: Any = "auto",
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
        Starting DoE (``read_doe`` format). A DoE that already holds campaign runs
        (``C{r}-{k}``) continues the round count. Omitted: continue the campaign in
        ``out_dir`` (its ``doe.csv``) for ``n_rounds`` more rounds.

        **Resume.** Given again for an ``out_dir`` that holds a campaign started from the same
        DoE (same content), the call continues that campaign where it stopped, up to
        ``n_rounds`` rounds in all: so re-running the same command after a crash or Ctrl-C
        finishes the interrupted round — its finished runs are kept (each run is written to
        ``doe.csv`` and ``history.csv`` as soon as it is measured), a batch that completed on
        the plant but was not yet measured is measured again from its stored final frames,
        and only the missing recipes of the round (as proposed before the stop, from
        ``round_XX/proposal.csv``) run — then goes on with the remaining rounds. A different
        starting DoE for the same ``out_dir`` is refused.
    objectives : str or sequence
        ``"max:D50,min:DoA"`` (short or full CQA names; ``batch_time`` from the recipe).
    backend : str
        ``sim://`` (options such as ``?kinetics=default&n_classes=120``; each run gets its own
        plant seed) or a hardware URL (then ``lab=`` is required).
    n_rounds, batch_size : int
        Rounds (>= 1; the campaign's total when resuming from the same starting DoE, more
        rounds when ``doe`` is omitted) and recipes per round (>= 1).
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
        Proposal (:func:`propose`). Default acquisition ``"ehvi"``: NSGA-II on the optimistic
        twin (mean ± ``kappa`` std), then the batch by expected hypervolume improvement under the
        twin's mean and std (``"optimistic"``: the batch spread along the optimistic front).
    bounds : ProfileBounds or dict, optional
        Design bounds (DOMAIN.md §1 by default; a dict overrides single fields, e.g.
        ``{"cooling_rate_c_min": (0.1, 0.3)}`` for shorter batches).
    learn : callable(frame, cqas, seed) -> twin, optional
        Replaces the twin of ``twin_model``.
    twin_model : {"hybrid", "gp", "ensemble"}
        Default ``"hybrid"``. ``"ensemble"``: :func:`~crystalloop.digital_twin.twin.fit_twin` with ``twin_options``
        (default :data:`DEFAULT_TWIN_OPTIONS`: fast grid, 20 MC-CV splits, no augmentation).
        ``"gp"``: :func:`~crystalloop.digital_twin.gp.fit_gp_twin` with ``twin_options``
        (default :data:`DEFAULT_GP_OPTIONS`) and ``solubility``; about a second per round, and
        more accurate on fresh recipes (docs/benchmarks.md). ``"hybrid"``:
        :func:`~crystalloop.digital_twin.hybrid.fit_hybrid_twin` with ``twin_options`` and
        ``solubility`` (a few CPU-s per round; the most accurate on fresh recipes). Each round's
        twin is saved in ``round_XX/twin`` in every case.
    solubility : "auto", None, SolubilityCurve, coefficients, or path
        The compound's solubility curve for the GP or hybrid twin (``twin_model="gp"``/``"hybrid"``; mg/g solvent, T in
        °C, as :func:`~crystalloop.digital_twin.gp.solubility_curve` reads it). ``"auto"``: a
        simulated backend's own curve (its :class:`~crystalloop.hardware.base.GroundTruth`: the
        kinetic set's ``solubility``); on hardware none, and the GP uses the profile features only
        (a :class:`~crystalloop.errors.CampaignWarning` says so) - give the lab's curve there.
    lab : None, path or callable(LabRequest) -> dict
        Offline CQAs (:mod:`~crystalloop.campaign.lab`); None = simulated on ``sim://``.
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
    if twin_model not in TWIN_MODELS:
        raise ConfigError(f"twin_model must be one of {list(TWIN_MODELS)}, got {twin_model!r}")
    if int(n_frames) != n_frames or n_frames < (1 if d50_from == "image" else 0):
        raise ConfigError(f"n_frames must be a whole number >= 1 when D50 comes from the images, got {n_frames!r}")
    from crystalloop.control import RunOptions
    from crystalloop.hardware.base import is_simulated

    simulated = is_simulated(backend)  # also refuses an unknown scheme before anything runs
    RunOptions(controller=controller, kind="campaign", **dict(run_options or {}))  # refuse bad run options now
    if out_dir is None:
        import tempfile

        out_dir = tempfile.mkdtemp(prefix="crystalloop-campaign-")
    out = Path(out_dir)
    continuing = doe is None or (isinstance(doe, (str, Path)) and Path(doe).resolve() == (out / "doe.csv").resolve())
    if doe is None:
        if not (out / "doe.csv").is_file():
            raise ConfigError(f"no DoE given and {out / 'doe.csv'} does not exist; pass a starting DoE table")
        doe = out / "doe.csv"
    # checks above are cheap; the design and twin modules import scikit-learn, pymoo and SDV
    from crystalloop.cqa import CQA_NAMES
    from crystalloop.digital_twin.design import hypervolume, parse_constraints, parse_objectives
    from crystalloop.digital_twin.doe import read_doe

    table = read_doe(doe, extra_columns="error")
    meta_path = out / "campaign.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    pending = _pending_rounds(out)
    if continuing:  # n_rounds more rounds; finishing an interrupted round counts as one
        first = min(pending) if pending else campaign_rounds(table.to_frame()["run_id"]) + 1
        target = first + int(n_rounds) - 1
    else:
        fp = _fingerprint(table.to_frame())
        if (out / "doe.csv").is_file():
            if meta.get("start_doe") != fp:
                what = (f"a campaign started from another DoE ({meta.get('start_doe_source')})" if meta.get("start_doe")
                        else "a campaign whose starting DoE is not recorded")
                raise ConfigError(f"{out} holds {what}; give another output folder, or omit the DoE to continue "
                                  f"that campaign")
            table = read_doe(out / "doe.csv", extra_columns="error")  # the same command again: resume
        else:
            meta.update(start_doe=fp, start_doe_source=str(table.source),
                        first_round=campaign_rounds(table.to_frame()["run_id"]) + 1)
            pending = []
        target = int(meta["first_round"]) + int(n_rounds) - 1  # n_rounds in all
        first = min(pending) if pending else campaign_rounds(table.to_frame()["run_id"]) + 1
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
    lab_fn = as_lab(lab, backend, simulated, [c for c in cqa_cols if not (c == "D50_um" and d50_from == "image")])
    sol_info = None
    if learn is not None:
        learn_fn = learn
    elif twin_model in ("gp", "hybrid"):
        from crystalloop.digital_twin.gp import solubility_curve

        if isinstance(solubility, str) and solubility == "auto":
            curve = _plant_solubility(backend, backend_options) if simulated else None
            if curve is None:
                what = ("the hybrid twin's kinetic part is off and every CQA gets a GP on the profile features"
                        if twin_model == "hybrid" else "the GP twin uses the profile features only")
                warnings.warn(f"campaign on {backend}: no solubility curve known, so {what}; give the compound's "
                              f"curve (solubility=, --solubility) for the saturation and dissolution features",
                              CampaignWarning, stacklevel=2)
        else:
            curve = solubility_curve(solubility)
        sol_info = None if curve is None else curve.to_dict()
        _check_twin_options(twin_model, twin_options)
        if twin_model == "hybrid":
            from crystalloop.digital_twin.hybrid import fit_hybrid_twin

            learn_fn = _learner(fit_hybrid_twin, solubility=curve, **(twin_options or {}))
        else:
            from crystalloop.digital_twin.gp import fit_gp_twin

            learn_fn = _learner(fit_gp_twin, solubility=curve, **{**DEFAULT_GP_OPTIONS, **(twin_options or {})})
    else:
        from crystalloop.digital_twin.twin import fit_twin

        learn_fn = _learner(fit_twin, **{**DEFAULT_TWIN_OPTIONS, **(twin_options or {})})
    out.mkdir(parents=True, exist_ok=True)
    if store is None or isinstance(store, (str, Path)):
        from crystalloop.store import ExperimentStore

        store = ExperimentStore(store if store is not None else out / "campaign.sqlite")
    say = progress or (lambda stage, info: None)
    frame = table.to_frame()
    vals0 = objective_values(frame, objs, mc).dropna()
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
                 "acquisition": acquisition, "kappa": kappa, "batch_size": int(batch_size), "seed": int(seed),
                 "twin_model": twin_model if learn is None else "custom", "solubility": sol_info})
    _write_text(meta_path, json.dumps(meta, indent=2) + "\n")

    hist_path = out / "history.csv"
    history = pd.read_csv(hist_path) if hist_path.is_file() else pd.DataFrame()
    rounds_path = out / "rounds.csv"
    rounds_df = pd.read_csv(rounds_path) if rounds_path.is_file() else pd.DataFrame()
    hv = [hypervolume(vals0.to_numpy(float), objs, ref)]
    twins, proposed = [], []
    r = first
    while r <= target:
        rdir = out / f"round_{r:02d}"
        t_learn = t_prop = 0.0
        plan = _load_plan(rdir, mc)
        if plan is None:  # a new round: learn, propose, and keep the plan before anything runs
            measured_rows = frame[cqa_cols].notna().any(axis=1)
            say("learn", {"round": r, "n_runs": int(measured_rows.sum())})
            t_learn = time.perf_counter()
            twin = learn_fn(frame, needed, int(seed) + r)
            t_learn = time.perf_counter() - t_learn
            twins.append(twin)
            if isinstance(twin, SavableTwin):
                twin_dir = twin.save(rdir / "twin")
                store.save_model("campaign-twin", twin_dir, {"round": r, "campaign_dir": str(out),
                                                             "n_runs": len(frame), "cqas": list(twin.cqas)})
            say("propose", {"round": r})
            t_prop = time.perf_counter()
            existing = frame[list(twin.feature_names)].to_numpy(float)
            profiles, pred = propose(twin, objectives, int(batch_size), existing=existing, cycles=cycles,
                                     mixed=mixed, constraints=constraints, acquisition=acquisition, kappa=kappa,
                                     min_distance=min_distance, pop_size=pop_size, n_gen=n_gen,
                                     seed=int(seed) + r, bounds=bounds,
                                     measured=objective_values(frame, objs, mc).to_numpy(float), reference=ref)
            t_prop = time.perf_counter() - t_prop
            plan = _save_plan(rdir, r, profiles, pred, list(twin.cqas), t_learn, t_prop)
        else:
            say("resume", {"round": r, "done": [lb for lb in plan["labels"] if lb in set(frame["run_id"])]})
        ran, recs = [], []
        for k, (label, prof) in enumerate(zip(plan["labels"], plan["profiles"], strict=True), start=1):
            ran.append(prof)
            if label in set(frame["run_id"].astype(str)):  # measured before the stop: keep, never repeat
                continue
            run_kw = {"label": label, "round_": r, "seed": int(seed) * 1000 + r * 100 + k, "store": store,
                      "lab": lab_fn, "image_dir": rdir / "images" / label, "n_frames": n_frames,
                      "vision_settings": vision_settings, "min_particles": min_particles, "d50_from": d50_from}
            rec = None
            done_id = finished_run(store, label, out)
            if done_id is not None:  # the batch completed on the plant before the stop: measure it again
                rec = recover_recipe(done_id, prof, **run_kw)
            if rec is None:
                say("run", {"round": r, "label": label, "k": k, "n": len(plan["labels"]), "profile": prof})
                rec = execute_recipe(prof, backend=backend, controller=controller, frame_interval_s=frame_interval_s,
                                     run_options=run_options, backend_options=backend_options,
                                     meta={"campaign_dir": str(out), "acquisition": acquisition}, **run_kw)
            pred = plan["pred"]
            for c in plan["cqas"]:
                rec[f"{c}_pred"] = float(pred[f"{c}_mean"].iloc[k - 1])
                rec[f"{c}_std"] = float(pred[f"{c}_std"].iloc[k - 1])
            rec["selected_by"] = pred["selected_by"].iloc[k - 1]
            recs.append(rec)
            say("measured", rec)
            row = {"run_id": label, **profiles_to_frame([prof], mc).iloc[0].to_dict()}
            row.update({c: rec.get(c, np.nan) for c in cqa_cols})
            frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)[["run_id", *feature_names(mc),
                                                                                  *cqa_cols]]
            _write_csv(frame, out / "doe.csv")  # one run at a time: a stop loses no finished run
            history = pd.concat([history, pd.DataFrame([rec])], ignore_index=True) if len(history) \
                else pd.DataFrame([rec])
            _write_csv(history, hist_path)
        proposed.append(ran)
        table = read_doe(out / "doe.csv")  # the written DoE is what the next round learns from
        frame = table.to_frame()
        new = history[history["round"] == r] if len(history) else pd.DataFrame()
        vals = objective_values(frame, objs, mc).dropna()
        hv.append(hypervolume(vals.to_numpy(float), objs, ref))
        summ = round_summary(r, frame, new, objs, lim, ref, mc, twin_cqas=plan["cqas"])
        summ.update({"learn_s": plan["learn_s"], "propose_s": plan["propose_s"],
                     "run_measure_s": float(new["wall_s"].sum())})
        rounds_df = pd.concat([rounds_df, pd.DataFrame([summ])], ignore_index=True)
        _write_csv(rounds_df, rounds_path)
        say("round", summ)
        r += 1
    files = plot_campaign(out, frame, history, rounds_df, objs, ref, mc, lim)
    files.update({"doe": out / "doe.csv", "history": hist_path, "rounds": rounds_path, "meta": meta_path})
    return CampaignResult(doe=frame, history=history, rounds=rounds_df, hypervolume=hv, twins=twins,
                          profiles=proposed, out_dir=out, files=files)
