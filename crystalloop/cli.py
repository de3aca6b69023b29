"""The ``crystalloop`` command line: a thin layer over the library.

Every command calls one library function; see ``crystalloop COMMAND --help``.

This module owns what all commands share: errors, warnings, exit codes and the output
encoding. Commands raise; they never catch :class:`~crystalloop.errors.CrystalloopError`
themselves. :class:`CrystalloopGroup` turns whatever reaches it into

- one unwrapped line ``error: ...`` on stderr (a path is never broken at the terminal
  width), exit status 2 for usage and input errors and 1 for runtime and device failures
  (:func:`crystalloop.errors.exit_code`); ``crystalloop --debug ...`` (or
  ``CRYSTALLOOP_DEBUG=1``) also prints the traceback;
- one line ``warning: ...`` per Python warning, without the source file and code line;
- ASCII replacements (``deg``, ``u``, ``+/-``, ``->``) for characters such as ``°`` and
  ``µ`` when the output encoding cannot show them (``PYTHONIOENCODING=ascii``, a ``C`` locale).
"""

from __future__ import annotations

import codecs
import importlib
import os
import sys
import unicodedata
import warnings
from typing import Any

import typer
from typer import Abort, Exit
from typer.core import TyperGroup

try:  # typer >= 0.29 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - typer on top of the click package
    from click.exceptions import ClickException, NoArgsIsHelpError

from crystalloop.errors import (
    EXIT_INPUT,
    EXIT_RUNTIME,
    CrystalloopError,
    CrystalloopWarning,
    exit_code,
)

__all__ = ["app", "main", "CrystalloopGroup", "format_error", "option_names", "ASCII_FALLBACKS", "OPTION_ALIASES"]

#: What each non-ASCII character that crystalloop prints becomes on an ASCII-only output;
#: any other character falls back to its decomposed ASCII letters, else ``?``.
ASCII_FALLBACKS: dict[str, str] = {
    "°": "deg", "µ": "u", "μ": "u", "±": "+/-", "→": "->", "←": "<-", "—": "-", "–": "-", "−": "-",
    "²": "^2", "³": "^3", "α": "alpha", "κ": "kappa", "σ": "sigma", "Δ": "d", "×": "x", "·": "*",
    "≤": "<=", "≥": ">=", "≈": "~", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"',
    "✓": "ok", "✗": "x", "━": "-", "─": "-", "│": "|",
}
#: Library parameter names that a command exposes under another option name: errors raised by
#: the library name the parameter (``pop_size must be ...``), the user typed ``--pop``. Options
#: whose Python name is the library's (``pixel_size_um`` -> ``--pixel-size-um``) need no entry.
OPTION_ALIASES: dict[str, dict[str, str]] = {
    "design": {"pop_size": "--pop", "n_gen": "--gens", "n_jobs": "--jobs", "max_batch_time_min": "--max-batch-time"},
    "campaign": {"pop_size": "--pop", "n_gen": "--gens", "n_rounds": "--rounds", "batch_size": "--batch",
                 "n_splits": "--splits", "n_frames": "--frames", "sample_interval_s": "--sample-interval",
                 "image_interval_s": "--image-interval"},
    "twin fit": {"n_splits": "--splits", "n_jobs": "--jobs", "random_state": "--seed", "n_synthetic": "--m",
                 "n_repeats": "--repeats"},
    "psd": {"n_workers": "--workers", "fmt": "--format"},
    "export": {"fmt": "--format"},
    "psd-calibrate": {"n_trials": "--trials"},
    "vision train-seg": {"coco": "--coco", "image_dir": "--images", "mask_dir": "--masks", "synthetic": "--synthetic"},
    "vision train-classifier": {"labels_csv": "--labels", "synthetic": "--synthetic"},
    "vision train-regressor": {"table_csv": "--table", "synthetic": "--synthetic"},
}
_ERRORS = "crystalloop-ascii"
_PROBE = "°µ±→"
_debug = False


def _ascii_replace(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    out = []
    for ch in err.object[err.start:err.end]:
        alt = ASCII_FALLBACKS.get(ch)
        if alt is None:
            alt = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"
        out.append(alt)
    return "".join(out), err.end


codecs.register_error(_ERRORS, _ascii_replace)


def _can_show(stream: Any) -> bool:
    try:
        _PROBE.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _fit_streams() -> None:
    """Let stdout/stderr replace characters their encoding cannot show instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and not _can_show(stream) and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=_ERRORS)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _emit(kind: str, text: str) -> None:
    """Write ``kind: text`` as one line on stderr, never wrapped, in the stream's encoding."""
    stream = sys.stderr
    line = f"{kind}: {_one_line(text)}"
    if not _can_show(stream):
        enc = getattr(stream, "encoding", None) or "ascii"
        line = line.encode(enc, errors=_ERRORS).decode(enc)
    if kind == "error" and hasattr(stream, "isatty") and stream.isatty():
        line = typer.style(f"{kind}:", fg="red", bold=True) + line[len(kind) + 1:]
    stream.write(line + "\n")
    stream.flush()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if _debug:
        _emit("warning", f"{category.__name__}: {message} ({filename}:{lineno})")
    elif issubclass(category, CrystalloopWarning):
        _emit("warning", str(message))
    else:
        _emit("warning", f"{category.__name__}: {message}")


def format_error(exc: BaseException) -> str:
    """The one-line message the command line prints for ``exc`` (without ``error:``).

    Parameters
    ----------
    exc : BaseException
        The exception that ended a command.

    Returns
    -------
    str
        crystalloop errors as they are; file-system errors as ``what: path``; undecodable
        text as the byte and position; anything else as an internal error with its type.
    """
    if isinstance(exc, CrystalloopError):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        if not os.path.isabs(where):
            try:
                where += f" (in {os.getcwd()})"
            except OSError:  # the working directory itself is gone
                pass
        return f"{where}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, OSError) and not isinstance(exc, UnicodeError):  # a socket, a pipe, a device
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start:exc.start + 1]
        return (f"input is not {exc.encoding} text: byte {bad.hex() if bad else '?'} at position {exc.start} "
                f"({exc.reason}); save the file as UTF-8")
    text = _one_line(str(exc))
    return (f"internal error {type(exc).__name__}{': ' + text if text else ''} "
            "(run 'crystalloop --debug ...' for the traceback and report it)")


def _invoked(root: Any, args: list[str]) -> tuple[str, Any]:
    """The command path (``"twin fit"``) and command object that ``args`` select under ``root``."""
    cmd, path = root, []
    for a in args:
        sub = getattr(cmd, "commands", {}).get(a) if not a.startswith("-") else None
        if sub is None:
            if a.startswith("-") and not path:
                continue  # a root option such as --debug
            break
        cmd, path = sub, [*path, a]
    return " ".join(path), cmd


def option_names(message: str, path: str, cmd: Any) -> str:
    """Replace library parameter names in ``message`` by the options the user typed.

    ``pop_size must be >= 2`` becomes ``--pop must be >= 2`` for ``crystalloop design``: names from
    :data:`OPTION_ALIASES` and every option whose Python name is the parameter's.
    """
    import re

    names = {p.name: max(p.opts, key=len) for p in getattr(cmd, "params", [])
             if getattr(p, "param_type_name", "") == "option" and p.name and any(o.startswith("--") for o in p.opts)}
    names = {k: v for k, v in names.items() if "_" in k}  # one-word names (seed, out) are ordinary words
    names.update(OPTION_ALIASES.get(path, {}))
    for name, opt in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = re.sub(rf"(?<![\w\-.'\"]){re.escape(name)}(?=( must| should| is |=| =|:))", opt, message)
    return message


def _plain_flags(cmd: Any, ctx: Any) -> None:
    """Show flags without a ``<bool>`` type placeholder in --help (they take no value)."""
    help_opt = cmd.get_help_option(ctx)
    for p in [*cmd.params, *([help_opt] if help_opt is not None else [])]:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _plain_flags(sub, ctx)


class CrystalloopGroup(TyperGroup):
    """Root command group: one place for errors, warnings, exit codes and output encoding."""

    def get_command(self, ctx, cmd_name):  # noqa: ANN001, D102
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_flags(cmd, ctx)
        return cmd

    def get_help_option(self, ctx):  # noqa: ANN001, D102
        opt = super().get_help_option(ctx)
        if opt is not None:
            for p in [*self.params, opt]:
                if getattr(p, "is_flag", False) and p.metavar is None:
                    p.metavar = ""
        return opt

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001
        """Run the command line; in standalone mode, exit with the documented status."""
        global _debug
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        _debug = os.environ.get("CRYSTALLOOP_DEBUG", "").strip() not in ("", "0")
        _fit_streams()
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = self._run(args, prog_name, complete_var, **extra)
        sys.exit(code)

    def _run(self, args, prog_name, complete_var, **extra) -> int:  # noqa: ANN001
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:
            e.show()
            return e.exit_code
        except ClickException as e:  # usage errors: unknown option, bad value, missing argument
            hint = ""
            ctx = getattr(e, "ctx", None)
            if ctx is not None and getattr(e, "exit_code", 1) == EXIT_INPUT:
                hint = f" (see '{ctx.command_path} --help')"
            _emit("error", e.format_message() + hint)
            return e.exit_code
        except Abort:
            _emit("error", "aborted")
            return EXIT_RUNTIME
        except Exit as e:
            return e.exit_code
        except Exception as e:  # noqa: BLE001 - the one place that turns errors into exit codes
            if _debug:
                import traceback

                traceback.print_exception(e, file=sys.stderr)
            _emit("error", option_names(format_error(e), *_invoked(self, argv)))
            return exit_code(e)
        # non-standalone click returns the command's value, or the code of a typer.Exit
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


app = typer.Typer(
    name="crystalloop",
    help=(
        "Closed-loop digital design and control of crystallization: virtual crystallizer, "
        "image-based PSD, digital twin, NSGA-II design and thermostat control. "
        "Exit status: 0 success, 1 runtime or device failure, 2 usage or input error."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CrystalloopGroup,
)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Print the traceback of an error (also CRYSTALLOOP_DEBUG=1)."),
) -> None:
    global _debug
    _debug = _debug or debug
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
    "dashboard",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"crystalloop.commands.{_name}").register(app)


def main() -> None:
    """Console entry point (``crystalloop``); exits 0, 1 (runtime/device) or 2 (usage/input)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
