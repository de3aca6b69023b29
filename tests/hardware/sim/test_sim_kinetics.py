"""Kinetic parameter sets: shipped files, loading by name/path, malformed input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from crystalloop.errors import KineticsError
from crystalloop.hardware.sim import available_kinetics, load_kinetics
from crystalloop.hardware.sim.kinetics import KineticParams

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_sets_load_by_name_and_have_sources():
    assert {"default", "pharmapy", "paracetamol-ethanol"} <= set(available_kinetics())
    for name in ("default", "pharmapy", "paracetamol-ethanol"):
        k = load_kinetics(name)
        assert k.name == name
        assert k.sources, f"{name} must cite its sources"
        assert k.path is not None and Path(k.path).is_file()


def test_examples_are_copies_of_the_packaged_files():
    pkg = ROOT / "crystalloop" / "data" / "kinetics"
    for f in pkg.glob("*.yaml"):
        assert (ROOT / "examples" / "kinetics" / f.name).read_text() == f.read_text()


def test_load_by_path_equals_load_by_name():
    by_path = load_kinetics(ROOT / "examples" / "kinetics" / "pharmapy.yaml")
    by_name = load_kinetics("pharmapy")
    assert by_path.primary == by_name.primary and by_path.growth == by_name.growth


def test_pharmapy_values_match_domain_reference():
    k = load_kinetics("pharmapy")
    assert k.basis == "kg/m3"
    assert k.primary.k == 3e8 and k.primary.n == 3
    assert k.secondary.k == 4.46e10 and k.secondary.n == 2 and k.secondary.s == 1e-5
    assert k.growth.k == 5.0 and k.growth.n == 1.32
    assert k.dissolution.k == 1.0 and k.dissolution.n == 1.0
    # c* = 226.9 - 1.88 T + 3.89e-3 T^2 kg/m3
    assert k.solubility(313.15) == pytest.approx(226.9 - 1.88 * 313.15 + 3.89e-3 * 313.15**2)


def test_paracetamol_units_converted_to_seconds():
    k = load_kinetics("paracetamol-ethanol")
    assert k.growth.k == pytest.approx(2.26e8 / 60)
    assert k.growth.driving_force == "absolute"
    # solubility of paracetamol in ethanol at 25 °C is about 0.19 kg/kg
    assert 0.15 < k.solubility(298.15) < 0.25
    # Arrhenius: growth constant at 298 K
    assert k.growth.arrhenius(298.15) == pytest.approx(2.26e8 / 60 * math.exp(-36200 / (8.314462618 * 298.15)))


def test_default_solubility_spans_seed003_design_space():
    k = load_kinetics("default")
    # c0 24.8-55.2 mg/g must saturate inside 0-70 °C
    assert k.solubility(273.15) < 0.0248 and k.solubility(343.15) > 0.0552
    T = np.linspace(273.15, 343.15, 50)
    assert np.all(np.diff([k.solubility(t) for t in T]) > 0)


def _write(tmp_path, d, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def _base() -> dict:
    return yaml.safe_load((ROOT / "crystalloop" / "data" / "kinetics" / "default.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["growth"].update(k_um="fast"), r"growth\.k_um must be a number, got 'fast'"),
        (lambda d: d["growth"].update(n=-1.0), r"growth\.n must be > 0, got -1"),
        (lambda d: d["nucleation"]["secondary"].update(solids="area"), r"nucleation\.secondary\.solids .* got 'area'"),
        (lambda d: d.update(basis="mol/L"), r"basis must be 'kg/kg' or 'kg/m3', got 'mol/L'"),
        (lambda d: d["solubility"].update(coefficients=[]), r"solubility\.coefficients must be a non-empty list"),
        (lambda d: d["solubility"].update(coefficients=[-1.0]), r"solubility gives c\* = -1"),
        (lambda d: d["amorphous"].update(solubility_ratio=0.9), r"amorphous\.solubility_ratio must be > 1"),
        (lambda d: d["grid"].update(n_classes=3.5), r"grid\.n_classes must be a whole number >= 10, got 3\.5"),
        (lambda d: d.update(colour="blue"), r"unknown field\(s\) \['colour'\]"),
        (lambda d: d.pop("solubility"), r"missing field\(s\) \['solubility'\]"),
        (lambda d: d["growth"].update(time_unit="day"), r"growth\.time_unit must be one of"),
        (lambda d: d["variability"].update(growth=-0.1), r"variability\.growth must be >= 0"),
    ],
)
def test_malformed_files_name_file_field_and_value(tmp_path, mutate, match):
    d = _base()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(KineticsError, match=match) as e:
        load_kinetics(p)
    assert str(p) in str(e.value)


def test_unknown_name_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(KineticsError, match=r"Unknown kinetic set 'nosuch'.*'default'"):
        load_kinetics("nosuch")
    with pytest.raises(KineticsError, match=r"kinetics file .*missing\.yaml does not exist"):
        load_kinetics(tmp_path / "missing.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(KineticsError, match=r"kinetics file .*broken\.yaml is not valid YAML"):
        load_kinetics(p)


def test_variability_is_seeded_and_scales_rate_constants():
    k = load_kinetics("default")
    a = k.with_variability(np.random.default_rng(5))
    b = k.with_variability(np.random.default_rng(5))
    c = k.with_variability(np.random.default_rng(6))
    assert a.growth.k == b.growth.k and a.secondary.k == b.secondary.k
    assert a.growth.k != c.growth.k
    assert a.growth.n == k.growth.n  # only rate constants vary
    ratios = [k.with_variability(np.random.default_rng(s)).secondary.k / k.secondary.k for s in range(200)]
    # log-normal with sd 0.15 and mean 1
    assert np.std(np.log(ratios)) == pytest.approx(0.15, rel=0.2)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.04)


def test_from_dict_accepts_mapping_and_callable_solubility():
    from dataclasses import replace

    from crystalloop.hardware.sim.kinetics import Solubility

    k = load_kinetics(_base())
    assert isinstance(k, KineticParams)
    k2 = replace(k, solubility=Solubility(func=lambda T: 0.01 + 1e-4 * (T - 273.15)))
    assert k2.csat(298.15) == pytest.approx(0.0125)


def test_saturation_temperature():
    k = load_kinetics("default")
    T = k.saturation_temperature_c(45.0)
    assert k.solubility(T + 273.15) == pytest.approx(0.045, rel=1e-9)
    assert k.saturation_temperature_c(24.8) < k.saturation_temperature_c(55.2) < 70.0
    with pytest.raises(KineticsError, match=r"does not reach 500 mg/g between -20 and 120 °C"):
        k.saturation_temperature_c(500.0)
    assert load_kinetics("pharmapy").saturation_temperature_c(19.0) == pytest.approx(38.9, abs=0.5)
