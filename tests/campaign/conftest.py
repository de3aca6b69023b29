"""Campaign tests reuse the control tests' fake thermostat (a thermal model on a virtual clock)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_control_fakes", Path(__file__).parents[1] / "control" / "conftest.py")
_fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fakes)
FakeThermostat = _fakes.FakeThermostat


@pytest.fixture(scope="session")
def make_thermostat():
    """The FakeThermostat class (tests build their own with other limits)."""
    return FakeThermostat
