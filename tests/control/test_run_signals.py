"""SIGTERM, SIGHUP and Ctrl-C (SIGINT) sent to a real process that is running a batch.

The child process runs :func:`crystalloop.control.run` on the wall clock against the control
tests' fake thermostat, which logs every command it receives to a file. Each signal must
put the thermostat in its safe state (``stop`` here, the only time the child sends it) and
record the run ``aborted`` with the signal in its reason.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crystalloop.store import ExperimentStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = r'''
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_fakes", sys.argv[1])
fakes = importlib.util.module_from_spec(spec); spec.loader.exec_module(fakes)
from crystalloop.control import run
from crystalloop.hardware.base import Crystallizer, RealClock, register_backend
from crystalloop.profiles import Segment, ThermocycleProfile

log = open(sys.argv[3], "a", buffering=1)

class Logged(fakes.FakeThermostat):
    def set_setpoint(self, v):
        super().set_setpoint(v); log.write(f"set_setpoint {v:.4f}\n")
    def read_bath(self):
        r = super().read_bath(); log.write("read_bath\n"); return r
    def start(self):
        super().start(); log.write("start\n")
    def stop(self):
        super().stop(); log.write("stop\n")

def factory(parsed, clock=None, **kw):
    clock = clock or RealClock()
    return Crystallizer(url=parsed.url, clock=clock, thermostat=Logged(clock, t0_c=60.0))

register_backend("logged", factory)
recipe = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, 0.5)], name="long")
res = run(recipe, backend="logged://", store=sys.argv[2], sample_interval_s=0.05, safe_state="stop")
print(json.dumps({"status": res.status, "reason": res.reason}))
'''


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _start_child(script: Path, conftest: Path, db: Path, log: Path, *, ignore: tuple = ()) -> subprocess.Popen:
    """The child with a foreground job's signal dispositions (a shell starts background jobs with SIGINT
    ignored, and an ignored disposition survives exec), plus ``ignore`` set to SIG_IGN (as ``nohup`` does)."""
    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for s in ignore:
            signal.signal(s, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, str(script), str(conftest), str(db), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _wait_sampling(proc: subprocess.Popen, log: Path, n: int) -> None:
    deadline = time.monotonic() + 60.0
    while sum(1 for x in _lines(log) if x == "read_bath") < n:  # the loop is sampling
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the child ended before its run started (exit {proc.returncode}): {err[-2000:]}")
        assert time.monotonic() < deadline, "the child never started its run"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "words"), [
    (signal.SIGTERM, "terminated by SIGTERM"),
    (signal.SIGHUP, "terminated by SIGHUP"),
    (signal.SIGINT, "KeyboardInterrupt"),
])
def test_signal_puts_the_thermostat_safe_and_records_the_end(tmp_path, sig, words):
    script, db, log = tmp_path / "child.py", tmp_path / "lab.db", tmp_path / "commands.log"
    script.write_text(CHILD)
    conftest = Path(__file__).with_name("conftest.py")
    proc = _start_child(script, conftest, db, log)
    try:
        _wait_sampling(proc, log, 5)
        n_before = len(_lines(log))
        assert "stop" not in _lines(log)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = _lines(log)[n_before:]
    assert "stop" in after, (after, err)  # the safe-state command reached the thermostat
    runs = ExperimentStore(db).runs()
    assert len(runs) == 1
    assert runs["status"].iloc[0] == "aborted" and words in runs["reason"].iloc[0], (runs.iloc[0].to_dict(), err)
    assert '"status": "aborted"' in out


def test_a_signal_the_process_ignores_stays_ignored(tmp_path):
    """``nohup crystalloop run ...``: SIGHUP is ignored on purpose (the run must outlive the terminal), so a
    SIGHUP does not end the run; SIGTERM still does."""
    script, db, log = tmp_path / "child.py", tmp_path / "lab.db", tmp_path / "commands.log"
    script.write_text(CHILD)
    proc = _start_child(script, Path(__file__).with_name("conftest.py"), db, log, ignore=(signal.SIGHUP,))
    try:
        _wait_sampling(proc, log, 5)
        proc.send_signal(signal.SIGHUP)
        n_hup = sum(1 for x in _lines(log) if x == "read_bath")
        _wait_sampling(proc, log, n_hup + 10)  # still sampling after the SIGHUP
        assert proc.poll() is None and "stop" not in _lines(log)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = ExperimentStore(db).runs()
    assert runs["status"].iloc[0] == "aborted" and "terminated by SIGTERM" in runs["reason"].iloc[0], err
