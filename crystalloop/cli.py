"""The ``crystalloop`` command line: a thin layer over the library.

Every command calls one library function; see ``crystalloop COMMAND --help``.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="crystalloop",
    help=(
        "Closed-loop digital design and control of crystallization: virtual crystallizer, "
        "image-based PSD, digital twin, NSGA-II design and thermostat control."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from crystalloop import __version__

        typer.echo(f"crystalloop {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


# Each area registers its commands: modules in crystalloop/commands/, one per area, each with
# ``register(app)``. To add an area, add its module name to this list.
COMMAND_MODULES: list[str] = [
    "design",
    "store",
    "run",
    "psd",
    "simulate",
    "thermostat",
    "twin",
    "campaign",
    "learn",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"crystalloop.commands.{_name}").register(app)


def main() -> None:
    """Console entry point: turns crystalloop errors into a one-line message (exit code 2)."""
    import sys

    from crystalloop.errors import CrystalloopError

    try:
        app()
    except CrystalloopError as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
