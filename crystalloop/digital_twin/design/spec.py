"""Objectives and outcome constraints of a design study, given by name.

``"max:D50"`` and ``"min:DoA"`` are objectives; ``"crystallinity>=75"`` and
``"batch_time<=600"`` are constraints. Short names resolve to the twin's CQA names by
stripping the unit suffix (``D50`` → ``D50_um``, ``DoA`` → ``DoA_pct``), case-insensitively.
``batch_time`` (``batch_time_min``) is computed from the profile, not predicted by the twin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from crystalloop.cqa import BATCH_TIME, CQA_NAMES
from crystalloop.errors import InfeasibleError, ModelError, OptimizationError

__all__ = [
    "BATCH_TIME",
    "Objective",
    "OutcomeConstraint",
    "parse_objectives",
    "parse_constraints",
    "parse_cycles",
    "resolve_quantity",
]

_SUFFIX = re.compile(r"_(um|pct|min|s|c|c_min|kg_kg|mg_g)$")


def _short(name: str) -> str:
    return _SUFFIX.sub("", name).lower()


def resolve_quantity(name: str, available: Sequence[str], *, what: str = "objective") -> str:
    """Resolve a full or short quantity name against ``available`` (twin CQAs).

    Raises
    ------
    ModelError
        A known CQA name that the twin does not predict.
    OptimizationError
        A name that matches nothing.
    """
    key = str(name).strip()
    pool = list(dict.fromkeys([*available, BATCH_TIME]))
    for cands in (pool, CQA_NAMES):
        exact = [c for c in cands if c == key or c.lower() == key.lower()]
        hits = exact or [c for c in cands if _short(c) == _short(key)]
        if len(hits) > 1:
            raise OptimizationError(f"{what} name {key!r} is ambiguous: matches {hits}")
        if hits:
            if cands is CQA_NAMES:
                raise ModelError(
                    f"{what} {key!r} needs the CQA {hits[0]!r}, but the twin predicts only "
                    f"{list(available)}; fit the twin with {hits[0]} in the DoE table"
                )
            return hits[0]
    short = sorted({_SUFFIX.sub("", c) for c in pool})
    raise OptimizationError(
        f"unknown {what} name {key!r}; expected one of {pool} or their short names {short}"
    )


@dataclass(frozen=True)
class Objective:
    """An objective: ``direction`` (``"max"``/``"min"``) of quantity ``name``."""

    name: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise OptimizationError(
                f"objective direction for {self.name!r} must be 'max' or 'min', got {self.direction!r}"
            )

    @property
    def sign(self) -> float:
        """Factor that turns the value into a quantity to minimize."""
        return -1.0 if self.direction == "max" else 1.0

    def __str__(self) -> str:
        return f"{self.direction}:{self.name}"


@dataclass(frozen=True)
class OutcomeConstraint:
    """A constraint ``name >= value`` (``op=">="``) or ``name <= value`` on a CQA or the batch time."""

    name: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise OptimizationError(f"constraint operator must be '>=' or '<=', got {self.op!r}")
        if not np.isfinite(self.value):
            raise OptimizationError(f"constraint {self.name} {self.op} needs a finite number, got {self.value}")

    def g(self, value: np.ndarray) -> np.ndarray:
        """The pymoo inequality ``G <= 0`` for ``value``."""
        return self.value - value if self.op == ">=" else value - self.value

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value:g}"


_OBJ = re.compile(r"^\s*(max|min|maximize|minimize)\s*:\s*([A-Za-z_][\w]*)\s*$", re.IGNORECASE)
_CON = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(>=|<=|=>|=<|>|<|==|=)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")


def parse_objectives(specs: str | Iterable[str | Objective], available: Sequence[str]) -> list[Objective]:
    """Parse ``"max:D50,min:DoA"`` (or a list of such strings / :class:`Objective`).

    Raises
    ------
    OptimizationError
        Empty list, malformed strings, unknown or repeated names.
    ModelError
        A CQA the twin does not predict.
    """
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    specs = list(specs)
    if not specs:
        raise OptimizationError("no objective given; expected e.g. 'max:D50,min:DoA'")
    out: list[Objective] = []
    for s in specs:
        if isinstance(s, Objective):
            obj = Objective(resolve_quantity(s.name, available), s.direction)
        else:
            m = _OBJ.match(str(s))
            if not m:
                raise OptimizationError(
                    f"objective {s!r} is not of the form 'max:NAME' or 'min:NAME' (e.g. 'max:D50')"
                )
            obj = Objective(resolve_quantity(m.group(2), available), m.group(1).lower()[:3])
        if any(o.name == obj.name for o in out):
            raise OptimizationError(f"objective {obj.name!r} is given more than once in {specs}")
        out.append(obj)
    return out


def parse_constraints(
    specs: str | Iterable[str | OutcomeConstraint] | None, available: Sequence[str]
) -> list[OutcomeConstraint]:
    """Parse ``"crystallinity>=75"`` constraints (a list, or one comma-separated string).

    ``>`` is read as ``>=`` and ``<`` as ``<=`` (the optimizer works on continuous values).

    Raises
    ------
    OptimizationError
        Malformed strings, unknown names, equality constraints.
    InfeasibleError
        Contradictory constraints (``D50>=30`` with ``D50<=20``); names both.
    """
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out: list[OutcomeConstraint] = []
    for s in specs:
        if isinstance(s, OutcomeConstraint):
            out.append(OutcomeConstraint(resolve_quantity(s.name, available, what="constraint"), s.op, s.value))
            continue
        m = _CON.match(str(s))
        if not m:
            raise OptimizationError(
                f"constraint {s!r} is not of the form 'NAME>=VALUE' or 'NAME<=VALUE' (e.g. 'crystallinity>=75')"
            )
        name, op, val = m.groups()
        if op in ("==", "="):
            raise OptimizationError(
                f"constraint {s!r}: equality constraints are not supported; give a range "
                f"('{name}>=a' and '{name}<=b')"
            )
        op = ">=" if op in (">=", "=>", ">") else "<="
        out.append(OutcomeConstraint(resolve_quantity(name, available, what="constraint"), op, float(val)))
    for a in out:
        for b in out:
            if a.name == b.name and a.op == ">=" and b.op == "<=" and a.value > b.value:
                raise InfeasibleError(
                    f"no feasible profile can exist: constraints '{a}' and '{b}' contradict "
                    f"each other ({a.name} cannot be >= {a.value:g} and <= {b.value:g})"
                )
    return out


def parse_cycles(spec: str | int | Iterable[int]) -> list[int]:
    """``"1-4"`` → ``[1, 2, 3, 4]``; ``"1,3"`` → ``[1, 3]``; ints pass through (sorted, unique).

    Raises
    ------
    OptimizationError
        Malformed text, negative numbers, reversed ranges, an empty set.
    """
    if isinstance(spec, (int, np.integer)):
        vals = [int(spec)]
    elif isinstance(spec, str):
        vals = []
        for part in (p.strip() for p in spec.split(",")):
            m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
            if not m:
                raise OptimizationError(
                    f"cycles {spec!r}: cannot read {part!r}; expected e.g. '1-4', '2' or '1,3'"
                )
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if lo > hi:
                raise OptimizationError(f"cycles {spec!r}: range {part!r} has low > high")
            vals += list(range(lo, hi + 1))
    else:
        vals = []
        for v in spec:
            if int(v) != v:
                raise OptimizationError(f"cycles must be whole numbers, got {v!r}")
            vals.append(int(v))
    if not vals:
        raise OptimizationError(f"cycles {spec!r} selects no number of cycles")
    if min(vals) < 0:
        raise OptimizationError(f"cycles must be >= 0, got {sorted(vals)}")
    return sorted(set(vals))
