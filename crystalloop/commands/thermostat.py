"""``crystalloop thermostat probe|show``: find line settings of, and inspect, a serial thermostat."""

from __future__ import annotations

from typing import Annotated

import typer

_URL_HELP = "Backend URL, e.g. julabo:///dev/ttyUSB0, huber://192.168.0.5:8101, lauda://COM3."


def probe_command(
    url: Annotated[str, typer.Argument(help=_URL_HELP)],
    timeout_s: Annotated[float, typer.Option("--timeout", help="Reply timeout per attempt, s.")] = 0.5,
) -> None:
    """Try the vendor's usual baud rates/framings until the thermostat answers; print the URL to use."""
    from crystalloop.commands import make_console
    from crystalloop.hardware.probe import probe_line_settings

    console = make_console()
    with console.status(f"probing {url} ..."):
        res = probe_line_settings(url, timeout_s=timeout_s)
    for label, why in res.tried:
        console.print(f"  {label}: [yellow]{why}[/]")
    console.print(f"[green]found[/] {res.line_settings}: {res.model} {res.version}".rstrip())
    console.print(f"use: [bold]{res.url}[/]", highlight=False)


def show_command(url: Annotated[str, typer.Argument(help=_URL_HELP)]) -> None:
    """Read identity, limits, setpoint, temperatures and status (writes nothing)."""
    from rich.table import Table

    from crystalloop.commands import make_console
    from crystalloop.hardware.probe import snapshot

    snap = snapshot(url)
    table = Table(show_header=False, title=url)
    for key, value in snap.items():
        if isinstance(value, float):
            value = f"{value:.2f} °C" if key.endswith("_c") else f"{value:g}"
        elif isinstance(value, list):
            value = "; ".join(value) or "none"
        table.add_row(key, str(value))
    make_console().print(table)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Serial thermostats (JULABO, Huber, LAUDA): probe line settings, show state.",
                      no_args_is_help=True)
    sub.command("probe")(probe_command)
    sub.command("show")(show_command)
    app.add_typer(sub, name="thermostat")
