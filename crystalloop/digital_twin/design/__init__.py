"""crystalloop.digital_twin.design: NSGA-II thermocycle design on a digital twin (pymoo style).

* :mod:`.spec` — objectives and outcome constraints by name (``"max:D50"``, ``"DoA<=20"``);
* :mod:`.space` — decision variables, vectorized feasibility and profiles (:class:`DesignSpace`);
* :mod:`.problem` — the pymoo problem on a twin (:class:`DesignProblem`, :class:`DesignTwin`);
* :mod:`.algorithm` — NSGA-II with feasible sampling and repair, ask/tell (:func:`make_algorithm`,
  :func:`tell_measured`);
* :mod:`.study` — instances run side by side and written to a folder (:func:`optimize_design`,
  :func:`write_design`, :func:`run_design_study`);
* :mod:`.validity` — where the twin can be trusted (:class:`ValidityDomain`: distance to the
  measured recipes, structures run, dissolution);
* :mod:`.result`, :mod:`.selection`, :mod:`.plots`, :mod:`.pareto` — the Pareto set, picking and
  exporting a recipe, figures, dominance and hypervolume.
"""

from .algorithm import GivenEvaluation, make_algorithm, tell_measured
from .pareto import hypervolume, nondominated
from .plots import plot_convergence, plot_fronts
from .problem import NO_RESULT, DesignProblem, DesignTwin, bounds_from
from .result import DesignResult
from .selection import best_under, export_recipe, knee_point, shortest_batch, spread_points
from .space import DesignSpace
from .spec import (
    BATCH_TIME,
    Objective,
    OutcomeConstraint,
    parse_constraints,
    parse_cycles,
    parse_objectives,
    resolve_quantity,
)
from .study import (
    TrainedTwin,
    load_twin,
    optimize_design,
    read_bounds,
    resolve_domain,
    run_design_study,
    write_design,
)
from .validity import Solubility, ValidityDomain, solubility_polynomial, solubility_table

__all__ = [
    "BATCH_TIME", "Objective", "OutcomeConstraint", "parse_constraints", "parse_cycles", "parse_objectives",
    "resolve_quantity",
    "DesignSpace",
    "DesignProblem", "DesignTwin", "NO_RESULT", "bounds_from",
    "GivenEvaluation", "make_algorithm", "tell_measured",
    "nondominated", "hypervolume",
    "DesignResult", "knee_point", "best_under", "shortest_batch", "spread_points", "export_recipe",
    "plot_fronts", "plot_convergence",
    "optimize_design", "write_design", "run_design_study", "load_twin", "read_bounds", "resolve_domain",
    "TrainedTwin", "ValidityDomain", "Solubility", "solubility_polynomial", "solubility_table",
]
