"""Campaign vs BoTorch qNEHVI: hypervolume regret against the plant's true front (issue 16).

Five arms start from the same 31-run DoE (``examples/doe/doe.csv``), run ``--rounds`` batches of
``--batch`` recipes on the same virtual plant and are scored against the same ground truth:

* ``campaign`` — :func:`crystalloop.campaign.run_campaign` on ``sim://`` (the real code path: runner,
  store, lab hook), the twin a :class:`~crystalloop.digital_twin.gp.FeatureGPTwin` (``learn=``) and
  the acquisition ``--acquisition`` of :mod:`crystalloop.campaign.propose`;
* ``campaign-hybrid`` — the same loop with its own default twin (``twin_model="hybrid"``:
  :class:`~crystalloop.digital_twin.hybrid.HybridTwin`, the solubility curve read from the plant)
  and, unless ``--pop-size``/``--n-gen`` are given, its default NSGA-II budget;
* ``qnehvi`` — BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` (the recommended form of qNEHVI)
  on a ``ModelListGP`` of ``SingleTaskGP`` (one per objective, inputs normalized to the design box,
  outcomes standardized), ``optimize_acqf_mixed`` over the number of cycles 1–4 with ``q = batch``;
* ``random`` — uniform feasible recipes of the same design space (1–4 cycles, mixed);
* ``oneshot`` — one twin fitted on the DoE, NSGA-II once, the recipes spread along its predicted
  front run in order (``--rounds × --batch`` of them).

Every arm's recipes run through the campaign's own executor
(:func:`crystalloop.campaign.execute.execute_recipe`, ``sim://``: kinetic variability on, plant seed
``seed·1000 + round·100 + k`` for run ``k`` of round ``round``, the same for every arm) and are
measured by the same :class:`~crystalloop.campaign.lab.SimulatedLab` (D50 3 % relative, DoA and
crystallinity 3 points, 1 σ: the DoE's noise), D50 from the lab, no probe images.

Scores: the hypervolume (reference D50 50 µm, DoA 100 %, ``benchmarks/plant_truth.py``) of the
DoE's and the arm's recipes as a fraction of the true front's (``benchmarks/results/plant_truth/
summary.json``, every nominal plant batch evaluated there), (a) on the **nominal plant's** CQAs of
the recipes (variability off, noise off: the regret against the truth, primary) and (b) on the
measured values; after 0, 3, 6, ... plant runs beyond the DoE.

qNEHVI settings are those of BoTorch's multi-objective tutorial (10 restarts, 512 raw samples, 128
quasi-MC samples, sequential greedy over the batch), torch on one thread (the machine's cores are
shared). Its inputs are the recipe's feature vector; its search space is the design space written
as a unit box in which every point is a feasible recipe (each temperature a fraction of the range
its direction allows after the previous one, as :meth:`DesignSpace.sample` draws them), decoded
differentiably, so ``optimize_acqf_mixed`` needs no constraints; the number of cycles is its fixed
(discrete) feature.

Run:  python benchmarks/bench_campaign_regret.py [--quick] [--seeds 0,1,2] [--arms campaign,qnehvi,random,oneshot]
      [--jobs 12] (one invocation; ``--jobs`` runs the (arm, seed) tasks in parallel processes), or arms/seeds as parallel invocations with ``--tag NAME`` each, then ``--merge``
      (table, plot and summary of every ``curves_*.csv`` in ``--out``). Without BoTorch
      (``pip install -e '.[bench]'``) the qnehvi arm is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from plant_truth import CQAS, MAX_CYCLES, REFERENCE, run_batch  # noqa: E402

from crystalloop.campaign import run_campaign  # noqa: E402
from crystalloop.campaign.execute import execute_recipe  # noqa: E402
from crystalloop.campaign.lab import SimulatedLab  # noqa: E402
from crystalloop.campaign.propose import propose  # noqa: E402
from crystalloop.digital_twin.design import DesignSpace, hypervolume, parse_objectives  # noqa: E402
from crystalloop.digital_twin.doe import read_doe  # noqa: E402
from crystalloop.digital_twin.features import SolubilityCurve  # noqa: E402
from crystalloop.digital_twin.gp import FeatureGPTwin  # noqa: E402
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "campaign_regret"
DOE = ROOT / "examples" / "doe" / "doe.csv"
OBJECTIVES = "max:D50,min:DoA"
OBJS = parse_objectives(OBJECTIVES, CQAS)
REF = np.array([REFERENCE[o.name] for o in OBJS])
FEATS = feature_names(MAX_CYCLES)
SOLUBILITY = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))  # the default kinetic set, mg/g
ARMS = ("campaign", "campaign-hybrid", "qnehvi", "random", "oneshot")
REPORT_AT = (0, 3, 6, 9, 15, 21, 30)


def true_hv() -> float:
    s = json.loads((ROOT / "benchmarks" / "results" / "plant_truth" / "summary.json").read_text())
    return float(s["fronts"]["hypervolume_all_evaluations"])


def plant_seed(seed: int, rnd: int, k: int) -> int:
    """The plant seed of run ``k`` of round ``rnd`` — :func:`run_campaign`'s own rule, for every arm."""
    return int(seed) * 1000 + int(rnd) * 100 + int(k)


def gp_twin(frame: pd.DataFrame, cqas, seed: int) -> FeatureGPTwin:
    """The campaign's twin: a GP on every physical profile feature (with the solubility curve)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureGPTwin(list(cqas), solubility=SOLUBILITY, features="all", random_state=int(seed)).fit(frame)


class _Nominal:
    """Nominal-plant CQAs of recipes (variability and noise off, seed 0), cached per feature vector."""

    def __init__(self) -> None:
        self.cache: dict[bytes, list[float]] = {}
        self.cpu_s = 0.0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        t0 = time.process_time()
        out = []
        for x in np.atleast_2d(np.asarray(X, float)):
            key = np.round(x, 9).tobytes()
            if key not in self.cache:
                self.cache[key] = run_batch(x, 0, False)
            out.append(self.cache[key])
        self.cpu_s += time.process_time() - t0
        return np.asarray(out, float).reshape(-1, len(CQAS))


class _Plant:
    """Runs recipes of one arm and seed through the campaign's executor on ``sim://``."""

    def __init__(self, workdir: Path, seed: int) -> None:
        from crystalloop.store import ExperimentStore

        self.dir = workdir
        self.seed = int(seed)
        self.store = ExperimentStore(workdir / "plant.sqlite")
        self.lab = SimulatedLab(CQAS)

    def run(self, profiles: list[ThermocycleProfile], rnd: int) -> pd.DataFrame:
        rows = []
        for k, p in enumerate(profiles, start=1):
            label = f"C{rnd}-{k}"
            rec = execute_recipe(p, label=label, round_=rnd, backend="sim://", seed=plant_seed(self.seed, rnd, k),
                                 store=self.store, lab=self.lab, image_dir=self.dir / "img" / label, n_frames=0,
                                 d50_from="lab")
            row = {"run_id": label, **profiles_to_frame([p], MAX_CYCLES).iloc[0][FEATS].to_dict()}
            row.update({c: rec.get(c, np.nan) for c in CQAS})
            row["plant_seed"] = plant_seed(self.seed, rnd, k)
            rows.append(row)
        return pd.DataFrame(rows)

# ----------------------------------------------------------------------------- qNEHVI (BoTorch)
class _Encoding:
    """The design space (1–4 cycles, no holds) as a unit box for BoTorch, decoded differentiably.

    Variables: ``c0, seed loading, start temperature, n_cycles`` (natural units, fixed per
    ``optimize_acqf_mixed`` branch), then each segment's temperature as the fraction of the range
    its direction allows given the previous one (as :meth:`DesignSpace.sample` draws it), then
    each segment's rate in its bound. Every point of the box is a feasible recipe; the GP's inputs
    are the recipe's feature vector (:func:`feature_names`), normalized to the design box.
    """

    def __init__(self) -> None:
        self.space = DesignSpace((1, MAX_CYCLES))
        self.xl, self.xu = self.space.bounds_arrays()
        self.tlo, self.thi = float(self.xl[4]), float(self.xu[4])
        self.step = float(self.space.min_step_c)
        self.s = self.space.n_slots
        # feature bounds (design box; DoE rows with holds or 0 cycles fall slightly outside, fine)
        b = self.space.bounds
        flo = [b.c0_mg_g[0], b.seed_loading[0], self.tlo, 1.0, 0.0]
        fhi = [b.c0_mg_g[1], b.seed_loading[1], self.thi, float(2 * MAX_CYCLES + 1), float(MAX_CYCLES)]
        rmax = max(b.cooling_rate_c_min[1], b.heating_rate_c_min[1])
        for _ in range(self.s):
            flo += [self.tlo, 0.0, b.hold_min[0]]
            fhi += [self.thi, rmax, max(b.hold_min[1], 1.0)]
        self.flo, self.fhi = np.asarray(flo), np.asarray(fhi)

    @property
    def dim(self) -> int:
        return 4 + 2 * self.s

    def box(self):
        import torch

        lo = torch.zeros(self.dim, dtype=torch.double)
        hi = torch.ones(self.dim, dtype=torch.double)
        lo[3], hi[3] = 1.0, float(MAX_CYCLES)
        return torch.stack([lo, hi])

    def decision(self, U):
        """Box points (..., dim) -> decision vectors of the mixed DesignSpace (..., n_var), torch."""
        import torch

        xl, xu = (torch.as_tensor(v, dtype=U.dtype) for v in (self.xl, self.xu))
        c0 = xl[0] + U[..., 0] * (xu[0] - xl[0])
        sl = xl[1] + U[..., 1] * (xu[1] - xl[1])
        t0 = self.tlo + self.step + U[..., 2] * (self.thi - self.tlo - self.step)
        nc = U[..., 3]
        temps, prev = [], t0
        for k in range(self.s):
            u = U[..., 4 + k]
            t = self.tlo + u * (prev - self.step - self.tlo) if k % 2 == 0 else \
                prev + self.step + u * (self.thi - prev - self.step)
            temps.append(t)
            prev = t
        o = 4 + self.s
        rates = [xl[o + k] + U[..., o + k] * (xu[o + k] - xl[o + k]) for k in range(self.s)]
        return torch.stack([c0, sl, t0, nc, *temps, *rates], dim=-1)

    def features(self, D):
        """Decision vectors (..., n_var) -> normalized feature vectors (..., 5 + 3 slots), torch."""
        import torch

        n_seg = 2 * torch.round(D[..., 3]) + 1
        temps, rates = D[..., 4:4 + self.s], D[..., 4 + self.s:4 + 2 * self.s]
        used = torch.arange(self.s, dtype=D.dtype) < n_seg.unsqueeze(-1)
        idx = (n_seg - 1).long().unsqueeze(-1)
        last = torch.gather(temps, -1, idx)
        T = torch.where(used, temps, last)
        R = torch.where(used, rates, torch.zeros_like(rates))
        H = torch.zeros_like(rates)
        seg = torch.stack([T, R, H], dim=-1).flatten(-2)
        F = torch.cat([D[..., :3], n_seg.unsqueeze(-1), torch.round(D[..., 3:4]), seg], dim=-1)
        flo, fhi = (torch.as_tensor(v, dtype=D.dtype) for v in (self.flo, self.fhi))
        return (F - flo) / (fhi - flo)

    def normalize(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, float) - self.flo) / (self.fhi - self.flo)


def propose_qnehvi(frame: pd.DataFrame, q: int, *, seed: int, reference: np.ndarray, num_restarts: int = 10,
                   raw_samples: int = 512, mc_samples: int = 128) -> list[ThermocycleProfile]:
    """``q`` recipes by BoTorch's qLogNEHVI on GPs fitted to every measured run in ``frame``."""
    import torch
    from botorch.acquisition import AcquisitionFunction
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf_mixed
    from botorch.sampling import SobolQMCNormalSampler
    from gpytorch.mlls import SumMarginalLogLikelihood

    torch.manual_seed(seed)
    enc = _Encoding()
    Xn = torch.as_tensor(enc.normalize(frame[FEATS].to_numpy(float)), dtype=torch.double)
    sign = np.array([-o.sign for o in OBJS], float)  # maximization form: +D50, -DoA
    models = []
    for j, o in enumerate(OBJS):
        y = frame[o.name].to_numpy(float) * sign[j]
        ok = np.isfinite(y)
        models.append(SingleTaskGP(Xn[ok], torch.as_tensor(y[ok], dtype=torch.double).unsqueeze(-1),
                                   outcome_transform=Standardize(m=1)))
    model = ModelListGP(*models)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
    base = Xn  # every measured recipe (the GP fills in an objective a run lacks)
    acqf = qLogNoisyExpectedHypervolumeImprovement(
        model=model, ref_point=(np.asarray(reference, float) * sign).tolist(), X_baseline=base,
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed), prune_baseline=True,
        cache_root=False)

    class _OnBox(AcquisitionFunction):
        """The acquisition on the feasible unit box: decode, then qLogNEHVI on the features."""

        def __init__(self) -> None:
            super().__init__(model=model)
            self.X_pending = None

        def set_X_pending(self, X_pending=None) -> None:  # optimize_acqf_mixed's sequential greedy q
            self.X_pending = X_pending
            acqf.set_X_pending(None if X_pending is None else enc.features(enc.decision(X_pending)))

        def forward(self, U):
            return acqf(enc.features(enc.decision(U)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        U, _ = optimize_acqf_mixed(_OnBox(), bounds=enc.box(), q=int(q), num_restarts=num_restarts,
                                   raw_samples=raw_samples, fixed_features_list=[{3: float(c)} for c in range(1, MAX_CYCLES + 1)],
                                   options={"batch_limit": 5, "maxiter": 200})
    D = enc.decision(U.detach()).numpy()
    return enc.space.to_profiles(enc.space.repair(D))


# ----------------------------------------------------------------------------- arms
def arm_campaign(doe: pd.DataFrame, seed: int, a: argparse.Namespace, work: Path, *, twin: str = "gp") -> pd.DataFrame:
    """``twin="gp"``: ``learn=gp_twin``; ``twin="hybrid"``: ``run_campaign(twin_model="hybrid")`` (the grey-box
    :class:`~crystalloop.digital_twin.hybrid.HybridTwin`, solubility curve read from the simulated plant)."""
    t0 = time.process_time()

    def progress(stage: str, info: dict) -> None:
        if stage == "round":
            print(f"  [campaign-{twin} s{seed}] round {int(info['round'])}/{a.rounds}: measured HV {info.get('hypervolume', np.nan):.0f}"
                  f" ({time.process_time() - t0:.0f} CPU-s)", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_campaign(DOE, OBJECTIVES, backend="sim://", n_rounds=a.rounds, batch_size=a.batch,
                           out_dir=work / f"campaign-{twin}", acquisition=a.acquisition, kappa=a.kappa, min_distance=a.min_distance,
                           **{k: v for k, v in (("pop_size", a.pop_size), ("n_gen", a.n_gen)) if v is not None}, **({"learn": gp_twin} if twin == "gp" else {"twin_model": twin}), lab=SimulatedLab(CQAS),
                           d50_from="lab", n_frames=0, reference=list(REF), seed=seed, progress=progress)
    new = res.doe.iloc[len(doe):].reset_index(drop=True)
    hist = res.history.set_index("run_id")
    new["plant_seed"] = [int(hist.loc[r, "seed"]) for r in new["run_id"]]
    return new


def arm_campaign_hybrid(doe: pd.DataFrame, seed: int, a: argparse.Namespace, work: Path) -> pd.DataFrame:
    return arm_campaign(doe, seed, a, work, twin="hybrid")


def arm_random(doe: pd.DataFrame, seed: int, a: argparse.Namespace, work: Path) -> pd.DataFrame:
    space = DesignSpace((1, MAX_CYCLES))
    rng = np.random.default_rng([seed, 11])
    plant = _Plant(work, seed)
    out = []
    for r in range(1, a.rounds + 1):
        out.append(plant.run(space.to_profiles(space.sample(a.batch, rng)), r))
        _say("random", seed, r, a.rounds)
    return pd.concat(out, ignore_index=True)


def arm_oneshot(doe: pd.DataFrame, seed: int, a: argparse.Namespace, work: Path) -> pd.DataFrame:
    twin = gp_twin(doe, CQAS, seed)
    n = a.rounds * a.batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiles, _ = propose(twin, OBJECTIVES, n, existing=doe[FEATS].to_numpy(float), acquisition="mean",
                              pop_size=max(a.pop_size or 40, 2 * n), n_gen=a.n_gen or 30, seed=seed)
    plant = _Plant(work, seed)
    out = []
    for r in range(1, a.rounds + 1):
        out.append(plant.run(profiles[(r - 1) * a.batch: r * a.batch], r))
        _say("oneshot", seed, r, a.rounds)
    return pd.concat(out, ignore_index=True)


def arm_qnehvi(doe: pd.DataFrame, seed: int, a: argparse.Namespace, work: Path) -> pd.DataFrame:
    plant = _Plant(work, seed)
    frame = doe.copy()
    out = []
    for r in range(1, a.rounds + 1):
        profiles = propose_qnehvi(frame, a.batch, seed=seed * 100 + r, reference=REF, num_restarts=a.num_restarts,
                                  raw_samples=a.raw_samples, mc_samples=a.mc_samples)
        new = plant.run(profiles, r)
        out.append(new)
        frame = pd.concat([frame, new[["run_id", *FEATS, *CQAS]]], ignore_index=True)
        _say("qnehvi", seed, r, a.rounds)
    return pd.concat(out, ignore_index=True)


def _task(arm: str, seed: int, a: argparse.Namespace, doe: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """One arm and seed: its new runs, CPU-s and wall-s (in a worker process with ``--jobs``)."""
    if arm == "qnehvi":
        import torch

        torch.set_num_threads(1)  # shared cores: no thread oversubscription
    fns = {"campaign": arm_campaign, "campaign-hybrid": arm_campaign_hybrid, "qnehvi": arm_qnehvi, "random": arm_random, "oneshot": arm_oneshot}
    work = Path(tempfile.mkdtemp(prefix=f"regret-{arm}-{seed}-"))
    t0, w0 = time.process_time(), time.perf_counter()
    try:
        new = fns[arm](doe, seed, a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return new, time.process_time() - t0, time.perf_counter() - w0


def _say(arm: str, seed: int, r: int, n: int) -> None:
    print(f"  [{arm} s{seed}] round {r}/{n} ({time.process_time():.0f} CPU-s total)", flush=True)


# ----------------------------------------------------------------------------- scoring
def curve(doe: pd.DataFrame, doe_nom: np.ndarray, new: pd.DataFrame, new_nom: np.ndarray, hv_true: float) -> pd.DataFrame:
    """HV fraction (nominal and measured) after 0..len(new) runs."""
    rows = []
    nom = pd.DataFrame(np.vstack([doe_nom, new_nom]), columns=CQAS)
    meas = pd.concat([doe[CQAS], new[CQAS]], ignore_index=True)
    for n in range(len(new) + 1):
        m = len(doe) + n
        rows.append({"n_runs": n, "hv_nominal": hypervolume(nom.iloc[:m], OBJS, REF) / hv_true,
                     "hv_measured": hypervolume(meas.iloc[:m].dropna(subset=[o.name for o in OBJS]), OBJS, REF) / hv_true,
                     "best_D50_DoA10_nominal": float(nom.iloc[:m].query("DoA_pct <= 10")["D50_um"].max())})
    return pd.DataFrame(rows)


def table(curves: pd.DataFrame, key: str, at) -> pd.DataFrame:
    c = curves[curves["n_runs"].isin(at)]
    g = c.groupby(["arm", "n_runs"])[key].agg(["mean", "std", "count"]).reset_index()
    g["cell"] = [f"{100 * m:.1f} ± {100 * (0 if np.isnan(s) else s):.1f}" for m, s in zip(g["mean"], g["std"], strict=True)]
    return g.pivot(index="arm", columns="n_runs", values="cell")


def _markdown(t: pd.DataFrame) -> str:
    head = "| arm | " + " | ".join(f"{c} runs" for c in t.columns) + " |"
    rows = [f"| {i} | " + " | ".join(str(v) for v in r) + " |" for i, r in zip(t.index, t.to_numpy(), strict=True)]
    return "\n".join([head, "|---" * (len(t.columns) + 1) + "|", *rows])


def plot(curves: pd.DataFrame, path: Path, hv_doe: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "hv_nominal", "nominal plant CQAs (regret vs truth)"),
                           (axes[1], "hv_measured", "measured CQAs")):
        for arm in [x for x in ARMS if x in set(curves["arm"])]:
            g = curves[curves["arm"] == arm]
            s = g.groupby("n_runs")[key]
            m, sd = s.mean(), s.std().fillna(0.0)
            ax.plot(m.index, 100 * m, label=f"{arm} ({g['seed'].nunique()} seeds)")
            ax.fill_between(m.index, 100 * (m - sd), 100 * (m + sd), alpha=0.2)
        ax.axhline(95, color="k", ls="--", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("plant runs after the 31-run DoE")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hypervolume, % of the true front")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(curves_df: pd.DataFrame, arms: list[str], out: Path, tag: str, hv_doe: float) -> str:
    """Write ``table{tag}.md`` and ``regret{tag}.png``; return the table text."""
    at = [n for n in REPORT_AT if n <= int(curves_df["n_runs"].max())]
    md = []
    for k in ("hv_nominal", "hv_measured"):
        t = table(curves_df, k, at)
        md.append(f"HV of the DoE + the arm's runs, % of the true front (mean ± std over seeds), {k[3:]} CQAs, "
                  f"vs plant runs after the DoE\n")
        md.append(_markdown(t.reindex([x for x in arms if x in t.index])) + "\n")
    text = "\n".join(md)
    (out / f"table{tag}.md").write_text(text)
    plot(curves_df, out / f"regret{tag}.png", hv_doe)
    return text


def merge(a: argparse.Namespace) -> None:
    """Table, plot and summary of every invocation's outputs in ``a.out``."""
    parts = sorted(p for p in a.out.glob("curves_*.csv"))
    if not parts:
        raise SystemExit(f"nothing to merge: no curves_*.csv in {a.out}")
    curves_df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    runs_df = pd.concat([pd.read_csv(p) for p in sorted(a.out.glob("runs_*.csv"))], ignore_index=True)
    arms = [x for x in ARMS if x in set(curves_df["arm"])]
    curves_df.to_csv(a.out / "curves.csv", index=False)
    runs_df.to_csv(a.out / "runs.csv", index=False)
    text = report(curves_df, arms, a.out, "", float(curves_df.query("n_runs == 0")["hv_nominal"].mean()))
    # The "true" front is the best of 3,197 nominal plant batches; a campaign can find better recipes.
    # Best known after this benchmark: that set plus the nominal CQAs of every recipe any arm ran.
    ev = pd.read_csv(ROOT / "benchmarks" / "results" / "plant_truth" / "evaluations.csv")[CQAS]
    nom = runs_df[[f"nominal_{c}" for c in CQAS]].set_axis(CQAS, axis=1)
    hv_best = float(hypervolume(pd.concat([ev, nom], ignore_index=True).dropna(subset=[o.name for o in OBJS]), OBJS, REF))
    scale = true_hv() / hv_best
    upd = curves_df.assign(hv_nominal=curves_df["hv_nominal"] * scale)
    at = [n for n in REPORT_AT if n <= int(curves_df["n_runs"].max())]
    t = table(upd, "hv_nominal", at)
    extra = (f"\nHV as % of the best front known after this benchmark (HV {hv_best:.0f} = the 3,197 plant-truth batches "
             f"plus every recipe run here, nominal CQAs; the plant-truth front alone: {true_hv():.0f})\n\n"
             + _markdown(t.reindex([x for x in arms if x in t.index])) + "\n")
    with open(a.out / "table.md", "a") as fh:
        fh.write(extra)
    text += extra
    summaries = {p.stem[len("summary_"):]: json.loads(p.read_text()) for p in sorted(a.out.glob("summary_*.json"))}
    seeds = curves_df.groupby("arm")["seed"].unique().map(lambda v: sorted(int(x) for x in v)).to_dict()
    (a.out / "summary.json").write_text(json.dumps({"merged": [p.name for p in parts], "seeds": seeds,
                                                    "true_hv": true_hv(), "best_known_hv": hv_best,
                                                    "parts": summaries}, indent=2) + "\n")
    print(text, flush=True)
    print(f"wrote {a.out}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed (a trial run)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--acquisition", default="ehvi", help="the campaign's acquisition (propose.ACQUISITIONS)")
    ap.add_argument("--kappa", type=float, default=1.0)
    ap.add_argument("--min-distance", type=float, default=0.05, help="the campaign's min_distance (scaled features, RMS)")
    ap.add_argument("--pop-size", type=int, default=None, help="NSGA-II population (default: run_campaign's, 80; one-shot 40)")
    ap.add_argument("--n-gen", type=int, default=None, help="NSGA-II generations (default: run_campaign's, 50; one-shot 30)")
    ap.add_argument("--num-restarts", type=int, default=10, help="qNEHVI optimize_acqf restarts")
    ap.add_argument("--raw-samples", type=int, default=512, help="qNEHVI optimize_acqf raw samples")
    ap.add_argument("--mc-samples", type=int, default=128, help="qNEHVI quasi-MC samples")
    ap.add_argument("--merge", action="store_true",
                    help="no runs: build the table, plot and summary from every runs_*.csv/curves_*.csv in --out "
                         "(arms and seeds run as parallel invocations of this script with --tag)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--jobs", type=int, default=1, help="(arm, seed) tasks in parallel worker processes")
    ap.add_argument("--tag", default="", help="suffix of the output files (trials)")
    a = ap.parse_args()
    seeds = [0] if a.quick else [int(s) for s in a.seeds.split(",")]
    arms = [s.strip() for s in a.arms.split(",") if s.strip()]
    bad = [s for s in arms if s not in ARMS]
    if bad:
        raise SystemExit(f"unknown arm(s) {bad}; choose from {list(ARMS)}")
    if "qnehvi" in arms:
        try:
            import botorch  # noqa: F401
        except ImportError:
            print("BoTorch is not installed (pip install -e '.[bench]'): the qnehvi arm is skipped", flush=True)
            arms.remove("qnehvi")
            if not arms:
                return
    a.out.mkdir(parents=True, exist_ok=True)
    tag = f"_{a.tag}" if a.tag else ""
    if a.merge:
        return merge(a)
    hv_true = true_hv()
    doe = read_doe(DOE).to_frame()
    nominal = _Nominal()
    doe_nom = nominal(doe[FEATS].to_numpy(float))
    load0 = os.getloadavg()
    t_start = time.time()
    print(f"true HV {hv_true:.0f}; DoE nominal HV {hypervolume(pd.DataFrame(doe_nom, columns=CQAS), OBJS, REF) / hv_true:.3f}; "
          f"arms {arms}, seeds {seeds}, {a.rounds} rounds x {a.batch}; load {load0[0]:.2f}", flush=True)
    runs, curves, cpu = [], [], {}
    tasks = [(arm, seed) for arm in arms for seed in seeds]
    if a.jobs > 1:  # every (arm, seed) in its own worker process; results identical to the serial loop
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=a.jobs, backend="loky")(delayed(_task)(arm, seed, a, doe) for arm, seed in tasks)
    else:
        results = (_task(arm, seed, a, doe) for arm, seed in tasks)
    for (arm, seed), (new, cpu_s, wall_s) in zip(tasks, results, strict=True):
        nom = nominal(new[FEATS].to_numpy(float))
        new = new.assign(arm=arm, seed=seed, n=np.arange(1, len(new) + 1),
                         **{f"nominal_{c}": nom[:, j] for j, c in enumerate(CQAS)})
        runs.append(new)
        cv = curve(doe, doe_nom, new, nom, hv_true).assign(arm=arm, seed=seed)
        curves.append(cv)
        cpu[f"{arm}/{seed}"] = {"cpu_s": round(cpu_s, 1), "wall_s": round(wall_s, 1)}
        print(f"{arm} seed {seed}: HV nominal {100 * cv['hv_nominal'].iloc[-1]:.1f} %, measured "
              f"{100 * cv['hv_measured'].iloc[-1]:.1f} % after {len(new)} runs; best D50 at DoA<=10 "
              f"{cv['best_D50_DoA10_nominal'].iloc[-1]:.0f} um; {cpu_s:.0f} CPU-s, {wall_s:.0f} s wall", flush=True)
        pd.concat(runs, ignore_index=True).to_csv(a.out / f"runs{tag}.csv", index=False)
        pd.concat(curves, ignore_index=True).to_csv(a.out / f"curves{tag}.csv", index=False)
    curves_df = pd.concat(curves, ignore_index=True)
    at = [n for n in REPORT_AT if n <= a.rounds * a.batch]
    print(report(curves_df, arms, a.out, tag, float(curves_df.query("n_runs == 0")["hv_nominal"].mean())), flush=True)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "python": platform.python_version(), "load_start": [round(v, 2) for v in load0],
               "load_end": [round(v, 2) for v in os.getloadavg()], "wall_s": round(time.time() - t_start, 1),
               "true_hv": hv_true, "reference": REFERENCE, "arms": arms, "seeds": seeds,
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
               "cpu": cpu, "nominal_cpu_s": round(nominal.cpu_s, 1),
               "hv_nominal": {arm: {str(n): [round(float(v), 4) for v in
                                            curves_df.loc[(curves_df["arm"] == arm) & (curves_df["n_runs"] == n), "hv_nominal"]]
                                      for n in at} for arm in arms}}
    if "qnehvi" in arms:
        import botorch

        summary["botorch"] = botorch.__version__
    (a.out / f"summary{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
