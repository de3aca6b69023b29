"""``crystalloop simulate``: the runner on sim:// — stores the run, prints CQAs, writes the PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import ExperimentStore


@pytest.fixture
def recipe(tmp_path):
    p = ThermocycleProfile(45.0, 0.1, 50.0, [Segment(38.0, 0.3), Segment(44.0, 1.0), Segment(35.0, 0.3)],
                           name="cli-test")
    return p.to_file(tmp_path / "r.yaml")


def test_simulate_stores_run_prints_cqas_and_writes_png(tmp_path, recipe):
    db = tmp_path / "s.db"
    res = CliRunner().invoke(app, ["simulate", str(recipe), "--store", str(db), "--out", str(tmp_path / "o"),
                                   "--seed", "2", "--image-interval-min", "30"])
    assert res.exit_code == 0, res.output
    assert "D50_um" in res.output and "DoA_pct" in res.output and "crystallinity_pct" in res.output
    store = ExperimentStore(db)
    runs = store.runs()
    assert len(runs) == 1 and runs["status"].iloc[0] == "completed" and runs["kind"].iloc[0] == "simulation"
    rid = int(runs["run_id"].iloc[0])
    cq = store.cqas(rid)
    assert set(cq["name"]) >= {"D50_um", "DoA_pct", "crystallinity_pct", "yield_pct", "batch_time_min"}
    s = store.samples(rid, channels=["T_reactor_c"])
    assert len(s) > 10
    assert len(store.images(rid)) == 3
    assert all(p.parent == tmp_path / "o" / "images" / f"run_{rid}" for p in store.images(rid)["path"].map(Path))
    assert (tmp_path / "o" / f"sim_{rid}.png").stat().st_size > 10_000
    assert runs["backend"].iloc[0] == "sim://?seed=2&kinetics=default"


def test_simulate_is_crystalloop_run_on_sim(tmp_path, recipe):
    """Same recipe, same sim:// URL: simulate and run give identical samples and CQAs."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    r = CliRunner().invoke(app, ["simulate", str(recipe), "--store", str(a), "--out", str(tmp_path / "o"),
                                 "--seed", "4", "--no-images"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["run", str(recipe), "--backend", "sim://?seed=4&kinetics=default", "--store", str(b),
                                 "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    sa, sb = ExperimentStore(a).samples(1), ExperimentStore(b).samples(1)
    pd.testing.assert_frame_equal(sa.drop(columns="run_id", errors="ignore"), sb.drop(columns="run_id", errors="ignore"))
    ca, cb = ExperimentStore(a).cqas(1), ExperimentStore(b).cqas(1)
    assert dict(zip(ca["name"], ca["value"], strict=True)) == dict(zip(cb["name"], cb["value"], strict=True))


def test_simulate_without_images_and_bad_recipe(tmp_path, recipe):
    res = CliRunner().invoke(app, ["simulate", str(recipe), "--no-images", "--store", str(tmp_path / "s.db"),
                                   "--out", str(tmp_path / "o"), "--kinetics", "pharmapy"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "o" / "images").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("c0_mg_g: 40\nseed_loading: 0.1\nt_start_c: 50\nsegments: [{target_c: 90, rate_c_min: 0.2}]\n")
    res = CliRunner().invoke(app, ["simulate", str(bad), "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "must cool" in res.output
    res = CliRunner().invoke(app, ["simulate", str(recipe), "--kinetics", "nosuch", "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 2 and "Unknown kinetic set 'nosuch'" in res.output
    res = CliRunner().invoke(app, ["simulate", str(recipe), "--image-interval-min", "0", "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 2 and "--image-interval-min must be a number of minutes > 0, got 0.0" in res.output
    # argument errors leave no run behind (only the one good simulation above)
    assert list(ExperimentStore(tmp_path / "s.db").runs()["status"]) == ["completed"]


def test_bare_simulate_uses_the_shipped_three_cycle_recipe():
    from crystalloop.hardware.sim import default_recipe_path

    p = ThermocycleProfile.from_file(default_recipe_path())
    assert p.n_cycles == 3 and p.name == "three-cycle"
