"""Software safety layer in front of any :class:`~crystalloop.hardware.base.Thermostat`.

:class:`SafeThermostat` wraps a thermostat driver (real or virtual) and is the only path
by which controllers and the runner touch it:

* **Limits**: every setpoint is checked against the intersection of the device's limits
  and the run's limits (both :class:`~crystalloop.limits.ThermostatLimits`, the run's e.g.
  from the recipe plus a margin). A refused command raises :class:`~crystalloop.errors.SafetyError` naming the value, the
  limit, the unit and the device; nothing is sent.
* **Software ramping**: in ramp mode (the default) a new setpoint becomes a *target* the
  commanded setpoint approaches at no more than ``max_rate_c_min``; call
  :meth:`SafeThermostat.update` (the runner does, every tick) to advance the ramp. In
  step mode a jump faster than the rate limit is refused instead.
* **Watchdog**: every exchange goes through :meth:`SafeThermostat.call`; a
  :class:`~crystalloop.errors.DeviceError` is retried after an exponentially growing
  back-off, and after ``max_failures`` consecutive failures the plant is put in its
  safe state (``"hold"`` the last setpoint the device confirmed, or ``"stop"`` the circulator) and
  :class:`~crystalloop.errors.WatchdogError` is raised with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from crystalloop.errors import (
    ConfigError,
    DeviceAlarm,
    DeviceError,
    LimitError,
    SafetyError,
    WatchdogError,
)
from crystalloop.hardware.base import Reading, Thermostat, ThermostatStatus
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ThermocycleProfile

__all__ = ["Watchdog", "SafeThermostat", "SAFE_STATES"]

SAFE_STATES = ("hold", "stop")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Watchdog:
    """Retry policy for device exchanges.

    Parameters
    ----------
    max_failures : int
        Consecutive failed exchanges after which the plant goes to its safe state.
    backoff_s : float
        Wait after the first failure, in seconds (on the run's clock).
    backoff_factor : float
        Each further wait is this many times longer ...
    max_backoff_s : float
        ... up to this many seconds.
    """

    max_failures: int = 3
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if int(self.max_failures) != self.max_failures or self.max_failures < 1:
            raise ConfigError(f"Watchdog.max_failures must be a whole number >= 1, got {self.max_failures!r}")
        if self.backoff_s < 0 or self.backoff_factor < 1 or self.max_backoff_s < 0:
            raise ConfigError(
                f"Watchdog needs backoff_s >= 0 s, backoff_factor >= 1, max_backoff_s >= 0 s; got "
                f"{self.backoff_s}, {self.backoff_factor}, {self.max_backoff_s}"
            )

    def delay_s(self, failure: int) -> float:
        """Wait after the ``failure``-th consecutive failure (1-based), in seconds."""
        return float(min(self.backoff_s * self.backoff_factor ** (failure - 1), self.max_backoff_s))


EventSink = Callable[[float, str, str], None]


def _safety(check: Callable[..., _T], *args: Any) -> _T:
    """Run a limits check; a refusal becomes :class:`SafetyError` (the safety layer refused it)."""
    try:
        return check(*args)
    except SafetyError:
        raise
    except LimitError as e:
        raise SafetyError(str(e)) from None


class SafeThermostat:
    """Safety front end over a thermostat: limits, software ramping and a watchdog.

    It implements the :class:`~crystalloop.hardware.base.Thermostat` interface itself, so
    anything that drives a thermostat can drive it.

    Parameters
    ----------
    thermostat : Thermostat
        The driver (real or virtual).
    limits : ThermostatLimits, optional
        Run/recipe limits (labelled ``"user"`` when they carry no source); intersected
        with the device's own limits (labelled ``"device"``).
    ramp : bool
        Ramp mode (default): setpoints become targets approached at the rate limit.
        Step mode: a change faster than the rate limit raises :class:`SafetyError`.
    watchdog : Watchdog, optional
        Retry policy; default ``Watchdog()``.
    safe_state : {"hold", "stop"}
        What the plant does when the watchdog trips, the device reports a fault or the run
        is aborted: hold (the last setpoint the device confirmed; if a later command is
        unconfirmed, the setpoint the device reports now, else the current bath
        temperature; never a stale command), or stop the circulator.
    on_event : callable(time_s, level, message), optional
        Receives every retry, refusal and safe-state action (the runner logs them in the
        store).

    Attributes
    ----------
    commanded_c : float or None
        Last setpoint written to the device.
    target_c : float or None
        Where the software ramp is heading.
    confirmed_c : float or None
        Last setpoint the device confirmed (a write the driver verified, or a read).
    pending_c : float or None
        A setpoint sent whose confirmation failed (timeout, lost reply): the device may or
        may not hold it, so the hold safe state never re-sends an older value over it.
    failures : int
        Consecutive failed exchanges so far.
    tripped : str or None
        Reason of the safe-state transition once the watchdog has tripped.
    """

    def __init__(
        self,
        thermostat: Thermostat,
        *,
        limits: ThermostatLimits | None = None,
        ramp: bool = True,
        watchdog: Watchdog | None = None,
        safe_state: str = "hold",
        on_event: EventSink | None = None,
    ) -> None:
        if not isinstance(thermostat, Thermostat):
            raise ConfigError(f"SafeThermostat needs a Thermostat, got {type(thermostat).__name__}")
        if safe_state not in SAFE_STATES:
            raise ConfigError(f"safe_state must be one of {SAFE_STATES}, got {safe_state!r}")
        self.device = thermostat
        self.name = thermostat.name
        self.clock = thermostat.clock
        if limits is not None and not isinstance(limits, ThermostatLimits):
            raise ConfigError(f"SafeThermostat limits must be ThermostatLimits, got {type(limits).__name__}")
        dev = thermostat.limits
        # a unit that reports no limits (and none were given for it) contributes nothing
        says_nothing = not dev.source and not dev.bounded and math.isinf(dev.max_rate_c_min)
        eff = dev if dev.source else dev.with_source("device")
        if limits is not None:
            run_limits = limits if limits.source else limits.with_source("user")
            eff = run_limits if says_nothing else _safety(eff.intersect, run_limits)
        self.limits = eff
        self.ramp = bool(ramp)
        self.watchdog = watchdog or Watchdog()
        self.safe_state = safe_state
        self.on_event = on_event
        self.commanded_c: float | None = None
        self.target_c: float | None = None
        self.ramp_rate_c_min = eff.max_rate_c_min
        self.confirmed_c: float | None = None
        self.pending_c: float | None = None
        self._t_cmd: float | None = None
        self.failures = 0
        self.total_failures = 0
        self.tripped: str | None = None

    # ------------------------------------------------------------------ plumbing
    def _event(self, level: str, message: str) -> None:
        if self.on_event is not None:
            self.on_event(float(self.clock.now()), level, message)

    def call(self, what: str, fn: Callable[..., _T], *args: Any, device: str | None = None) -> _T:
        """Run one exchange ``fn(*args)`` under the watchdog.

        ``device`` names the device in messages (default: this thermostat); the failure
        count is shared by all devices of the plant.

        Raises
        ------
        WatchdogError
            After ``max_failures`` consecutive :class:`DeviceError`; the safe state has
            been applied (as far as the device still answers).
        """
        dev = device or f"thermostat '{self.name}'"
        if self.tripped is not None:
            raise WatchdogError(f"thermostat '{self.name}' is in its safe state ({self.tripped}); "
                                f"refusing {what} on {dev}")
        while True:
            try:
                out = fn(*args)
            except DeviceError as e:
                self.failures += 1
                self.total_failures += 1
                self._event("warning", f"{what} on {dev} failed "
                                       f"({self.failures}/{self.watchdog.max_failures}): {type(e).__name__}: {e}")
                if self.failures >= self.watchdog.max_failures:
                    reason = (f"watchdog: {self.failures} consecutive failed exchanges with {dev}, "
                              f"last during {what}: {type(e).__name__}: {e}")
                    self.enter_safe_state(reason)
                    raise WatchdogError(reason) from e
                self.clock.sleep(self.watchdog.delay_s(self.failures))
            else:
                self.failures = 0
                return out

    def enter_safe_state(self, reason: str) -> str:
        """Apply the configured safe state (best effort, one try) and remember ``reason``.

        Returns a description of what was done."""
        self.tripped = reason
        if self.safe_state == "stop":
            action = "stop the circulator"
            try:
                self.device.stop()
                done = f"safe state: stopped the circulator of '{self.name}'"
            except Exception as e:  # the device may be gone; nothing more we can do
                done = f"safe state: could not {action} of '{self.name}' ({type(e).__name__}: {e})"
        else:
            done = self._hold()
        self._event("error", f"{done}; reason: {reason}")
        return done

    def _hold_value(self) -> tuple[float | None, str]:
        """The setpoint to hold: the last one the device confirmed, or (when a later command's
        confirmation is missing) what the device reports now, or the current bath temperature;
        never a command whose confirmation is missing."""
        if self.pending_c is None:
            if self.confirmed_c is None:
                return None, ""
            return self.confirmed_c, "the last setpoint the device confirmed"
        try:
            sp = float(self.device.get_setpoint())
            if math.isfinite(sp):
                return sp, "the setpoint the device reports now"
        except Exception:  # the device may not answer: fall back to the bath temperature
            pass
        try:
            bath = float(self.device.read_bath().value)
            if math.isfinite(bath):
                return min(max(bath, self.limits.min_c), self.limits.max_c), "the current bath temperature"
        except Exception:
            pass
        return None, (f"the device confirmed neither {self.pending_c:.2f} °C nor its setpoint, and its bath "
                      f"temperature cannot be read")

    def _hold(self) -> str:
        sp, source = self._hold_value()
        if sp is None:
            if not source:
                return f"safe state: holding the device's own setpoint on '{self.name}' (none was written)"
            return f"safe state: nothing sent to '{self.name}' ({source}); the device keeps its own setpoint"
        try:
            self.device.set_setpoint(sp)
        except Exception as e:
            return (f"safe state: could not send the hold setpoint {sp:.2f} °C ({source}) to '{self.name}' "
                    f"({type(e).__name__}: {e}); the device keeps its own setpoint")
        self.commanded_c = self.target_c = self.confirmed_c = sp
        self.pending_c = None
        return f"safe state: holding {sp:.2f} °C ({source}) on '{self.name}'"

    def check_health(self) -> ThermostatStatus:
        """Read the status; on a device fault, go to the safe state and raise.

        Returns
        -------
        ThermostatStatus
            When no alarm is active.

        Raises
        ------
        DeviceAlarm
            The device reports an alarm (low level, sensor fault, error code, ...): the safe
            state has been applied and the message names the alarm.
        WatchdogError
            The status could not be read (see :meth:`call`).
        """
        status = self.status()
        if status.alarms:
            reason = f"device fault on thermostat '{self.name}': {'; '.join(status.alarms)}"
            self.enter_safe_state(reason)
            raise DeviceAlarm(reason)
        return status

    def check_profile(self, profile: ThermocycleProfile) -> None:
        """Refuse a recipe this thermostat cannot follow before anything is sent.

        Raises
        ------
        SafetyError
            Lists every temperature outside the range and every segment faster than the
            ramp limit (the device's ramp capability included).
        """
        _safety(self.limits.check_profile, profile, self.name)

    # ------------------------------------------------------------------ setpoints
    def _init_ramp(self) -> None:
        if self.commanded_c is None:
            current = float(self.call("get_setpoint", self.device.get_setpoint))
            # a device setpoint outside the limits starts the ramp at the nearest limit
            self.commanded_c = min(max(current, self.limits.min_c), self.limits.max_c)
            self.confirmed_c = self.commanded_c if current == self.commanded_c else None
            self._t_cmd = float(self.clock.now())

    def _send(self, value_c: float) -> None:
        value_c = _safety(self.limits.check_setpoint, value_c, self.name)
        self.pending_c = value_c  # sent, not yet confirmed: a failure leaves it pending
        self.call("set_setpoint", self.device.set_setpoint, value_c)
        self.commanded_c = self.confirmed_c = value_c
        self.pending_c = None
        self._t_cmd = float(self.clock.now())

    def set_setpoint(self, value_c: float, *, ramp: bool | None = None) -> float:
        """Command a setpoint in °C; returns the value actually sent now.

        Raises
        ------
        SafetyError
            The value is outside the limits, or (step mode) the change since the last
            command is faster than the ramp limit. Nothing is sent.
        """
        value_c = _safety(self.limits.check_setpoint, value_c, self.name)
        self._init_ramp()
        if ramp if ramp is not None else self.ramp:
            self.target_c = value_c
            self.ramp_rate_c_min = self.limits.max_rate_c_min
            return self.update()
        dt_min = (float(self.clock.now()) - self._t_cmd) / 60.0
        change = abs(value_c - self.commanded_c)
        if change > self.limits.max_rate_c_min * dt_min + 1e-6:
            rate = math.inf if dt_min <= 0 else change / dt_min
            raise SafetyError(
                f"Setpoint change {self.commanded_c:.2f} → {value_c:.2f} °C in {dt_min * 60:.1f} s "
                f"({rate:.3g} °C/min) exceeds the ramp limit {self.limits.max_rate_c_min:.3g} °C/min "
                f"({self.limits.source} limits) of thermostat '{self.name}'"
            )
        self.target_c = value_c
        self._send(value_c)
        return value_c

    def ramp_to(self, target_c: float, rate_c_min: float) -> float:
        """Start a software ramp to ``target_c`` at ``rate_c_min`` (°C/min); returns the value sent now."""
        target_c = _safety(self.limits.check_setpoint, target_c, self.name)
        rate = _safety(self.limits.check_rate, rate_c_min, self.name)
        if rate <= 0:
            raise SafetyError(f"ramp rate must be > 0 °C/min, got {rate_c_min}")
        self._init_ramp()
        self.target_c, self.ramp_rate_c_min = target_c, rate
        return self.update()

    def update(self) -> float:
        """Advance the software ramp to the clock's time; returns the commanded setpoint."""
        self._init_ramp()
        if self.target_c is None:
            return self.commanded_c
        dt_min = max(float(self.clock.now()) - self._t_cmd, 0.0) / 60.0
        step = self.ramp_rate_c_min * dt_min
        new = min(max(self.target_c, self.commanded_c - step), self.commanded_c + step)
        if new != self.commanded_c or self.confirmed_c is None:
            self._send(new)
        else:
            self._t_cmd = float(self.clock.now())
        return self.commanded_c

    @property
    def ramping(self) -> bool:
        """True while the commanded setpoint has not reached the target."""
        return self.target_c is not None and self.commanded_c is not None and abs(self.target_c - self.commanded_c) > 1e-9

    # ------------------------------------------------------------------ pass-through
    def get_setpoint(self) -> float:
        return float(self.call("get_setpoint", self.device.get_setpoint))

    def read_bath(self) -> Reading:
        return self.call("read_bath", self.device.read_bath)

    def read_process(self) -> Reading:
        return self.call("read_process", self.device.read_process)

    def status(self) -> ThermostatStatus:
        return self.call("status", self.device.status)

    def start(self) -> None:
        self.call("start", self.device.start)

    def stop(self) -> None:
        self.call("stop", self.device.stop)

    def close(self) -> None:
        self.device.close()

    def __repr__(self) -> str:
        lim = self.limits
        return (f"SafeThermostat({self.name!r}, limits=[{lim.min_c:g}, {lim.max_c:g}] °C, "
                f"max_rate={lim.max_rate_c_min:g} °C/min, safe_state={self.safe_state!r})")
