"""``crystalloop runs`` and ``crystalloop export``: look into the experiment store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_STORE_HELP = "Experiment store file (default: $CRYSTALLOOP_STORE or ./crystalloop.db)."
_CQA_SHORT = {"D10_um": "D10", "D50_um": "D50", "D90_um": "D90", "DoA_pct": "DoA", "crystallinity_pct": "cryst",
              "yield_pct": "yield", "batch_time_min": "t_batch"}  # shown in this order, then any other CQA


def _open(store: Path | None):
    from crystalloop.store import ExperimentStore, default_store_path

    return ExperimentStore(store or default_store_path(), create=False)


def _duration(start, end) -> str:
    import pandas as pd

    if pd.isna(start):
        return ""
    end = pd.Timestamp.now(tz="UTC") if pd.isna(end) else end
    s = max((end - start).total_seconds(), 0.0)
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def runs(
    store: Annotated[Path | None, typer.Option("--store", "-s", help=_STORE_HELP)] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only runs with this status (running, completed, failed, aborted, interrupted).")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="Only runs of this kind (recipe, simulation, campaign, ...).")] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="Only the last N runs (0: all).")] = 0,
) -> None:
    """List the runs in the experiment store as a table (status, duration, counts, CQAs)."""
    import pandas as pd
    from rich import box
    from rich.table import Table

    from crystalloop.commands import make_console, print_table

    with _open(store) as st:
        df = st.runs(status=status, kind=kind, with_counts=True, with_cqas=True)
        path = st.path
    if last > 0:
        df = df.tail(last)
    console = make_console()
    colour = {"running": "cyan", "completed": "green", "failed": "red", "aborted": "yellow", "interrupted": "magenta"}
    cqa_cols = [c for c in _CQA_SHORT if c in df.columns] + [
        c for c in df.columns[df.columns.get_loc("n_cqas") + 1:] if c not in _CQA_SHORT]
    wide = console.width >= 120  # narrow terminals: backend left out, reasons listed below the table
    table = Table(title=f"{len(df)} run(s) in {path}", title_justify="left", box=box.SIMPLE_HEAD)
    cols = [("id", "right"), ("kind", "left"), ("status", "left"), ("started UTC", "left"),
            ("duration", "right"), ("samples", "right"), ("CQAs", "left")]
    if wide:
        cols[-1:-1] = [("images", "right")]
        cols += [("backend", "left"), ("seed", "right"), ("reason", "left")]
    for col, just in cols:
        table.add_column(col, justify=just, no_wrap=col not in ("CQAs", "backend", "reason"), overflow="fold",
                         min_width=14 if col == "CQAs" else None)
    reasons = []
    for row in df.to_dict("records"):
        cq = "\n".join(f"{_CQA_SHORT.get(c, c)}={row[c]:.4g}" for c in cqa_cols
                       if not pd.isna(row[c]))
        cells = [str(row["run_id"]), row["kind"], f"[{colour.get(row['status'], 'white')}]{row['status']}[/]",
                 row["started"].strftime("%m-%d %H:%M"), _duration(row["started"], row["ended"]),
                 str(row["n_samples"]), cq]
        if wide:
            cells[-1:-1] = [str(row["n_images"])]
            cells += [row["backend"] or "", "" if pd.isna(row["seed"]) else str(row["seed"]), row["reason"] or ""]
        elif row["reason"]:
            reasons.append(f"  run {row['run_id']} ({row['status']}): {row['reason']}")
        table.add_row(*cells)
    print_table(console, table)
    for line in reasons:
        console.print(line, highlight=False)


def export(
    run_id: Annotated[int, typer.Argument(help="Run id (see `crystalloop runs`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; files go to OUT/run_<id>/.")] = Path("export"),
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    store: Annotated[Path | None, typer.Option("--store", "-s", help=_STORE_HELP)] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Also write samples.png (every channel against time).")] = True,
) -> None:
    """Export one run (record, samples long and wide, images, CQAs, events) to CSV or Parquet."""
    from rich.table import Table

    from crystalloop.commands import make_console, print_table

    with _open(store) as st:
        files = st.export(run_id, out, fmt=fmt)
        if plot:
            from crystalloop.control.plots import plot_stored_run

            files["plot"] = plot_stored_run(st, run_id, files["run"].parent / "samples.png")
    table = Table(title=f"Run {run_id} exported to {files['run'].parent}", title_justify="left")
    table.add_column("table")
    table.add_column("file")
    table.add_column("size", justify="right")
    for name, p in files.items():
        table.add_row(name, str(p), f"{p.stat().st_size / 1024:.1f} KiB")
    print_table(make_console(), table)


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``export`` to the ``crystalloop`` command line."""
    app.command("runs")(runs)
    app.command("export")(export)
