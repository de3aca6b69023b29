"""Helpers for testing the ``crystalloop`` command line as a user meets it: a real process,
a chosen terminal width and output encoding, and folders that cannot be written."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_CLI = [sys.executable, "-c", "from crystalloop.cli import main; main()"]


def run_cli(args: Sequence[str], *, cwd: Path, columns: int = 80, encoding: str | None = None,
            readonly: Sequence[Path] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``crystalloop ARGS`` in a child process; ``readonly`` folders cannot be written in it.

    Output is returned as bytes (``stdout``/``stderr``) so tests can check the encoding.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("CRYSTALLOOP_STORE", "CRYSTALLOOP_DEBUG")}
    env["COLUMNS"] = str(columns)
    if encoding is not None:
        env["PYTHONIOENCODING"] = encoding
    argv = [*_CLI, *map(str, args)]
    with _read_only(readonly, cwd) as wrap:
        return subprocess.run(wrap(argv), cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False)


@functools.cache
def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        q = shlex.quote(d)
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {q} {q} && mount -o remount,ro,bind {q} {q}"],
                               capture_output=True, check=False)
    return probe.returncode == 0


@contextmanager
def _read_only(dirs: Sequence[Path], cwd: Path):
    """Make ``dirs`` unwritable for the child: chmod for a normal user; for root (which chmod
    does not stop) a private mount namespace with read-only bind mounts (``unshare``)."""
    dirs = [Path(d).resolve() for d in dirs]
    if not dirs:
        yield lambda argv: argv
        return
    if os.geteuid() != 0:
        modes = {d: d.stat().st_mode for d in dirs}
        for d in dirs:
            d.chmod(0o555)
        try:
            yield lambda argv: argv
        finally:
            for d, m in modes.items():
                d.chmod(m)
        return
    if not _can_unshare():
        pytest.skip("running as root without user namespaces (unshare -rm): no way to make a folder read-only")
    mounts = "".join(f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))} && "
                     f"mount -o remount,ro,bind {shlex.quote(str(d))} {shlex.quote(str(d))} && " for d in dirs)
    script = f'{mounts}cd {shlex.quote(str(Path(cwd).resolve()))} && exec "$@"'
    yield lambda argv: ["unshare", "-rm", "sh", "-c", script, "sh", *argv]


def error_lines(text: str | bytes) -> list[str]:
    """The ``error:`` lines of an output."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.startswith("error:")]
