"""Tests of crystalloop.control.plots: the run-samples plot (moved out of the store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crystalloop.control.plots import plot_samples, plot_stored_run
from crystalloop.errors import ConfigError
from crystalloop.store import ExperimentStore


def test_plot_samples_writes_png(tmp_path):
    wide = pd.DataFrame({"time_s": np.arange(10) * 60.0, "T_c": np.linspace(60, 20, 10), "counts": np.arange(10.0)})
    out = plot_samples(wide, tmp_path / "s.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"plot_samples needs a 'time_s' column, got columns \['t'\]"):
        plot_samples(pd.DataFrame({"t": [1.0]}), tmp_path / "x.png")


def test_plot_stored_run_titles_and_writes_png(tmp_path):
    with ExperimentStore(tmp_path / "p.db") as s:
        run = s.start_run()
        s.log_samples(run, [(0.0, "T_c", 60.0), (60.0, "T_c", 59.0), (60.0, "counts", 3.0)])
        s.finish_run(run, "aborted", reason="test")
        out = plot_stored_run(s, run, tmp_path / "deep" / "run.png")
    assert out == tmp_path / "deep" / "run.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
