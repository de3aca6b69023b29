"""``crystalloop thermostat probe|show``: find line settings of, and inspect, a serial thermostat."""

from __future__ import annotations

from typing import Annotated

import typer

_URL_HELP = "Backend URL, e.g. julabo:///dev/ttyUSB0, huber://192.168.0.5:8101, lauda://COM3."


def _fail(e: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]Error:[/] {e}", highlight=False)
    raise typer.Exit(1)


def probe_command(
    url: Annotated[str, typer.Argument(help=_URL_HELP)],
    timeout_s: Annotated[float, typer.Option("--timeout", help="Reply timeout per attempt, s.")] = 0.5,
) -> None:
    """Try the vendor's usual baud rates/framings until the thermostat answers; print the URL to use."""
    from rich.console import Console

    from crystalloop.errors import CrystalloopError
    from crystalloop.hardware.probe import probe_line_settings

    console = Console()
    try:
        with console.status(f"probing {url} ..."):
            res = probe_line_settings(url, timeout_s=timeout_s)
    except CrystalloopError as e:
        _fail(e)
    for label, why in res.tried:
        console.print(f"  {label}: [yellow]{why}[/]")
    console.print(f"[green]found[/] {res.line_settings}: {res.model} {res.version}".rstrip())
    console.print(f"use: [bold]{res.url}[/]", highlight=False)


def show_command(url: Annotated[str, typer.Argument(help=_URL_HELP)]) -> None:
    """Read identity, limits, setpoint, temperatures and status (writes nothing)."""
    from rich.console import Console
    from rich.table import Table

    from crystalloop.errors import CrystalloopError
    from crystalloop.hardware.probe import snapshot

    try:
        snap = snapshot(url)
    except CrystalloopError as e:
        _fail(e)
    table = Table(show_header=False, title=url)
    for key, value in snap.items():
        if isinstance(value, float):
            value = f"{value:.2f} °C" if key.endswith("_c") else f"{value:g}"
        elif isinstance(value, list):
            value = "; ".join(value) or "none"
        table.add_row(key, str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Serial thermostats (JULABO, Huber, LAUDA): probe line settings, show state.",
                      no_args_is_help=True)
    sub.command("probe")(probe_command)
    sub.command("show")(show_command)
    app.add_typer(sub, name="thermostat")
