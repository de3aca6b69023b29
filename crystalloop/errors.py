"""One exception hierarchy for crystalloop.

Every error says what was wrong, what was expected and what was received, with units
and limits, e.g. ``Setpoint 95.0 °C exceeds the upper limit 80.0 °C of thermostat 'julabo'``.

Input problems subclass :class:`ValueError` (or :class:`TypeError`), hardware problems
subclass :class:`OSError`, so callers that already catch the builtin types keep working.

Each error class carries the exit code the command line reports for it (``exit_code``):
:data:`EXIT_INPUT` (2) for usage and input errors -- the user can fix the command or a
file -- and :data:`EXIT_RUNTIME` (1) for runtime and device failures.

Every warning crystalloop issues derives from :class:`CrystalloopWarning`, so
``warnings.simplefilter("ignore", CrystalloopWarning)`` silences all of them and
``"error"`` turns all of them into exceptions (as the test suite does for some checks).
"""

from __future__ import annotations

__all__ = [
    "EXIT_INPUT",
    "EXIT_RUNTIME",
    "exit_code",
    "CrystalloopError",
    "ConfigError",
    "ProfileError",
    "LimitError",
    "BackendError",
    "KineticsError",
    "SchemaError",
    "ImageError",
    "ModelError",
    "InsufficientDataError",
    "UntrustedModelError",
    "OptimizationError",
    "InfeasibleError",
    "SimulationError",
    "DeviceError",
    "DeviceTimeout",
    "ProtocolError",
    "DeviceAlarm",
    "DeviceDisconnected",
    "CommandNotSupported",
    "StoreError",
    "StoreNotFoundError",
    "StoreAccessError",
    "SafetyError",
    "WatchdogError",
    "SchedulerError",
    "CrystalloopWarning",
    "DoEWarning",
    "TwinWarning",
    "DesignWarning",
    "CampaignWarning",
    "CapabilityWarning",
]

#: Exit code of the command line for usage and input errors (a flag, a file, a value).
EXIT_INPUT = 2
#: Exit code of the command line for runtime and device failures.
EXIT_RUNTIME = 1


class CrystalloopError(Exception):
    """Base class of every error raised by crystalloop.

    Attributes
    ----------
    exit_code : int
        Exit status of the ``crystalloop`` command line for this error: :data:`EXIT_INPUT`
        for input errors, :data:`EXIT_RUNTIME` for runtime and device failures.
    """

    exit_code: int = EXIT_RUNTIME


# --- bad input -------------------------------------------------------------------------------


class ConfigError(CrystalloopError, ValueError):
    """A parameter, file or value given by the user is invalid."""

    exit_code = EXIT_INPUT


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


class InsufficientDataError(ModelError):
    """Too few samples or rows to fit or validate a model (the message gives the count needed)."""


class UntrustedModelError(ModelError):
    """A model file was modified, replaced or holds types outside the trusted list; it is not
    loaded (the message names the file)."""


class InfeasibleError(OptimizationError):
    """No feasible solution was found; the message says which constraint binds."""


class SafetyError(LimitError):
    """A command was refused by the software safety layer (value, limit and unit in message)."""


# --- runtime, hardware and storage ------------------------------------------------------------


class SimulationError(CrystalloopError, RuntimeError):
    """The virtual crystallizer's integration could not proceed (e.g. a step cannot be made
    small enough); the message names the time and the quantity that failed."""


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


class CommandNotSupported(DeviceAlarm):
    """The device answered a command with its "unknown command / not available" reply
    (JULABO ``-08``, Huber ``7FFF``, LAUDA ``ERR_3``/``ERR_8``): this model or its
    configuration lacks the function. Drivers mark the capability absent and fall back."""


class StoreError(CrystalloopError, OSError):
    """The experiment store cannot be opened or written."""


class StoreAccessError(StoreError):
    """The store path cannot be used: it is not a crystalloop store, or the file or its folder
    cannot be opened or written (permissions, a read-only file system); an input error."""

    exit_code = EXIT_INPUT


class StoreNotFoundError(StoreError, ConfigError):
    """What must already exist is not there: the store file (opened for reading), or a run
    or model asked for by id or name; an input error."""

    exit_code = EXIT_INPUT


class WatchdogError(DeviceError):
    """The safety watchdog gave up after repeated failed exchanges and put the plant in its
    safe state (the message names the device, the number of failures and the last error)."""


class SchedulerError(CrystalloopError, ConnectionError):
    """The Dask scheduler named by ``--scheduler`` cannot be reached, or was lost while tasks
    were outstanding (the message names the address and how many results had arrived)."""


# --- warnings -------------------------------------------------------------------------------


class CrystalloopWarning(UserWarning):
    """Base class of every warning issued by crystalloop."""


class DoEWarning(CrystalloopWarning):
    """A DoE table is usable but suspicious (replicates, constant columns, sparse CQAs)."""


class TwinWarning(CrystalloopWarning):
    """The twin is asked to predict outside what it was trained on, or was saved with other
    library versions."""


class DesignWarning(CrystalloopWarning):
    """A design instance found no feasible profile while others did (the message names the
    instance and the binding constraint)."""


class CampaignWarning(CrystalloopWarning):
    """Something in a campaign round did not go as planned (too few particles, a failed run,
    a short front)."""


class CapabilityWarning(CrystalloopWarning):
    """A device lacks an optional function (limits, status word, external sensor, ...); the
    driver uses the fallback the message names and the run goes on."""


def exit_code(exc: BaseException) -> int:
    """Exit status of the command line for ``exc``.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    int
        ``exc.exit_code`` for crystalloop errors; for file-system errors about a path the
        user gave (missing, not a directory, permission denied, read-only file system, ...)
        :data:`EXIT_INPUT`; :data:`EXIT_RUNTIME` for anything else.
    """
    import errno

    if isinstance(exc, CrystalloopError):
        return int(exc.exit_code)
    if isinstance(exc, UnicodeDecodeError):  # a text file in another encoding, or a binary file
        return EXIT_INPUT
    if isinstance(exc, OSError) and exc.errno in {
        errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM,
        errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP,
    }:
        return EXIT_INPUT
    return EXIT_RUNTIME
