"""``crystalloop campaign``: the closed loop from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.hardware.sim import simulate
from crystalloop.profiles import Segment, ThermocycleProfile, profiles_to_frame
from crystalloop.store import ExperimentStore


@pytest.fixture(scope="module")
def doe(tmp_path_factory):
    rng = np.random.default_rng(11)
    profs = [ThermocycleProfile(round(float(rng.uniform(30, 50)), 1), 0.1, 50.0,
                                (Segment(round(float(rng.uniform(15, 30)), 1), round(float(rng.uniform(0.2, 0.3)), 3)),))
             for _ in range(10)]
    cq = pd.DataFrame([{k: simulate(p, seed=i, n_classes=60, noise=False).cqas[k] for k in ("D50_um", "DoA_pct")}
                       for i, p in enumerate(profs)])
    path = tmp_path_factory.mktemp("doe") / "doe.csv"
    pd.concat([pd.DataFrame({"run_id": [f"D{i}" for i in range(10)]}), profiles_to_frame(profs, 4), cq],
              axis=1).to_csv(path, index=False)
    return path


def test_campaign_command_refuses_bad_input(doe, tmp_path):
    """Input errors: one line, exit code 2, nothing run and no progress bar drawn first."""
    r = CliRunner().invoke(app, ["campaign", str(doe), "--batch", "0", "--out", str(tmp_path)])
    assert r.exit_code == 2 and r.output == "error: --batch must be a whole number >= 1, got 0\n", r.output
    r = CliRunner().invoke(app, ["campaign", str(doe), "--backend", "nope://", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "Unknown backend URL scheme 'nope'" in r.output and "campaign" not in r.output
    r = CliRunner().invoke(app, ["campaign", "--out", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no DoE given" in r.output
    assert not (tmp_path / "campaign.sqlite").exists()


@pytest.mark.slow
def test_campaign_command_runs_a_round_and_resumes(doe, tmp_path):
    out = tmp_path / "c"
    bounds = tmp_path / "b.yaml"
    bounds.write_text("cooling_rate_c_min: [0.2, 0.3]\ntemperature_c: [15, 55]\n")
    args = ["campaign", str(doe), "--backend", "sim://?n_classes=60", "--rounds", "1", "--batch", "1", "--cycles", "1",
            "--pop", "8", "--gens", "3", "--splits", "3", "--frames", "6", "--sample-interval", "600",
            "--bounds", str(bounds), "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "C1-1: completed" in r.output and "hypervolume" in r.output
    assert f"recipes: {out / 'round_01' / 'recipes'}/" in r.output and f"{out / 'fronts.png'}" in r.output
    r = CliRunner().invoke(app, ["campaign", "--backend", "sim://?n_classes=60", "--batch", "1", "--cycles", "1",
                                 "--pop", "8", "--gens", "3", "--splits", "3", "--frames", "6",
                                 "--sample-interval", "600", "--bounds", str(bounds), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "C2-1: completed" in r.output
    assert len(pd.read_csv(out / "doe.csv")) == 12
    runs = ExperimentStore(out / "campaign.sqlite").runs()
    assert list(runs["kind"]) == ["campaign", "campaign"]
    assert (out / "fronts.png").is_file() and (out / "parity.png").is_file()
    # the first command again: its one round is done, nothing runs
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert len(ExperimentStore(out / "campaign.sqlite").runs()) == 2 and len(pd.read_csv(out / "doe.csv")) == 12
