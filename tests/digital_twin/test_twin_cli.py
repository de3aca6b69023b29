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
