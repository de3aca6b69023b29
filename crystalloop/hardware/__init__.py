"""Hardware: device interfaces, serial drivers and the virtual crystallizer (``sim://``)."""

from crystalloop.hardware.base import (
    Camera,
    Clock,
    ConcentrationSensor,
    Crystallizer,
    Frame,
    ParticleCounter,
    Reading,
    RealClock,
    Stirrer,
    Thermostat,
    ThermostatLimits,
    ThermostatStatus,
    TransmissivitySensor,
    VirtualClock,
    connect,
    parse_backend_url,
    register_backend,
    registered_backends,
)

__all__ = [
    "Camera", "Clock", "ConcentrationSensor", "Crystallizer", "Frame", "ParticleCounter",
    "Reading", "RealClock", "Stirrer", "Thermostat", "ThermostatLimits", "ThermostatStatus",
    "TransmissivitySensor", "VirtualClock", "connect", "parse_backend_url", "register_backend",
    "registered_backends",
]
