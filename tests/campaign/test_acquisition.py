"""Expected-hypervolume-improvement batch selection (``acquisition="ehvi"``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from crystalloop.campaign import run_campaign, select_ehvi
from crystalloop.campaign.propose import _hv_min
from crystalloop.errors import ConfigError

_spec = importlib.util.spec_from_file_location("_campaign_tests", Path(__file__).with_name("test_campaign.py"))
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)
tiny_doe = T.tiny_doe

SIGN = np.array([-1.0, 1.0])  # max D50, min DoA
REF = np.array([80.0, 30.0])
MEASURED = np.array([[100.0, 10.0], [120.0, 20.0]])


def test_exact_2d_hypervolume():
    F = MEASURED * SIGN
    # (-100,10) and (-120,20) against (-80,30): 20*20 + (40-20)... by hand: 400 + 20*10 = 600
    assert _hv_min(F, REF * SIGN) == pytest.approx(20 * 20 + 20 * 10)
    assert _hv_min(np.array([[-70.0, 5.0]]), REF * SIGN) == 0.0  # beyond the reference: nothing
    assert _hv_min(np.vstack([F, F[:1]]), REF * SIGN) == pytest.approx(600.0)  # duplicates add nothing


def test_ehvi_picks_the_largest_gain_then_believes_it():
    mu = np.array([[130.0, 5.0], [90.0, 25.0], [110.0, 2.0]])
    sd = np.zeros_like(mu)
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 1) == [0]
    # with candidate 0 believed, candidate 2 still adds the region DoA < 5; candidate 1 adds nothing
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 2) == [0, 2]
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 2, eligible=np.array([False, True, True])) == [2, 1]


def test_ehvi_rewards_uncertainty_where_the_mean_adds_nothing():
    mu = np.array([[95.0, 21.0], [95.0, 21.0]])  # both dominated by the measured front in the mean
    sd = np.array([[0.0, 0.0], [15.0, 5.0]])
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 1, seed=1) == [1]


def test_campaign_round_with_ehvi(tiny_doe, tmp_path):
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path / "c", learn=T.Learner(),
                       **T._kw(acquisition="ehvi"))
    assert list(res.history["selected_by"]) == ["ehvi", "ehvi"]
    assert list(res.rounds["round"]) == [1] and res.rounds["hypervolume"].iloc[0] > 0
    with pytest.raises(ConfigError, match="acquisition must be one of .*'ehvi'.*, got 'ucb'"):
        run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path / "d", learn=T.Learner(),
                     **T._kw(acquisition="ucb"))


# ----------------------------------------------------------------------------- mc-ehvi / hvi-ucb
from crystalloop.campaign.propose import _ehvi_picks, _hvi_2d  # noqa: E402
from crystalloop.profiles import feature_names  # noqa: E402


def test_vectorized_improvement_equals_the_exact_hypervolume_difference():
    rng = np.random.default_rng(0)
    ref = REF * SIGN
    front = MEASURED * SIGN
    P = np.column_stack([rng.uniform(-140, -70, 200), rng.uniform(0, 35, 200)])
    want = [_hv_min(np.vstack([front, p]), ref) - _hv_min(front, ref) for p in P]
    assert np.allclose(_hvi_2d(P, front, ref), want)
    assert _hvi_2d(np.array([[-130.0, 5.0]]), np.zeros((0, 2)), ref)[0] == pytest.approx(50 * 25)  # empty front
    assert _hvi_2d(np.array([[np.nan, 5.0]]), front, ref)[0] == 0.0


class _TableTwin:
    """A twin that looks its prediction up by the first feature (c0) of a recipe row."""

    cqas = ["D50_um", "DoA_pct"]
    max_cycles = 4
    feature_names = feature_names(4)

    def __init__(self, table):
        self.table = table  # c0 -> (D50 mean, D50 std, DoA mean, DoA std)

    def predict_frame(self, X, *, cqas=None, warn=True):
        import pandas as pd

        v = np.array([self.table[round(float(x[0]), 3)] for x in np.atleast_2d(X)])
        return pd.DataFrame({"D50_um_mean": v[:, 0], "D50_um_std": v[:, 1], "DoA_pct_mean": v[:, 2],
                             "DoA_pct_std": v[:, 3]})


def _rows(c0s):
    X = np.zeros((len(c0s), len(feature_names(4))))
    X[:, 0] = c0s
    X[:, 5:] = np.linspace(0, 1, X.shape[1] - 5)  # far from the measured rows in every other feature
    return X


def test_hvi_ucb_prefers_the_uncertain_candidate():
    twin = _TableTwin({1.0: (130.0, 0.0, 5.0, 0.0),    # a sure, modest improvement
                       2.0: (110.0, 30.0, 15.0, 10.0)})  # dominated in the mean, far better at +2 std
    existing = np.zeros((2, len(feature_names(4))))
    cand = _rows([1.0, 2.0])
    kw = dict(min_distance=0.0, seed=0)
    # the mean picks the sure candidate; UCB with κ = 2 the uncertain one (optimistic point 170 µm at DoA 0)
    assert _ehvi_picks(twin, "max:D50,min:DoA", [None, None], cand, existing, 1, MEASURED, REF, kappa=0.0, **kw) == [0]
    assert _ehvi_picks(twin, "max:D50,min:DoA", [None, None], cand, existing, 1, MEASURED, REF, kappa=2.0, **kw) == [1]
    assert _ehvi_picks(twin, "max:D50,min:DoA", [None, None], cand, existing, 2, MEASURED, REF, kappa=2.0, **kw) == [1, 0]


def test_campaign_round_with_mc_ehvi(tiny_doe, tmp_path):
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=tmp_path / "c", learn=T.Learner(),
                       **T._kw(acquisition="mc-ehvi", cycles="1-2", mixed=True))
    assert list(res.history["selected_by"]) == ["mc-ehvi", "mc-ehvi"]
    assert res.rounds["hypervolume"].iloc[0] > 0
    assert all(1 <= p.n_cycles <= 2 for p in res.profiles[0])


def test_ehvi_batch_skips_near_copies_of_a_pick():
    mu = np.array([[125.0, 8.0], [125.0, 8.0], [110.0, 3.0]])  # 0 and 1: the same recipe twice
    sd = np.array([[20.0, 5.0], [20.0, 5.0], [2.0, 1.0]])
    X = np.array([[0.50, 0.50], [0.51, 0.50], [0.90, 0.10]])
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 2, seed=0) == [0, 1]  # the copy still has variance to offer
    assert select_ehvi(mu, sd, MEASURED, SIGN, REF, 2, seed=0, X=X, min_distance=0.05) == [0, 2]
