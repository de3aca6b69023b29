"""Fixtures of the command-line tests (helpers live in ``_cli.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def particle_image(tmp_path) -> Path:
    """A small grey PNG with dark round particles (what a probe image looks like)."""
    import imageio.v3 as iio

    rr, cc = np.mgrid[0:128, 0:128]
    img = np.full((128, 128), 200, np.uint8)
    for r, c, rad in [(30, 30, 8), (80, 40, 10), (60, 95, 7), (100, 100, 9)]:
        img[(rr - r) ** 2 + (cc - c) ** 2 <= rad**2] = 40
    path = tmp_path / "probe.png"
    iio.imwrite(path, img)
    return path
