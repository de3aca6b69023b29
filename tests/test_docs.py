"""Docs that run: every code block of README.md and docs/*.md is executed by the test suite.

A renamed function, option or file cannot leave a doc behind: the doc's own example fails,
and the failure names the doc file and line. The rules (also in ``docs/writing-docs.md``):

* Executed languages: ``python`` blocks (``exec`` in one namespace per doc file, in doc order,
  like notebook cells) and ``bash``/``sh``/``shell`` blocks (each ``crystalloop ...`` command
  run by bash, in order). Blocks in any other language (``console`` transcripts, ``text``,
  diagrams without an info string) are shown output, not code, and are not run.
* Each doc file runs in its own temporary folder holding a copy of ``examples/`` and
  ``recipe.yaml`` (the three-cycle example recipe), plus what :data:`SETUP` lists for that doc.
* Markers after the language in the info string: ``slow`` (run only with ``-m slow``),
  ``skip="why"`` (never run; python imports are still checked; the reason is shown in the
  report), ``hardware="URL"`` (needs a real device: python imports are checked, bash commands
  are parsed against the CLI but not run), ``parse="why"`` (bash: commands parsed against the
  CLI, not run, e.g. they need a Dask cluster), ``xfail="why"`` (someone's work in progress;
  also :data:`WORK_IN_PROGRESS`, for docs another engineer is rewriting).
  Renderers show only the first word, so readers see a plain ``python``/``bash`` block.
* A python block or a bash command that names a serial device URL (``julabo:///dev/ttyUSB0``)
  needs hardware: the block's imports are checked, the command is parsed against the CLI
  (subcommand, options, values); both are shown as skipped "needs real hardware";
  commands in :data:`PARSE_ONLY` likewise; non-``crystalloop`` commands (installing, the test
  suite itself, benchmarks) are shown as skipped.
* Speed: blocks marked ``slow``, python blocks listed in :data:`SLOW_PYTHON`, commands starting
  with one of :data:`SLOW_COMMANDS`, and every step after a slow one in the same doc (it may
  use its outputs) run only with ``-m slow``. A step run on its own (``-k``, ``-m slow``)
  first replays the earlier steps of its doc.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell"}
MARKERS = {"slow", "skip", "hardware", "parse", "xfail"}

#: Command prefixes that take minutes (model fitting, optimisation, long runs): run with -m slow.
SLOW_COMMANDS = ("crystalloop twin fit", "crystalloop design", "crystalloop campaign", "crystalloop run",
                 "crystalloop psd-calibrate", "crystalloop psd --run", "crystalloop vision train")

#: Python blocks that take minutes, by (doc, a text the block contains): run with -m slow.
SLOW_PYTHON = {
    ("docs/campaign.md", "run_campaign("), ("docs/control.md", "run("), ("docs/design.md", "twin"),
    ("docs/digital_twin.md", "fit_twin("), ("docs/vision.md", "calibrate("),
}

#: Python blocks too long even for -m slow, by (doc, a text the block contains): why. Imports checked.
SKIP_PYTHON = {
    ("docs/digital_twin.md", 'grid="paper"'):
        "the paper grid with 100 Monte Carlo members is ~95 CPU-minutes (docs/scale-out.md)",
}

#: Commands parsed against the CLI but not run, by (doc, start of the command): why.
PARSE_ONLY = {
    ("docs/control.md", "crystalloop run --resume"): "resumes an interrupted run of the reader's store",
    ("README.md", "crystalloop vision train-seg annotations/"): "trains on the reader's own annotated images",
    ("README.md", "crystalloop psd images/ --model seg/"): "measures the reader's images with the model above",
    ("README.md", "crystalloop dashboard"): "a server: runs until stopped (tests/dashboard starts it)",
    ("docs/vision.md", "crystalloop psd --run"): "measures run 3 of the reader's store",
}

#: Steps broken by another area's work in progress, by (doc, start of the command or a text of the
#: block): why. Expected to fail; when one passes again it simply passes (remove it from here).
WORK_IN_PROGRESS = {
    ("docs/vision.md", 'measure_psd("probe/*.png", pixel_size_um=1.5, out_dir="results"'):
        "measure_psd refuses a non-empty out_dir; the command lines above already wrote results/",
}

_DEVICE_URL = re.compile(r"\b(?:julabo|huber|lauda)://(?:/dev/|COM\d|rfc2217://|socket://)[^\s\"']*", re.I)


# ---- what the docs contain ---------------------------------------------------------------------


@dataclass
class Step:
    """One runnable unit: a python block or one shell command, with where it is and how to run it."""

    doc: str
    line: int
    kind: str  # "python" | "shell"
    code: str
    mode: str = "run"  # run | parse | skip | hardware | other
    reason: str = ""
    xfail: str = ""
    slow: bool = False
    index: int = 0
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def id(self) -> str:
        head = self.code.strip().splitlines()[0] if self.code.strip() else ""
        return f"{self.where} {head[:50]}"


def _info(doc: str, line: int, info: str) -> tuple[str, dict[str, str]]:
    try:
        words = shlex.split(info)
    except ValueError as e:
        raise ValueError(f"{doc}:{line}: cannot read the code block's info string {info!r}: {e}") from None
    lang = words[0].lower() if words else ""
    markers = {}
    for w in words[1:]:
        key, _, value = w.partition("=")
        if key not in MARKERS:
            raise ValueError(f"{doc}:{line}: unknown docs-test marker {key!r} in info string {info!r}; "
                             f"expected one of {sorted(MARKERS)} (see docs/writing-docs.md)")
        markers[key] = value
    return lang, markers


def _commands(code: str, first_line: int) -> list[tuple[int, str]]:
    """Shell block → (doc line, command) pairs: continuation lines joined, comments dropped."""
    out, buf, start = [], "", 0
    for k, raw in enumerate(code.splitlines()):
        line = raw.rstrip()
        if not buf:
            start = first_line + k
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        out.append((start, _strip_comment(buf).strip()))
        buf = ""
    if buf.strip():
        out.append((start, _strip_comment(buf).strip()))
    return out


def _strip_comment(cmd: str) -> str:
    """Cut a trailing ``# comment`` (a ``#`` after whitespace, outside quotes), as bash does."""
    quote = ""
    for i, ch in enumerate(cmd):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or cmd[i - 1].isspace()):
            return cmd[:i]
    return cmd


def collect_steps() -> list[Step]:
    """Every step of README.md and docs/*.md, in doc order, with its mode and speed decided."""
    steps: list[Step] = []
    fence = re.compile(r"^(?P<f>```+|~~~+)(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=f)[ \t]*$", re.M | re.S)
    for path in DOCS:
        doc = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        doc_steps: list[Step] = []
        for m in fence.finditer(text):
            line = text.count("\n", 0, m.start("code")) + 1  # doc line of the block's first code line
            lang, markers = _info(doc, line - 1, m.group("info").strip())
            code = m.group("code")
            if lang in PYTHON:
                doc_steps.append(_python_step(doc, line, code, markers))
            elif lang in SHELL:
                doc_steps.extend(_shell_step(doc, ln, cmd, markers) for ln, cmd in _commands(code, line))
        slow = False
        for i, s in enumerate(doc_steps):
            s.index = i
            slow = slow or (s.slow and s.mode == "run")
            s.slow = (s.slow or slow) if s.mode == "run" else False  # steps that do not run are checked at once
        steps += doc_steps
    return steps


def _python_step(doc: str, line: int, code: str, markers: dict[str, str]) -> Step:
    s = Step(doc, line, "python", code, markers=markers)
    s.slow = "slow" in markers or any(d == doc and needle in code for d, needle in SLOW_PYTHON)
    url = _DEVICE_URL.search(code)
    if "hardware" in markers or url:
        what = markers.get("hardware") or (url and url.group(0)) or "a device"
        s.mode, s.reason, s.slow = "hardware", f"needs real hardware ({what}): imports checked only", False
    elif "skip" in markers:
        s.mode, s.reason = "skip", f"{markers['skip'] or 'skip marker'}: imports checked only"
    elif any(d == doc and needle in code for d, needle in SKIP_PYTHON):
        why = next(w for (d, needle), w in SKIP_PYTHON.items() if d == doc and needle in code)
        s.mode, s.reason, s.slow = "skip", f"{why}: imports checked only", False
    s.xfail = markers.get("xfail", "") or _work_in_progress(doc, code)
    return s


def _work_in_progress(doc: str, code: str) -> str:
    return next((why for (d, text), why in WORK_IN_PROGRESS.items()
                 if d == doc and (code.startswith(text) or text in code)), "")


def _shell_step(doc: str, line: int, cmd: str, markers: dict[str, str]) -> Step:
    s = Step(doc, line, "shell", cmd, markers=markers)
    s.xfail = markers.get("xfail", "") or _work_in_progress(doc, cmd)
    if not cmd.startswith("crystalloop"):
        s.mode, s.reason = "other", "not a crystalloop command (set-up, the test suite, benchmarks): not run here"
        return s
    s.slow = "slow" in markers or cmd.startswith(SLOW_COMMANDS)
    url = _DEVICE_URL.search(cmd)
    listed = next((why for (d, start), why in PARSE_ONLY.items() if d == doc and cmd.startswith(start)), None)
    if "hardware" in markers or url:
        s.mode, s.slow = "parse", False
        s.reason = f"needs real hardware ({markers.get('hardware') or (url and url.group(0)) or 'a device'}): parsed only"
    elif "skip" in markers:
        s.mode, s.reason, s.slow = "skip", markers["skip"] or "skip marker", False
    elif "parse" in markers:
        s.mode, s.reason, s.slow = "parse", f"{markers['parse'] or 'parse marker'}: parsed only", False
    elif listed:
        s.mode, s.reason, s.slow = "parse", f"{listed}: parsed only", False
    return s


STEPS = collect_steps()


# ---- per-doc state: folder, namespace, what has run -------------------------------------------


def _setup_common(work: Path, ns: dict[str, Any]) -> None:
    shutil.copytree(ROOT / "examples", work / "examples")
    shutil.copy(ROOT / "examples" / "recipes" / "three_cycle.yaml", work / "recipe.yaml")


def _setup_vision(work: Path, ns: dict[str, Any]) -> None:
    """Three small simulated probe images as probe/, run42/, calib/ and a 2-page stack.tif."""
    import cv2
    import numpy as np
    import pandas as pd
    import tifffile

    from crystalloop.vision import PipelineSettings
    from crystalloop.vision.render import render_particles, sample_particles

    sizes = np.geomspace(20.0, 200.0, 12)
    counts = np.exp(-0.5 * ((np.log(sizes) - np.log(80.0)) / 0.4) ** 2) * 6.0
    frames, truth = [], []
    for k in range(3):
        parts = sample_particles(sizes, counts, shape=(480, 640), pixel_size_um=1.5, seed=k)
        img, gt = render_particles(parts, shape=(480, 640), pixel_size_um=1.5, seed=k)
        frames.append(img)
        truth.append(gt)
    for folder in ("probe", "run42", "calib"):
        (work / folder).mkdir()
        for k, img in enumerate(frames):
            cv2.imwrite(str(work / folder / f"frame_{k:03d}.png"), img)
    tifffile.imwrite(work / "stack.tif", np.stack(frames[:2]))
    ref = np.concatenate([np.asarray(parts_["ecd_um"] if "ecd_um" in parts_ else parts_.iloc[:, 0])
                          for parts_ in truth])
    pd.DataFrame({"size_um": ref[ref > 0]}).to_csv(work / "offline_psd.csv", index=False)
    PipelineSettings().save(work / "calibrated.json")  # what `psd-calibrate` writes, for the lines before it
    ns.update(img=frames[0], reference_sizes_um=ref[ref > 0])


def _setup_twin(work: Path, ns: dict[str, Any]) -> None:
    """A small fitted twin (fast grid, few splits, no augmentation) as ``twin``, and ``pd``."""
    import pandas as pd

    from crystalloop.digital_twin import fit_twin

    ns["twin"] = fit_twin(work / "examples" / "doe" / "doe.csv", grid="fast", n_splits=5, augment=False,
                          random_state=0)
    ns["pd"] = pd


def _setup_profiles(work: Path, ns: dict[str, Any]) -> None:
    from crystalloop.profiles import ThermocycleProfile

    ns["list_of_profiles"] = [ThermocycleProfile.from_file(p) for p in sorted((work / "examples" / "recipes").glob("*.yaml"))]


#: What a doc's examples expect to exist besides examples/ and recipe.yaml (files, names).
SETUP = {
    "docs/vision.md": [_setup_vision],
    "docs/design.md": [_setup_twin],
    "docs/digital_twin.md": [_setup_profiles],
    "docs/scale-out.md": [_setup_vision],
}


class DocState:
    """The temporary folder, the python namespace and the progress of one doc file."""

    def __init__(self, doc: str, work: Path) -> None:
        self.doc, self.work = doc, work
        self.ns: dict[str, Any] = {"__name__": f"docs:{doc}"}
        self.done = -1  # index of the last step executed
        self.failed: dict[int, str] = {}
        self.ready = False

    def prepare(self) -> None:
        if not self.ready:
            self.ready = True
            with contextlib.chdir(self.work):
                for fn in [_setup_common, *SETUP.get(self.doc, [])]:
                    fn(self.work, self.ns)


@pytest.fixture(scope="session")
def doc_states(tmp_path_factory) -> dict[str, DocState]:
    return {}


def _state(states: dict[str, DocState], factory, doc: str) -> DocState:
    if doc not in states:
        states[doc] = DocState(doc, factory.mktemp(re.sub(r"\W+", "_", doc)))
    return states[doc]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTALLOOP_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MPLBACKEND="Agg", COLUMNS="100", PYTHONHASHSEED="0")
    return env


def _run_python(step: Step, state: DocState) -> None:
    code = compile("\n" * (step.line - 1) + step.code, str(ROOT / step.doc), "exec")
    with contextlib.chdir(state.work):
        try:
            exec(code, state.ns)
        except Exception as e:  # noqa: BLE001 - reported with the doc line
            tb = traceback.extract_tb(e.__traceback__)
            lines = [f.lineno for f in tb if f.filename == str(ROOT / step.doc)]
            at = f"{step.doc}:{lines[-1] if lines else step.line}"
            text = "".join(traceback.format_exception(e))
            raise DocError(f"{at}: python block failed: {type(e).__name__}: {e}\n{text}") from None


def _run_shell(step: Step, state: DocState) -> None:
    timeout = 1800 if step.slow else 300
    try:
        res = subprocess.run(["bash", "-c", step.code], cwd=state.work, env=_env(), capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DocError(f"{step.where}: `{step.code}` ran longer than {timeout} s") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise DocError(f"{step.where}: `{step.code}` exited with status {res.returncode} in {state.work}:\n{tail}")


def parse_command(cmd: str) -> None:
    """Check a ``crystalloop ...`` command line against the CLI without running it.

    Raises
    ------
    click/typer usage error
        Unknown subcommand or option, a missing argument, a value of the wrong type.
    """
    import typer
    import typer.main

    from crystalloop.cli import app

    try:
        from typer._click.exceptions import Exit
    except ImportError:  # pragma: no cover - typer on top of the click package
        from click.exceptions import Exit

    argv = shlex.split(cmd)[1:]
    command = typer.main.get_command(app)
    ctx = command.make_context("crystalloop", argv)
    while hasattr(command, "resolve_command"):
        # a group leaves the subcommand and its arguments unparsed (click >= 8.2: _protected_args)
        rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        try:
            ctx = sub.make_context(name, rest, parent=ctx)
        except (Exit, typer.Exit) as e:  # --help
            if e.exit_code:
                raise
            return
        command = sub


def _check_imports(step: Step) -> None:
    tree = ast.parse(step.code)
    imports = ast.Module(body=[n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))],
                         type_ignores=[])
    try:
        exec(compile(imports, str(ROOT / step.doc), "exec"), {})
    except ImportError as e:
        raise DocError(f"{step.where}: an import of this (not run) python block fails: {e}") from None


class DocError(AssertionError):
    """A doc's example failed; the message starts with ``doc:line``."""


def _execute(step: Step, state: DocState, *, replay: bool) -> None:
    if step.kind == "python":
        _run_python(step, state)
    else:
        _run_shell(step, state)


def _bring_up_to(step: Step, state: DocState) -> None:
    """Run the earlier runnable steps of the doc that have not run yet (deselected or not reached)."""
    state.prepare()
    for s in STEPS:
        if s.doc != step.doc or s.index >= step.index or s.index <= state.done:
            continue
        state.done = s.index
        if s.mode != "run":
            continue
        if s.index in state.failed:
            continue
        try:
            _execute(s, state, replay=True)
        except DocError as e:
            if s.xfail:  # expected to fail; the steps after it still run
                continue
            state.failed[s.index] = str(e).splitlines()[0]
            pytest.fail(f"{step.where}: not run, an earlier step of the doc failed when replayed:\n{e}",
                        pytrace=False)


def _params() -> list:
    out = []
    for s in STEPS:
        marks = [pytest.mark.slow] if s.slow else []
        out.append(pytest.param(s, id=s.id, marks=marks))
    return out


@pytest.mark.parametrize("step", _params())
def test_doc_step(step: Step, doc_states, tmp_path_factory) -> None:
    """Run one doc step (after the earlier ones of its doc); failures name the doc file and line."""
    if step.mode == "other":
        pytest.skip(f"{step.where}: {step.reason}")
    if step.mode == "parse":
        parse_command(step.code)
        pytest.skip(f"{step.where}: {step.reason}")
    if step.mode in ("skip", "hardware"):
        if step.kind == "python":
            _check_imports(step)
        pytest.skip(f"{step.where}: {step.reason}")
    state = _state(doc_states, tmp_path_factory, step.doc)
    _bring_up_to(step, state)
    earlier = [i for i in state.failed if i < step.index]
    state.done = max(state.done, step.index)
    if earlier:
        pytest.skip(f"{step.where}: not run, an earlier step of {step.doc} failed "
                    f"({state.failed[earlier[0]]})")
    try:
        _execute(step, state, replay=False)
    except DocError as e:
        if step.xfail:  # expected to fail; the steps after it still run
            pytest.xfail(f"{step.where}: {step.xfail}")
        state.failed[step.index] = str(e).splitlines()[0]
        pytest.fail(str(e), pytrace=False)
    if step.xfail and "xfail" in step.markers:
        pytest.fail(f"{step.where}: marked xfail ({step.xfail!r}) but passes now: remove the marker",
                    pytrace=False)


# ---- the harness itself ---------------------------------------------------------------------------


def test_harness_reads_markers_and_commands():
    lang, markers = _info("x.md", 3, 'python slow skip="needs a JULABO"')
    assert lang == "python" and markers == {"slow": "", "skip": "needs a JULABO"}
    with pytest.raises(ValueError, match=r"x\.md:3: unknown docs-test marker 'fast'"):
        _info("x.md", 3, "python fast")
    code = ('# comment\ncrystalloop run a.yaml \\\n    --seed 1   # trailing "#" comment\n\n'
            'crystalloop psd "probe/*.png" --out r#1\n')
    assert _commands(code, 10) == [(11, "crystalloop run a.yaml      --seed 1"),
                                   (14, 'crystalloop psd "probe/*.png" --out r#1')]
    s = _shell_step("d.md", 1, 'crystalloop thermostat probe "julabo:///dev/ttyUSB0"', {})
    assert s.mode == "parse" and "julabo:///dev/" in s.reason and not s.slow


def test_harness_parses_commands_against_the_cli():
    parse_command("crystalloop runs --status failed --last 3")
    parse_command("crystalloop vision train-classifier --help")
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        parse_command("crystalloop runs --no-such-option")
    with pytest.raises(Exception, match="No such command 'not-a-command'"):
        parse_command("crystalloop not-a-command")


def test_harness_failure_names_doc_and_line(tmp_path):
    state = DocState("docs/example.md", tmp_path)
    state.ready = True
    bad = Step("docs/example.md", 40, "python", "x = 1\ny = undefined_name\n")
    with pytest.raises(DocError, match=r"^docs/example\.md:41: python block failed: NameError"):
        _run_python(bad, state)
    cmd = Step("docs/example.md", 7, "shell", "crystalloop runs --store nothere.db")
    with pytest.raises(DocError, match=r"^docs/example\.md:7: `crystalloop runs --store nothere.db` exited "
                                       r"with status [12]"):
        _run_shell(cmd, state)


def test_every_doc_has_been_read():
    docs = {s.doc for s in STEPS}
    assert "README.md" in docs and "docs/store.md" in docs
    assert sum(s.mode == "run" and not s.slow for s in STEPS) >= 5  # a real default set
