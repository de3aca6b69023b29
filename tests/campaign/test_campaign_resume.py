"""Resume: the same campaign call (or command) again continues where it stopped — no plant run repeated or lost.

Uses the stand-in learner and the tiny DoE of ``test_campaign.py`` (short simulator batches).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from crystalloop.campaign import SimulatedLab, run_campaign
from crystalloop.errors import ConfigError
from crystalloop.store import ExperimentStore

HERE = Path(__file__).parent


def _campaign_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_campaign_tests", HERE / "test_campaign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


T = _campaign_module()
tiny_doe = T.tiny_doe


def _plant_runs(out: Path) -> pd.DataFrame:
    """Completed campaign batches per label, from the store."""
    runs = ExperimentStore(out / "campaign.sqlite").runs()
    runs = runs[runs["kind"] == "campaign"]
    return pd.DataFrame({"label": [m["campaign_run"] for m in runs["meta"]], "status": runs["status"].to_numpy(),
                         "run_id": runs["run_id"].to_numpy()})


class _StopInLab(SimulatedLab):
    """The lab of a user who presses Ctrl-C while run ``label`` is being measured."""

    def __init__(self, label):
        super().__init__(["DoA_pct", "crystallinity_pct"])
        self.label, self.armed = label, True

    def __call__(self, request):
        if self.armed and request.label == self.label:
            self.armed = False
            raise KeyboardInterrupt
        return super().__call__(request)


def test_interrupted_round_keeps_finished_runs_and_measures_a_finished_batch_again(tiny_doe, tmp_path):
    out = tmp_path / "c"
    lab = _StopInLab("C1-2")
    kw = T._kw(batch_size=3, lab=lab)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=out, learn=T.Learner(), **kw)
    doe = pd.read_csv(out / "doe.csv")
    assert list(doe["run_id"].iloc[12:]) == ["C1-1"]  # written as soon as it was measured
    before = _plant_runs(out)
    assert list(before["label"]) == ["C1-1", "C1-2"] and set(before["status"]) == {"completed"}
    learner = T.Learner()
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=out, learn=learner, **kw)  # the same call again
    assert learner.seen == []  # the round's plan was kept: no new twin, no new proposal
    assert list(res.history["run_id"]) == ["C1-1", "C1-2", "C1-3"]
    assert list(res.rounds["round"]) == [1]
    after = _plant_runs(out)
    assert list(after["label"]) == ["C1-1", "C1-2", "C1-3"]  # C1-2 measured again from its frames, not re-run
    assert list(after["run_id"].iloc[:2]) == list(before["run_id"])
    doe = pd.read_csv(out / "doe.csv")
    assert list(doe["run_id"].iloc[12:]) == ["C1-1", "C1-2", "C1-3"]
    assert doe["D50_um"].iloc[13] == pytest.approx(res.history["D50_image_um"].iloc[1])
    # once complete, the same call again does nothing more
    res = run_campaign(tiny_doe, "max:D50,min:DoA", out_dir=out, learn=T.Learner(), **kw)
    assert len(_plant_runs(out)) == 3 and len(pd.read_csv(out / "doe.csv")) == 15
    # a different starting DoE in the same folder is refused before anything runs
    other = tmp_path / "other.csv"
    pd.read_csv(tiny_doe).iloc[:10].to_csv(other, index=False)
    with pytest.raises(ConfigError, match="holds a campaign started from another DoE"):
        run_campaign(other, "max:D50,min:DoA", out_dir=out, learn=T.Learner(), **kw)


CHILD = r'''
import importlib.util, os, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("_campaign_tests", sys.argv[1])
T = importlib.util.module_from_spec(spec); spec.loader.exec_module(T)
from crystalloop.campaign import SimulatedLab, run_campaign

class SlowLab(SimulatedLab):
    def __call__(self, request):
        if request.label == "C1-2" and os.environ.get("SLOW_LAB"):
            Path(sys.argv[3], "in_lab").write_text(request.label)
            time.sleep(120)
        return super().__call__(request)

run_campaign(sys.argv[2], "max:D50,min:DoA", out_dir=sys.argv[3], learn=T.Learner(),
             **T._kw(batch_size=3, lab=SlowLab(["DoA_pct", "crystallinity_pct"])))
print("done")
'''


@pytest.mark.slow  # two fresh interpreters importing the whole stack (~30 s)
def test_sigkill_mid_round_then_the_same_command_repeats_and_loses_no_plant_run(tiny_doe, tmp_path):
    out, script = tmp_path / "c", tmp_path / "child.py"
    out.mkdir()
    script.write_text(CHILD)
    args = [sys.executable, str(script), str(HERE / "test_campaign.py"), str(tiny_doe), str(out)]
    proc = subprocess.Popen(args, env={**os.environ, "SLOW_LAB": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "in_lab").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the campaign never reached the second run's lab"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _plant_runs(out)
    assert list(before["label"]) == ["C1-1", "C1-2"]
    assert list(pd.read_csv(out / "doe.csv")["run_id"].iloc[12:]) == ["C1-1"]
    done = subprocess.run(args, env={k: v for k, v in os.environ.items() if k != "SLOW_LAB"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    after = _plant_runs(out)
    assert list(after["label"]) == ["C1-1", "C1-2", "C1-3"] and set(after["status"]) == {"completed"}
    assert list(after["run_id"].iloc[:2]) == list(before["run_id"])  # no batch repeated
    doe = pd.read_csv(out / "doe.csv")
    assert list(doe["run_id"].iloc[12:]) == ["C1-1", "C1-2", "C1-3"]  # none lost
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["run_id"]) == ["C1-1", "C1-2", "C1-3"] and list(pd.read_csv(out / "rounds.csv")["round"]) == [1]
