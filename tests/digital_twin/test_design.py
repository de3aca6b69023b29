"""Tests of the thermocycle design problem and its decision space (crystalloop.digital_twin.design).

An analytic stand-in twin with the DigitalTwin interface keeps these tests independent of
the ML fit and gives a known optimum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.digital_twin.design import (
    DesignProblem,
    DesignSpace,
    hypervolume,
    make_algorithm,
    parse_constraints,
    parse_cycles,
    parse_objectives,
    tell_measured,
)
from crystalloop.errors import InfeasibleError, ModelError, OptimizationError
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds, feature_names


class AnalyticTwin:
    """Twin with closed-form CQAs: D50 grows with c0, cycles and slow cooling; DoA grows with
    c0 and seed loading and falls with cycles; crystallinity grows with cycles and slow cooling."""

    cqas = ["D50_um", "DoA_pct", "crystallinity_pct"]

    def __init__(self, max_cycles: int = 4, order: list[str] | None = None) -> None:
        self.max_cycles = max_cycles
        self.feature_names = order or feature_names(max_cycles)
        self.calls = 0
        self.rows = 0

    def predict_frame(self, X, *, cqas=None, warn=True) -> pd.DataFrame:
        X = np.asarray(X, dtype=float)
        assert X.ndim == 2 and X.shape[1] == len(self.feature_names)  # contract of the caller
        self.calls += 1
        self.rows += len(X)
        f = pd.DataFrame(X, columns=self.feature_names)
        slots = 2 * self.max_cycles + 1
        nseg = f["n_segments"].to_numpy().astype(int)
        rates = f[[f"rate{k}_c_min" for k in range(1, slots + 1)]].to_numpy()
        m = (np.arange(slots)[None, :] < nseg[:, None]) & (np.arange(slots) % 2 == 0)[None, :]
        cool = (rates * m).sum(1) / m.sum(1)
        c0, seed, n = f["c0_mg_g"].to_numpy(), f["seed_loading"].to_numpy(), f["n_cycles"].to_numpy()
        d50 = 5 + 0.3 * c0 + 2.0 * n - 20 * cool
        doa = 20 + 0.8 * c0 - 4.0 * n + 50 * seed
        cry = 60 + 5 * n - 30 * cool
        return pd.DataFrame({
            "D50_um_mean": d50, "D50_um_std": 0.1 * d50,
            "DoA_pct_mean": doa, "DoA_pct_std": np.full(len(X), 2.0),
            "crystallinity_pct_mean": cry, "crystallinity_pct_std": np.full(len(X), 3.0),
        })


def _run(problem, *, pop=20, gens=15, seed=3):
    from pymoo.optimize import minimize

    return minimize(problem, make_algorithm(problem, pop_size=pop, seed=seed), ("n_gen", gens))


# ---------------------------------------------------------------------- decision space
SPACES = [
    dict(n_cycles=1), dict(n_cycles=4), dict(n_cycles=0), dict(n_cycles=(1, 4)), dict(n_cycles=(0, 3)),
    dict(n_cycles=2, holds=True), dict(n_cycles=3, final_cooling=False), dict(n_cycles=(1, 4), holds=True),
]


@pytest.mark.parametrize("kw", SPACES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_vectorized_features_equal_profile_features(kw):
    space = DesignSpace(**kw)
    X = space.sample(64, np.random.default_rng(0))
    profiles = space.to_profiles(X)
    for mc in (4, 5):
        want = np.vstack([p.to_features(mc) for p in profiles])
        np.testing.assert_allclose(space.features(X, mc), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(space.batch_time_min(X), [p.batch_time_min for p in profiles], rtol=1e-12)
    assert space.features(X).shape == (64, len(feature_names(4)))
    # every sample is a valid, in-bounds profile and satisfies the alternation constraints
    assert np.all(space.alternation_constraints(X) <= 0)
    assert all(p.is_feasible(DEFAULT_BOUNDS) for p in profiles)
    # round trip through from_profiles keeps the features
    np.testing.assert_allclose(space.features(space.from_profiles(profiles)), space.features(X), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(SPACES[:5]))
def test_repair_turns_any_vector_into_a_valid_profile(seed, kw):
    space = DesignSpace(**kw, limits=ThermostatLimits(min_c=5.0, max_c=60.0, max_rate_c_min=0.8))
    xl, xu = space.bounds_arrays()
    rng = np.random.default_rng(seed)
    X = xl - 10 + rng.random((16, space.n_var)) * (xu - xl + 20)  # also outside the bounds
    R = space.repair(X)
    assert np.all(space.alternation_constraints(R) <= 0)
    for p in space.to_profiles(R):
        assert p.violations(DEFAULT_BOUNDS, space.limits) == []
    np.testing.assert_array_equal(space.repair(R), R)  # idempotent


def test_alternation_constraint_values_match_paper_equations():
    space = DesignSpace(1, min_step_c=1.0)
    # c0, seed, T0=50, T1=30 (cool by 20), T2=29 (should heat: violated by 2), T3=10
    X = np.array([[40, 0.1, 50, 30, 29, 10, 0.1, 0.7, 0.1]])
    g = space.alternation_constraints(X)[0]
    np.testing.assert_allclose(g, [-19, 2, -18], atol=1e-5)


def test_mixed_space_rounds_cycles_and_masks_unused_slots():
    space = DesignSpace((1, 4))
    X = space.sample(200, np.random.default_rng(1))
    X[:, 3] += np.random.default_rng(2).uniform(-0.4, 0.4, len(X))
    n = space.n_cycles_of(X)
    assert set(n) == {1, 2, 3, 4}
    assert [p.n_cycles for p in space.to_profiles(X)] == list(n)
    assert np.all(space.repair(X)[:, 3] == n)


def test_thermostat_limits_tighten_the_bounds():
    lim = ThermostatLimits(min_c=10.0, max_c=40.0, max_rate_c_min=0.7)
    space = DesignSpace(2, limits=lim)
    xl, xu = space.bounds_arrays()
    names = space.var_names
    assert xl[names.index("T3_c")] == 10.0 and xu[names.index("t_start_c")] == 40.0
    assert xu[names.index("rate2_c_min")] == 0.7  # heating 0.5-1.0 capped by the ramp limit


# ---------------------------------------------------------------------- problem
def test_problem_evaluates_a_generation_in_one_twin_call():
    twin = AnalyticTwin()
    problem = DesignProblem(twin, "max:D50,min:DoA", n_cycles=2, constraints=["crystallinity>=70"])
    X = problem.space.sample(50, np.random.default_rng(0))
    out = problem.evaluate(X, return_as_dictionary=True)
    assert twin.calls == 1 and twin.rows == 50 and problem.n_twin_calls == 1
    pred = twin.predict_frame(problem.features(X))
    np.testing.assert_allclose(out["F"][:, 0], -pred["D50_um_mean"])
    np.testing.assert_allclose(out["F"][:, 1], pred["DoA_pct_mean"])
    np.testing.assert_allclose(out["G"][:, -1], 70 - pred["crystallinity_pct_mean"])
    assert out["G"].shape == (50, problem.space.n_slots + 1)


def test_pessimistic_bound_shifts_objectives_and_constraints_by_k_std():
    twin = AnalyticTwin()
    p0 = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=1, constraints=["crystallinity>=70"])
    p2 = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=1, constraints=["crystallinity>=70"],
                       pessimistic=2.0)
    X = p0.space.sample(10, np.random.default_rng(0))
    o0, o2 = p0.evaluate(X, return_as_dictionary=True), p2.evaluate(X, return_as_dictionary=True)
    d50 = -o0["F"][:, 0]
    np.testing.assert_allclose(-o2["F"][:, 0], d50 - 2 * 0.1 * d50)  # mean - k std
    np.testing.assert_allclose(o2["F"][:, 1], o0["F"][:, 1] + 4.0)  # mean + k std
    np.testing.assert_allclose(o2["G"][:, -1], o0["G"][:, -1] + 6.0)


def test_twin_feature_order_is_respected():
    names = feature_names(4)
    shuffled = list(np.random.default_rng(0).permutation(names))
    a = DesignProblem(AnalyticTwin(), n_cycles=3)
    b = DesignProblem(AnalyticTwin(order=shuffled), n_cycles=3)
    X = a.space.sample(20, np.random.default_rng(1))
    np.testing.assert_allclose(a.evaluate(X, return_values_of=["F"]), b.evaluate(X, return_values_of=["F"]))


def test_single_objective_finds_the_known_optimum():
    problem = DesignProblem(AnalyticTwin(), ["max:D50"], n_cycles=1)
    res = _run(problem, pop=30, gens=40, seed=1)
    x = np.atleast_2d(res.X)[0]
    names = problem.space.var_names
    assert x[names.index("c0_mg_g")] == pytest.approx(55.2, abs=0.3)
    assert x[names.index("rate1_c_min")] == pytest.approx(0.05, abs=0.01)
    assert -float(np.ravel(res.F)[0]) == pytest.approx(5 + 0.3 * 55.2 + 2 - 20 * 0.05, abs=0.15)


def test_ask_tell_equals_run():
    twin = AnalyticTwin()
    problem = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=2, constraints=["crystallinity>=66"])
    ref = _run(problem, pop=12, gens=6, seed=7)

    alg = make_algorithm(problem, pop_size=12, seed=7)
    alg.setup(problem, termination=("n_gen", 6))
    n_asked = 0
    while alg.has_next():
        pop = alg.ask()
        X = pop.get("X")
        profiles = problem.space.to_profiles(X)  # what a campaign would run
        assert len(profiles) == len(X)
        pred = twin.predict_frame(problem.features(X))  # stands in for measurements
        cqas = pd.DataFrame({c: pred[c + "_mean"] for c in twin.cqas})
        tell_measured(alg, problem, pop, cqas)
        n_asked += len(X)
    res = alg.result()
    assert n_asked == ref.algorithm.evaluator.n_eval
    np.testing.assert_allclose(np.sort(res.F, axis=0), np.sort(ref.F, axis=0))
    np.testing.assert_allclose(res.X[np.lexsort(res.X.T)], ref.X[np.lexsort(ref.X.T)])


def test_failed_measurements_are_infeasible_not_fatal():
    twin = AnalyticTwin()
    problem = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=1)
    alg = make_algorithm(problem, pop_size=6, seed=0)
    alg.setup(problem, termination=("n_gen", 2))
    pop = alg.ask()
    pred = twin.predict_frame(problem.features(pop.get("X")))
    cqas = pd.DataFrame({c: pred[c + "_mean"] for c in twin.cqas})
    cqas.loc[2, "D50_um"] = np.nan  # the batch failed: no D50 measured
    tell_measured(alg, problem, pop, cqas)
    assert not pop[2].get("FEAS")[0] and pop[2].get("F")[0] >= 1e30 and pop[2].get("CV")[0] >= 1e30
    assert pop[0].get("FEAS")[0]
    with pytest.raises(OptimizationError, match="lack column 'DoA_pct'"):
        tell_measured(alg, problem, alg.ask(), cqas.drop(columns="DoA_pct"))
    with pytest.raises(OptimizationError, match="got 5 rows of measured CQAs for 6 candidates"):
        problem.measured_table(pop.get("X"), cqas.iloc[:5])


class _WarningTwin(AnalyticTwin):
    """Like DigitalTwin.predict: optional CQA subset and an extrapolation warning."""

    def __init__(self):
        super().__init__()
        self.asked: list = []

    def predict_frame(self, X, *, cqas=None, warn=True):
        self.asked.append(cqas)
        if warn and np.any(np.asarray(X)[:, 3] == 9):
            import warnings

            warnings.warn("n_segments [9] never seen", UserWarning, stacklevel=2)
        out = super().predict_frame(X)
        return out if cqas is None else out[[f"{c}_{s}" for c in cqas for s in ("mean", "std")]]


def test_twin_warns_once_and_predicts_only_needed_cqas():
    import warnings

    from crystalloop.digital_twin.design import optimize_design

    twin = _WarningTwin()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = optimize_design(twin, "max:D50,min:DoA", cycles=[1, 4], pop_size=8, n_gen=3)
    assert [str(w.message) for w in rec] == ["n_segments [9] never seen"]
    assert ["D50_um", "DoA_pct"] in twin.asked  # generations ask only for the objectives' CQAs
    assert twin.asked[-1] == twin.cqas  # the final table has every CQA
    assert "crystallinity_pct_std" in r.front


def test_without_repair_constraint_domination_still_returns_valid_profiles():
    problem = DesignProblem(AnalyticTwin(), n_cycles=3)
    from pymoo.optimize import minimize

    res = minimize(problem, make_algorithm(problem, pop_size=20, seed=0, repair=False), ("n_gen", 10))
    assert np.all(res.G <= 0)
    assert all(p.is_feasible(DEFAULT_BOUNDS) for p in problem.space.to_profiles(res.X))


def test_initial_population_from_profiles():
    problem = DesignProblem(AnalyticTwin(), n_cycles=1)
    doe = problem.space.to_profiles(problem.space.sample(3, np.random.default_rng(5)))
    alg = make_algorithm(problem, pop_size=10, seed=0, initial=problem.space.from_profiles(doe))
    alg.setup(problem, termination=("n_gen", 1))
    X = alg.ask().get("X")
    np.testing.assert_allclose(X[:3], problem.space.from_profiles(doe))


def test_hypervolume_of_known_points():
    objs = parse_objectives("max:D50,min:DoA", ["D50_um", "DoA_pct"])
    # two points (D50, DoA) = (20, 40) and (10, 20), reference (0, 60): 20*20 + 10*20 = 600
    assert hypervolume(np.array([[20, 40], [10, 20]]), objs, np.array([0, 60])) == pytest.approx(600)
    assert hypervolume(np.array([[-5, 70]]), objs, np.array([0, 60])) == 0.0


# ---------------------------------------------------------------------- bad input
def test_unknown_objective_name():
    with pytest.raises(OptimizationError, match=r"unknown objective name 'D5O'.*D50_um"):
        DesignProblem(AnalyticTwin(), ["max:D5O"])
    with pytest.raises(OptimizationError, match="not of the form 'max:NAME'"):
        DesignProblem(AnalyticTwin(), ["maximise D50"])
    with pytest.raises(OptimizationError, match="more than once"):
        DesignProblem(AnalyticTwin(), ["max:D50", "min:D50_um"])


def test_twin_missing_a_requested_cqa():
    with pytest.raises(ModelError, match=r"'yield_pct'.*twin predicts only"):
        DesignProblem(AnalyticTwin(), ["max:D50", "max:yield"])
    with pytest.raises(ModelError, match=r"constraint 'D90' needs the CQA 'D90_um'"):
        DesignProblem(AnalyticTwin(), ["max:D50"], constraints=["D90>=40"])
    with pytest.raises(ModelError, match="lacks"):
        DesignProblem(object(), ["max:D50"])


def test_contradictory_constraints():
    with pytest.raises(InfeasibleError, match=r"'D50_um>=30' and 'D50_um<=20' contradict"):
        DesignProblem(AnalyticTwin(), constraints=["D50>=30", "D50<=20"])
    with pytest.raises(InfeasibleError, match=r"batch_time_min>=900.*batch_time_min<=600"):
        DesignProblem(AnalyticTwin(), constraints=["batch_time>=900"], max_batch_time_min=600)
    with pytest.raises(OptimizationError, match="equality constraints are not supported"):
        parse_constraints(["D50==3"], ["D50_um"])


def test_bounds_lower_above_upper():
    with pytest.raises(OptimizationError, match=r"design bounds: Bound 'c0_mg_g' needs finite low <= high, got \(50, 30\)"):
        DesignProblem(AnalyticTwin(), bounds={"c0_mg_g": (50, 30)})
    with pytest.raises(OptimizationError, match="Unknown bound name"):
        DesignProblem(AnalyticTwin(), bounds={"c0": (20, 30)})


def test_bounds_and_limits_that_leave_nothing():
    with pytest.raises(InfeasibleError, match=r"cooling rate lower bound 0.05 °C/min exceeds the ramp limit 0.01"):
        DesignProblem(AnalyticTwin(), limits=ThermostatLimits(max_rate_c_min=0.01))
    with pytest.raises(InfeasibleError, match=r"leave \[20, 20.5\] °C, too narrow"):
        DesignProblem(AnalyticTwin(), limits=ThermostatLimits(min_c=20, max_c=20.5))


def test_cycles_and_sizes_checked():
    with pytest.raises(OptimizationError, match="twin was fitted for at most max_cycles=2"):
        DesignProblem(AnalyticTwin(max_cycles=2), n_cycles=3)
    with pytest.raises(OptimizationError, match="cannot read 'a'"):
        parse_cycles("1-3,a")
    with pytest.raises(OptimizationError, match="low > high"):
        parse_cycles("4-1")
    assert parse_cycles("1-4") == [1, 2, 3, 4] and parse_cycles("3,1") == [1, 3]
    with pytest.raises(OptimizationError, match="pop_size must be"):
        make_algorithm(DesignProblem(AnalyticTwin(), n_cycles=1), pop_size=1)
    with pytest.raises(OptimizationError, match="pessimistic must be"):
        DesignProblem(AnalyticTwin(), pessimistic=-1)
    with pytest.raises(OptimizationError, match=r"shape \(n, 9\)"):
        DesignSpace(1).features(np.zeros((2, 5)))


def test_short_names_resolve():
    objs = parse_objectives("max:d50, min:DoA_pct, min:batch_time", ["D50_um", "DoA_pct"])
    assert [str(o) for o in objs] == ["max:D50_um", "min:DoA_pct", "min:batch_time_min"]
    cons = parse_constraints("crystallinity>75,batch_time<900", ["crystallinity_pct"])
    assert [str(c) for c in cons] == ["crystallinity_pct>=75", "batch_time_min<=900"]


def test_custom_bounds_respected():
    b = ProfileBounds(c0_mg_g=(30.0, 35.0), temperature_c=(5.0, 50.0))
    problem = DesignProblem(AnalyticTwin(), n_cycles=2, bounds=b)
    res = _run(problem, pop=12, gens=5)
    for p in problem.space.to_profiles(res.X):
        assert p.violations(b) == []
        assert 30 <= p.c0_mg_g <= 35


# ---------------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def study():
    from crystalloop.digital_twin.design import optimize_design

    return optimize_design(AnalyticTwin(), "max:D50,min:DoA", cycles="1-3", constraints=["crystallinity>=62"],
                           max_batch_time_min=2000, pop_size=16, n_gen=12, seed=5)


def test_study_returns_only_profiles_meeting_every_constraint(study):
    front = study.front
    assert list(study.instances) == ["1 cycle", "2 cycles", "3 cycles"]
    assert len(study.profiles) == len(front) > 10
    for i, p in enumerate(study.profiles):
        assert p.violations(DEFAULT_BOUNDS) == []
        assert p.n_cycles == front["n_cycles"].iloc[i]
        assert p.batch_time_min == pytest.approx(front["batch_time_min"].iloc[i])
        assert p.batch_time_min <= 2000
    assert np.all(front["crystallinity_pct_mean"] >= 62)
    # the table's predictions are the twin's for these very profiles
    pred = AnalyticTwin().predict_frame(np.vstack([p.to_features(4) for p in study.profiles]))
    np.testing.assert_allclose(front["D50_um_mean"], pred["D50_um_mean"])
    np.testing.assert_allclose(front["DoA_pct_std"], pred["DoA_pct_std"])
    # the global front is non-dominated
    g = front[front["pareto_global"]]
    for _, r in g.iterrows():
        dom = (front["D50_um_mean"] >= r["D50_um_mean"]) & (front["DoA_pct_mean"] <= r["DoA_pct_mean"]) & (
            (front["D50_um_mean"] > r["D50_um_mean"]) | (front["DoA_pct_mean"] < r["DoA_pct_mean"]))
        assert not dom.any()


def test_study_converges_and_counts(study):
    h = study.history
    assert len(h) == 3 * 12
    for _, hi in h.groupby("instance"):
        assert hi["hypervolume"].iloc[-1] >= hi["hypervolume"].iloc[0] > 0
    assert study.n_evaluations == h.groupby("instance")["n_eval"].max().sum()
    # one twin call per generation for all instances together, plus one to tabulate each final front
    assert study.n_twin_calls == 12 + 3


def test_same_seed_same_front_other_seed_other_front():
    from crystalloop.digital_twin.design import optimize_design

    kw = dict(cycles=[1, 2], pop_size=10, n_gen=5)
    a = optimize_design(AnalyticTwin(), seed=11, **kw).front
    b = optimize_design(AnalyticTwin(), seed=11, **kw).front
    c = optimize_design(AnalyticTwin(), seed=12, **kw).front
    pd.testing.assert_frame_equal(a, b)
    assert not (a.shape == c.shape and np.allclose(a["c0_mg_g"], c["c0_mg_g"]))


def test_lockstep_equals_one_run_after_the_other():
    from crystalloop.digital_twin.design import optimize_design

    kw = dict(cycles="1-3", constraints=["crystallinity>=62"], pop_size=10, n_gen=5, seed=8)
    t1, t2 = AnalyticTwin(), AnalyticTwin()
    a = optimize_design(t1, lockstep=True, **kw)
    b = optimize_design(t2, lockstep=False, **kw)
    pd.testing.assert_frame_equal(a.front, b.front)
    pd.testing.assert_frame_equal(a.history, b.history)
    # one extrapolation check per instance, one call per generation (lockstep) or per instance and
    # generation, one per instance to tabulate the final front
    assert t1.calls == 3 + 5 + 3 and t2.calls == 3 + 3 * 5 + 3
    assert a.n_twin_calls == t1.calls - 3 and b.n_twin_calls == t2.calls - 3  # checks not counted
    assert t1.rows == t2.rows


@pytest.mark.slow
def test_parallel_instances_give_the_same_front():
    from crystalloop.digital_twin.design import optimize_design

    kw = dict(cycles=[1, 2], pop_size=10, n_gen=4, seed=4)
    seen = []
    a = optimize_design(AnalyticTwin(), n_jobs=1, **kw)
    b = optimize_design(AnalyticTwin(), n_jobs=2, callback=lambda *args: seen.append(args), **kw)
    pd.testing.assert_frame_equal(a.front, b.front)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert b.n_twin_calls == 2 * 4 + 2 and a.n_twin_calls == 4 + 2
    assert len(seen) == 2 * 4 and seen[-1][1:] == (4, 4)


def test_mixed_formulation_mixes_cycles():
    from crystalloop.digital_twin.design import optimize_design

    r = optimize_design(AnalyticTwin(), "max:D50,min:batch_time", cycles="1-4", mixed=True,
                        pop_size=24, n_gen=10, seed=2)
    assert r.instances == ["1-4 cycles (mixed)"]
    assert r.front["n_cycles"].nunique() >= 2
    assert [p.n_cycles for p in r.profiles] == list(r.front["n_cycles"])
    # fewer cycles → shorter batches: the shortest profile on the front has the fewest cycles
    assert r.front.loc[r.front["batch_time_min"].idxmin(), "n_cycles"] == r.front["n_cycles"].min()


def test_impossible_constraint_names_the_binding_one():
    from crystalloop.digital_twin.design import optimize_design

    with pytest.raises(InfeasibleError, match=r"no feasible profile was found for 1 cycle after 40 evaluations; "
                                              r"binding constraint\(s\): 'crystallinity_pct>=200'"):
        optimize_design(AnalyticTwin(), cycles=1, constraints=["crystallinity>=200"], pop_size=8, n_gen=5)
    with pytest.raises(InfeasibleError, match=r"'batch_time_min<=10' \(closest miss"):
        optimize_design(AnalyticTwin(), cycles=1, max_batch_time_min=10, pop_size=8, n_gen=5)


def test_infeasible_instance_warns_when_others_succeed():
    from crystalloop.digital_twin.design import optimize_design

    # crystallinity = 60 + 5 n - 30 cool: >= 72 needs 3 cycles at the slowest cooling
    with pytest.warns(UserWarning, match=r"no feasible profile was found for 1 cycle"):
        r = optimize_design(AnalyticTwin(), cycles=[1, 3], constraints=["crystallinity>=72"], pop_size=10, n_gen=8)
    assert r.instances == ["3 cycles"] and "1 cycle" in r.infeasible


# ---------------------------------------------------------------------- selection and export
def test_knee_point_of_a_convex_front():
    from crystalloop.digital_twin.design import DesignResult, knee_point

    # front (D50, DoA): (10, 10), (18, 12), (20, 30): knee is (18, 12)
    r = _fake_result([(10, 10), (18, 12), (20, 30)])
    assert isinstance(r, DesignResult)
    prof, row = knee_point(r, return_row=True)
    assert row["D50_um_mean"] == 18 and prof.name.startswith("knee point (1 cycles, D50_um 18")
    assert prof.c0_mg_g == r.profiles[1].c0_mg_g


def test_best_under_and_shortest_batch():
    from crystalloop.digital_twin.design import best_under, shortest_batch

    r = _fake_result([(10, 10), (18, 12), (20, 30), (25, 50)], batch=[100, 300, 200, 900])
    _, row = best_under(r, "max:D50", ["DoA<=35"], return_row=True)
    assert row["D50_um_mean"] == 20
    _, row = shortest_batch(r, "D50>=15,DoA<=40", return_row=True)
    assert row["batch_time_min"] == 200
    with pytest.raises(InfeasibleError, match=r"no designed profile meets 'DoA_pct<=5'.*lowest DoA_pct .* is 10"):
        best_under(r, "max:D50", ["DoA<=5"])
    with pytest.raises(InfeasibleError, match=r"meets 'DoA_pct<=11' together with \['D50_um>=15'\]"):
        shortest_batch(r, ["D50>=15", "DoA<=11"])
    with pytest.raises(OptimizationError, match="no profile with 3 cycles"):
        best_under(r, "max:D50", "DoA<=40", n_cycles=3)


def test_selection_on_a_real_study(study):
    from crystalloop.digital_twin.design import best_under, knee_point, shortest_batch

    knee = knee_point(study)
    best = best_under(study, "max:D50", ["DoA<=50"])
    fast = shortest_batch(study, ["D50>=15"])
    for p in (knee, best, fast):
        assert p.is_feasible(DEFAULT_BOUNDS)
    rows = study.front
    feas = rows[rows["DoA_pct_mean"] <= 50]
    assert f"D50_um {feas['D50_um_mean'].max():.3g}" in best.name


def test_export_recipe_round_trip(tmp_path, study):
    from crystalloop.digital_twin.design import export_recipe, knee_point
    from crystalloop.profiles import ThermocycleProfile

    prof, row = knee_point(study, return_row=True)
    paths = export_recipe(prof, tmp_path / "out", stem="knee", predicted=row, dt_s=120)
    back = ThermocycleProfile.from_file(paths["recipe"])
    np.testing.assert_allclose(back.to_features(4), prof.to_features(4), atol=0.006)
    assert back.t_start_c == round(prof.t_start_c, 2) and back.is_feasible(DEFAULT_BOUNDS)
    exact = ThermocycleProfile.from_file(export_recipe(prof, tmp_path, stem="x", round_values=False)["recipe"])
    np.testing.assert_array_equal(exact.to_features(4), prof.to_features(4))
    text = paths["recipe"].read_text()
    assert "predicted by the digital twin: D50_um_mean=" in text
    traj = pd.read_csv(paths["setpoints"])
    assert list(traj.columns) == ["time_s", "setpoint_c", "segment"]
    assert traj["time_s"].iloc[-1] == pytest.approx(back.batch_time_s)  # the recipe's own trajectory
    assert traj["time_s"].iloc[-1] == pytest.approx(prof.batch_time_s, rel=1e-3)
    assert traj["setpoint_c"].iloc[-1] == pytest.approx(back.end_temperature_c)
    assert traj["setpoint_c"].iloc[0] == pytest.approx(back.t_start_c)
    np.testing.assert_allclose(traj["setpoint_c"], back.setpoint_at(traj["time_s"].to_numpy()))


def test_write_design_writes_tables_plots_and_recipes(tmp_path, study):
    from crystalloop.digital_twin.design import write_design

    paths = write_design(study, tmp_path)
    for name in ("front.csv", "history.csv", "design.json", "pareto_fronts.png", "convergence.png",
                 "recipe_knee.yaml", "recipe_knee_setpoints.csv", "recipe_knee_3cycles.yaml"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "pareto_fronts.png").stat().st_size > 10_000
    front = pd.read_csv(paths["front"])
    assert len(front) == len(study.front)
    import json

    meta = json.loads(paths["meta"].read_text())
    assert meta["objectives"] == ["max:D50_um", "min:DoA_pct"]
    assert meta["constraints"] == ["crystallinity_pct>=62", "batch_time_min<=2000"]


def test_plot_fronts_colours_by_a_third_cqa(study):
    from crystalloop.digital_twin.design import plot_fronts

    fig = plot_fronts(study, color="crystallinity")
    assert len(fig.axes) == 2  # plot + colour bar
    assert fig.axes[0].get_xlabel() == "D50_um" and fig.axes[1].get_ylabel() == "predicted crystallinity_pct"
    with pytest.raises(OptimizationError, match="unknown plot axis name 'purity'"):
        plot_fronts(study, color="purity")


def test_cli_design(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import crystalloop.digital_twin.design as design_pkg
    from crystalloop.cli import app

    if "design" not in {c.name for c in app.registered_commands}:
        from crystalloop.commands.design import register

        register(app)
    monkeypatch.setattr(design_pkg, "load_twin", lambda path: AnalyticTwin())
    out = tmp_path / "design"
    res = CliRunner().invoke(app, ["design", str(tmp_path), "--objectives", "max:D50,min:DoA", "--cycles", "1-2",
                                   "--constraint", "crystallinity>=62", "--pop", "8", "--gens", "4",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Pareto fronts" in res.output and "knee point" in res.output
    assert (out / "recipe_knee.yaml").is_file() and (out / "front.csv").is_file()


def _fake_result(points, batch=None):
    """A DesignResult with given (D50, DoA) points, all 1-cycle profiles (distinct c0)."""
    from crystalloop.digital_twin.design import DesignResult, parse_objectives
    from crystalloop.profiles import Segment, ThermocycleProfile

    n = len(points)
    batch = batch or [100.0] * n
    profiles = [ThermocycleProfile(30 + i, 0.1, 50, [Segment(30, 0.1), Segment(40, 0.6), Segment(10, 0.1)])
                for i in range(n)]
    d50, doa = np.array(points, dtype=float).T
    front = pd.DataFrame({"instance": "1 cycle", "n_cycles": 1, "pareto_global": True,
                          "D50_um_mean": d50, "D50_um_std": 1.0, "DoA_pct_mean": doa, "DoA_pct_std": 1.0,
                          "crystallinity_pct_mean": 70.0, "crystallinity_pct_std": 1.0,
                          "batch_time_min": np.asarray(batch, float),
                          "D50_um_objective": d50, "DoA_pct_objective": doa})
    return DesignResult(objectives=parse_objectives("max:D50,min:DoA", AnalyticTwin.cqas), constraints=[],
                        front=front, profiles=profiles, history=pd.DataFrame(),
                        reference_point=np.array([0.0, 60.0]), cqas=list(AnalyticTwin.cqas))


def test_spread_points_cover_the_front():
    from crystalloop.digital_twin.design import spread_points

    pts = [(10, 10), (12, 11), (18, 12), (19, 20), (20, 30), (25, 50)]
    r = _fake_result(pts)
    chosen = spread_points(r, 3)
    c0 = [p.c0_mg_g - 30 for p in chosen]  # profile i has c0 = 30 + i
    assert c0[:2] == [5, 0]  # the extremes (max D50, min DoA) first
    assert c0[2] in (2, 3)  # then the middle of the front
    assert len(spread_points(r, 50)) == len(pts)
    with pytest.raises(OptimizationError, match="n must be a whole number >= 1"):
        spread_points(r, 0)
