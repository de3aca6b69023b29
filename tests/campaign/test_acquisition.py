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
