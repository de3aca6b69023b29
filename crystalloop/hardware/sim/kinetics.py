"""Kinetic parameter sets for the virtual crystallizer, loaded from YAML data files.

A parameter set describes one compound/solvent system: solubility, PharmaPy-style
power-law kinetics (primary and secondary nucleation, growth, dissolution), optional
agglomeration/breakage and metastable amorphous phase, seeds, the size grid, batch-to-batch
variability and measurement noise. Shipped sets live in ``crystalloop/data/kinetics/``
(``default``, ``pharmapy``, ``paracetamol-ethanol``) and are loaded by bare name or by path::

    >>> from crystalloop.hardware.sim import load_kinetics
    >>> k = load_kinetics("pharmapy")
    >>> round(k.solubility(313.15), 3)   # kg/m³ at 40 °C
    19.643

Every rate has the PharmaPy power-law form (DOMAIN.md §3)::

    rate = k · exp(-E/R · (1/T - 1/T_ref)) · x|x|^(n-1)

with ``T_ref = inf`` (the PharmaPy convention ``k·exp(-E/RT)``) unless ``T_ref_c`` is given,
and ``x`` the driving force: the relative supersaturation ``σ = (c - c*)/c*`` or, with
``driving_force: absolute``, the difference ``c - c*`` in the set's concentration basis.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from crystalloop.errors import KineticsError

__all__ = [
    "R_GAS",
    "PowerLaw",
    "Solubility",
    "Agglomeration",
    "Amorphous",
    "SeedPSD",
    "KineticParams",
    "load_kinetics",
    "available_kinetics",
]

R_GAS = 8.314462618  # J/(mol K)

_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def _num(value: Any, where: str, *, low: float | None = None, strict: bool = False) -> float:
    """Coerce to a finite float or raise KineticsError naming ``where`` and the value."""
    if isinstance(value, bool):
        raise KineticsError(f"{where} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise KineticsError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise KineticsError(f"{where} must be finite, got {value!r}")
    if low is not None and (v <= low if strict else v < low):
        raise KineticsError(f"{where} must be {'>' if strict else '>='} {low:g}, got {v:g}")
    return v


def _check_keys(d: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    if not isinstance(d, Mapping):
        raise KineticsError(f"{where} must be a mapping with fields {list(required + optional)}, got {d!r}")
    missing = [k for k in required if k not in d]
    if missing:
        raise KineticsError(f"{where} is missing field(s) {missing}")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        raise KineticsError(f"{where} has unknown field(s) {unknown}; expected {list(required + optional)}")
    return dict(d)


@dataclass(frozen=True)
class PowerLaw:
    """``k · exp(-E/R (1/T - 1/T_ref)) · x|x|^(n-1) [· solids^s]`` in SI time (per second).

    Attributes
    ----------
    k : float
        Pre-exponential factor, already converted to per-second.
    E_J_mol : float
        Activation energy, J/mol.
    n : float
        Order in the driving force.
    s : float
        Order in the solids measure (secondary nucleation only).
    T_ref_K : float
        Reference temperature (``inf``: PharmaPy's ``k exp(-E/RT)``).
    driving_force : {"relative", "absolute"}
        ``σ = (c - c*)/c*`` or ``c - c*``.
    """

    k: float = 0.0
    E_J_mol: float = 0.0
    n: float = 1.0
    s: float = 0.0
    T_ref_K: float = math.inf
    driving_force: str = "relative"

    def arrhenius(self, T_K: float) -> float:
        if self.E_J_mol == 0.0:
            return self.k
        inv_ref = 0.0 if math.isinf(self.T_ref_K) else 1.0 / self.T_ref_K
        return self.k * math.exp(-self.E_J_mol / R_GAS * (1.0 / T_K - inv_ref))

    @classmethod
    def from_dict(cls, d: Any, where: str, *, k_key: str, allow_s: bool = False) -> PowerLaw:
        opt = ("E_J_mol", "n", "T_ref_c", "time_unit", "driving_force") + (("s",) if allow_s else ())
        d = _check_keys(d, where, (k_key,), opt)
        unit = d.get("time_unit", "s")
        if unit not in _TIME_UNITS:
            raise KineticsError(f"{where}.time_unit must be one of {list(_TIME_UNITS)}, got {unit!r}")
        df = d.get("driving_force", "relative")
        if df not in ("relative", "absolute"):
            raise KineticsError(f"{where}.driving_force must be 'relative' or 'absolute', got {df!r}")
        t_ref = d.get("T_ref_c")
        return cls(
            k=_num(d[k_key], f"{where}.{k_key}") / _TIME_UNITS[unit],
            E_J_mol=_num(d.get("E_J_mol", 0.0), f"{where}.E_J_mol", low=0.0),
            n=_num(d.get("n", 1.0), f"{where}.n", low=0.0, strict=True),
            s=_num(d.get("s", 0.0), f"{where}.s", low=0.0),
            T_ref_K=math.inf if t_ref is None else _num(t_ref, f"{where}.T_ref_c", low=-273.15, strict=True) + 273.15,
            driving_force=df,
        )


@dataclass(frozen=True)
class Solubility:
    """Solubility ``c*(T)`` in the set's concentration basis.

    Either a polynomial ``Σ a_k T^k`` (``T`` in K or °C as ``temperature_unit`` says), or
    any callable ``f(T_K) -> c*`` passed from Python.
    """

    coefficients: tuple[float, ...] = ()
    temperature_unit: str = "K"
    func: Callable[[float], float] | None = None

    def __call__(self, T_K: float) -> float:
        if self.func is not None:
            return float(self.func(T_K))
        T = T_K if self.temperature_unit == "K" else T_K - 273.15
        acc = 0.0
        for a in reversed(self.coefficients):
            acc = acc * T + a
        return acc

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Solubility:
        d = _check_keys(d, where, ("coefficients",), ("temperature_unit", "form"))
        if d.get("form", "polynomial") != "polynomial":
            raise KineticsError(f"{where}.form must be 'polynomial' (use a Python callable otherwise), got {d['form']!r}")
        unit = d.get("temperature_unit", "K")
        if unit not in ("K", "C"):
            raise KineticsError(f"{where}.temperature_unit must be 'K' or 'C', got {unit!r}")
        coefs = d["coefficients"]
        if not isinstance(coefs, (list, tuple)) or not coefs:
            raise KineticsError(f"{where}.coefficients must be a non-empty list [a0, a1, ...], got {coefs!r}")
        return cls(tuple(_num(c, f"{where}.coefficients[{i}]") for i, c in enumerate(coefs)), unit)


@dataclass(frozen=True)
class Agglomeration:
    """Supersaturation-driven agglomeration and undersaturation-driven breakage.

    Collision kernel (size-independent, number-dependent through ``N_i N_j``)::

        β_ij(σ) = beta0_m3_s · σ^n · ψ_ij      for σ > 0, else 0      [m³/s]
        ψ_ij = 1 / (1 + L_i L_j / efficiency_size_um²)

    (collision efficiency falls with size: shear separates large pairs before a bridge
    forms; ``efficiency_size_um = inf`` gives the constant kernel).

    Agglomerate breakage (bridges dissolve when undersaturated)::

        S(σ) = k_break_s · |σ|^n_break   for σ < 0, else 0      [1/s per agglomerate]

    an agglomerate of volume ``v`` releasing two primary particles of volume ``v/2``.

    Agglomerates dissolve ``dissolution_factor`` times faster than compact crystals (their
    porous structure and solid bridges expose more surface per volume), so heating removes
    them preferentially and the released solute regrows the primary crystals.
    """

    beta0_m3_s: float = 0.0
    n: float = 1.0
    k_break_s: float = 0.0
    n_break: float = 1.0
    dissolution_factor: float = 1.0
    efficiency_size_um: float = math.inf

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Agglomeration:
        d = _check_keys(d, where, ("beta0_m3_s",),
                        ("n", "k_break_s", "n_break", "dissolution_factor", "efficiency_size_um"))
        return cls(
            beta0_m3_s=_num(d["beta0_m3_s"], f"{where}.beta0_m3_s", low=0.0),
            n=_num(d.get("n", 1.0), f"{where}.n", low=0.0),
            k_break_s=_num(d.get("k_break_s", 0.0), f"{where}.k_break_s", low=0.0),
            n_break=_num(d.get("n_break", 1.0), f"{where}.n_break", low=0.0),
            dissolution_factor=_num(d.get("dissolution_factor", 1.0), f"{where}.dissolution_factor",
                                    low=1.0),
            efficiency_size_um=_num(d.get("efficiency_size_um", math.inf), f"{where}.efficiency_size_um",
                                    low=0.0, strict=True) if d.get("efficiency_size_um") is not None else math.inf,
        )


@dataclass(frozen=True)
class Amorphous:
    """Metastable amorphous solid (lumped mass, spheres of ``size_um`` for optics/images).

    Solubility ``c*_am = solubility_ratio · c*`` (> c*): it forms only above the threshold
    ``σ > solubility_ratio - 1`` and dissolves below ``c*_am``::

        dM_am/dt = k_form · (c - c*_am) · basis            if c > c*_am   (relaxation, 1/s)
        dM_am/dt = -k_diss(T) · (1 - c/c*_am) · M_am       if c < c*_am   (Arrhenius, 1/s)

    where ``basis`` converts concentration to mass (solvent kg or liquid m³). A large
    activation energy makes amorphous solid persist at low temperature and dissolve
    quickly on heating; the released solute then grows the crystals (solution-mediated
    transformation).
    """

    solubility_ratio: float = 1.3
    k_form_s: float = 0.0
    k_diss_s: float = 0.0
    E_diss_J_mol: float = 0.0
    T_ref_K: float = 298.15
    size_um: float = 8.0

    def k_diss(self, T_K: float) -> float:
        if self.E_diss_J_mol == 0.0:
            return self.k_diss_s
        return self.k_diss_s * math.exp(-self.E_diss_J_mol / R_GAS * (1.0 / T_K - 1.0 / self.T_ref_K))

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Amorphous:
        d = _check_keys(d, where, ("solubility_ratio", "k_form_s", "k_diss_s"),
                        ("E_diss_J_mol", "T_ref_c", "size_um"))
        ratio = _num(d["solubility_ratio"], f"{where}.solubility_ratio")
        if ratio <= 1.0:
            raise KineticsError(f"{where}.solubility_ratio must be > 1 (amorphous is more soluble), got {ratio:g}")
        return cls(
            solubility_ratio=ratio,
            k_form_s=_num(d["k_form_s"], f"{where}.k_form_s", low=0.0),
            k_diss_s=_num(d["k_diss_s"], f"{where}.k_diss_s", low=0.0),
            E_diss_J_mol=_num(d.get("E_diss_J_mol", 0.0), f"{where}.E_diss_J_mol", low=0.0),
            T_ref_K=_num(d.get("T_ref_c", 25.0), f"{where}.T_ref_c", low=-273.15, strict=True) + 273.15,
            size_um=_num(d.get("size_um", 8.0), f"{where}.size_um", low=0.0, strict=True),
        )


@dataclass(frozen=True)
class SeedPSD:
    """Log-normal seed number distribution (median ``d50_um``, log-sd ``sigma_ln``)."""

    d50_um: float = 40.0
    sigma_ln: float = 0.3

    @classmethod
    def from_dict(cls, d: Any, where: str) -> SeedPSD:
        d = _check_keys(d, where, ("d50_um",), ("sigma_ln",))
        return cls(_num(d["d50_um"], f"{where}.d50_um", low=0.0, strict=True),
                   _num(d.get("sigma_ln", 0.3), f"{where}.sigma_ln", low=0.0, strict=True))


_NOISE_DEFAULTS = {
    "temperature_c": 0.02,        # sd of Pt100 readings, °C
    "concentration_rel": 0.005,   # relative sd of the concentration probe
    "transmissivity_pct": 0.2,    # sd of transmissivity, % points
}
_VARIABILITY_KEYS = ("primary", "secondary", "growth", "dissolution", "agglomeration", "amorphous")


@dataclass(frozen=True)
class KineticParams:
    """One compound/solvent system for the virtual crystallizer (see module docstring).

    Dissolution is size-independent unless ``dissolution.size_um`` (``L_d``) is given: then
    ``D(L) = D · (1 + L_d / L)``, the diffusion-controlled enhancement for small particles
    (Sherwood number → 2 as L → 0), so fines vanish first when the suspension is heated.

    Concentrations use ``basis``: ``"kg/kg"`` (kg solute per kg solvent) or ``"kg/m3"`` (kg
    solute per m³ of liquid, volume taken constant). Sizes in µm, growth rates in µm/s,
    nucleation in #/m³/s (or #/kg solvent/s with ``nucleation_per: kg``).
    """

    name: str
    solubility: Solubility
    basis: str = "kg/kg"
    crystal_density_kg_m3: float = 1300.0
    shape_factor: float = 0.5236
    solvent_density_kg_m3: float = 1000.0
    primary: PowerLaw = field(default_factory=PowerLaw)
    secondary: PowerLaw = field(default_factory=PowerLaw)
    secondary_solids: str = "volume_fraction"
    nucleation_per: str = "m3"
    growth: PowerLaw = field(default_factory=PowerLaw)
    growth_gamma_per_um: float = 0.0
    growth_p: float = 0.0
    dissolution_size_um: float = 0.0
    dissolution: PowerLaw = field(default_factory=PowerLaw)
    agglomeration: Agglomeration | None = None
    amorphous: Amorphous | None = None
    seed: SeedPSD = field(default_factory=SeedPSD)
    l_max_um: float = 1000.0
    n_classes: int = 200
    variability: dict = field(default_factory=dict)
    noise: dict = field(default_factory=lambda: dict(_NOISE_DEFAULTS))
    doa_min_size_um: float = 0.0
    description: str = ""
    sources: tuple[str, ...] = ()
    path: str | None = None

    # ------------------------------------------------------------------ helpers
    def csat(self, T_K: float) -> float:
        """Crystalline solubility in the set's basis at ``T_K``."""
        return self.solubility(T_K)

    def saturation_temperature_c(self, c0_mg_g: float, *, low_c: float = -20.0, high_c: float = 120.0) -> float:
        """Temperature (°C) at which ``c0_mg_g`` (mg solute / g solvent) is saturated.

        Recipes should start at or just below it: above it the seeds dissolve. Raises
        :class:`KineticsError` if the solubility does not cross ``c0`` inside ``[low_c, high_c]``.

        Examples
        --------
        >>> round(load_kinetics("default").saturation_temperature_c(45.0), 1)
        49.9
        """
        c = c0_mg_g * 1e-3
        if self.basis == "kg/m3":
            c *= self.solvent_density_kg_m3

        def f(T_c: float) -> float:
            return self.solubility(T_c + 273.15) - c

        lo, hi = low_c, high_c
        flo, fhi = f(lo), f(hi)
        if flo * fhi > 0:
            raise KineticsError(
                f"solubility of '{self.name}' does not reach {c0_mg_g:g} mg/g between {low_c:g} and "
                f"{high_c:g} °C (c* = {flo + c:.4g} .. {fhi + c:.4g} {self.basis})")
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            fm = f(mid)
            if (fm > 0) == (fhi > 0):
                hi, fhi = mid, fm
            else:
                lo, flo = mid, fm
        return 0.5 * (lo + hi)

    def with_variability(self, rng: np.random.Generator) -> KineticParams:
        """A batch's kinetics: each rate constant times a log-normal factor (sd from ``variability``)."""
        changes: dict[str, Any] = {}
        # one draw per key, always in the same order, so the stream is reproducible
        draws = {k: float(rng.standard_normal()) for k in _VARIABILITY_KEYS}
        for key in ("primary", "secondary", "growth", "dissolution"):
            sd = float(self.variability.get(key, 0.0))
            if sd:
                law = getattr(self, key)
                changes[key] = replace(law, k=law.k * math.exp(sd * draws[key] - 0.5 * sd * sd))
        sd = float(self.variability.get("agglomeration", 0.0))
        if sd and self.agglomeration is not None:
            f = math.exp(sd * draws["agglomeration"] - 0.5 * sd * sd)
            changes["agglomeration"] = replace(self.agglomeration, beta0_m3_s=self.agglomeration.beta0_m3_s * f)
        sd = float(self.variability.get("amorphous", 0.0))
        if sd and self.amorphous is not None:
            f = math.exp(sd * draws["amorphous"] - 0.5 * sd * sd)
            changes["amorphous"] = replace(self.amorphous, k_diss_s=self.amorphous.k_diss_s * f)
        return replace(self, **changes) if changes else self

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, d: Any, *, source: str = "kinetics") -> KineticParams:
        """Build from a mapping (the YAML layout); errors name ``source``, the field and the value."""
        top = ("name", "solubility")
        opt = ("description", "sources", "basis", "physical", "nucleation", "growth", "dissolution",
               "agglomeration", "amorphous", "seeds", "grid", "variability", "noise", "doa_min_size_um")
        d = _check_keys(d, source, top, opt)
        basis = d.get("basis", "kg/kg")
        if basis not in ("kg/kg", "kg/m3"):
            raise KineticsError(f"{source}: basis must be 'kg/kg' or 'kg/m3', got {basis!r}")
        kw: dict[str, Any] = {"name": str(d["name"]), "basis": basis,
                              "description": str(d.get("description", "")).strip()}
        src = d.get("sources", [])
        if isinstance(src, str):
            src = [src]
        kw["sources"] = tuple(str(s) for s in src)
        kw["solubility"] = Solubility.from_dict(d["solubility"], f"{source}: solubility")

        phys = _check_keys(d.get("physical", {}), f"{source}: physical", (),
                           ("crystal_density_kg_m3", "shape_factor", "solvent_density_kg_m3"))
        for key in ("crystal_density_kg_m3", "shape_factor", "solvent_density_kg_m3"):
            if key in phys:
                kw[key] = _num(phys[key], f"{source}: physical.{key}", low=0.0, strict=True)

        nuc = _check_keys(d.get("nucleation", {}), f"{source}: nucleation", (),
                          ("primary", "secondary", "per"))
        per = nuc.get("per", "m3")
        if per not in ("m3", "kg"):
            raise KineticsError(f"{source}: nucleation.per must be 'm3' or 'kg' (solvent), got {per!r}")
        kw["nucleation_per"] = per
        if "primary" in nuc:
            kw["primary"] = PowerLaw.from_dict(nuc["primary"], f"{source}: nucleation.primary", k_key="k")
        if "secondary" in nuc:
            sec = dict(nuc["secondary"]) if isinstance(nuc["secondary"], Mapping) else nuc["secondary"]
            solids = sec.pop("solids", "volume_fraction") if isinstance(sec, dict) else "volume_fraction"
            if solids not in ("volume_fraction", "mass_kg_kg", "mass_kg_m3"):
                raise KineticsError(
                    f"{source}: nucleation.secondary.solids must be 'volume_fraction', 'mass_kg_kg' "
                    f"or 'mass_kg_m3', got {solids!r}")
            kw["secondary_solids"] = solids
            kw["secondary"] = PowerLaw.from_dict(sec, f"{source}: nucleation.secondary", k_key="k", allow_s=True)
        if "growth" in d:
            g = dict(d["growth"]) if isinstance(d["growth"], Mapping) else d["growth"]
            if isinstance(g, dict):
                gamma = g.pop("gamma_per_um", 0.0)
                p = g.pop("p", 0.0)
                kw["growth_gamma_per_um"] = _num(gamma, f"{source}: growth.gamma_per_um", low=0.0)
                kw["growth_p"] = _num(p, f"{source}: growth.p", low=0.0)
                if kw["growth_p"] >= 1.0:
                    raise KineticsError(f"{source}: growth.p must be < 1 (ASL size dependence), got {p!r}")
            kw["growth"] = PowerLaw.from_dict(g, f"{source}: growth", k_key="k_um")
        if "dissolution" in d:
            dd = dict(d["dissolution"]) if isinstance(d["dissolution"], Mapping) else d["dissolution"]
            if isinstance(dd, dict):
                kw["dissolution_size_um"] = _num(dd.pop("size_um", 0.0), f"{source}: dissolution.size_um", low=0.0)
            kw["dissolution"] = PowerLaw.from_dict(dd, f"{source}: dissolution", k_key="k_um")
        if d.get("agglomeration") is not None:
            kw["agglomeration"] = Agglomeration.from_dict(d["agglomeration"], f"{source}: agglomeration")
        if d.get("amorphous") is not None:
            kw["amorphous"] = Amorphous.from_dict(d["amorphous"], f"{source}: amorphous")
        if "seeds" in d:
            kw["seed"] = SeedPSD.from_dict(d["seeds"], f"{source}: seeds")
        grid = _check_keys(d.get("grid", {}), f"{source}: grid", (), ("l_max_um", "n_classes"))
        if "l_max_um" in grid:
            kw["l_max_um"] = _num(grid["l_max_um"], f"{source}: grid.l_max_um", low=0.0, strict=True)
        if "n_classes" in grid:
            n = _num(grid["n_classes"], f"{source}: grid.n_classes")
            if n != int(n) or n < 10:
                raise KineticsError(f"{source}: grid.n_classes must be a whole number >= 10, got {grid['n_classes']!r}")
            kw["n_classes"] = int(n)
        var = _check_keys(d.get("variability", {}), f"{source}: variability", (), _VARIABILITY_KEYS)
        kw["variability"] = {k: _num(v, f"{source}: variability.{k}", low=0.0) for k, v in var.items()}
        noise = _check_keys(d.get("noise", {}), f"{source}: noise", (), tuple(_NOISE_DEFAULTS))
        kw["noise"] = {**_NOISE_DEFAULTS,
                       **{k: _num(v, f"{source}: noise.{k}", low=0.0) for k, v in noise.items()}}
        if "doa_min_size_um" in d:
            kw["doa_min_size_um"] = _num(d["doa_min_size_um"], f"{source}: doa_min_size_um", low=0.0)
        out = cls(**kw)
        # solubility must be positive over the working range
        for T_c in (-20.0, 0.0, 25.0, 50.0, 80.0):
            cs = out.csat(T_c + 273.15)
            if not (np.isfinite(cs) and cs > 0):
                raise KineticsError(
                    f"{source}: solubility gives c* = {cs:g} {basis} at {T_c:g} °C; it must be positive "
                    f"over -20..80 °C")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data summary (for run metadata); not a round-trip of the YAML layout."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "solubility":
                v = {"coefficients": list(v.coefficients), "temperature_unit": v.temperature_unit,
                     "callable": v.func is not None}
            elif hasattr(v, "__dataclass_fields__"):
                v = {g.name: getattr(v, g.name) for g in fields(v)}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


def _data_dir() -> Path:
    return Path(str(resources.files("crystalloop") / "data" / "kinetics"))


def available_kinetics() -> list[str]:
    """Names of the kinetic sets shipped with the package."""
    d = _data_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_kinetics(name_or_path: str | Path | KineticParams | Mapping = "default") -> KineticParams:
    """Load a kinetic parameter set by shipped name (``"default"``, ``"pharmapy"``,
    ``"paracetamol-ethanol"``), by path to a YAML file, or from a mapping.

    Raises
    ------
    KineticsError
        Unknown name, missing file, invalid YAML, or a malformed field (the message names the
        file, the field and the value).
    """
    if isinstance(name_or_path, KineticParams):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return KineticParams.from_dict(name_or_path)
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix.lower() in (".yaml", ".yml") or path.exists()):
        shipped = _data_dir() / f"{text}.yaml"
        if not shipped.is_file():
            raise KineticsError(
                f"Unknown kinetic set {text!r}: not a file and not a shipped name; shipped sets are "
                f"{available_kinetics()} (or give a path to a .yaml file)")
        path = shipped
    if not path.is_file():
        raise KineticsError(f"kinetics file {path} does not exist")
    return _load_file(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_file(path_str: str, mtime_ns: int) -> KineticParams:
    """Parse one kinetics file (cached on path and modification time; the result is immutable)."""
    import yaml

    path = Path(path_str)

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise KineticsError(f"kinetics file {path} is not valid YAML: {e}") from None
    out = KineticParams.from_dict(d, source=f"kinetics file {path}")
    return replace(out, path=str(path))
