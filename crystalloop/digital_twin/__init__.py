"""crystalloop.digital_twin: CQA models from DoE tables (seed 003).

Read a DoE table (:func:`read_doe`), fit a twin (:class:`DigitalTwin` or :func:`fit_twin`: model
selection by repeated K-fold CV, synthetic augmentation with weighted ERM, Monte Carlo CV
uncertainty), or a Gaussian process per CQA on physical profile features (:class:`FeatureGPTwin`,
:func:`fit_gp_twin`, optionally with the compound's :class:`SolubilityCurve`), or a grey-box twin:
a fitted :class:`KineticModel` under a GP per CQA (:class:`HybridTwin`, :func:`fit_hybrid_twin`),
predict mean ± std
per CQA, save/load either without pickle (skops, XGBoost JSON, JSON; :func:`load_twin` opens any
twin folder), report on it (:func:`write_report`), and design recipes on it
(:mod:`crystalloop.digital_twin.design`).
"""

from .augment import (
                      DEFAULT_ALPHAS,
                      DEFAULT_M,
                      AugmentationResult,
                      WeightedERMRegressor,
                      erm_weights,
                      search_augmentation,
                      search_augmentation_many,
)
from .doe import CQA_NAMES, DoETable, DoEWarning, read_doe, resolve_cqa
from .features import SolubilityCurve
from .gp import FeatureGPRegressor, FeatureGPTwin, fit_gp_twin
from .hybrid import HybridGPRegressor, HybridTwin, fit_hybrid_twin
from .kinetic import KineticModel, kinetic_features
from .models import (
                      MIN_ROWS,
                      MODEL_FAMILIES,
                      SelectionResult,
                      grid_size,
                      make_estimator,
                      param_grid,
                      select_model,
                      with_features,
)
from .persist import TRUSTED_TYPES, load_ensemble, save_ensemble
from .report import fit_and_save, model_card, predict_profiles, report_twin, write_report
from .synthetic import GENERATORS, ProfileFeasibility, SyntheticGenerator, profile_validity
from .twin import DigitalTwin, TwinWarning, fit_twin, load_twin
from .uncertainty import BootstrapRegressor, MonteCarloCVRegressor, calibration_report

__all__ = [
    "CQA_NAMES", "DoETable", "DoEWarning", "read_doe", "resolve_cqa",
    "MIN_ROWS", "MODEL_FAMILIES", "SelectionResult", "grid_size", "make_estimator", "param_grid", "select_model",
    "with_features",
    "MonteCarloCVRegressor", "BootstrapRegressor", "calibration_report",
    "GENERATORS", "ProfileFeasibility", "SyntheticGenerator", "profile_validity",
    "DEFAULT_ALPHAS", "DEFAULT_M", "AugmentationResult", "WeightedERMRegressor", "erm_weights", "search_augmentation", "search_augmentation_many",
    "DigitalTwin", "TwinWarning", "fit_twin", "model_card", "write_report",
    "fit_and_save", "predict_profiles", "report_twin",
    "TRUSTED_TYPES", "save_ensemble", "load_ensemble",
    "FeatureGPTwin", "FeatureGPRegressor", "fit_gp_twin", "SolubilityCurve", "load_twin",
    "HybridTwin", "HybridGPRegressor", "fit_hybrid_twin", "KineticModel", "kinetic_features",
]


# --- digital design (NSGA-II on the twin): crystalloop.digital_twin.design ---
from .design import (  # noqa: E402
    DesignProblem,
    DesignResult,
    DesignSpace,
    Objective,
    OutcomeConstraint,
    best_under,
    export_recipe,
    hypervolume,
    knee_point,
    make_algorithm,
    optimize_design,
    plot_convergence,
    plot_fronts,
    run_design_study,
    shortest_batch,
    spread_points,
    tell_measured,
    write_design,
)

__all__ += ["DesignSpace", "DesignProblem", "DesignResult", "Objective", "OutcomeConstraint",
            "make_algorithm", "tell_measured", "optimize_design", "hypervolume",
            "knee_point", "best_under", "shortest_batch", "spread_points", "export_recipe",
            "plot_fronts", "plot_convergence", "write_design", "run_design_study"]
