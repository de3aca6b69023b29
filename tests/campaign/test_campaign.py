"""Closed-loop campaign on the virtual crystallizer: learn → propose → run → measure (images) → learn.

Fast tests use a tiny DoE (12 short simulator batches, coarse grid) and a cheap stand-in learner
(ridge regression per CQA honouring the twin contract); the campaign with the real
``fit_twin`` is marked slow.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from crystalloop.campaign import (
    LabRequest,
    SimulatedLab,
    TableLab,
    campaign_rounds,
    propose,
    run_campaign,
    select_batch,
)
from crystalloop.digital_twin.doe import read_doe
from crystalloop.errors import BackendError, ConfigError, OptimizationError, SchemaError
from crystalloop.hardware.sim import CameraOptics, simulate
from crystalloop.profiles import Segment, ThermocycleProfile, feature_names, profiles_to_frame
from crystalloop.store import ExperimentStore

#: image-based D50 (x50,3 of the final frames) vs the plant's volume D50, for crystalline runs with
#: DoA < 20 % (agglomerates are imaged by their outline, amorphous particles are imaged but not in
#: the plant's crystalline D50)
IMAGE_D50_TOL = 0.25
BACKEND = "sim://?n_classes=60"
#: short batches: fast cooling, a narrow temperature window
BOUNDS = {"cooling_rate_c_min": (0.2, 0.3), "temperature_c": (15.0, 55.0)}


class RidgeTwin:
    """A minimal twin (ridge regression per CQA, residual std) honouring the twin contract."""

    def __init__(self, doe: pd.DataFrame, cqas, max_cycles=4):
        self.cqas = list(cqas)
        self.max_cycles = max_cycles
        self.feature_names = feature_names(max_cycles)
        X = doe[self.feature_names].to_numpy(float)
        self.mu, self.sd = X.mean(0), X.std(0) + 1e-9
        Z = np.c_[np.ones(len(X)), (X - self.mu) / self.sd]
        self.coef, self.std = {}, {}
        for c in self.cqas:
            y = doe[c].to_numpy(float)
            m = np.isfinite(y)
            A = Z[m]
            self.coef[c] = np.linalg.solve(A.T @ A + np.eye(A.shape[1]), A.T @ y[m])
            self.std[c] = float(np.std(y[m] - A @ self.coef[c])) + 1e-6

    def predict_frame(self, X, **kw):
        if isinstance(X, list):
            X = profiles_to_frame(X, self.max_cycles)
        X = X[self.feature_names].to_numpy(float) if isinstance(X, pd.DataFrame) else np.atleast_2d(X)
        Z = np.c_[np.ones(len(X)), (X - self.mu) / self.sd]
        out = {}
        for c in self.cqas:
            out[f"{c}_mean"] = Z @ self.coef[c]
            out[f"{c}_std"] = np.full(len(X), self.std[c])
        return pd.DataFrame(out)


class Learner:
    """Records the size of every table it learned from."""

    def __init__(self):
        self.seen = []

    def __call__(self, frame, cqas, seed):
        self.seen.append(len(frame))
        return RidgeTwin(frame, cqas)


def _tiny_profiles(n=12, seed=5):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t0, c0, sl = rng.uniform(45, 55), rng.uniform(30, 50), rng.uniform(0.05, 0.15)
        if i % 2 == 0:
            segs = (Segment(float(rng.uniform(15, 30)), float(rng.uniform(0.2, 0.3)), 0.0),)
        else:
            a = float(rng.uniform(25, 35))
            segs = (Segment(a, float(rng.uniform(0.2, 0.3)), 0.0), Segment(a + float(rng.uniform(5, 10)), 0.8, 0.0),
                    Segment(float(rng.uniform(15, 22)), float(rng.uniform(0.2, 0.3)), 0.0))
        out.append(ThermocycleProfile(round(float(c0), 1), round(float(sl), 3), round(float(t0), 1), segs))
    return out


@pytest.fixture(scope="module")
def tiny_doe(tmp_path_factory):
    """12 short simulator batches (D50, DoA, crystallinity with lab-like noise) as a DoE CSV."""
    profs = _tiny_profiles()
    lab = SimulatedLab(["D50_um", "DoA_pct", "crystallinity_pct"])
    rows = []
    for i, p in enumerate(profs):
        cq = simulate(p, seed=100 + i, n_classes=60, noise=False).cqas
        rows.append(lab(LabRequest(f"D{i:02d}", None, 0, p, "completed", cq, seed=i)))
    doe = pd.concat([pd.DataFrame({"run_id": [f"D{i:02d}" for i in range(len(profs))]}),
                     profiles_to_frame(profs, 4), pd.DataFrame(rows)], axis=1)
    path = tmp_path_factory.mktemp("doe") / "doe.csv"
    doe.to_csv(path, index=False)
    return path


def _kw(**over):
    kw = dict(backend=BACKEND, n_rounds=1, batch_size=2, cycles=1, mixed=False, pop_size=12, n_gen=5,
              bounds=BOUNDS, n_frames=10, frame_interval_s=2.0, min_particles=20, run_options={"sample_interval_s": 600.0},
              backend_options={"camera": CameraOptics(shape=(480, 640))}, limit="DoA<=10", seed=3)
    kw.update(over)
    return kw


@pytest.fixture(scope="module")
def first_round(tiny_doe, tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign")
    learner = Learner()
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=out, learn=learner, **_kw())
    return res, learner, out


def test_runs_are_stored_as_campaign_runs_with_round_and_images(first_round):
    res, _, out = first_round
    db = ExperimentStore(out / "campaign.sqlite")
    runs = db.runs(with_counts=True)
    assert list(runs["kind"]) == ["campaign", "campaign"]
    assert list(runs["status"]) == ["completed", "completed"]
    assert [m["campaign_round"] for m in runs["meta"]] == [1, 1]
    assert [m["campaign_run"] for m in runs["meta"]] == ["C1-1", "C1-2"]
    assert all(m["controller"] == "track" for m in runs["meta"])
    assert list(runs["n_images"]) == [10, 10]  # the final frames, logged with the run
    assert (runs["n_samples"] > 20).all()  # the runner logged the batch as it went
    for _, h in res.history.iterrows():
        cq = db.cqas(int(h["store_run_id"]))
        got = dict(zip(cq["name"], cq["value"], strict=True))
        # standard names hold what the campaign measured; the plant's truth is kept beside it
        assert got["D50_um"] == pytest.approx(h["D50_image_um"], nan_ok=True)
        assert got["DoA_pct"] == pytest.approx(h["DoA_pct"], nan_ok=True)
        assert got["plant_D50_um"] == pytest.approx(h["plant_D50_um"], nan_ok=True)
        assert got["image_n_particles"] == h["n_particles"]
        # D50 from the images exactly when enough particles were seen (min_particles=20)
        assert np.isfinite(h["D50_image_um"]) == (h["n_particles"] >= 20)


def test_doe_grows_by_batch_and_round_trips_through_csv(first_round, tiny_doe):
    res, learner, out = first_round
    n0 = len(pd.read_csv(tiny_doe))
    assert learner.seen == [n0]
    written = pd.read_csv(out / "doe.csv")
    assert len(written) == len(res.doe) == n0 + 2
    assert list(written["run_id"])[-2:] == ["C1-1", "C1-2"]
    table = read_doe(out / "doe.csv")
    np.testing.assert_array_equal(table.features.to_numpy(), res.doe[feature_names(4)].to_numpy())
    # each new row holds the recipe that ran and the CQAs measured for it
    for k, h in enumerate(res.history.itertuples(), start=0):
        row = written.iloc[n0 + k]
        assert row["D50_um"] == pytest.approx(h.D50_image_um, nan_ok=True)
        assert row["DoA_pct"] == pytest.approx(h.DoA_pct, nan_ok=True)
        prof = ThermocycleProfile.from_features(row[feature_names(4)].to_numpy(float), 4)
        np.testing.assert_allclose(prof.to_features(4), res.profiles[0][k].to_features(4))
        assert prof.n_cycles == 1


def test_image_d50_close_to_plant_d50(first_round, tmp_path):
    """Image-based D50 vs the plant's D50 for crystalline, non-agglomerated product: the campaign's
    runs plus one fixed seeded cooling recipe (which always crystallizes)."""
    from crystalloop.campaign import execute_recipe

    res, _, _ = first_round
    fixed = ThermocycleProfile(35.0, 0.15, 50.0, (Segment(15.0, 0.1, 0.0),), name="fixed")  # DoA ≈ 5 %
    db = ExperimentStore(tmp_path / "s.sqlite")
    rec = execute_recipe(fixed, label="F1-1", round_=1, backend=BACKEND, seed=6, store=db, lab=SimulatedLab(),
                         image_dir=tmp_path / "img", n_frames=10, min_particles=20,
                         run_options={"sample_interval_s": 600.0},
                         backend_options={"camera": CameraOptics(shape=(480, 640))})
    h = pd.concat([res.history, pd.DataFrame([rec])], ignore_index=True)
    ok = h[(h["plant_DoA_pct"] < 20) & (h["plant_crystallinity_pct"] >= 50) & np.isfinite(h["D50_image_um"])]
    assert len(ok) >= 1, h[["run_id", "plant_DoA_pct", "plant_crystallinity_pct", "D50_image_um"]]
    rel = (ok["D50_image_um"] - ok["plant_D50_um"]).abs() / ok["plant_D50_um"]
    assert (rel < IMAGE_D50_TOL).all(), rel.to_dict()
    # the simulated lab reads DoA near the plant's truth (3 points noise)
    m = h["DoA_pct"].notna()
    assert (h.loc[m, "DoA_pct"] - h.loc[m, "plant_DoA_pct"]).abs().max() < 12


def test_round_report_and_plots(first_round):
    res, _, out = first_round
    r = pd.read_csv(out / "rounds.csv")
    assert list(r["round"]) == [1]
    assert r["hypervolume"].iloc[0] >= r["hypervolume_before"].iloc[0] > 0
    assert res.hypervolume[-1] == pytest.approx(r["hypervolume"].iloc[0])
    assert 0.0 <= r["D50_um_coverage95"].iloc[0] <= 1.0 and r["D50_um_mae"].iloc[0] >= 0
    assert np.isfinite(r["D50_image_error_pct"].iloc[0]) or res.history["D50_image_um"].isna().all()
    # the predictions recorded are the twin's before the run
    assert res.history["D50_um_pred"].notna().all() and (res.history["D50_um_std"] > 0).all()
    for name in ("parity.png", "fronts.png", "hypervolume.png", "d50_image_vs_plant.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "round_01" / "recipes" / "C1-1.yaml").is_file()


def test_campaign_rounds_from_run_labels():
    assert campaign_rounds(["D01", "C1-1", "C12-3", "C2-1", "c3-1", "C4"]) == 12
    assert campaign_rounds(["DOE01", "HOLD02"]) == 0


@pytest.mark.slow
def test_resume_from_written_doe_continues_rounds(first_round, tmp_path):
    _, _, out = first_round
    again = tmp_path / "again"
    shutil.copytree(out, again)
    learner = Learner()
    res = run_campaign(None, "max:D50,min:DoA", out_dir=again, learn=learner, **_kw(batch_size=1))
    n = len(pd.read_csv(out / "doe.csv"))
    assert learner.seen == [n]  # learned from the 12 + 2 rows written by round 1
    assert list(res.history["run_id"]) == ["C1-1", "C1-2", "C2-1"]
    assert list(res.rounds["round"]) == [1, 2]
    assert len(pd.read_csv(again / "doe.csv")) == n + 1
    assert campaign_rounds(res.doe["run_id"]) == 2
    db = ExperimentStore(again / "campaign.sqlite")
    assert db.runs()["meta"].iloc[-1]["campaign_round"] == 2


def test_select_batch_spreads_and_keeps_away_from_existing_runs():
    F = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    X = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [0.26, 0.26]])
    assert select_batch(pd.DataFrame(index=range(4)), F, X, np.zeros((0, 2)), 2) == [0, 2]
    # an existing run on top of row 0: the other extreme and the farthest remaining row instead
    picks = select_batch(pd.DataFrame(index=range(4)), F, X, np.array([[0.0, 0.0]]), 2, min_distance=0.1)
    assert 0 not in picks and picks[0] == 3 and picks[1] == 2


def test_propose_with_uncertainty_aware_acquisition(tiny_doe):
    t = read_doe(tiny_doe)
    frame = t.to_frame()
    twin = RidgeTwin(frame, ["D50_um", "DoA_pct"])
    existing = frame[twin.feature_names].to_numpy(float)
    ps, table = propose(twin, "max:D50,min:DoA", 3, existing=existing, cycles=1, mixed=False, pop_size=20,
                        n_gen=5, seed=1, bounds=BOUNDS)
    assert len(ps) == 3 and all(p.n_cycles == 1 for p in ps)
    assert list(table["selected_by"]) == ["front"] * 3
    assert np.allclose(table["D50_um_mean"], twin.predict_frame(ps)["D50_um_mean"])  # unshifted predictions
    with pytest.raises(ConfigError, match="acquisition must be one of"):
        propose(twin, "max:D50,min:DoA", 2, acquisition="greedy")


def test_bad_input_is_refused_before_anything_runs(tiny_doe, tmp_path):
    kw = dict(out_dir=tmp_path, learn=Learner())
    with pytest.raises(ConfigError, match="n_rounds must be a whole number >= 1, got 0"):
        run_campaign(tiny_doe, n_rounds=0, **kw)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1, got 0"):
        run_campaign(tiny_doe, batch_size=0, **kw)
    with pytest.raises(OptimizationError, match="unknown objective name 'Foo'"):
        run_campaign(tiny_doe, "max:Foo,min:DoA", **kw)
    with pytest.raises(BackendError, match="Unknown backend URL scheme 'foo'"):
        run_campaign(tiny_doe, backend="foo://x", **kw)
    with pytest.raises(ConfigError, match="has no ground truth .* pass lab="):
        run_campaign(tiny_doe, backend="julabo:///dev/ttyUSB0", **kw)
    with pytest.raises(ConfigError, match="DoE has no column \\['yield_pct'\\]"):
        run_campaign(tiny_doe, "max:D50,max:yield", **kw)
    with pytest.raises(ConfigError, match="reference needs one value per objective"):
        run_campaign(tiny_doe, reference=[1.0], **kw)
    with pytest.raises(ConfigError, match="no DoE given and .*doe.csv does not exist"):
        run_campaign(None, out_dir=tmp_path / "empty", learn=Learner())
    assert not (tmp_path / "campaign.sqlite").exists() or ExperimentStore(tmp_path / "campaign.sqlite").runs().empty


def test_table_lab_waits_for_the_row_and_reads_it(tmp_path):
    path = tmp_path / "lab.csv"
    req = LabRequest("C2-1", 7, 2, _tiny_profiles(1)[0], "completed")
    naps = []

    def sleep(s):  # the analyst enters the result while the campaign waits
        naps.append(s)
        pd.DataFrame({"run_id": ["C1-1", "C2-1"], "DoA_pct": [3.0, 12.5], "crystallinity_pct": [90.0, None]}
                     ).to_csv(path, index=False)

    got = TableLab(path, timeout_s=60, poll_s=20, sleep=sleep)(req)
    assert naps == [20] and got["DoA_pct"] == 12.5 and np.isnan(got["crystallinity_pct"])
    with pytest.raises(ConfigError, match="no row for run C3-1 .* add a row with run_id=C3-1"):
        TableLab(path)(LabRequest("C3-1", 8, 3, req.profile, "completed"))
    pd.DataFrame({"run_id": ["C2-1"], "DoA_pct": ["high"]}).to_csv(path, index=False)
    with pytest.raises(SchemaError, match="column 'DoA_pct': expected a number, got 'high'"):
        TableLab(path)(req)


def test_simulated_lab_adds_bounded_reproducible_noise():
    p = _tiny_profiles(1)[0]
    truth = {"DoA_pct": 1.0, "crystallinity_pct": 99.5, "D50_um": 100.0}
    lab = SimulatedLab(["DoA_pct", "crystallinity_pct", "D50_um"])
    draws = pd.DataFrame([lab(LabRequest("x", None, 1, p, "completed", truth, seed=s)) for s in range(200)])
    assert draws["DoA_pct"].between(0, 100).all() and draws["crystallinity_pct"].between(0, 100).all()
    assert draws["D50_um"].std() == pytest.approx(3.0, rel=0.25)  # 3 % of 100 µm
    assert lab(LabRequest("x", None, 1, p, "completed", truth, seed=4)) == lab(
        LabRequest("x", None, 1, p, "completed", truth, seed=4))
    with pytest.raises(ConfigError, match="SimulatedLab needs the plant's ground truth"):
        lab(LabRequest("x", None, 1, p, "completed", {}))


@pytest.mark.slow
def test_campaign_with_fit_twin_two_rounds(tiny_doe, tmp_path):
    """The tree-ensemble learner (fit_twin, fast grid, MC-CV) over two rounds; twins saved in the store."""
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path, twin_model="ensemble",
                       twin_options={"n_splits": 5, "families": ("rf", "gbt")}, **_kw(n_rounds=2))
    assert list(res.rounds["round"]) == [1, 2]
    assert len(res.doe) == len(pd.read_csv(tiny_doe)) + 4
    db = ExperimentStore(tmp_path / "campaign.sqlite")
    models = db.models("campaign-twin")
    assert len(models) == 2 and [m["round"] for m in models["metadata"]] == [1, 2]
    assert set(res.twins[1].cqas) == {"D50_um", "DoA_pct"}
    # adding measured points never shrinks the dominated volume (up to round-off: the same front
    # summed in another order can differ in the last bit)
    hv = res.hypervolume
    assert hv[2] >= hv[1] * (1 - 1e-12) and hv[1] >= hv[0] * (1 - 1e-12)



class _ParticleCamera:
    """A probe on hardware without a ground-truth model: renders 60 µm crystals."""

    name = "probe"
    pixel_size_um = 2.0

    def __init__(self, clock):
        self.clock, self.rng = clock, np.random.default_rng(0)

    def grab(self):
        from crystalloop.hardware.base import Frame
        from crystalloop.vision import render_particles, sample_particles

        parts = sample_particles([60.0], [14.0], shape=(240, 320), pixel_size_um=2.0, kind="ellipse",
                                 aspect_ratio=(1.0, 1.2), depth_range=(0.0, 0.1), seed=self.rng)
        img, _ = render_particles(parts, shape=(240, 320), pixel_size_um=2.0, seed=self.rng)
        return Frame(img, self.clock.now(), self.pixel_size_um)

    def close(self):
        pass


def test_hardware_path_reads_the_lab_table(tiny_doe, tmp_path, make_thermostat):
    """A backend without plant truth: D50 from the probe images, DoA from the analyst's table."""
    from crystalloop.hardware.base import _BACKENDS, Crystallizer, VirtualClock, register_backend

    def factory(parsed, clock=None, **kw):
        clock = clock or VirtualClock()
        return Crystallizer(url=parsed.url, clock=clock, thermostat=make_thermostat(clock, t0_c=50.0),
                            camera=_ParticleCamera(clock))

    register_backend("benchlab", factory)
    try:
        lab = tmp_path / "lab.csv"
        pd.DataFrame({"run_id": ["C1-1", "C1-2"], "DoA_pct": [4.5, 7.25], "crystallinity_pct": [88.0, 91.0]}
                     ).to_csv(lab, index=False)
        res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path / "c", learn=Learner(),
                           **_kw(backend="benchlab://", lab=lab, backend_options=None))
        h = res.history
        assert list(h["DoA_pct"]) == [4.5, 7.25] and list(h["crystallinity_pct"]) == [88.0, 91.0]
        assert "plant_D50_um" not in h  # no ground truth on hardware
        assert ((h["D50_image_um"] - 60.0).abs() / 60.0 < 0.15).all(), list(h["D50_image_um"])
        assert list(res.doe["DoA_pct"].iloc[-2:]) == [4.5, 7.25]
        runs = ExperimentStore(tmp_path / "c" / "campaign.sqlite").runs()
        assert list(runs["kind"]) == ["campaign"] * 2 and list(runs["backend"]) == ["benchlab://"] * 2
        with pytest.raises(ConfigError, match="no row for run C2-1"):  # the analyst has not reported round 2
            run_campaign(None, "max:D50,min:DoA", out_dir=tmp_path / "c", learn=Learner(),
                         **_kw(backend="benchlab://", lab=lab, backend_options=None))
        # the GP twin on hardware: no plant to read the solubility curve from, so profile features only
        from crystalloop.errors import CampaignWarning

        with pytest.warns(CampaignWarning, match=r"campaign on benchlab://: no solubility curve known, so the GP "
                                                 r"twin uses the profile features only"):
            res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path / "g", twin_model="gp",
                               **_kw(backend="benchlab://", lab=lab, backend_options=None))
        tw = res.twins[0]
        assert tw.solubility is None and not any(f.startswith("T_sat") for f in tw.models_["D50_um"].features_)
        assert (tmp_path / "g" / "round_01" / "twin" / "twin.json").is_file()
    finally:
        _BACKENDS.pop("benchlab", None)


def test_campaign_with_the_gp_twin_reads_the_plant_solubility(tiny_doe, tmp_path):
    """twin_model="gp": a FeatureGPTwin per round, with the simulated compound's solubility curve, saved in round_XX/twin."""
    import json

    from crystalloop.digital_twin import FeatureGPTwin, load_twin

    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path, twin_model="gp", **_kw())
    tw = res.twins[0]
    assert isinstance(tw, FeatureGPTwin) and set(tw.cqas) == {"D50_um", "DoA_pct"}
    # the default kinetic set: c* = 8.0e-3 + 2.83e-4 T + 9.17e-6 T² kg/kg (T in °C) = 8.0 + 0.283 T + 0.00917 T² mg/g
    assert tw.solubility.coefficients == (8.0, 0.283, 0.00917)
    assert any(f.startswith("T_sat") for f in tw.models_["D50_um"].features_)
    back = load_twin(tmp_path / "round_01" / "twin")
    X = read_doe(tiny_doe).to_frame()[tw.feature_names]
    np.testing.assert_allclose(back.predict(X), tw.predict(X), rtol=0, atol=1e-10)
    meta = json.loads((tmp_path / "campaign.json").read_text())
    assert meta["twin_model"] == "gp" and meta["solubility"]["coefficients"] == [8.0, 0.283, 0.00917]
    assert len(res.doe) == len(pd.read_csv(tiny_doe)) + 2
    assert ExperimentStore(tmp_path / "campaign.sqlite").models("campaign-twin")["metadata"][0]["round"] == 1


def test_campaign_with_the_hybrid_twin(tiny_doe, tmp_path):
    """twin_model="hybrid": a HybridTwin per round with the plant's curve (a kinetic model), saved and reloaded bit for bit."""
    import json

    from crystalloop.digital_twin import HybridTwin, load_twin

    fast = {"kinetic_params": {"n_steps": 60, "de_popsize": 4, "de_maxiter": 6, "n_fits": 1}}
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path, twin_model="hybrid", twin_options=fast, **_kw())
    tw = res.twins[0]
    assert isinstance(tw, HybridTwin) and set(tw.cqas) == {"D50_um", "DoA_pct"}
    assert tw.solubility.coefficients == (8.0, 0.283, 0.00917) and tw.kinetic_ is not None
    back = load_twin(tmp_path / "round_01" / "twin")
    assert isinstance(back, HybridTwin)
    X = read_doe(tiny_doe).to_frame()[tw.feature_names]
    np.testing.assert_array_equal(back.predict(X), tw.predict(X))
    meta = json.loads((tmp_path / "campaign.json").read_text())
    assert meta["twin_model"] == "hybrid" and meta["solubility"]["coefficients"] == [8.0, 0.283, 0.00917]
    assert len(res.doe) == len(pd.read_csv(tiny_doe)) + 2


def test_campaign_twin_model_and_solubility_are_checked_before_anything_runs(tiny_doe, tmp_path):
    from typer.testing import CliRunner

    from crystalloop.cli import app

    with pytest.raises(ConfigError, match=r"twin_model must be one of \['ensemble', 'gp', 'hybrid'\], got 'forest'"):
        run_campaign(tiny_doe, out_dir=tmp_path / "a", twin_model="forest", **_kw())
    with pytest.raises(ConfigError, match=r"solubility 'x,1' is neither comma-separated polynomial coefficients"):
        run_campaign(tiny_doe, out_dir=tmp_path / "b", twin_model="gp", solubility="x,1", **_kw())
    with pytest.raises(ConfigError, match=r"twin_options \['grid'\] do not apply to twin_model='hybrid'"):
        run_campaign(tiny_doe, out_dir=tmp_path / "d", twin_options={"grid": "fast", "n_restarts": 2}, **_kw())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "d").exists()
    r = CliRunner().invoke(app, ["campaign", str(tiny_doe), "--out", str(tmp_path / "c"), "--model", "ensemble",
                                 "--solubility", "8,0.3"])
    assert r.exit_code == 2 and "--solubility is used by --model gp or hybrid only" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["campaign", str(tiny_doe), "--out", str(tmp_path / "c"), "--grid", "paper"])
    assert r.exit_code == 2 and ("--grid and --augment tune the tree-ensemble twin; add --model ensemble (got --model hybrid)"
                                 in " ".join(r.output.split()))
    r = CliRunner().invoke(app, ["campaign", str(tiny_doe), "--out", str(tmp_path / "c"), "--model", "rf"])
    assert r.exit_code == 2 and "--model must be 'ensemble', 'gp' or 'hybrid', got 'rf'" in " ".join(r.output.split())
    assert not (tmp_path / "c").exists()
