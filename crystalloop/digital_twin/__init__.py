"""crystalloop.digital_twin."""

# --- digital design (NSGA-II on the twin) ---
from crystalloop.digital_twin.design_plots import plot_convergence, plot_fronts  # noqa: E402
from crystalloop.digital_twin.design_report import run_design_study, write_design  # noqa: E402
from crystalloop.digital_twin.design_result import DesignResult  # noqa: E402
from crystalloop.digital_twin.design_space import DesignSpace  # noqa: E402
from crystalloop.digital_twin.design_spec import Objective, OutcomeConstraint  # noqa: E402
from crystalloop.digital_twin.optimize import (  # noqa: E402
    DesignProblem,
    hypervolume,
    make_algorithm,
    optimize_design,
    tell_measured,
)
from crystalloop.digital_twin.selection import (  # noqa: E402
    best_under,
    export_recipe,
    knee_point,
    shortest_batch,
    spread_points,
)

__all__ = [*globals().get("__all__", []),
           "DesignSpace", "DesignProblem", "DesignResult", "Objective", "OutcomeConstraint",
           "make_algorithm", "tell_measured", "optimize_design", "hypervolume",
           "knee_point", "best_under", "shortest_batch", "spread_points", "export_recipe",
           "plot_fronts", "plot_convergence", "write_design", "run_design_study"]
