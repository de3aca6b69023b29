"""`crystalloop twin fit / predict / report` on a small DoE."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _twin_data import make_doe
from typer.testing import CliRunner

from crystalloop.cli import app


def _flat(text: str) -> str:
    """Rich wraps long lines; compare with whitespace collapsed."""
    return " ".join(text.split())


@pytest.mark.slow
def test_twin_commands(tmp_path):
    runner = CliRunner()
    make_doe(16).to_csv(tmp_path / "doe.csv", index=False)
    make_doe(5, seed=4).drop(columns=["D50_um", "DoA_pct", "crystallinity_pct"]).to_csv(tmp_path / "p.csv", index=False)
    r = runner.invoke(app, ["twin", "fit", str(tmp_path / "doe.csv"), "--out", str(tmp_path / "tw"), "--grid", "fast",
                            "--families", "svr", "--splits", "5", "--no-augment", "--cqa", "D50", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert "D50_um" in r.output and "twin saved in" in r.output
    doc = json.loads((tmp_path / "tw" / "twin.json").read_text())
    assert doc["cqas"] == ["D50_um"] and (tmp_path / "tw" / "report" / "parity_D50_um.png").is_file()
    r = runner.invoke(app, ["twin", "predict", str(tmp_path / "tw"), str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns) == ["run_id", "D50_um_mean", "D50_um_std"] and len(out) == 5
    r = runner.invoke(app, ["twin", "report", str(tmp_path / "tw"), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "model_card.md").is_file()


def test_twin_fit_bad_input_exits_2(tmp_path):
    runner = CliRunner()
    df = make_doe(8)
    df.loc[2, "c0_mg_g"] = None
    df.to_csv(tmp_path / "bad.csv", index=False)
    r = runner.invoke(app, ["twin", "fit", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "tw")])
    assert r.exit_code == 2
    assert "row 3 (run_id 'R03'), column 'c0_mg_g': input value is missing" in _flat(r.output)
    make_doe(8).to_csv(tmp_path / "good.csv", index=False)
    r = runner.invoke(app, ["twin", "fit", str(tmp_path / "good.csv"), "--families", "mlp"])
    assert r.exit_code == 2 and "unknown" in r.output
    r = runner.invoke(app, ["twin", "predict", str(tmp_path / "nowhere"), str(tmp_path / "bad.csv")])
    assert r.exit_code == 2 and "is not a saved twin" in _flat(r.output)


def test_twin_fit_warns_in_one_line_when_a_model_is_useless(tmp_path):
    import numpy as np

    df = make_doe(20, seed=3)
    df["D50_um"] = np.random.default_rng(1).normal(100, 10, len(df))  # nothing to learn
    df.to_csv(tmp_path / "doe.csv", index=False)
    args = ["twin", "fit", str(tmp_path / "doe.csv"), "--grid", "fast", "--families", "svr", "--splits", "4",
            "--no-augment", "--cqa", "D50", "--cqa", "DoA", "--jobs", "1", "--repeats", "1", "--seed", "5"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "cross-validated R²" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: D50_um: cross-validated R²"), r.output
    assert "no better than predicting the mean" in lines[0]
    card = (tmp_path / "a" / "report" / "model_card.md").read_text(encoding="utf-8")
    assert card.index("**Warnings.**") < card.index("## Summary")
    # --seed: the same DoE and seed give a byte-identical twin folder
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    for sub in ("twin.json", "models/D50_um/members.skops", "models/DoA_pct/ensemble.json", "data/doe.csv"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes(), sub


def test_gp_twin_fit_predict_report_design(tmp_path):
    """--model gp: fit with a solubility curve, byte-identical per seed, predict, report and design on the folder."""
    import numpy as np

    runner = CliRunner()
    make_doe(20, seed=2).to_csv(tmp_path / "doe.csv", index=False)
    make_doe(4, seed=4).drop(columns=["D50_um", "DoA_pct", "crystallinity_pct"]).to_csv(tmp_path / "p.csv", index=False)
    args = ["twin", "fit", str(tmp_path / "doe.csv"), "--model", "gp", "--solubility", "8.0,0.283,0.00917",
            "--cqa", "D50", "--cqa", "DoA", "--seed", "3"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "GP twin from doe.csv (20 runs" in r.output and "with the solubility curve" in _flat(r.output)
    doc = json.loads((tmp_path / "a" / "twin.json").read_text())
    assert doc["kind"] == "feature-gp" and doc["cqas"] == ["D50_um", "DoA_pct"]
    assert doc["metadata"]["settings"]["solubility"]["coefficients"] == [8.0, 0.283, 0.00917]
    assert 0.5 < doc["info"]["D50_um"]["cv_r2"] <= 1 and doc["info"]["D50_um"]["n_rows"] == 20
    card = (tmp_path / "a" / "report" / "model_card.md").read_text(encoding="utf-8")
    assert "Leave-one-out on 20 rows" in card and (tmp_path / "a" / "report" / "parity_D50_um.png").is_file()
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    for sub in ("twin.json", "models/D50_um.json", "models/DoA_pct.json", "data/doe.csv"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes(), sub
    r = runner.invoke(app, ["twin", "predict", str(tmp_path / "a"), str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns) == ["run_id", "D50_um_mean", "D50_um_std", "DoA_pct_mean", "DoA_pct_std"] and len(out) == 4
    from crystalloop.digital_twin import FeatureGPTwin, load_twin

    tw = load_twin(tmp_path / "a")
    assert isinstance(tw, FeatureGPTwin)
    feats = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(out["D50_um_mean"], tw.predict_frame(feats[tw.feature_names])["D50_um_mean"], rtol=1e-12)
    r = runner.invoke(app, ["twin", "report", str(tmp_path / "a"), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "model_card.md").is_file(), r.output
    r = runner.invoke(app, ["design", str(tmp_path / "a"), "--cycles", "1", "--pop", "12", "--gens", "3",
                            "--out", str(tmp_path / "des")])
    assert r.exit_code == 0, r.output
    assert "the solubility curve stored with the GP twin" in _flat(r.output)
    assert (tmp_path / "des" / "front.csv").is_file() and (tmp_path / "des" / "recipe_knee.yaml").is_file()


def test_gp_twin_fit_bad_options_exit_2(tmp_path):
    runner = CliRunner()
    make_doe(8).to_csv(tmp_path / "doe.csv", index=False)
    base = ["twin", "fit", str(tmp_path / "doe.csv"), "--out", str(tmp_path / "tw")]
    r = runner.invoke(app, [*base, "--model", "forest"])
    assert r.exit_code == 2 and "--model must be 'ensemble', 'gp' or 'hybrid', got 'forest'" in _flat(r.output)
    r = runner.invoke(app, [*base, "--model", "gp", "--solubility", "8,oops"])
    assert r.exit_code == 2 and "--solubility '8,oops' is neither comma-separated polynomial coefficients" in _flat(r.output)
    r = runner.invoke(app, [*base, "--solubility", "8,0.3"])
    assert r.exit_code == 2 and "--solubility is used by --model gp or hybrid only" in _flat(r.output)
    r = runner.invoke(app, [*base, "--model", "hybrid", "--features", "cv"])
    assert r.exit_code == 2 and "--features is used by --model gp only" in _flat(r.output)
    r = runner.invoke(app, [*base, "--model", "gp", "--features", "some"])
    assert r.exit_code == 2 and "--features must be 'all', 'cv' or 'auto', got 'some'" in _flat(r.output)
    assert not (tmp_path / "tw").exists()


def test_gp_twin_fit_warns_in_one_line_when_a_model_is_useless(tmp_path):
    import numpy as np

    df = make_doe(20, seed=3)
    df["DoA_pct"] = np.random.default_rng(0).normal(30, 5, len(df))  # nothing to learn
    df.to_csv(tmp_path / "doe.csv", index=False)
    r = CliRunner().invoke(app, ["twin", "fit", str(tmp_path / "doe.csv"), "--model", "gp", "--cqa", "D50", "--cqa", "DoA",
                                 "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "cross-validated R²" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: DoA_pct: cross-validated R²"), r.output
    card = (tmp_path / "a" / "report" / "model_card.md").read_text(encoding="utf-8")
    assert card.index("**Warnings.**") < card.index("## Summary") and "DoA_pct: cross-validated R²" in card


def test_hybrid_twin_fit_predict_report_design(tmp_path):
    """--model hybrid: a kinetic model under a GP per CQA; byte-identical per seed, predict, report, design."""
    import numpy as np

    runner = CliRunner()
    make_doe(20, seed=2).to_csv(tmp_path / "doe.csv", index=False)
    make_doe(4, seed=4).drop(columns=["D50_um", "DoA_pct", "crystallinity_pct"]).to_csv(tmp_path / "p.csv", index=False)
    args = ["twin", "fit", str(tmp_path / "doe.csv"), "--model", "hybrid", "--solubility", "8.0,0.283,0.00917",
            "--cqa", "D50", "--cqa", "DoA", "--seed", "3"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "Hybrid twin from doe.csv (20 runs" in r.output and "kinetic model: 3 constant sets" in _flat(r.output)
    doc = json.loads((tmp_path / "a" / "twin.json").read_text())
    assert doc["kind"] == "hybrid" and doc["format_version"] == 1 and doc["cqas"] == ["D50_um", "DoA_pct"]
    assert doc["metadata"]["settings"]["solubility"]["coefficients"] == [8.0, 0.283, 0.00917]
    assert np.shape(doc["metadata"]["kinetic"]["thetas"]) == (3, 7)
    assert doc["info"]["D50_um"]["n_rows"] == 20 and doc["info"]["D50_um"]["mean"] == "kinetic"
    card = (tmp_path / "a" / "report" / "model_card.md").read_text(encoding="utf-8")
    assert "Leave-one-out on 20 rows" in card and "**Kinetic model.** 3 constant set(s)" in card
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    for sub in ("twin.json", "models/D50_um.json", "models/DoA_pct.json", "data/doe.csv"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes(), sub
    r = runner.invoke(app, ["twin", "predict", str(tmp_path / "a"), str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns) == ["run_id", "D50_um_mean", "D50_um_std", "DoA_pct_mean", "DoA_pct_std"] and len(out) == 4
    from crystalloop.digital_twin import HybridTwin, load_twin

    tw = load_twin(tmp_path / "a")
    assert isinstance(tw, HybridTwin)
    feats = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(out["D50_um_mean"], tw.predict_frame(feats[tw.feature_names])["D50_um_mean"], rtol=1e-12)
    r = runner.invoke(app, ["twin", "report", str(tmp_path / "a"), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "model_card.md").is_file(), r.output
    r = runner.invoke(app, ["design", str(tmp_path / "a"), "--cycles", "1", "--pop", "12", "--gens", "3",
                            "--out", str(tmp_path / "des")])
    assert r.exit_code == 0, r.output
    assert "the solubility curve stored with the hybrid twin" in _flat(r.output)
    assert (tmp_path / "des" / "front.csv").is_file()


def test_hybrid_twin_fit_without_solubility_warns_once(tmp_path):
    make_doe(12, seed=1).to_csv(tmp_path / "doe.csv", index=False)
    r = CliRunner().invoke(app, ["twin", "fit", str(tmp_path / "doe.csv"), "--model", "hybrid", "--cqa", "D50",
                                 "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "kinetic part is off" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: "), r.output
    assert json.loads((tmp_path / "a" / "twin.json").read_text())["metadata"]["kinetic"] is None
