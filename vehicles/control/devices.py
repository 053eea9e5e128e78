"""Device I/O for commands: a car's cloud through its OEM adapter, or a charger over OCPP.

Only `vehicles.control.services` calls this module, after the safety gateway allowed the command.
Errors come back as two kinds: `TransientDeviceError` (worth retrying; `ambiguous` when the
device may have acted, so the next attempt reads its state first, I2) and `PermanentDeviceError`
(retrying will not help). No database transaction is held while a device is on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from vehicles import services as vehicle_services
from vehicles.chargers import rpc
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import ChargingProfile, ProfilePurpose, ProfileState
from vehicles.control.models import Command
from vehicles.models import VehicleReading
from vehicles.oem import get_adapter
from vehicles.oem.base import (
    AuthExpiredError,
    LinkRevokedError,
    PermanentOemError,
    TransientOemError,
)

# The SDK waits up to 310 s for an answer; a command worker must not. Vehicle clouds answer
# commands in seconds, or relay them to a sleeping car and answer within ~20 s.
# A charge-limit readback within this many points means the limit is in place.
LIMIT_TOLERANCE_PCT = 0.5


class DeviceError(Exception):
    pass


class TransientDeviceError(DeviceError):
    def __init__(
        self, message: str, *, retry_after_seconds: float | None = None, ambiguous: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.ambiguous = ambiguous


class PermanentDeviceError(DeviceError):
    pass


class DeviceStateConflict(TransientDeviceError):
    """The car answered that its state does not allow the command (Smartcar's 409 VEHICLE_STATE:
    NOT_CHARGING, FULLY_CHARGED, CHARGING_PLUG_NOT_CONNECTED…): a definite answer, not a fault."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, ambiguous=False)
        self.code = code


class DeadlineExceeded(TransientOemError):
    """No answer within our own timeout: the request may or may not have reached the device."""


def oem_timeout_s() -> float:
    return float(settings.CONTROL_OEM_TIMEOUT_SECONDS)


def with_deadline[T](function: Callable[[], T], *, timeout_s: float) -> T:
    """Run `function` (network I/O only, no ORM) with a hard deadline.

    The SDK offers no timeout setting, so the call runs in a daemon thread that is abandoned on
    timeout; it finishes or fails on its own later without touching the database.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the caller's thread below
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name="device-io", daemon=True).start()
    if not done.wait(timeout_s):
        raise DeadlineExceeded(f"no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --- Vehicle clouds ------------------------------------------------------------------------------


def _oem(command: Command, method: str, **arguments: Any) -> Any:
    vehicle = command.vehicle
    adapter = get_adapter(vehicle.provider)
    timeout_s = oem_timeout_s()

    def call(token: str) -> Any:
        bound = getattr(adapter, method)
        return with_deadline(
            lambda: bound(access_token=token, vehicle_id=vehicle.provider_vehicle_id, **arguments),
            timeout_s=timeout_s,
        )

    try:
        return vehicle_services.call_with_token(vehicle=vehicle, call=call)
    except TransientOemError as error:
        cause = error.__cause__  # the SDK's exception carries Smartcar's error type and code
        if getattr(cause, "type", None) == "VEHICLE_STATE":
            raise DeviceStateConflict(str(error), code=getattr(cause, "code", "") or "") from error
        # A cloud that answers 429/503 with Retry-After said "not now": nothing happened. A
        # timeout or a bare 5xx may have reached the car.
        raise TransientDeviceError(
            str(error) or type(error).__name__,
            retry_after_seconds=error.retry_after_seconds,
            ambiguous=error.retry_after_seconds is None,
        ) from error
    except (PermanentOemError, LinkRevokedError, AuthExpiredError) as error:
        raise PermanentDeviceError(f"{type(error).__name__}: {error}") from error


def _send_to_cloud(command: Command) -> str:
    if command.action == Command.Action.START_CHARGE:
        _oem(command, "start_charge")
    elif command.action == Command.Action.STOP_CHARGE:
        _oem(command, "stop_charge")
    elif command.action == Command.Action.SET_CHARGE_LIMIT:
        _oem(command, "set_charge_limit", limit_pct=command.limit_pct)
    else:
        raise PermanentDeviceError(
            f"A vehicle cloud cannot {command.get_action_display().lower()}; it needs a charger."
        )
    return ""


def read_cloud_effect(command: Command) -> bool:
    """Read the car's state (stored as a reading) and say whether the command's effect holds."""
    state = _oem(command, "get_state")
    vehicle_services.record_reading(
        vehicle=command.vehicle, state=state, source=VehicleReading.Source.POLL
    )
    charging = state.charging_state == VehicleReading.ChargingState.CHARGING
    if command.action == Command.Action.START_CHARGE:
        return charging
    if command.action == Command.Action.STOP_CHARGE:
        return not charging
    if command.action == Command.Action.SET_CHARGE_LIMIT:
        return (
            state.charge_limit_pct is not None
            and abs(state.charge_limit_pct - command.limit_pct) <= LIMIT_TOLERANCE_PCT
        )
    return False


# --- Chargers (OCPP) -----------------------------------------------------------------------------


def _apply(profile: ChargingProfile) -> str:
    try:
        status = charger_services.apply_profile(profile=profile)
    except rpc.CommandTimeout as error:
        # Re-sending a profile with the same id replaces it in place: a re-send is harmless.
        raise TransientDeviceError(str(error), ambiguous=False) from error
    except rpc.CommandFailed as error:
        raise PermanentDeviceError(f"The charger refused the profile: {error}") from error
    if status != "Accepted":
        raise PermanentDeviceError(f"The charger answered {status or 'nothing'} to the profile.")
    return f"profile:{profile.profile_id}"


def _send_to_charger(command: Command, *, now: datetime) -> str:
    charger = command.charger
    if command.action in (Command.Action.START_CHARGE, Command.Action.CLEAR):
        # Back to the day plan (or full power): drop the dispatch lease.
        profiles = ChargingProfile.objects.filter(charger=charger, purpose=ProfilePurpose.TX)
        for profile in profiles.exclude(state=ProfileState.CLEARED):
            profile = charger_services.clear_profile(profile=profile)
            try:
                charger_services.send_clear(profile=profile)
            except rpc.CommandError as error:
                raise TransientDeviceError(str(error)) from error
        return "cleared"
    if command.action == Command.Action.SET_CHARGE_LIMIT:
        raise PermanentDeviceError("A charger cannot set the car's charge limit.")
    power_kw = 0.0 if command.action == Command.Action.STOP_CHARGE else command.power_kw
    lease = command.lease_end - now if command.lease_end else timedelta(minutes=15)
    try:
        profile = charger_services.dispatch_lease(
            charger=charger, power_kw=power_kw, lease=lease, source=f"command:{command.pk}", now=now
        )
    except charger_services.ChargerError as error:
        raise PermanentDeviceError(str(error)) from error
    return _apply(profile)


def send(command: Command, *, now: datetime) -> str:
    """Carry the command out on its device; returns a provider reference (may be empty)."""
    if command.charger_id is not None:
        return _send_to_charger(command, now=now)
    return _send_to_cloud(command)


def read_effect(command: Command) -> bool:
    """Is the command's effect already in place on the device? (Before a re-send, I2.)"""
    if command.charger_id is not None:
        return False  # a profile re-send replaces the charger's copy: re-sending is the check
    return read_cloud_effect(command)
