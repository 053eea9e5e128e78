"""The closed loop: a command the device accepted is only done when the car's telemetry shows it.

`sent` means a vehicle cloud or charger said yes; cars still ignore commands (asleep, unplugged, a
charge limit of their own). Every minute the `control.check_sent_commands` beat runs
`check_sent_commands`: a `sent` command at least CONTROL_CONFIRM_AFTER_SECONDS old is

- **confirmed** when a reading taken since it was handed to the device shows the effect
  (charging or power > 0 for a start, not charging for a stop, the new limit for a limit);
- otherwise the car is asked for a fresh reading once, and after as long again
- **failed**, with a diagnosis in plain words (vehicles.control.diagnosis) as its reason, and
  sent once more when that could help (the car was asleep, the cloud rate-limited us, or it
  simply did nothing); when it cannot help, or the re-send too shows nothing, the signal
  `command_not_confirmed` tells higher layers (programs may replan on it).

It also records departure warnings (`record_departure_warnings`): an `OwnerAlert` for every car
whose newest plan leaves it short of its target, resolved when the target is reachable again.

Writes only through this module's functions and `vehicles.control.services.create_command`;
the command row is locked (skip locked) so two beats never judge the same command twice.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.notifications import services as notifications
from vehicles import selectors as vehicle_selectors
from vehicles.control import diagnosis, services
from vehicles.control.devices import LIMIT_TOLERANCE_PCT
from vehicles.control.models import Command, CommandEvent, OwnerAlert
from vehicles.models import Vehicle, VehicleReading
from vehicles.signals import command_not_confirmed
from vehicles.tasks import poll_vehicle

ACTOR = "control.confirm"
# Sent commands older than this are history: the plan has moved on many slots since.
LOOKBACK = timedelta(hours=2)
BATCH = 500
RESEND_PREFIX = "resend:"
CONFIRMABLE = (
    Command.Action.START_CHARGE,
    Command.Action.STOP_CHARGE,
    Command.Action.SET_CHARGE_LIMIT,
)
WANTS = {
    Command.Action.START_CHARGE: diagnosis.Want.CHARGE,
    Command.Action.STOP_CHARGE: diagnosis.Want.STOP,
    Command.Action.SET_CHARGE_LIMIT: diagnosis.Want.LIMIT,
}


def confirm_after() -> timedelta:
    return timedelta(seconds=settings.CONTROL_CONFIRM_AFTER_SECONDS)


def _record(command: Command, kind: str, *, at: datetime, detail: str, data: dict) -> None:
    CommandEvent.objects.create(
        command=command, kind=kind, actor=ACTOR, at=at, detail=detail[:300], data=data
    )


def effect_in(
    command: Command, reading: VehicleReading, *, target_soc_pct: int | None = None
) -> str | None:
    """How `reading` shows the command's effect, in words ("the car reports charging at 7.2
    kW"), or None when it does not."""
    facts = diagnosis.reading_facts(reading)
    if command.action == Command.Action.START_CHARGE:
        if facts.charging:
            power = f" at {facts.power_kw:.1f} kW" if (facts.power_kw or 0) > 0 else ""
            return f"the car reports charging{power}"
        limit = facts.charge_limit_pct
        full_enough = limit is None or target_soc_pct is None or limit >= target_soc_pct
        if facts.charging_state == "FULLY_CHARGED" and full_enough:
            return "the car reports it is full"
        return None
    if command.action == Command.Action.STOP_CHARGE:
        if facts.charging:
            return None
        if facts.charging_state or facts.power_kw is not None:
            return "the car reports it is not charging"
        return None  # a reading without charging data says nothing either way
    if command.action == Command.Action.SET_CHARGE_LIMIT:
        limit = facts.charge_limit_pct
        if limit is not None and abs(limit - command.limit_pct) <= LIMIT_TOLERANCE_PCT:
            return f"the car reports a {limit:.0f} % charge limit"
    return None


def check_sent_commands(*, now: datetime | None = None) -> dict[str, int]:
    """Judge every sent command that is due (see the module docstring); counts per outcome.

    A command with a newer one for the same car is left alone: the newer intent is what counts
    now, and it is checked in its turn.
    """
    now = now or timezone.now()
    newer = Command.objects.filter(vehicle=OuterRef("vehicle"), pk__gt=OuterRef("pk")).exclude(
        state__in=[Command.State.REFUSED, Command.State.EXPIRED, Command.State.SUPERSEDED]
    )
    due = (
        Command.objects.filter(
            state=Command.State.SENT,
            action__in=CONFIRMABLE,
            sent_at__lte=now - confirm_after(),
            sent_at__gte=now - LOOKBACK,
        )
        .exclude(Exists(newer))
        .order_by("sent_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    counts: dict[str, int] = {}
    for command_id in list(due):
        outcome = check_command(command_id=command_id, now=now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@transaction.atomic
def check_command(*, command_id: int, now: datetime) -> str:
    """Confirm, wait for data, or fail (and maybe re-send) one sent command; the outcome."""
    command = (
        Command.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("vehicle", "charger")
        .filter(pk=command_id, state=Command.State.SENT)
        .first()
    )
    if command is None or command.sent_at is None:
        return "skipped"  # another beat has it, or it changed since the query
    vehicle = command.vehicle
    outlook = vehicle_selectors.plan_outlook_for(vehicle=vehicle, now=now)
    target = outlook.target_soc_pct if outlook else None
    readings = VehicleReading.objects.filter(
        vehicle=vehicle, recorded_at__gte=_handed_over_at(command), recorded_at__lte=now
    ).order_by("-recorded_at")[:50]
    for reading in readings:
        if shown := effect_in(command, reading, target_soc_pct=target):
            _confirm(command, now=now, summary=shown, reading=reading)
            return "confirmed"

    wait = confirm_after()
    if not command.events.filter(kind="telemetry_requested").exists():
        _request_reading(command, now=now)
        return "waiting"
    if now - command.sent_at < 2 * wait:
        return "waiting"

    found = diagnosis.diagnose(
        diagnosis.facts_for(vehicle=vehicle, now=now, target_soc_pct=target),
        want=WANTS[command.action],
    )
    minutes = round((now - command.sent_at).total_seconds() / 60)
    text = f"No sign of it in the car's data after {minutes} min. {found.explanation}"
    resend = None
    if _worth_resending(command, found, now=now):
        resend, _ = services.create_command(
            vehicle=vehicle,
            action=command.action,
            idempotency_key=f"{RESEND_PREFIX}{command.pk}",
            source=command.source,
            charger=command.charger,
            power_kw=command.power_kw,
            limit_pct=command.limit_pct,
            lease_end=command.lease_end,
            plan_version=command.plan_version,
            slot_start=command.slot_start,
            actor=ACTOR,
        )
        text += " Sending it once more."
    data = {"code": found.code, "diagnosis": found.sentence, "resent_as": resend and resend.pk}
    command.state = Command.State.FAILED
    command.finished_at = now
    command.last_error = text[:300]
    command.save(update_fields=["state", "finished_at", "last_error", "updated_at"])
    _record(command, "unconfirmed", at=now, detail=text, data=data)
    if resend is None:
        notifications.notify(
            owner=vehicle.owner,
            kind="command_failed",
            key=f"command:{command.pk}:failed",
            context={
                "vehicle_id": vehicle.pk,
                "vehicle": vehicle.display_name,
                "diagnosis": found.sentence,
            },
        )
        vehicle_id, code = vehicle.pk, found.code
        transaction.on_commit(
            lambda: command_not_confirmed.send(
                sender=Command, vehicle_id=vehicle_id, command_id=command_id, code=code
            )
        )
        return "failed"
    return "resent"


def _handed_over_at(command: Command) -> datetime:
    """When the successful attempt started talking to the device. A car may act and stamp its
    data while we still wait for its cloud's answer, so readings from then on count."""
    started = (
        command.events.filter(kind="sending", at__lte=command.sent_at)
        .order_by("-at", "-id")
        .values_list("at", flat=True)
        .first()
    )
    return started or command.sent_at


def _worth_resending(command: Command, found: diagnosis.Diagnosis, *, now: datetime) -> bool:
    """Once, when the diagnosis says it could help, and while the command still has a point."""
    if not found.resend_helps or command.idempotency_key.startswith(RESEND_PREFIX):
        return False
    if command.vehicle.link_state != Vehicle.LinkState.LINKED:
        return False
    return command.lease_end is None or command.lease_end > now


def _confirm(command: Command, *, now: datetime, summary: str, reading: VehicleReading) -> None:
    command.state = Command.State.CONFIRMED
    command.finished_at = now
    command.save(update_fields=["state", "finished_at", "updated_at"])
    _record(
        command,
        "confirmed",
        at=now,
        detail=f"Confirmed by telemetry: {summary}.",
        data={"by": "telemetry", "summary": summary, "reading_id": reading.pk},
    )


def _request_reading(command: Command, *, now: datetime) -> None:
    """Ask the car for its state now rather than at the next scheduled poll (minutes away)."""
    _record(
        command,
        "telemetry_requested",
        at=now,
        detail="No confirmation in the car's data yet: asked it for a fresh reading.",
        data={},
    )
    if command.vehicle.link_state == Vehicle.LinkState.LINKED:
        vehicle_id = str(command.vehicle_id)
        transaction.on_commit(lambda: poll_vehicle.delay(vehicle_id))


# --- Departure warnings --------------------------------------------------------------------------


def departure_key(departure_at: datetime) -> str:
    return f"departure:{departure_at.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


@transaction.atomic
def record_departure_warnings(*, now: datetime | None = None) -> dict[str, Any]:
    """One open `OwnerAlert` per car and departure its plan cannot reach; updated while the
    expected SoC moves, resolved once the target is reachable (or the departure has passed)."""
    now = now or timezone.now()
    kind = OwnerAlert.Kind.DEPARTURE_AT_RISK
    open_ids = []
    for vehicle, promise in vehicle_selectors.departure_promises_at_risk(now=now):
        message = promise.message(time_zone=zoneinfo.ZoneInfo(vehicle.owner.time_zone))
        data = {
            "expected_soc_pct": promise.expected_soc_pct,
            "target_soc_pct": promise.target_soc_pct,
            "departure_at": promise.departure_at.isoformat(),
            "plan_version": promise.plan_version,
        }
        alert, created = OwnerAlert.objects.get_or_create(
            vehicle=vehicle,
            kind=kind,
            key=departure_key(promise.departure_at),
            defaults={"message": message, "data": data, "created_at": now, "updated_at": now},
        )
        if not created and (alert.message != message or alert.resolved_at is not None):
            alert.message, alert.data = message, data
            alert.resolved_at, alert.updated_at = None, now
            alert.save(update_fields=["message", "data", "resolved_at", "updated_at"])
        notifications.notify(
            owner=vehicle.owner,
            kind="target_at_risk",
            key=f"alert:{alert.pk}",
            context={
                "vehicle_id": vehicle.pk,
                "vehicle": vehicle.display_name,
                "message": message,
                **data,
            },
        )
        open_ids.append(alert.pk)
    resolved = (
        OwnerAlert.objects.filter(kind=kind, resolved_at__isnull=True)
        .exclude(pk__in=open_ids)
        .update(resolved_at=now, updated_at=now)
    )
    return {"open": len(open_ids), "resolved": resolved}
