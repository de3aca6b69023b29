"""``crystalloop twin``: fit a digital twin from a DoE table, predict profiles, write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

twin_app = typer.Typer(help="Digital twin: CQA models with uncertainty from DoE tables (tree ensembles as in "
                            "seed 003, a Gaussian process on physical profile features, or a kinetic model under "
                            "a GP).",
                       no_args_is_help=True)


def _floats(text: str, what: str) -> list[float]:
    from crystalloop.errors import ConfigError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what} must be comma-separated numbers, got {text!r}") from None


@twin_app.command("fit")
def fit_command(
    doe: Annotated[Path, typer.Argument(help="DoE table (CSV/Parquet/Excel): feature columns or a 'recipe' column, plus CQA columns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the saved twin (twin.json, models/, report/).")] = Path("twin"),
    model: Annotated[str, typer.Option(
        "--model", help="'ensemble' (seed 003: model selection, augmentation, Monte Carlo CV ensembles), 'gp' "
                        "(a Gaussian process per CQA on physical profile features: seconds to fit, more accurate on "
                        "fresh recipes) or 'hybrid' (grey-box: a kinetic model fitted to D50 under a GP per CQA; "
                        "needs --solubility; the most accurate on fresh recipes). The options marked 'ensemble' do "
                        "not apply to gp/hybrid.")] = "ensemble",
    solubility: Annotated[str | None, typer.Option(
        "--solubility", help="--model gp/hybrid: the compound's solubility c*(T), as polynomial coefficients a0,a1,a2 in mg/g "
                             "solvent with T in °C (e.g. 8.0,0.283,0.00917) or a CSV file with columns T_c and "
                             "solubility_mg_g (or YAML/JSON); adds saturation, supersaturation and dissolution "
                             "features (hybrid: the kinetic model runs on it). Without it the GP uses the profile features only.")] = None,
    features: Annotated[str, typer.Option(
        "--features", help="--model gp: 'all' physical features (default, ~1 s), 'cv' (all vs. a forward "
                           "selection, chosen by outer 5-fold CV; ~4 CPU-s on 31 runs) or 'auto' (forward selection).")] = "all",
    cqa: Annotated[list[str] | None, typer.Option("--cqa", help="CQA to model (repeatable; short names like D50). Default: all with >= 5 rows.")] = None,
    grid: Annotated[str, typer.Option(help="[ensemble] Hyper-parameter grids: 'paper' (seed 003 ranges) or 'fast'.")] = "paper",
    families: Annotated[str, typer.Option(help="[ensemble] Comma-separated model families: rf, gbt, xgb, svr.")] = "rf,gbt,xgb,svr",
    cv: Annotated[str, typer.Option(help="[ensemble] K of the K-fold CV, or 'loo' (leave-one-out).")] = "3",
    validation: Annotated[str, typer.Option(
        help="[ensemble] 'repeated' (repeated K-fold on every row, scores from out-of-fold predictions) or 'holdout' "
             "(seed 003: a --test-size hold-out split).")] = "repeated",
    repeats: Annotated[int, typer.Option(help="[ensemble] Repetitions of the K-fold split (--validation repeated).")] = 3,
    test_size: Annotated[float, typer.Option(help="[ensemble] Hold-out fraction per CQA with --validation holdout (0.10-0.15 in seed 003).")] = 0.15,
    splits: Annotated[int, typer.Option(help="[ensemble] Monte Carlo CV splits (ensemble members).")] = 100,
    uncertainty: Annotated[str, typer.Option(help="[ensemble] 'mc' (Monte Carlo CV) or 'bootstrap'.")] = "mc",
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="[ensemble] Search SDV synthetic augmentation (weighted ERM).")] = True,
    generators: Annotated[str, typer.Option(help="[ensemble] Comma-separated: gaussian_copula, ctgan, tvae.")] = "gaussian_copula,ctgan,tvae",
    m: Annotated[str, typer.Option("--m", help="[ensemble] Comma-separated numbers of synthetic rows.")] = "5,10,15,20,25",
    alphas: Annotated[str, typer.Option(help="[ensemble] Comma-separated α grid in [0, 1].")] = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8",
    epochs: Annotated[int, typer.Option(help="[ensemble] CTGAN/TVAE training epochs.")] = 100,
    prune: Annotated[float, typer.Option(help="[ensemble] Stop a fold's α scan once its MSE exceeds this multiple of the "
                                              "real-only MSE and still rises (0 = scan the full grid).")] = 2.0,
    holdout: Annotated[Path | None, typer.Option(help="Hold-out runs (same format) for the report's parity plots.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="[ensemble] Parallel joblib workers.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed: the same DoE and seed give a byte-identical twin folder.")] = 0,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="[ensemble] Run the grid search, augmentation search and Monte Carlo CV on Dask: 'local:N' "
                            "or a scheduler address such as tcp://10.0.0.5:8786 (--jobs is then ignored; "
                            "needs crystalloop[scale]).")] = None,
) -> None:
    """Fit a twin from DOE and save it with its report: the ensemble (model selection, augmentation search,
    MC-CV uncertainty), with --model gp a Gaussian process per CQA on physical profile features, or with
    --model hybrid a kinetic model fitted to D50 under a GP per CQA."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from crystalloop.commands import make_console
    from crystalloop.digital_twin.doe import read_doe
    from crystalloop.digital_twin.gp import solubility_curve
    from crystalloop.digital_twin.models import MIN_ROWS, MODEL_FAMILIES
    from crystalloop.digital_twin.report import fit_and_save
    from crystalloop.errors import ConfigError
    from crystalloop.scale import joblib_backend, parse_scheduler

    if model not in ("ensemble", "gp", "hybrid"):
        raise ConfigError(f"--model must be 'ensemble', 'gp' or 'hybrid', got {model!r}")
    if model == "ensemble" and solubility is not None:
        raise ConfigError("--solubility is used by --model gp or hybrid only (the ensemble learns from the recipe "
                          "vector); add --model gp/hybrid or drop --solubility")
    if features not in ("all", "cv", "auto"):
        raise ConfigError(f"--features must be 'all', 'cv' or 'auto', got {features!r}")
    if model == "hybrid" and features != "all":
        raise ConfigError(f"--features is used by --model gp only (the hybrid twin's GP inputs per CQA are fixed); "
                          f"drop --features {features}")
    curve = solubility_curve(solubility, parameter="--solubility")  # a bad curve fails before the fit
    parse_scheduler(scheduler)  # a bad address fails before anything is read or fitted
    console = make_console()
    table = read_doe(doe)
    if model in ("gp", "hybrid"):
        _fit_gp(console, table, doe, out, cqa=cqa, solubility=curve, features=features, holdout=holdout, seed=seed,
                model=model)
        return
    n_cqa = len(cqa) if cqa else int((table.n_measured() >= MIN_ROWS).sum())
    fams = [f.strip() for f in families.split(",") if f.strip()]
    unknown = [f for f in fams if f not in MODEL_FAMILIES]
    if unknown or not fams:
        raise ConfigError(f"--families: unknown {unknown or families!r}; expected some of {list(MODEL_FAMILIES)}")
    if cv.strip().lower() == "loo":
        cv_value: int | str = "loo"
    else:
        try:
            cv_value = int(cv)
        except ValueError:
            raise ConfigError(f"--cv must be a whole number >= 2 or 'loo', got {cv!r}") from None
    total = n_cqa * (len(fams) + 2)
    with joblib_backend(scheduler), Progress(TextColumn("[bold]twin fit[/] {task.description}"), BarColumn(),
                                             TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                             console=console, transient=True) as bar:
        task = bar.add_task("selecting models", total=total)

        def progress(stage: str, msg: str) -> None:
            bar.update(task, advance=1, description=msg)

        twin, written = fit_and_save(
            table, out, holdout=holdout, progress=progress, cqas=cqa or None, families=fams, grid=grid, cv=cv_value,
            validation=validation, n_repeats=repeats, test_size=test_size, n_splits=splits, uncertainty=uncertainty, augment=augment,
            generators=[g.strip() for g in generators.split(",") if g.strip()],
            n_synthetic=[int(v) for v in _floats(m, "m")], alphas=_floats(alphas, "alphas"),
            epochs=epochs, prune=prune if prune > 0 else None, n_jobs=jobs if scheduler is None else -1,
            random_state=seed)
    t = Table(title=f"Digital twin from {doe.name} ({table.n_runs} runs)", header_style="bold")
    summ = twin.summary()
    cols = ["cqa", "model", "n_rows", "cv_r2", "cv_mae"] + (["n_test", "test_r2", "test_mae"] if validation == "holdout" else [])
    cols += ["augmentation", "coverage_68", "coverage_95"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("cqa", "model", "augmentation") else "right")
    for _, r in summ.iterrows():
        t.add_row(*[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    console.print(t)
    # wall time per stage (per-CQA times are worker seconds, which overlap when the CQAs run in parallel)
    stages = twin.fit_times_["stage_s"]
    console.print("wall time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in stages.items())
                  + f", total {twin.fit_times_['fit_time_s']:.1f} s", highlight=False)
    console.print(f"twin saved in {out}/ (twin.json + models/); report in {out}/report/ "
                  f"({sum(1 for p in written.values() if str(p).endswith('.png'))} PNG plots, model_card.md)", highlight=False)


def _fit_gp(console, table, doe: Path, out: Path, *, cqa, solubility, features: str, holdout, seed: int,
            model: str = "gp") -> None:
    from rich.table import Table

    from crystalloop.commands import print_table
    from crystalloop.digital_twin.report import fit_and_save

    if model == "hybrid":
        with console.status("twin fit: kinetic model + GP per CQA"):
            twin, written = fit_and_save(table, out, holdout=holdout, model="hybrid", cqas=cqa or None,
                                         solubility=solubility, random_state=seed)
    else:
        with console.status(f"twin fit: GP per CQA on physical features ({features})"):
            twin, written = fit_and_save(table, out, holdout=holdout, model="gp", cqas=cqa or None,
                                         solubility=solubility, features=features, random_state=seed)
    name = "Hybrid twin" if model == "hybrid" else "GP twin"
    t = Table(title=f"{name} from {doe.name} ({table.n_runs} runs; leave-one-out scores)", header_style="bold")
    summ = twin.summary()
    cols = ["cqa", "n_rows", "n_features", "cv_r2", "cv_mae", "coverage_68", "coverage_95"]
    for c in cols:
        t.add_column(c, justify="left" if c == "cqa" else "right")
    for _, r in summ.iterrows():
        t.add_row(*["n/a" if r[c] is None else f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    print_table(console, t)
    sol = "with the solubility curve" if solubility is not None else "without a solubility curve (profile features only)"
    km = twin.kinetic_ if model == "hybrid" else None
    if km is not None:
        sol += f"; kinetic model: {len(km.thetas_)} constant sets, log D50 RMSE on the DoE {km.rmse_log_:.3f}"
    console.print(f"fit {twin.fit_times_['fit_time_s']:.1f} s wall, {twin.fit_times_['cpu_s']:.1f} CPU-s; {sol}",
                  highlight=False)
    console.print(f"twin saved in {out}/ (twin.json + models/*.json); report in {out}/report/ "
                  f"({sum(1 for p in written.values() if str(p).endswith('.png'))} PNG plots, model_card.md)",
                  highlight=False)


@twin_app.command("predict")
def predict_command(
    twin_dir: Annotated[Path, typer.Argument(help="Folder of a saved twin (ensemble, GP or hybrid).")],
    profiles: Annotated[Path, typer.Argument(help="Profiles table (feature columns or a 'recipe' column).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="CSV for the predictions (default: print only).")] = None,
) -> None:
    """Predict mean ± std of every CQA for each profile in PROFILES."""
    from rich.table import Table

    from crystalloop.commands import make_console
    from crystalloop.digital_twin.report import predict_profiles

    console = make_console()
    pred = predict_profiles(twin_dir, profiles, out=out)
    cqas = [c[:-5] for c in pred.columns if c.endswith("_mean")]
    t = Table(title=f"{len(pred)} profile(s) from {profiles.name}", header_style="bold")
    t.add_column("run_id")
    for c in cqas:
        t.add_column(c, justify="right")
    for _, r in pred.head(50).iterrows():
        t.add_row(str(r["run_id"]), *[f"{r[c + '_mean']:.2f} ± {r[c + '_std']:.2f}" for c in cqas])
    console.print(t)
    if len(pred) > 50:
        console.print(f"... {len(pred) - 50} more rows", highlight=False)
    if out is not None:
        console.print(f"predictions written to {out}", highlight=False)


@twin_app.command("report")
def report_command(
    twin_dir: Annotated[Path, typer.Argument(help="Folder of a saved twin.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default TWIN_DIR/report).")] = None,
    holdout: Annotated[Path | None, typer.Option(help="Hold-out runs to add to parity plots and the model card.")] = None,
) -> None:
    """Write the twin's parity/α/importance plots and its model card (JSON + Markdown)."""
    from crystalloop.commands import make_console
    from crystalloop.digital_twin.report import report_twin

    console = make_console()
    written = report_twin(twin_dir, out, holdout=holdout)
    for k, p in written.items():
        console.print(f"{k:>22}: {p}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(twin_app, name="twin")
