"""Helpers for the virtual-crystallizer tests."""

from __future__ import annotations

import numpy as np
import pytest

from crystalloop.profiles import Segment, ThermocycleProfile


def cycles(n: int, cool: float = 0.2, heat: float = 0.8, amp: float = 15.0, hold: float = 20.0,
           c0: float = 45.0) -> ThermocycleProfile:
    """``n`` thermocycles from 50 °C to 5 °C on the default compound (n = 0: linear)."""
    segs = []
    for lo in (np.linspace(30, 12, n) if n else []):
        segs += [Segment(float(lo), cool), Segment(float(lo) + amp, heat, hold)]
    segs.append(Segment(5.0, cool))
    return ThermocycleProfile(c0, 0.1, 50.0, segs, name=f"{n}-cycle")


@pytest.fixture(scope="session")
def make_cycles():
    """Factory of n-cycle recipes (see :func:`cycles`)."""
    return cycles


@pytest.fixture
def short_profile() -> ThermocycleProfile:
    return ThermocycleProfile(45.0, 0.1, 50.0, [Segment(35.0, 0.3), Segment(42.0, 1.0, 5.0), Segment(30.0, 0.3)])
