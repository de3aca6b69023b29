"""Command-line commands, one module per area; each exposes ``register(app)``.

Commands are thin: each calls one library function that a notebook could call too.
Heavy libraries are imported inside the command functions so ``crystalloop --help`` stays fast.
Commands raise errors and let :mod:`crystalloop.cli` report them (one line, documented exit
code); they print through :func:`make_console`, whose lines never wrap at the terminal width.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_console", "print_table"]


def make_console(*, stderr: bool = False) -> Any:
    """A :class:`rich.console.Console` for command output.

    Text is not wrapped at the terminal width (``soft_wrap``), so paths and messages stay
    whole in narrow terminals and in logs (piped output counts as 80 columns).
    """
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


def print_table(out: Any, table: Any) -> None:
    """Print a rich table no narrower than its columns need, instead of dropping columns.

    In a terminal narrower than the table, the lines run past its edge (the terminal wraps
    them) rather than rich squeezing columns away.
    """
    from rich.measure import Measurement

    need = Measurement.get(out, out.options.update_width(10_000), table).minimum
    width = out.width
    out.width = max(width, need)
    try:
        out.print(table)
    finally:
        out.width = width
