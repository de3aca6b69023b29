"""Hardware: device interfaces, serial drivers and the virtual crystallizer (``sim://``)."""

from crystalloop.hardware.base import (
    Camera,
    Capability,
    Clock,
    ConcentrationSensor,
    Crystallizer,
    Frame,
    GroundTruth,
    ParticleCounter,
    Reading,
    RealClock,
    ReportsCapabilities,
    Stirrer,
    Thermostat,
    ThermostatLimits,
    ThermostatStatus,
    TransmissivitySensor,
    VirtualClock,
    connect,
    is_simulated,
    parse_backend_url,
    register_backend,
    registered_backends,
)

__all__ = [
    "Camera", "Capability", "Clock", "ConcentrationSensor", "Crystallizer", "Frame", "GroundTruth",
    "ParticleCounter", "Reading", "RealClock", "ReportsCapabilities", "Stirrer", "Thermostat",
    "ThermostatLimits", "ThermostatStatus", "TransmissivitySensor", "VirtualClock", "connect",
    "is_simulated", "parse_backend_url", "register_backend", "registered_backends",
]

# Serial drivers and transport, imported on first use (``crystalloop.hardware.JulaboThermostat``)
_LAZY = {
    "Transport": "crystalloop.hardware.transport",
    "LineSettings": "crystalloop.hardware.transport",
    "JulaboThermostat": "crystalloop.hardware.julabo",
    "HuberThermostat": "crystalloop.hardware.huber",
    "LaudaThermostat": "crystalloop.hardware.lauda",
    "open_julabo": "crystalloop.hardware.julabo",
    "open_huber": "crystalloop.hardware.huber",
    "open_lauda": "crystalloop.hardware.lauda",
    "probe_line_settings": "crystalloop.hardware.probe",
    "snapshot": "crystalloop.hardware.probe",
    "format_capabilities": "crystalloop.hardware.probe",
    "read_trace": "crystalloop.hardware.trace",
    "replay_trace": "crystalloop.hardware.replay",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crystalloop.hardware' has no attribute {name!r}")
