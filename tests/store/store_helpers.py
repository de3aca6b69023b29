"""Shared values of the store tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crystalloop.profiles import Segment, ThermocycleProfile

PROFILE = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(30.0, 0.2), Segment(45.0, 0.8), Segment(10.0, 0.1, 30.0)],
                             name="one cycle")


def raw_sqlite(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to a store file (autocommit), for inspecting or damaging it."""
    return sqlite3.connect(str(path), isolation_level=None)
