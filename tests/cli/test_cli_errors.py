"""One error layer in ``crystalloop.cli``: one unwrapped ``error:`` line, exit 2 for usage and
input errors, 1 for runtime and device failures, ``--debug`` for the traceback, one
``warning:`` line per warning."""

from __future__ import annotations

import errno
import json
import warnings

import pytest
import typer
from typer.testing import CliRunner

from crystalloop import errors
from crystalloop.cli import CrystalloopGroup, app, format_error

runner = CliRunner()


def _invoke(args, columns=80, **env):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns), "CRYSTALLOOP_STORE": None,
                                                           "CRYSTALLOOP_DEBUG": None, **env})


def _only_error_line(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


# --- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "code"), [
    (errors.ConfigError("x"), 2), (errors.ProfileError("x"), 2), (errors.LimitError("x"), 2),
    (errors.SafetyError("x"), 2), (errors.SchemaError("x"), 2), (errors.ModelError("x"), 2),
    (errors.InsufficientDataError("x"), 2), (errors.StoreNotFoundError("x"), 2), (errors.StoreAccessError("x"), 2),
    (errors.DeviceError("x"), 1), (errors.DeviceTimeout("x"), 1), (errors.DeviceAlarm("x"), 1),
    (errors.WatchdogError("x"), 1), (errors.StoreError("x"), 1), (errors.SimulationError("x"), 1),
    (PermissionError(errno.EACCES, "Permission denied", "out"), 2),
    (OSError(errno.EROFS, "Read-only file system", "out"), 2),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/out"), 2),
    (OSError(errno.ENOSPC, "No space left on device", "out"), 1),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2),
    (KeyError("x"), 1), (RuntimeError("x"), 1),
])
def test_exit_code_of_each_kind_of_error(exc, code):
    assert errors.exit_code(exc) == code


def test_every_error_class_lives_in_errors_and_names_its_exit_code():
    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    errs = [c for c in classes if issubclass(c, Exception) and not issubclass(c, Warning)]
    assert all(issubclass(c, errors.CrystalloopError) for c in errs)
    assert {c.exit_code for c in errs} == {errors.EXIT_INPUT, errors.EXIT_RUNTIME}
    # input errors stay catchable as ValueError, hardware errors as OSError
    assert all(issubclass(c, ValueError) for c in errs if issubclass(c, errors.ConfigError))
    assert all(issubclass(c, OSError) for c in errs if issubclass(c, errors.DeviceError))


def test_every_warning_class_shares_one_base():
    import crystalloop.campaign as campaign
    import crystalloop.digital_twin as dt

    warns = [getattr(errors, n) for n in errors.__all__
             if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), Warning)]
    assert len(warns) >= 5 and all(issubclass(w, errors.CrystalloopWarning) for w in warns)
    assert dt.TwinWarning is errors.TwinWarning and dt.DoEWarning is errors.DoEWarning
    assert campaign.CampaignWarning is errors.CampaignWarning
    from crystalloop.hardware.sim import SimulationError

    assert SimulationError is errors.SimulationError


# --- usage and input errors -------------------------------------------------------------------


def test_unknown_option_is_one_line_exit_2():
    res = _invoke(["simulate", "--bogus"], columns=40)
    assert res.exit_code == 2
    line = _only_error_line(res)
    assert "No such option: --bogus" in line and "crystalloop simulate --help" in line


def test_bad_option_value_is_one_line_exit_2():
    res = _invoke(["simulate", "--seed", "x"], columns=40)
    assert res.exit_code == 2 and "Invalid value for '--seed'" in _only_error_line(res)


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_long_paths_are_not_broken_at_any_width(tmp_path, columns):
    missing = tmp_path / "a_rather_long_folder_name_for_recipes" / "missing_recipe_file.yaml"
    res = _invoke(["run", missing, "--store", tmp_path / "s.db"], columns=columns)
    assert res.exit_code == 2
    assert _only_error_line(res) == f"error: recipe file {missing} does not exist"


def test_binary_and_latin1_recipes_give_one_line(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x01binary")
    (tmp_path / "latin1.yaml").write_bytes("name: café\nc0_mg_g: 40\n".encode("latin-1"))
    for name, byte in (("bin.yaml", "0xff"), ("latin1.yaml", "0xe9")):
        res = _invoke(["simulate", tmp_path / name, "--store", tmp_path / "s.db", "--out", tmp_path / "o"])
        assert res.exit_code == 2
        line = _only_error_line(res)
        assert f"recipe file {tmp_path / name} is not UTF-8 text ({byte}" in line.replace("byte ", "")


def test_directory_as_recipe_is_not_reported_missing(tmp_path):
    res = _invoke(["run", tmp_path, "--store", tmp_path / "s.db"])
    assert res.exit_code == 2
    line = _only_error_line(res)
    assert "is a directory" in line and "does not exist" not in line


def test_missing_store_names_no_internal_parameter(tmp_path):
    res = _invoke(["runs", "--store", tmp_path / "nothere.db"])
    assert res.exit_code == 2
    line = _only_error_line(res)
    assert line == f"error: No experiment store at {tmp_path / 'nothere.db'}: the file does not exist"
    assert not (tmp_path / "nothere.db").exists()


def test_store_that_is_not_a_store_exit_2(tmp_path):
    (tmp_path / "notes.db").write_text("shopping list\n" * 200)
    res = _invoke(["runs", "--store", tmp_path / "notes.db"])
    assert res.exit_code == 2 and "is not a crystalloop experiment store" in _only_error_line(res)


def test_twin_json_missing_a_key_is_one_line(tmp_path):
    from crystalloop.digital_twin.twin import FORMAT_VERSION

    tw = tmp_path / "tw"
    tw.mkdir()
    (tw / "twin.json").write_text(json.dumps({"kind": "crystalloop.digital_twin", "format_version": FORMAT_VERSION}))
    (tmp_path / "p.csv").write_text("run_id,c0_mg_g\nR1,40\n")
    res = _invoke(["twin", "predict", tw, tmp_path / "p.csv"])
    assert res.exit_code == 2
    line = _only_error_line(res)
    assert str(tw / "twin.json") in line and "max_cycles" in line


def test_missing_argument_of_run_is_an_input_error():
    res = _invoke(["run"])
    assert res.exit_code == 2 and _only_error_line(res) == "error: give a RECIPE file (or --resume RUN_ID)"


def test_psd_input_errors_exit_2(tmp_path, particle_image):
    res = _invoke(["psd", particle_image, "--out", tmp_path / "o"])
    assert res.exit_code == 2 and "--pixel-size-um is required" in _only_error_line(res)
    res = _invoke(["psd", "--last", "1"])
    assert res.exit_code == 2 and "use it with --run" in _only_error_line(res)


# --- runtime and device failures ----------------------------------------------------------------


def test_device_failure_exit_1_one_line():
    # loop:// echoes the command back: the JULABO driver sees no valid reply
    res = _invoke(["thermostat", "show", "julabo://loop://?timeout_s=0.2"], columns=40)
    assert res.exit_code == 1
    line = _only_error_line(res)
    assert "No valid reply from JULABO on loop://" in line


def test_unexpected_exception_is_one_line_and_debug_shows_the_traceback():
    demo = typer.Typer(cls=CrystalloopGroup)

    @demo.callback()
    def _cb(debug: bool = typer.Option(False, "--debug")) -> None:
        import crystalloop.cli as cli

        cli._debug = cli._debug or debug

    @demo.command()
    def boom() -> None:
        {}["missing_key"]

    res = runner.invoke(demo, ["boom"], env={"CRYSTALLOOP_DEBUG": None})
    assert res.exit_code == 1
    line = _only_error_line(res)
    assert line.startswith("error: internal error KeyError: 'missing_key'") and "--debug" in line
    res = runner.invoke(demo, ["--debug", "boom"])
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.output and "{}[\"missing_key\"]" in res.output
    res = runner.invoke(demo, ["boom"], env={"CRYSTALLOOP_DEBUG": "1"})
    assert "Traceback (most recent call last)" in res.output


def test_debug_flag_of_the_real_command_line(tmp_path):
    res = _invoke(["--debug", "runs", "--store", tmp_path / "nothere.db"])
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.output and "StoreNotFoundError" in res.output
    assert res.output.rstrip().splitlines()[-1].startswith("error: No experiment store at")


def test_format_error_for_file_system_errors(tmp_path):
    e = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out"))
    assert format_error(e) == f"{tmp_path / 'out'}: Permission denied"
    assert format_error(OSError(errno.EROFS, "Read-only file system", "out")).startswith("out (in ")
    assert format_error(ConnectionResetError("the scheduler went away")) == "the scheduler went away"


# --- warnings -----------------------------------------------------------------------------------


def test_warnings_are_one_line_without_source():
    demo = typer.Typer(cls=CrystalloopGroup)

    @demo.callback()
    def _cb() -> None:
        pass

    @demo.command()
    def warn() -> None:
        warnings.warn("the twin extrapolates:\n 5 cycles, trained on 1-4", errors.TwinWarning, stacklevel=1)
        warnings.warn("a library complains", RuntimeWarning, stacklevel=1)
        print("done")

    res = runner.invoke(demo, ["warn"], env={"COLUMNS": "40", "CRYSTALLOOP_DEBUG": None})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "warning: the twin extrapolates: 5 cycles, trained on 1-4" in lines
    assert "warning: RuntimeWarning: a library complains" in lines
    assert "done" in lines and len(lines) == 3
    assert "test_cli_errors.py" not in res.output and "warnings.warn" not in res.output


# --- option names, not library parameter names ----------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["twin", "fit", "{doe}", "--splits", "0", "--out", "{tmp}/tw"], "error: --splits must be a whole number >= 2, got 0"),
    (["campaign", "{doe}", "--batch", "0", "--out", "{tmp}/camp"], "error: --batch must be a whole number >= 1, got 0"),
    (["psd", "{tmp}", "--pixel-size-um", "-1", "--out", "{tmp}/o"],
     "error: --pixel-size-um must be a positive number of µm per pixel, got -1.0"),
])
def test_messages_name_the_option_the_user_typed(tmp_path, args, expected):
    from _cli import ROOT

    doe = ROOT / "examples" / "doe" / "doe.csv"
    res = _invoke([a.format(doe=doe, tmp=tmp_path) for a in args])
    assert res.exit_code == 2 and _only_error_line(res) == expected


def test_option_aliases_name_real_options():
    from crystalloop.cli import OPTION_ALIASES, _invoked

    root = typer.main.get_command(app)
    for path, aliases in OPTION_ALIASES.items():
        found, cmd = _invoked(root, path.split())
        assert found == path, path
        opts = {o for p in cmd.params for o in p.opts}
        assert set(aliases.values()) <= opts, (path, set(aliases.values()) - opts)


def test_option_names_replaces_whole_parameter_names_only():
    from crystalloop.cli import _invoked, option_names

    path, cmd = _invoked(typer.main.get_command(app), ["design"])
    assert option_names("pop_size must be >= 2, got 0", path, cmd) == "--pop must be >= 2, got 0"
    assert option_names("n_gen=0 is too small", path, cmd) == "--gens=0 is too small"
    text = "the n_generations of pop_sizes: 'pop_size' in a file"
    assert option_names(text, path, cmd) == text  # other words and quoted names stay
