"""Export: one run as files for other tools (JSON record, CSV or Parquet tables) (private).

Plots are not the store's business: ``crystalloop export --plot`` draws the exported samples
with :func:`crystalloop.control.plots.plot_samples` after the tables are written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from crystalloop.errors import ConfigError, StoreError
from crystalloop.store._readers import Readers
from crystalloop.store._values import json_default


class Export(Readers):
    """:meth:`export` of :class:`~crystalloop.store.ExperimentStore`."""

    def export(self, run_id: int, out_dir: str | os.PathLike, fmt: str = "csv") -> dict[str, Path]:
        """Write one run to ``out_dir/run_<id>/`` for use outside crystalloop.

        Files: ``run.json`` (the run record with recipe and meta), and ``samples``,
        ``samples_wide``, ``images``, ``cqas``, ``events`` as CSV or Parquet (JSON-valued
        columns as JSON text). CSV floats are written with full precision; read them back
        with ``pd.read_csv(..., float_precision="round_trip")`` for bit-exact values.

        Parameters
        ----------
        run_id : int
        out_dir : str or Path
            Parent folder; the files go to ``out_dir/run_<run_id>/`` (created).
        fmt : {"csv", "parquet"}

        Returns
        -------
        dict
            Table name → path written (``"run"`` for ``run.json``).

        Raises
        ------
        ConfigError
            ``fmt`` is neither csv nor parquet.
        StoreError
            The run does not exist, or the folder cannot be created or written.
        """
        fmt = str(fmt).lower()
        if fmt not in ("csv", "parquet"):
            raise ConfigError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
        run_id = self._require_run(run_id)
        dest = Path(out_dir) / f"run_{run_id}"
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"Cannot create export directory {dest}: {e.strerror or e}") from None
        record = self.run(run_id)
        for k in ("started", "ended", "heartbeat"):
            record[k] = None if pd.isna(record[k]) else record[k].isoformat()
        record["seed"] = None if pd.isna(record["seed"]) else int(record["seed"])
        images = self.images(run_id)
        images["meta"] = [json.dumps(m) for m in images["meta"]]
        tables = {
            "samples": self.samples(run_id),
            "samples_wide": self.samples(run_id, wide=True),
            "images": images,
            "cqas": self.cqas(run_id)[["name", "value"]],
            "events": self.events(run_id),
        }
        written = {"run": dest / "run.json"}
        try:
            written["run"].write_text(json.dumps(record, indent=2, default=json_default) + "\n", encoding="utf-8")
            for name, df in tables.items():
                f = dest / f"{name}.{fmt}"
                if fmt == "csv":
                    df.to_csv(f, index=False)
                else:
                    df.to_parquet(f, index=False)
                written[name] = f
        except OSError as e:
            raise StoreError(f"Cannot write export of run {run_id} to {dest}: {e.strerror or e}") from None
        return written
