"""One exception hierarchy for crystalloop.

Every error says what was wrong, what was expected and what was received, with units
and limits, e.g. ``Setpoint 95.0 °C exceeds the upper limit 80.0 °C of thermostat 'julabo'``.

Input problems subclass :class:`ValueError` (or :class:`TypeError`), hardware problems
subclass :class:`OSError`, so callers that already catch the builtin types keep working.
"""

from __future__ import annotations

__all__ = [
    "CrystalloopError",
    "ConfigError",
    "ProfileError",
    "LimitError",
    "BackendError",
    "KineticsError",
    "SchemaError",
    "ImageError",
    "ModelError",
    "OptimizationError",
    "InfeasibleError",
    "DeviceError",
    "DeviceTimeout",
    "ProtocolError",
    "DeviceAlarm",
    "DeviceDisconnected",
    "StoreError",
    "SafetyError",
    "WatchdogError",
]


class CrystalloopError(Exception):
    """Base class of every error raised by crystalloop."""


# --- bad input -------------------------------------------------------------------------------


class ConfigError(CrystalloopError, ValueError):
    """A parameter, file or value given by the user is invalid."""


class ProfileError(ConfigError):
    """A thermocycle profile is infeasible (names the segment and the violated bound)."""


class LimitError(ConfigError):
    """A setpoint, rate or other value lies outside a device or recipe limit."""


class BackendError(ConfigError):
    """A backend URL is unknown or malformed (e.g. ``foo://`` or a missing port)."""


class KineticsError(ConfigError):
    """A kinetic parameter set or file is malformed."""


class SchemaError(ConfigError):
    """A data table (DoE, PSD, particle table) has missing/unknown/non-numeric columns."""


class ImageError(ConfigError):
    """An image is empty, of an unsupported dtype, contains NaN, or mismatches its mask."""


class ModelError(ConfigError):
    """A model cannot be used as asked (not fitted, schema mismatch, unknown label/CQA)."""


class OptimizationError(ConfigError):
    """An optimization problem is ill-posed (unknown objective, lower bound > upper bound)."""


class InfeasibleError(OptimizationError):
    """No feasible solution was found; the message says which constraint binds."""


class SafetyError(LimitError):
    """A command was refused by the software safety layer (value, limit and unit in message)."""


# --- hardware and storage -----------------------------------------------------------------


class DeviceError(CrystalloopError, OSError):
    """A device misbehaved: no reply, garbage, alarm, disconnect."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer within its timeout."""


class ProtocolError(DeviceError):
    """A device replied with bytes that do not parse as the protocol defines."""


class DeviceAlarm(DeviceError):
    """A device reported an alarm or error status (decoded into readable text)."""


class DeviceDisconnected(DeviceError, ConnectionError):
    """A device or its port went away."""


class StoreError(CrystalloopError, OSError):
    """The experiment store cannot be opened or written."""


class WatchdogError(DeviceError):
    """The safety watchdog gave up after repeated failed exchanges and put the plant in its
    safe state (the message names the device, the number of failures and the last error)."""
