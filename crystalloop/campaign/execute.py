"""Execute one campaign recipe: the single-batch runner, final probe frames, measurement, lab.

:func:`execute_recipe` opens the backend with the recipe and the run's own batch seed (a
simulated backend charges its vessel from the recipe and draws its batch-to-batch variability
from the seed; hardware ignores both), runs it through :func:`crystalloop.control.run`, grabs
the final frames, measures D50 from them and asks the lab for the offline CQAs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crystalloop._plotting import save_png
from crystalloop.campaign._labels import CampaignWarning
from crystalloop.campaign.lab import LabRequest
from crystalloop.campaign.measure import measure_images
from crystalloop.profiles import ThermocycleProfile

__all__ = ["execute_recipe", "recover_recipe", "finished_run"]


def execute_recipe(profile: ThermocycleProfile, *, label: str, round_: int, backend: str, seed: int, store: Any,
                   lab: Callable[[LabRequest], dict], image_dir: Path, controller: str = "track",
                   n_frames: int = 10, frame_interval_s: float = 5.0, vision_settings: Any = None,
                   min_particles: int = 30, d50_from: str = "image", run_options: dict | None = None,
                   backend_options: dict | None = None, meta: dict | None = None) -> dict[str, Any]:
    """Run one recipe on the backend, grab the final frames, measure, log; return the record.

    The run goes through :func:`~crystalloop.control.run` with an open crystallizer
    (so the final frames come from the same plant); it is stored with ``kind="campaign"``.
    The measured CQAs are logged in the store under the standard names (``D50_um``, ...);
    on a simulated backend (``seed`` is its batch seed) the true CQAs (logged by the runner
    from the backend's ground truth) are kept as ``plant_{cqa}``,
    and the image figures as ``image_D50_um``, ``image_n_particles``.
    """
    from crystalloop.control import RunOptions, run
    from crystalloop.hardware.base import connect

    t0 = time.perf_counter()
    cz = connect(backend, recipe=profile, seed=int(seed), **dict(backend_options or {}))
    frames: list = []
    try:
        # a batch stopped while running is run again on resume: commit in batches (fast on sim://)
        opts = RunOptions(controller=controller, kind="campaign", commit_interval_s=1.0,
                          meta={"campaign_round": int(round_), "campaign_run": label, **(meta or {})})
        res = run(profile, crystallizer=cz, store=store, options=opts, **(run_options or {}))
        run_id = res.run_id
        if res.status == "completed" and cz.camera is not None and n_frames > 0:
            t_end = float(res.timeseries["time_s"].max()) if len(res.timeseries) else 0.0
            c0 = float(cz.clock.now())
            image_dir.mkdir(parents=True, exist_ok=True)
            for i in range(int(n_frames)):
                if i:
                    cz.clock.sleep(float(frame_interval_s))
                fr = cz.camera.grab()
                frames.append(fr)
                path = image_dir / f"final_{i:02d}.png"
                save_png(fr.image, path)
                store.log_image(run_id, t_end + float(cz.clock.now()) - c0, str(path), fr.pixel_size_um,
                                meta={"stage": "final", "frame": i, "campaign_run": label})
    finally:
        cz.close()
    return _measure(profile, frames, label=label, round_=round_, seed=seed, store=store, lab=lab, run_id=run_id,
                    status=res.status, reason=res.reason, plant=dict(res.cqas), image_dir=image_dir,
                    vision_settings=vision_settings, min_particles=min_particles, d50_from=d50_from, t0=t0)


def _measure(profile: ThermocycleProfile, frames: list, *, label: str, round_: int, seed: int, store: Any,
             lab: Callable[[LabRequest], dict], run_id: Any, status: str, reason: str | None,
             plant: dict[str, float], image_dir: Path, vision_settings: Any, min_particles: int, d50_from: str,
             t0: float) -> dict[str, Any]:
    """Measure a finished run from its final frames and the lab; log the CQAs; the history record."""
    rec: dict[str, Any] = {"round": int(round_), "run_id": label, "store_run_id": run_id, "status": status,
                           "seed": int(seed), "batch_time_min": profile.batch_time_min}
    for k, v in plant.items():
        rec[f"plant_{k}"] = float(v)
    measured: dict[str, float] = {}
    if status == "completed":
        img = measure_images(frames, settings=vision_settings, min_particles=min_particles)
        rec.update({k: v for k, v in img.items() if k != "particles"})
        if len(img["particles"]):
            image_dir.mkdir(parents=True, exist_ok=True)
            img["particles"].to_csv(image_dir / "particles.csv", index=False)
        if frames and not np.isfinite(img["D50_image_um"]):
            store.log_event(run_id, 0.0, "warning", f"{img['n_particles']} particles kept in {len(frames)} final "
                                                    f"frames (< {min_particles}): no image-based D50")
        measured = dict(lab(LabRequest(label, run_id, int(round_), profile, status, plant, int(seed))))
        if d50_from == "image":
            measured["D50_um"] = rec["D50_image_um"]
        log = {k: v for k, v in measured.items() if v is not None and np.isfinite(v)}
        log.update({f"plant_{k}": v for k, v in plant.items()})
        log.update({"image_D10_um": rec["D10_image_um"], "image_D50_um": rec["D50_image_um"],
                    "image_D90_um": rec["D90_image_um"], "image_n_particles": float(rec["n_particles"])})
        if plant:  # the runner logged the plant's truth under the standard names: replace by measured
            for k in plant:
                log.setdefault(k, None)
            log["batch_time_min"] = plant.get("batch_time_min", profile.batch_time_min)
        store.log_cqas(run_id, {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in log.items()})
    else:
        rec.update({"D50_image_um": np.nan, "n_particles": 0, "n_frames": 0})
        warnings.warn(f"campaign run {label} ended {status}: {reason}; its CQAs stay unmeasured",
                      CampaignWarning, stacklevel=3)
    for k, v in measured.items():
        rec[k] = float(v) if v is not None else np.nan
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def finished_run(store: Any, label: str, campaign_dir: str | Path) -> int | None:
    """Store id of the completed plant run of campaign run ``label`` in ``campaign_dir``, or None."""
    runs = store.runs(kind="campaign", status="completed")
    ids = [int(r) for r, m in zip(runs["run_id"], runs["meta"], strict=True)
           if isinstance(m, dict) and m.get("campaign_run") == label and m.get("campaign_dir") == str(campaign_dir)]
    return max(ids) if ids else None


def recover_recipe(run_id: int, profile: ThermocycleProfile, *, label: str, round_: int, seed: int, store: Any,
                   lab: Callable[[LabRequest], dict], image_dir: Path, n_frames: int = 10,
                   vision_settings: Any = None, min_particles: int = 30,
                   d50_from: str = "image") -> dict[str, Any] | None:
    """Measure again a campaign run whose batch completed before the campaign was stopped.

    The final frames come back from the store (their PNG files), the ground truth of a
    simulated backend from the CQAs the run logged, the offline CQAs from the lab again. So a
    resumed campaign never repeats a finished batch on the plant.

    Returns
    -------
    dict or None
        The history record, or None when the run lacks its ``n_frames`` final frames (the
        campaign was stopped while grabbing them): the recipe must run again.
    """
    import cv2

    from crystalloop.hardware.base import Frame

    imgs = store.images(run_id)
    final = imgs[[isinstance(m, dict) and m.get("stage") == "final" for m in imgs["meta"]]]
    if len(final) < int(n_frames) or not all(Path(p).is_file() for p in final["path"]):
        return None
    t0 = time.perf_counter()
    frames = []
    for t_s, path, px in zip(final["time_s"], final["path"], final["pixel_size_um"], strict=True):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            return None
        frames.append(Frame(img[..., ::-1] if img.ndim == 3 else img, float(t_s), float(px)))
    cq = store.cqas(run_id)
    logged = {str(n): float(v) for n, v in zip(cq["name"], cq["value"], strict=True) if v is not None}
    plant = {k[len("plant_"):]: v for k, v in logged.items() if k.startswith("plant_")}
    if not plant and not any(k.startswith("image_") for k in logged):  # only the runner's ground truth so far
        plant = {k: v for k, v in logged.items() if np.isfinite(v)}
    return _measure(profile, frames, label=label, round_=round_, seed=seed, store=store, lab=lab, run_id=run_id,
                    status="completed", reason=None, plant=plant, image_dir=image_dir,
                    vision_settings=vision_settings, min_particles=min_particles, d50_from=d50_from, t0=t0)
