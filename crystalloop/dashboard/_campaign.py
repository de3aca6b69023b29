"""What the campaign view shows, assembled from the store and the campaign folder.

A campaign (:func:`crystalloop.campaign.run_campaign`) stores each of its runs with
``kind="campaign"`` and ``campaign_round``/``campaign_run``/``campaign_dir`` in the run's
meta, and its measured CQAs in the store; its folder holds ``campaign.json`` (objectives and
hypervolume reference), ``doe.csv`` (the starting DoE plus the finished rounds),
``history.csv`` (the twin's prediction before each run next to the measurement) and
``round_XX/recipes/`` (the recipes of each round). The store is read live, the folder as it
is on disk, so a round in progress shows its runs as soon as they are measured.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.dashboard._reader import StoreReader

__all__ = ["list_campaigns", "campaign_view"]

_LABEL = re.compile(r"^C(\d+)-(\d+)$")
_PRED = re.compile(r"([A-Za-z0-9_]+)_(mean|std)=([-+0-9.eE]+|nan)")


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _point(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k in ("label", "status"):
            out[k] = v
        elif k in ("round", "run_id"):
            out[k] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else int(v)
        else:
            out[k] = _f(v)
    return out


def list_campaigns(reader: StoreReader) -> list[dict[str, Any]]:
    """Campaigns in the store, one per campaign folder, numbered 1, 2, ... by their first run."""
    groups: dict[str, list[dict]] = {}
    for r in reader.campaign_runs():
        groups.setdefault(str(r["meta"].get("campaign_dir") or ""), []).append(r)
    out = []
    for i, (folder, runs) in enumerate(groups.items(), start=1):
        rounds = [int(r["meta"].get("campaign_round", 0) or 0) for r in runs]
        statuses: dict[str, int] = {}
        for r in runs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        out.append({"campaign_id": i, "folder": folder or None, "n_runs": len(runs), "rounds": max(rounds, default=0),
                    "statuses": statuses, "first_run": runs[0]["run_id"], "last_run": runs[-1]["run_id"],
                    "running": statuses.get("running", 0) > 0})
    return out


def _objectives(meta: dict, values: pd.DataFrame) -> tuple[list[Any], np.ndarray | None, str]:
    """Objectives with directions, the reference point and how the directions were found."""
    from crystalloop.digital_twin.design import Objective

    names = list(meta.get("objectives") or [])
    ref = meta.get("reference")
    ref_arr = np.asarray(ref, dtype=float) if ref is not None and len(ref) == len(names) else None
    objs, how = [], "campaign.json"
    for i, n in enumerate(names):
        if isinstance(n, str) and ":" in n:  # "max:D50_um"
            d, nm = n.split(":", 1)
            objs.append(Objective(nm.strip(), d.strip().lower()))
            continue
        d = (meta.get("directions") or {}).get(n) if isinstance(meta.get("directions"), dict) else None
        if d is None and ref_arr is not None and n in values and values[n].notna().any():
            # run_campaign puts the reference 10 % of the range beyond the worst measured value:
            # below the data for a maximized objective, above it for a minimized one
            d = "max" if ref_arr[i] < float(values[n].median()) else "min"
            how = "reference point (campaign.json has no directions)"
        objs.append(Objective(n, d or "max"))
    return objs, ref_arr, how


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.is_file() else None
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def _points(folder: Path | None, runs: list[dict], objs_names: list[str]) -> tuple[pd.DataFrame, int | None, str]:
    """One row per measured run: label, round (0 = starting DoE), store run id, status, CQAs."""
    rows: list[dict] = []
    note = ""
    doe = _read_csv(folder / "doe.csv") if folder else None
    seen: set[str] = set()
    max_cycles = None
    if doe is not None and "run_id" in doe:
        from crystalloop.campaign import objective_values
        from crystalloop.digital_twin.design import Objective
        from crystalloop.digital_twin.doe import read_doe

        try:
            table = read_doe(folder / "doe.csv")
            frame, max_cycles = table.to_frame(), table.max_cycles
            vals = objective_values(frame, [Objective(n, "max") for n in objs_names], max_cycles)
        except Exception as e:  # noqa: BLE001 - a half-written or edited DoE: shown as a note
            frame, vals = doe, doe.reindex(columns=objs_names)
            note = f"{folder / 'doe.csv'} could not be read as a DoE ({e}); values taken as they are"
        for i in range(len(frame)):
            label = str(frame["run_id"].iloc[i])
            m = _LABEL.match(label)
            rows.append({"label": label, "round": int(m.group(1)) if m else 0, "run_id": None, "status": "measured",
                         **{n: _f(vals[n].iloc[i]) if n in vals else None for n in objs_names}})
            seen.add(label)
    by_label = {str(r["meta"].get("campaign_run")): r for r in runs}
    for row in rows:
        if row["label"] in by_label:
            row["run_id"] = by_label[row["label"]]["run_id"]
            row["status"] = by_label[row["label"]]["status"]
    for r in runs:  # runs of a round in progress: measured in the store, not yet in doe.csv
        label = str(r["meta"].get("campaign_run") or f"run {r['run_id']}")
        if label in seen:
            continue
        rows.append({"label": label, "round": int(r["meta"].get("campaign_round", 0) or 0), "run_id": r["run_id"],
                     "status": r["status"], **{n: r["cqas"].get(n) for n in objs_names}})
    return pd.DataFrame(rows, columns=["label", "round", "run_id", "status", *objs_names]), max_cycles, note


def _next_round(folder: Path | None, runs: list[dict]) -> dict[str, Any] | None:
    """The newest round's plan (``proposal.csv`` and ``recipes/``), each recipe with its prediction and status."""
    if folder is None:
        return None
    dirs = sorted(folder.glob("round_[0-9]*"))
    if not dirs:
        return None
    rdir = dirs[-1]
    m = re.match(r"round_(\d+)$", rdir.name)
    if not m:
        return None
    import yaml

    status = {str(r["meta"].get("campaign_run")): r for r in runs}
    plan = _read_csv(rdir / "proposal.csv")  # the round's plan, written before anything runs
    files = {p.stem: p for p in sorted((rdir / "recipes").glob("*.yaml"))}
    labels = [str(v) for v in plan["run_id"]] if plan is not None and "run_id" in plan else list(files)
    recipes = []
    for i, label in enumerate(labels):
        d: dict = {}
        p = files.get(label)
        if p is not None:
            try:
                loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
                d = loaded if isinstance(loaded, dict) else {}
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                d = {}
        pred: dict[str, dict[str, float | None]] = {}
        if plan is not None and "run_id" in plan:
            for c in [c[: -len("_mean")] for c in plan.columns if c.endswith("_mean")]:
                pred[c] = {"mean": _f(plan[f"{c}_mean"].iloc[i]),
                           "std": _f(plan[f"{c}_std"].iloc[i]) if f"{c}_std" in plan else None}
        else:
            for name, kind, val in _PRED.findall(str(d.get("description") or "")):
                pred.setdefault(name, {})[kind] = _f(val)
        segs = d.get("segments") or []
        text = (f"{d.get('c0_mg_g')} mg/g, seeds {d.get('seed_loading')}, {d.get('t_start_c')} °C → "
                + " → ".join(f"{s.get('target_c')} °C @ {s.get('rate_c_min')} °C/min" for s in segs
                             if isinstance(s, dict))) if d else "recipe file missing"
        run = status.get(label)
        recipes.append({"label": label, "recipe": text, "predicted": pred, "file": str(p) if p else None,
                        "status": run["status"] if run else "pending", "run_id": run["run_id"] if run else None})
    return {"round": int(m.group(1)), "folder": str(rdir), "recipes": recipes,
            "complete": bool(recipes) and all(r["status"] not in ("pending", "running") for r in recipes)}


def campaign_view(reader: StoreReader, campaign_id: int) -> dict[str, Any] | None:
    """Everything the campaign page draws; None if there is no campaign ``campaign_id``.

    Returns a dict with ``folder``, ``objectives`` (name, direction), ``reference``,
    ``points`` (measured runs with round and objective values), ``fronts`` (the measured
    front after each round, sorted by the first objective), ``hypervolume`` (by round, 0 =
    the starting DoE), ``parity`` (predicted ± std vs measured per CQA, from
    ``history.csv``), ``next_round`` and ``notes`` (what could not be read).
    """
    from crystalloop.campaign import measured_front
    from crystalloop.digital_twin.design import hypervolume

    camps = list_campaigns(reader)
    if not 1 <= int(campaign_id) <= len(camps):
        return None
    info = camps[int(campaign_id) - 1]
    runs = [r for r in reader.campaign_runs() if str(r["meta"].get("campaign_dir") or "") == (info["folder"] or "")]
    folder = Path(info["folder"]) if info["folder"] else None
    notes: list[str] = []
    meta: dict[str, Any] = {}
    if folder is not None and (folder / "campaign.json").is_file():
        try:
            meta = json.loads((folder / "campaign.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            notes.append(f"{folder / 'campaign.json'} is unreadable ({e})")
    elif folder is not None:
        notes.append(f"no campaign.json in {folder}: objectives and hypervolume are unknown")
    names = [str(n).split(":", 1)[-1] for n in (meta.get("objectives") or [])]
    points, _, note = _points(folder, runs, names)
    if note:
        notes.append(note)
    objs, ref, how = _objectives(meta, points)
    rounds = sorted(set(points["round"].astype(int))) if len(points) else []
    fronts, hv = [], []
    if len(objs) >= 2 and len(points):
        V = points[[o.name for o in objs]].to_numpy(dtype=float)
        full = np.all(np.isfinite(V), axis=1)
        for r in rounds:
            sel = full & (points["round"].to_numpy(int) <= r)
            mask = np.zeros(len(V), bool)
            mask[np.flatnonzero(sel)] = measured_front(V[sel], objs)
            F = V[mask]
            F = F[np.argsort(F[:, 0], kind="stable")]
            fronts.append({"round": int(r), "x": F[:, 0].tolist(), "y": F[:, 1].tolist()})
            if ref is not None:
                hv.append({"round": int(r), "hypervolume": float(hypervolume(V[sel], objs, ref))})
    parity = []
    hist = _read_csv(folder / "history.csv") if folder else None
    if hist is not None:
        for c in [c[: -len("_pred")] for c in hist.columns if c.endswith("_pred")]:
            if c not in hist:
                continue
            parity.append({"cqa": c, "label": hist["run_id"].astype(str).tolist() if "run_id" in hist else [],
                           "round": hist["round"].astype(int).tolist() if "round" in hist else [],
                           "predicted": [_f(v) for v in hist[f"{c}_pred"]],
                           "std": [_f(v) for v in hist[f"{c}_std"]] if f"{c}_std" in hist else [],
                           "measured": [_f(v) for v in hist[c]]})
    if len(objs) and how != "campaign.json":
        notes.append(f"objective directions inferred from the {how}")
    return {"campaign_id": int(campaign_id), "folder": info["folder"], "n_runs": info["n_runs"],
            "statuses": info["statuses"], "running": info["running"],
            "settings": {k: meta[k] for k in ("backend", "acquisition", "kappa", "batch_size", "seed") if k in meta},
            "objectives": [{"name": o.name, "direction": o.direction} for o in objs],
            "reference": None if ref is None else ref.tolist(),
            "points": [_point(row) for row in points.to_dict("records")],
            "fronts": fronts, "hypervolume": hv, "parity": parity, "next_round": _next_round(folder, runs),
            "notes": notes}
