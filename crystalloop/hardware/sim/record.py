"""Simulate a recipe and keep everything: store run, samples, images, CQAs and a PNG summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystalloop.hardware.sim.batch import SimResult, simulate
from crystalloop.profiles import ThermocycleProfile

__all__ = ["SimRecord", "simulate_to_store", "default_recipe_path", "STORED_CHANNELS"]

#: Time-series columns written to the store as sample channels.
STORED_CHANNELS = ("T_set_c", "T_jacket_c", "T_reactor_c", "conc_kg_kg", "csat_kg_kg", "supersaturation",
                   "counts", "transmissivity_pct", "DoA_pct", "crystallinity_pct")


@dataclass
class SimRecord:
    """What :func:`simulate_to_store` produced."""

    result: SimResult
    run_id: int | None
    store_path: Path | None
    plot_path: Path | None
    image_paths: list[Path] = field(default_factory=list)


def default_recipe_path() -> Path:
    """The shipped 3-cycle example recipe (``examples/recipes/three_cycle.yaml``, also packaged)."""
    from importlib import resources

    packaged = Path(str(resources.files("crystalloop") / "data" / "recipes" / "three_cycle.yaml"))
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "examples" / "recipes" / "three_cycle.yaml"


def simulate_to_store(
    profile: ThermocycleProfile | str | Path,
    *,
    store: Any = None,
    out_dir: str | Path | None = "out",
    kinetics: str = "default",
    seed: int = 0,
    image_interval_s: float | None = None,
    progress: Callable[[float, float], None] | None = None,
    **simulate_kw: Any,
) -> SimRecord:
    """Run :func:`~crystalloop.hardware.sim.simulate` and record the run.

    Parameters
    ----------
    profile : ThermocycleProfile or path to a recipe file
    store : ExperimentStore, path or None
        Where the run, samples (channels :data:`STORED_CHANNELS`), images and CQAs go; None
        stores nothing.
    out_dir : path or None
        Folder for the PNG summary (``sim_<run>.png``) and the probe images (``images/``);
        None writes no files.
    kinetics, seed, image_interval_s, progress, **simulate_kw
        Passed to :func:`simulate`.

    Returns
    -------
    SimRecord
    """
    from crystalloop.store import ExperimentStore

    if not isinstance(profile, ThermocycleProfile):
        profile = ThermocycleProfile.from_file(profile)
    db = store if (store is None or isinstance(store, ExperimentStore)) else ExperimentStore(store)
    backend = f"sim://?seed={seed}&kinetics={kinetics}"
    run_id = None
    if db is not None:
        run_id = db.start_run(profile, backend=backend, seed=seed, kind="simulation",
                              meta={"kinetics": str(kinetics), "image_interval_s": image_interval_s})
    try:
        res = simulate(profile, kinetics=kinetics, seed=seed, image_interval_s=image_interval_s,
                       progress=progress, **simulate_kw)
    except BaseException as e:
        if db is not None:
            db.finish_run(run_id, "failed" if isinstance(e, Exception) else "interrupted", reason=str(e))
        raise
    out = Path(out_dir) if out_dir is not None else None
    image_paths: list[Path] = []
    if out is not None and res.frames:
        import cv2

        img_dir = out / "images" / (f"run_{run_id}" if run_id is not None else "sim")
        img_dir.mkdir(parents=True, exist_ok=True)
        for fr in res.frames:
            p = img_dir / f"frame_{int(round(fr.time_s)):06d}s.png"
            cv2.imwrite(str(p), fr.image)
            image_paths.append(p)
    if db is not None:
        ts = res.timeseries
        rows = [(float(t), ch, float(v)) for ch in STORED_CHANNELS if ch in ts
                for t, v in zip(ts["time_s"], ts[ch], strict=True)]
        db.log_samples(run_id, rows)
        for fr, p in zip(res.frames, image_paths, strict=False):
            db.log_image(run_id, fr.time_s, p, fr.pixel_size_um, meta={"n_particles": int(len(fr.truth))
                                                                       if fr.truth is not None else 0})
        db.log_cqas(run_id, res.cqas)
        db.log_event(run_id, float(ts["time_s"].iloc[-1]), "info",
                     f"simulated {res.kinetics.name} with seed {seed}: mass-balance error "
                     f"{res.mass_balance_error:.1e}, {res.stats['steps']} steps")
        db.finish_run(run_id, "completed")
    plot_path = None
    if out is not None:
        from crystalloop.hardware.sim.plots import plot_result

        plot_path = plot_result(res, out / (f"sim_{run_id}.png" if run_id is not None else "sim.png"))
    return SimRecord(res, run_id, Path(db.path) if db is not None else None, plot_path, image_paths)
