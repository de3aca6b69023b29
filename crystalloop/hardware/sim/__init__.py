"""The virtual crystallizer: thermostat + jacketed vessel + population balance + sensors.

Run a recipe with :func:`simulate`; open it as devices with ``connect("sim://")``
(:func:`open_sim`); load kinetic sets with :func:`load_kinetics`.
"""

from crystalloop.hardware.sim.batch import SimResult, default_recipe_path, simulate
from crystalloop.hardware.sim.cqa import CQA_NAMES, compute_cqas, psd_frame, volume_percentiles
from crystalloop.hardware.sim.kinetics import KineticParams, available_kinetics, load_kinetics
from crystalloop.hardware.sim.pbm import Grid, PopulationBalance, SimulationError
from crystalloop.hardware.sim.plant import CameraOptics, VirtualCrystallizer
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal, thermal_rhs

__all__ = [
    "simulate", "SimResult", "default_recipe_path", "load_kinetics", "available_kinetics", "KineticParams", "ThermalParams",
    "thermal_rhs", "advance_thermal", "VirtualCrystallizer", "CameraOptics", "PopulationBalance", "Grid",
    "SimulationError", "CQA_NAMES", "compute_cqas", "psd_frame", "volume_percentiles", "open_sim",
]


def __getattr__(name):  # open_sim lives in devices (imports the device protocols lazily)
    if name == "open_sim":
        from crystalloop.hardware.sim.devices import open_sim

        return open_sim
    raise AttributeError(name)
