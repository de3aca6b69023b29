"""SIGTERM and SIGHUP end a run the way Ctrl-C does: safe state first, then the run's end recorded.

``systemd``, ``docker stop``, batch schedulers and a closed terminal send SIGTERM or SIGHUP, not
SIGINT. While a run executes, :func:`stop_signals` turns them into :class:`RunTerminated`
(raised in the main thread, like :class:`KeyboardInterrupt` for SIGINT); :func:`deferred_signals`
holds every such signal back while the safe state and the run's end are being written, so a
second signal cannot cut that short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RunTerminated", "stop_signals", "deferred_signals"]


class RunTerminated(BaseException):  # noqa: N818 - an interruption like KeyboardInterrupt, not an error
    """The process was asked to stop (SIGTERM, SIGHUP) while a run executed."""

    def __init__(self, signame: str) -> None:
        super().__init__(f"terminated by {signame}")
        self.signame = signame


def _signals(*names: str) -> list[signal.Signals]:
    return [getattr(signal, n) for n in names if hasattr(signal, n)]  # SIGHUP does not exist on Windows


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_signals() -> Iterator[None]:
    """Raise :class:`RunTerminated` on SIGTERM/SIGHUP inside the block (main thread only;
    elsewhere Python cannot install handlers and the block runs unchanged). A signal the process
    ignores stays ignored (``nohup`` ignores SIGHUP so that a run outlives its terminal)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise RunTerminated(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in _signals("SIGTERM", "SIGHUP") if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def deferred_signals() -> Iterator[list[str]]:
    """Hold SIGINT, SIGTERM and SIGHUP back inside the block; the names of those that arrived
    are collected in the yielded list (the caller has already decided to stop)."""
    got: list[str] = []
    if not _in_main_thread():
        yield got
        return

    def handler(signum: int, frame: object) -> None:
        got.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in _signals("SIGINT", "SIGTERM", "SIGHUP")}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)
