"""The names of the critical quality attributes (CQAs): one contract for every area.

The simulator computes them (:mod:`crystalloop.hardware.sim.cqa`), DoE tables and the store
hold them as columns, the twin predicts them and the design optimizes them. Units are in
the suffix: ``_um`` µm, ``_pct`` percent (0–100), ``_min`` minutes.

- ``D10_um``, ``D50_um``, ``D90_um``: percentiles of the volume distribution of the crystals.
- ``DoA_pct``: degree of agglomeration, the volume share of crystalline solid in agglomerates.
- ``crystallinity_pct``: crystalline mass / (crystalline + amorphous mass).
- ``yield_pct``: solid formed (minus seeds) / solute initially dissolved.
- ``batch_time_min``: duration of the batch (computed from the recipe, not predicted).
"""

from __future__ import annotations

__all__ = ["CQA_NAMES", "BATCH_TIME"]

#: name of the quantity computed from the recipe rather than measured or predicted
BATCH_TIME = "batch_time_min"

#: CQA column names shared by the simulator, the DoE tables, the store, the twin and the design.
CQA_NAMES: tuple[str, ...] = (
    "D10_um",
    "D50_um",
    "D90_um",
    "DoA_pct",
    "crystallinity_pct",
    "yield_pct",
    BATCH_TIME,
)
