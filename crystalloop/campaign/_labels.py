"""Campaign run labels (``C{round}-{k}``) and the campaign's warning class."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from crystalloop.errors import CampaignWarning

__all__ = ["CampaignWarning", "run_label", "round_of", "campaign_rounds"]

_LABEL = re.compile(r"^C(\d+)-(\d+)$")


def run_label(round_: int, k: int) -> str:
    """Label of candidate ``k`` (1-based) of campaign round ``round_``: ``C{round}-{k}``."""
    return f"C{int(round_)}-{int(k)}"


def round_of(run_ids: Sequence[Any]) -> np.ndarray:
    """Campaign round of each run id (``C{r}-{k}`` → r; other rows, the starting DoE → 0)."""
    return np.array([int(m.group(1)) if (m := _LABEL.match(str(r))) else 0 for r in run_ids], dtype=int)


def campaign_rounds(run_ids: Sequence[Any]) -> int:
    """Highest campaign round among DoE run ids (labels ``C{round}-{k}``); 0 if none."""
    r = round_of(run_ids)
    return int(r.max()) if r.size else 0
