"""Matplotlib access shared by every plotting function (private).

Plotting functions call :func:`pyplot` instead of forcing a backend themselves: the
non-interactive Agg backend is chosen only when pyplot has not been set up yet (scripts,
the CLI, lab servers without a display), so a notebook's inline or a desktop backend that
the user already chose is left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot``, selecting Agg first only if pyplot is not yet imported."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: float | str = "figure") -> Path:
    """Save ``fig`` as PNG at ``path`` (parent folders created), close it, return the path.

    ``dpi="figure"`` keeps the resolution the figure was created with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
