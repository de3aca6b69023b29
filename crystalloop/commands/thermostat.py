"""``crystalloop thermostat probe|show|replay``: find line settings and capabilities of, inspect,
and replay traces of a serial thermostat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_URL_HELP = "Backend URL, e.g. julabo:///dev/ttyUSB0, huber://192.168.0.5:8101, lauda://COM3."
_TRACE_HELP = "Write every exchange (time, bytes out, bytes in) to this plain-text file."


def probe_command(
    url: Annotated[str, typer.Argument(help=_URL_HELP)],
    timeout_s: Annotated[float, typer.Option("--timeout", help="Reply timeout per attempt, s.")] = 0.5,
    trace: Annotated[Path | None, typer.Option("--trace", help=_TRACE_HELP)] = None,
) -> None:
    """Find the line settings and capabilities of a thermostat; print its capability table and the URL to use."""
    from crystalloop.hardware.probe import format_capabilities, probe_line_settings
    from crystalloop.hardware.trace import with_trace, without_trace

    res = probe_line_settings(with_trace(url, trace), timeout_s=timeout_s)
    for label, why in res.tried:
        typer.echo(f"  {label}: {why}")
    typer.echo(f"found {res.line_settings}: {res.model} {res.version}".rstrip())
    if res.capabilities:
        typer.echo("capabilities:")
        for line in format_capabilities(res.capabilities):
            typer.echo("  " + line)
    typer.echo(f"use: {without_trace(res.url)}")  # without this probe's trace file


def show_command(
    url: Annotated[str, typer.Argument(help=_URL_HELP)],
    trace: Annotated[Path | None, typer.Option("--trace", help=_TRACE_HELP)] = None,
) -> None:
    """Read identity, capabilities, limits, setpoint, temperatures and status (writes nothing)."""
    import math

    from crystalloop.hardware.probe import format_capabilities, snapshot
    from crystalloop.hardware.trace import with_trace

    snap = snapshot(with_trace(url, trace))
    caps = snap.pop("capabilities", ())
    width = max(len(k) for k in snap)
    for key, value in snap.items():
        if isinstance(value, float) and key in ("min_c", "max_c") and math.isinf(value):
            value = "none (not reported by the unit, not given in the URL)"
        elif isinstance(value, float):
            value = f"{value:.2f} °C" if key.endswith("_c") else f"{value:g}"
        elif isinstance(value, list):
            value = "; ".join(value) or "none"
        typer.echo(f"{key.ljust(width)}  {value}")
    if caps:
        typer.echo("capabilities:")
        for line in format_capabilities(caps):
            typer.echo("  " + line)


def replay_command(
    trace_file: Annotated[Path, typer.Argument(help="A trace written with --trace.")],
) -> None:
    """Replay a trace against today's driver: same operations, recorded replies; report any difference."""
    from crystalloop.errors import DeviceError
    from crystalloop.hardware.replay import replay_trace

    res = replay_trace(trace_file)
    typer.echo(f"replayed {res.sessions} session(s), {res.calls} operation(s), {res.exchanges} exchange(s) "
               f"from {trace_file}")
    if not res.ok:
        for diff in res.differences:
            typer.echo(f"  difference: {diff}")
        raise DeviceError(f"the driver no longer behaves as recorded in {trace_file}: "
                          f"{len(res.differences)} difference(s), first: {res.differences[0]}")
    typer.echo("identical: every operation gave the recorded result with the recorded bytes")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Serial thermostats (JULABO, Huber, LAUDA): probe line settings and capabilities, "
                           "show state, replay traces.", no_args_is_help=True)
    sub.command("probe")(probe_command)
    sub.command("show")(show_command)
    sub.command("replay")(replay_command)
    app.add_typer(sub, name="thermostat")
