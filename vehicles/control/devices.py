"""Device I/O for commands: a car's cloud through its OEM adapter, or a charger over OCPP.

Only `vehicles.control.services` calls this module, after the safety gateway allowed the command.
Errors come back as two kinds: `TransientDeviceError` (worth retrying; `ambiguous` when the
device may have acted, so the next attempt reads its state first, I2) and `PermanentDeviceError`
(retrying will not help). No database transaction is held while a device is on the wire.

`carry_out` takes a send task's batch: its vehicle-cloud requests are in flight together, each
on a thread of its own under its own deadline (the threads do network I/O only; the database
stays in the caller's thread), and each command's outcome is its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from vehicles import services as vehicle_services
from vehicles.chargers import rpc
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import ChargingProfile, ProfilePurpose, ProfileState
from vehicles.control.models import Command
from vehicles.models import VehicleLink, VehicleReading
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


@dataclass(frozen=True)
class CloudCall:
    """One request to a car's cloud: the adapter method and its arguments besides the token."""

    command: Command
    method: str
    arguments: dict[str, Any] = field(default_factory=dict)


def oem_timeout_s() -> float:
    return float(settings.CONTROL_OEM_TIMEOUT_SECONDS)


class _InFlight:
    """A network call running on a daemon thread of its own (no ORM in it)."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.started = time.monotonic()
        self._outcome: dict[str, Any] = {}
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(function,), name="device-io", daemon=True).start()

    def _run(self, function: Callable[[], Any]) -> None:
        try:
            self._outcome["value"] = function()
        except BaseException as error:  # re-raised in the waiting thread by result()
            self._outcome["error"] = error
        finally:
            self._done.set()

    def result(self, *, timeout_s: float) -> Any:
        """The call's value, its exception re-raised, or DeadlineExceeded once `timeout_s` has
        passed since it started."""
        left = self.started + timeout_s - time.monotonic()
        if not self._done.wait(max(left, 0.0)):
            raise DeadlineExceeded(f"no answer within {timeout_s:g} s")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


# --- Vehicle clouds ------------------------------------------------------------------------------


def _device_error(error: Exception) -> DeviceError:
    """An adapter's error as the kind the command services act on."""
    translated: DeviceError
    if isinstance(error, TransientOemError):
        cause = error.__cause__  # the SDK's exception carries Smartcar's error type and code
        if getattr(cause, "type", None) == "VEHICLE_STATE":
            translated = DeviceStateConflict(str(error), code=getattr(cause, "code", "") or "")
        else:
            # A cloud that answers 429/503 with Retry-After said "not now": nothing happened. A
            # timeout or a bare 5xx may have reached the car.
            translated = TransientDeviceError(
                str(error) or type(error).__name__,
                retry_after_seconds=error.retry_after_seconds,
                ambiguous=error.retry_after_seconds is None,
            )
    else:
        translated = PermanentDeviceError(f"{type(error).__name__}: {error}")
    translated.__cause__ = error
    return translated


class CloudBatch:
    """Vehicle-cloud requests in flight together, each on its own thread under its own deadline.

    Started on construction; `results()` waits for them. The threads do network I/O only: the
    database (the links' tokens, one refresh per link after a 401, as `vehicles.services.
    call_with_token` does for a single call) stays in the calling thread.
    """

    def __init__(self, calls: list[CloudCall]) -> None:
        self.calls = calls
        self.timeout_s = oem_timeout_s()
        self._results: list[Any] = [None] * len(calls)
        self._tokens: dict[int, str] = {}  # link id → the token the calls use
        runnable = []
        for index, call in enumerate(calls):
            link = call.command.vehicle.link
            if link is None or link.status != VehicleLink.Status.ACTIVE:
                self._results[index] = _device_error(
                    LinkRevokedError("This vehicle is not linked.")
                )
            else:
                self._tokens.setdefault(link.pk, link.access_token)
                runnable.append(index)
        self._flights = self._start(runnable)

    def _start(self, indexes: list[int]) -> list[tuple[int, _InFlight]]:
        return [(index, _start(self.calls[index], self._tokens)) for index in indexes]

    def _collect(self, flights: list[tuple[int, _InFlight]]) -> list[int]:
        """Store the outcomes; returns the calls refused with a 401."""
        refused = []
        for index, flight in flights:
            try:
                self._results[index] = flight.result(timeout_s=self.timeout_s)
            except AuthExpiredError as error:
                refused.append(index)
                self._results[index] = _device_error(error)
            except (TransientOemError, PermanentOemError, LinkRevokedError) as error:
                self._results[index] = _device_error(error)
            except Exception as error:  # unexpected: stays with its command, not the batch
                self._results[index] = error
        return refused

    def results(self) -> list[Any]:
        """Each call's value or the exception it ended with (a DeviceError unless unexpected),
        in order."""
        refused = self._collect(self._flights)
        again: list[int] = []
        for link_id in dict.fromkeys(self.calls[i].command.vehicle.link_id for i in refused):
            mine = [i for i in refused if self.calls[i].command.vehicle.link_id == link_id]
            try:
                self._tokens[link_id] = vehicle_services.refresh_link(
                    link_id=link_id, failed_access_token=self._tokens[link_id]
                )
            except LinkRevokedError as error:
                for index in mine:
                    self._results[index] = _device_error(error)
                continue
            for index in mine:
                self.calls[index].command.vehicle.link.access_token = self._tokens[link_id]
            again += mine
        self._collect(self._start(again))  # a second 401, with a fresh token, stays an error
        return self._results


def call_clouds(calls: list[CloudCall]) -> list[Any]:
    """Run vehicle-cloud requests at once; each one's value or exception, in order."""
    return CloudBatch(calls).results()


def _start(call: CloudCall, tokens: dict[int, str]) -> _InFlight:
    vehicle = call.command.vehicle
    bound = getattr(get_adapter(vehicle.provider), call.method)
    token = tokens[vehicle.link_id]
    return _InFlight(
        lambda: bound(access_token=token, vehicle_id=vehicle.provider_vehicle_id, **call.arguments)
    )


_CLOUD_METHODS = {
    Command.Action.START_CHARGE: "start_charge",
    Command.Action.STOP_CHARGE: "stop_charge",
    Command.Action.SET_CHARGE_LIMIT: "set_charge_limit",
}


def _send_call(command: Command) -> CloudCall:
    method = _CLOUD_METHODS.get(command.action)
    if method is None:
        raise PermanentDeviceError(
            f"A vehicle cloud cannot {command.get_action_display().lower()}; it needs a charger."
        )
    if command.action == Command.Action.SET_CHARGE_LIMIT:
        return CloudCall(command, method, {"limit_pct": command.limit_pct})
    return CloudCall(command, method)


def effect_holds(command: Command, state: Any) -> bool:
    """Does the car's state (a VehicleState just read) show the command's effect?"""
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


# --- A batch of commands -------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one command's turn at its device came to."""

    verified: bool = False  # the device's state was read first (verify_before_send, I2)
    in_place: bool = False  # … and showed the effect already: not sent again
    reference: str = ""  # sent: the provider's reference (may be empty)
    error: Exception | None = None  # a DeviceError, or an unexpected exception


def carry_out(commands: list[Command], *, now: datetime) -> list[Attempt]:
    """Carry out commands the safety gateway allowed; one Attempt each, in order.

    A command whose last attempt may have acted (`verify_before_send`) has its device read
    first and is not sent when the effect is already there (I2). The vehicle-cloud requests of
    the batch are in flight together, each under its own deadline; charger commands go out one
    after another meanwhile (over the channel layer, with their own timeouts). One command's
    failure is its own: it never stops its batch-mates.
    """
    attempts = [Attempt() for _ in commands]
    first: list[tuple[int, CloudCall]] = []
    chargers: list[int] = []
    for index, command in enumerate(commands):
        if command.charger_id is not None:
            chargers.append(index)
            continue
        try:
            call = CloudCall(command, "get_state") if command.verify_before_send else None
            first.append((index, call or _send_call(command)))
        except DeviceError as error:
            attempts[index].error = error
    in_flight = CloudBatch([call for _, call in first])
    for index in chargers:
        command = commands[index]
        # A profile re-send replaces the charger's copy: re-sending is the check.
        attempts[index].verified = command.verify_before_send
        try:
            attempts[index].reference = _send_to_charger(command, now=now)
        except Exception as error:  # kept with its command; the others carry on
            attempts[index].error = error
    then: list[tuple[int, CloudCall]] = []
    for (index, call), result in zip(first, in_flight.results(), strict=True):
        command, attempt = commands[index], attempts[index]
        if isinstance(result, Exception):
            attempt.error = result
        elif call.method != "get_state":
            attempt.reference = ""  # a cloud's command answer carries no reference
        else:
            try:
                vehicle_services.record_reading(
                    vehicle=command.vehicle, state=result, source=VehicleReading.Source.POLL
                )
            except Exception as error:  # the database: kept with its command, nothing sent
                attempt.error = error
                continue
            attempt.verified = True
            attempt.in_place = effect_holds(command, result)
            if not attempt.in_place:
                try:
                    then.append((index, _send_call(command)))
                except DeviceError as error:
                    attempt.error = error
    for (index, _), result in zip(then, call_clouds([c for _, c in then]), strict=True):
        if isinstance(result, Exception):
            attempts[index].error = result
    return attempts
