"""Process liveness and recovery: which ``running`` runs have lost their writer (private).

Every run records its writer's process id, host name and process start time, and every write
refreshes its heartbeat. :meth:`Recovery.recover` marks a run ``interrupted`` when its writer
is provably dead on this host (process gone, a zombie, or its PID reused by a process started
at another time) or, for a writer on another host or where liveness cannot be checked, when its
heartbeat is older than ``stale_after_s``.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from datetime import datetime

from crystalloop.store._schema import Connections
from crystalloop.store._values import iso, utc_now


def _proc_start_token(pid: int) -> str | None:
    """Start time of a live Linux process (``/proc/PID/stat`` field 22); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and ')'
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _pid_alive(pid: int, start_token: str | None) -> bool | None:
    """Whether process ``pid`` (started at ``start_token``) still runs on this host; None if unknown."""
    if sys.platform.startswith("linux") and os.path.exists("/proc/self/stat"):
        token = _proc_start_token(pid)
        if token is None:
            return False
        return start_token is None or token == start_token  # a different start time: PID reused
    if os.name == "posix":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return None  # e.g. Windows: decided by the heartbeat


class Recovery(Connections):
    """The writer identity of this process and the search for runs whose writer died."""

    stale_after_s: float
    _host: str

    def _identify_writer(self) -> None:
        """Remember who writes through this object: pid, host, process start time."""
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._start_token = _proc_start_token(self._pid)

    def _on_fork(self) -> None:
        self._start_token = _proc_start_token(self._pid)

    def _is_me(self, pid: int | None, host: str | None, start: str | None) -> bool:
        return (pid, host, start) == (os.getpid(), self._host, self._start_token)

    def recover(self) -> list[int]:
        """Mark ``running`` runs whose writer is dead as ``interrupted``; return their ids.

        A writer on this host is dead when its process id no longer runs (or now belongs
        to a process started at another time, i.e. the PID was reused). A writer on another
        host, or where liveness cannot be checked, is dead when its heartbeat is older than
        ``stale_after_s``. A live concurrent writer in another process is left alone.
        """
        rows = self._query("SELECT id, writer_pid, writer_host, writer_start, heartbeat FROM runs "
                           "WHERE status = 'running'", action="look for interrupted runs")
        now = utc_now()
        dead = []
        for run_id, pid, host, start, beat in rows:
            alive = _pid_alive(pid, start) if (pid is not None and host == self._host) else None
            if alive is None:
                age = (now - datetime.fromisoformat(beat)).total_seconds() if beat else math.inf
                if age <= self.stale_after_s:
                    continue
                why = (f"no heartbeat from writer process {pid} on {host} for {age:.0f} s "
                       f"(stale_after_s={self.stale_after_s:g})")
            elif alive:
                continue
            else:
                why = f"writer process {pid} on {host} ended without finishing the run"
            dead.append((run_id, beat, why))
        marked = []
        if dead:
            with self._write("mark interrupted runs") as c:
                for run_id, beat, why in dead:
                    cur = c.execute(
                        "UPDATE runs SET status = 'interrupted', ended = ?, reason = ? "
                        "WHERE id = ? AND status = 'running' AND heartbeat IS ?",
                        (beat, f"{why}; last heartbeat {beat}; found by {socket.gethostname()} "
                               f"pid {os.getpid()} at {iso(now)}", run_id, beat))
                    if cur.rowcount:
                        marked.append(run_id)
        return marked
