"""Model folders that cannot run code: skops for scikit-learn, XGBoost's JSON, JSON for the rest.

Gaussian-process kernels (:func:`kernel_to_dict`, :func:`kernel_from_dict`) are written as JSON trees
of the few scikit-learn kernel types the twins use (:data:`KERNEL_TYPES`), with their fitted
hyperparameters; :func:`check_files` and :func:`read_json_file` check a folder's files against the
SHA-256 recorded for them (the GP twin's folder, :mod:`crystalloop.digital_twin.gp`).

An ensemble regressor (:class:`~crystalloop.digital_twin.uncertainty.MonteCarloCVRegressor` or
:class:`~crystalloop.digital_twin.uncertainty.BootstrapRegressor`) is written into one folder:

* ``ensemble.json`` — the ensemble's parameters and fitted state (residual variance, splits,
  out-of-fold predictions), and the SHA-256 of the two files below;
* ``members.skops`` — the list of fitted members (``[features →] StandardScaler → model``
  pipelines) in the skops format; an XGBoost model step is stored as ``"passthrough"`` there;
* ``boosters.json`` — the XGBoost members' boosters in XGBoost's own JSON format (only when
  the members are XGBoost).

Loading accepts only the scikit-learn types skops trusts by default, the explicit list
:data:`TRUSTED_TYPES` and feature transformers defined in ``crystalloop.digital_twin.features``;
anything else (a pickle renamed to ``.skops``, a file whose hash differs from the one recorded,
an unknown type inside a skops file) raises :class:`~crystalloop.errors.UntrustedModelError` naming
the file. Nothing here calls :mod:`pickle` or :mod:`joblib`.

The bytes are reproducible: skops names its array entries after object ids and stamps them with
the current time, so each skops archive is rewritten with entries named by position and a fixed
timestamp; the same fitted ensemble always gives the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from crystalloop.errors import ModelError, UntrustedModelError

from .uncertainty import BootstrapRegressor, MonteCarloCVRegressor

__all__ = ["TRUSTED_TYPES", "save_ensemble", "load_ensemble", "sha256_file", "canonical_skops", "jsonable",
           "kernel_to_dict", "kernel_from_dict", "read_json_file", "check_files"]

#: Types a model file may hold beyond those skops trusts by default (scikit-learn estimators).
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
#: Prefix of the project's own feature transformers, trusted as well.
TRUSTED_PREFIX = "crystalloop.digital_twin.features."

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_KINDS = {"MonteCarloCVRegressor": MonteCarloCVRegressor, "BootstrapRegressor": BootstrapRegressor}


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_skops(obj: Any) -> bytes:
    """``skops.io.dumps(obj)`` with entries and memo ids renumbered by first use and a fixed timestamp
    (reproducible bytes; skops derives both from ``id()``)."""
    import skops.io as sio

    raw = sio.dumps(obj)
    src = zipfile.ZipFile(io.BytesIO(raw))
    schema = json.loads(src.read("schema.json"))
    names: dict[str, str] = {}
    ids: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "file" and isinstance(v, str) and v in src.namelist():
                    names.setdefault(v, f"{len(names):05d}{Path(v).suffix}")
                    out[k] = names[v]
                elif k == "__id__" and isinstance(v, int):  # memo keys: object ids, renumbered by first use
                    out[k] = ids.setdefault(v, len(ids) + 1)
                else:
                    out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    schema = walk(schema)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for old, new in sorted(names.items(), key=lambda kv: kv[1]):
            dst.writestr(zipfile.ZipInfo(new, date_time=_FIXED_TIME), src.read(old))
        dst.writestr(zipfile.ZipInfo("schema.json", date_time=_FIXED_TIME),
                     json.dumps(schema, indent=1, sort_keys=True))
    return buf.getvalue()


def _load_skops(path: Path) -> Any:
    import skops.io as sio

    try:
        data = path.read_bytes()
        untrusted = sio.get_untrusted_types(data=data)
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read: {e.strerror or e}") from None
    except Exception as e:  # not a zip / not a skops archive: a pickle, a truncated file, ...
        raise UntrustedModelError(
            f"model file {path} is not a valid skops archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"it was truncated or replaced - refit the twin"
        ) from None
    bad = [t for t in untrusted if t not in TRUSTED_TYPES and not t.startswith(TRUSTED_PREFIX)]
    if bad:
        raise UntrustedModelError(
            f"model file {path} holds type(s) {bad} outside the trusted list {list(TRUSTED_TYPES)} "
            f"(and scikit-learn's own); refusing to load it"
        )
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as e:
        raise UntrustedModelError(f"model file {path} cannot be loaded by skops ({type(e).__name__}: {e})") from None


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays as plain Python, tuples as lists, keys as str, non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _predictor(member: Any) -> Any:
    """The fitted estimator that predicts for a member (a weighted-ERM wrapper predicts with its ``estimator_``)."""
    while type(member).__name__ == "WeightedERMRegressor" and hasattr(member, "estimator_"):
        member = member.estimator_
    return member


def _is_xgb(step: Any) -> bool:
    return type(step).__name__ == "XGBRegressor"


def save_ensemble(ensemble: Any, directory: str | Path) -> dict[str, str]:
    """Write ``ensemble`` into ``directory`` (see the module docstring); returns ``{file: sha256}``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    kind = type(ensemble).__name__
    if kind not in _KINDS:
        raise ModelError(f"cannot save a {kind}; expected one of {list(_KINDS)}")
    members, boosters = [], []
    for m in ensemble.estimators_:
        p = _predictor(m)
        if isinstance(p, Pipeline) and _is_xgb(p.steps[-1][1]):
            boosters.append(json.loads(bytes(p.steps[-1][1].get_booster().save_raw("json"))))
            members.append(Pipeline([*p.steps[:-1], (p.steps[-1][0], "passthrough")]))  # the fitted steps
        elif _is_xgb(p):
            boosters.append(json.loads(bytes(p.get_booster().save_raw("json"))))
            members.append("passthrough")
        else:
            members.append(p)
    if boosters and len(boosters) != len(members):
        raise ModelError("an ensemble mixing XGBoost and other members cannot be saved")
    files: dict[str, str] = {}
    (d / "members.skops").write_bytes(canonical_skops(members))
    files["members.skops"] = sha256_file(d / "members.skops")
    if boosters:
        (d / "boosters.json").write_text(json.dumps(boosters, separators=(",", ":")), encoding="utf-8")
        files["boosters.json"] = sha256_file(d / "boosters.json")
    params = {k: v for k, v in ensemble.get_params(deep=False).items() if k != "estimator"}
    state = {
        "kind": kind,
        "params": params,
        "n_features_in": int(ensemble.n_features_in_),
        "residual_var": float(ensemble.residual_var_),
        "oof_prediction": ensemble.oof_prediction_,
        "validation_mse": getattr(ensemble, "validation_mse_", None) if kind == "MonteCarloCVRegressor" else None,
        "splits": [[tr, va] for tr, va in ensemble.splits_] if kind == "MonteCarloCVRegressor" else None,
        "samples": list(ensemble.samples_) if kind == "BootstrapRegressor" else None,
        "files": files,
    }
    (d / "ensemble.json").write_text(json.dumps(jsonable(state), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return {"ensemble.json": sha256_file(d / "ensemble.json"), **files}


def load_ensemble(directory: str | Path, *, expected: dict[str, str] | None = None) -> Any:
    """Read an ensemble written by :func:`save_ensemble`.

    Parameters
    ----------
    directory : path
    expected : dict, optional
        ``{file: sha256}`` recorded by the caller (``twin.json``); every file must match.

    Raises
    ------
    ModelError
        A missing or unreadable file, a hash mismatch (names the file).
    UntrustedModelError
        A file that is not what it claims to be (e.g. a pickle) or holds untrusted types.
    """
    from xgboost import XGBRegressor

    d = Path(directory)
    meta = d / "ensemble.json"
    for name in ["ensemble.json", *(expected or {})]:
        p = d / name
        if not p.is_file():
            raise ModelError(f"model file {p} is missing; the twin folder is incomplete - refit the twin")
        if expected is not None and name in expected and sha256_file(p) != expected[name]:
            raise UntrustedModelError(
                f"model file {p} does not match the SHA-256 recorded in twin.json (modified or corrupted); refit the twin")
    try:
        state = json.loads(meta.read_text(encoding="utf-8"))
        kind, files = state["kind"], state["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"model file {meta} is not a valid ensemble description ({type(e).__name__}: {e})") from None
    if kind not in _KINDS:
        raise ModelError(f"model file {meta}: unknown ensemble kind {kind!r}; expected one of {list(_KINDS)}")
    for name, digest in files.items():
        p = d / name
        if name not in ("members.skops", "boosters.json"):
            raise UntrustedModelError(f"model file {meta} lists an unexpected file {name!r}")
        if not p.is_file():
            raise ModelError(f"model file {p} is missing; the twin folder is incomplete - refit the twin")
        if sha256_file(p) != digest:
            raise UntrustedModelError(
                f"model file {p} does not match the SHA-256 recorded in {meta} (modified or corrupted); refit the twin")
    members = _load_skops(d / "members.skops")
    if not isinstance(members, list):
        raise ModelError(f"model file {d / 'members.skops'} holds a {type(members).__name__}, expected a list of members")
    if "boosters.json" in files:
        p = d / "boosters.json"
        try:
            boosters = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"model file {p} is not valid JSON ({type(e).__name__}: {e})") from None
        if not isinstance(boosters, list) or len(boosters) != len(members):
            raise ModelError(f"model file {p} holds {len(boosters) if isinstance(boosters, list) else '?'} boosters "
                             f"for {len(members)} members")
        for i, b in enumerate(boosters):
            reg = XGBRegressor()
            try:
                reg.load_model(bytearray(json.dumps(b).encode("utf-8")))
            except Exception as e:
                raise ModelError(f"model file {p}: booster {i} cannot be loaded by XGBoost ({e})") from None
            if isinstance(members[i], Pipeline):
                members[i].steps[-1] = (members[i].steps[-1][0], reg)
            else:
                members[i] = reg
    try:
        ens = _KINDS[kind](**state["params"])
        ens.estimators_ = members
        ens.n_features_in_ = int(state["n_features_in"])
        ens.residual_var_ = float(state["residual_var"])
        ens.oof_prediction_ = np.array([np.nan if v is None else v for v in state["oof_prediction"]], dtype=float)
        if kind == "MonteCarloCVRegressor":
            ens.validation_mse_ = np.asarray(state["validation_mse"], dtype=float)
            ens.splits_ = [(np.asarray(tr, dtype=int), np.asarray(va, dtype=int)) for tr, va in state["splits"]]
        else:
            ens.samples_ = [np.asarray(s, dtype=int) for s in state["samples"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model file {meta} lacks or garbles the ensemble state ({type(e).__name__}: {e})") from None
    return ens


# ----------------------------------------------------------------------------- GP kernels as JSON
#: scikit-learn kernel types a model folder may describe (nothing else is built on load).
KERNEL_TYPES: tuple[str, ...] = ("Sum", "Product", "ConstantKernel", "Matern", "RBF", "WhiteKernel")


def kernel_to_dict(kernel: Any) -> dict[str, Any]:
    """A scikit-learn kernel (a tree of :data:`KERNEL_TYPES`) as a JSON-able dict with its hyperparameters.

    Floats are kept as Python floats, whose JSON text reads back to the same bits, so
    :func:`kernel_from_dict` rebuilds a kernel that computes the same covariances exactly.
    """
    from sklearn.gaussian_process.kernels import Kernel

    name = type(kernel).__name__
    if name not in KERNEL_TYPES:
        raise ModelError(f"cannot save a {name} kernel; expected a combination of {list(KERNEL_TYPES)}")
    out: dict[str, Any] = {"type": name}
    for key, v in sorted(kernel.get_params(deep=False).items()):
        out[key] = kernel_to_dict(v) if isinstance(v, Kernel) else jsonable(v)
    return out


def kernel_from_dict(d: Any, *, source: str = "kernel") -> Any:
    """Rebuild a kernel written by :func:`kernel_to_dict`; only :data:`KERNEL_TYPES` are built.

    Raises
    ------
    UntrustedModelError
        An unknown kernel type or a malformed entry (``source`` names the file).
    """
    from sklearn.gaussian_process import kernels

    types = {"Sum": kernels.Sum, "Product": kernels.Product, "ConstantKernel": kernels.ConstantKernel,
             "Matern": kernels.Matern, "RBF": kernels.RBF, "WhiteKernel": kernels.WhiteKernel}
    if not isinstance(d, dict) or d.get("type") not in KERNEL_TYPES:
        raise UntrustedModelError(f"{source}: kernel entry {str(d)[:80]!r} is not one of {list(KERNEL_TYPES)}")
    kw: dict[str, Any] = {}
    for key, v in d.items():
        if key == "type":
            continue
        if isinstance(v, dict):
            kw[key] = kernel_from_dict(v, source=source)
        elif key.endswith("_bounds") and isinstance(v, list):
            kw[key] = tuple(v) if not (v and isinstance(v[0], list)) else [tuple(b) for b in v]
        elif isinstance(v, list):
            kw[key] = np.asarray(v, dtype=float)
        else:
            kw[key] = v
    try:
        return types[d["type"]](**kw)
    except (TypeError, ValueError) as e:
        raise UntrustedModelError(f"{source}: {d['type']} kernel cannot be built from {sorted(kw)} ({e})") from None


def check_files(directory: str | Path, files: Any, *, listed_in: str | Path) -> None:
    """Check every ``{relative path: sha256}`` of ``files`` under ``directory``.

    Raises
    ------
    ModelError
        A file is missing (named).
    UntrustedModelError
        A file's SHA-256 differs from the one recorded in ``listed_in`` (modified, truncated or
        replaced), or a listed path leaves the folder.
    """
    d = Path(directory)
    if not isinstance(files, dict):
        raise ModelError(f"{listed_in}: 'files' must map each model file to its SHA-256, got {type(files).__name__}")
    for name, digest in files.items():
        rel = Path(str(name))
        if rel.is_absolute() or ".." in rel.parts:
            raise UntrustedModelError(f"{listed_in} lists the file {name!r} outside the model folder; refusing to read it")
        p = d / rel
        if not p.is_file():
            raise ModelError(f"model file {p} is missing; the twin folder is incomplete - refit the twin")
        if sha256_file(p) != digest:
            raise UntrustedModelError(
                f"model file {p} does not match the SHA-256 recorded in {listed_in} (modified or corrupted); refit the twin")


def read_json_file(path: str | Path) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file raises :class:`ModelError` naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model file {p} is missing; the twin folder is incomplete - refit the twin") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model file {p} is not valid JSON ({type(e).__name__}: {e}); it was truncated or "
                         f"modified - refit the twin") from None
