"""Measuring what each car delivered in an event, and paying for it through the ledger.

- Baseline (recorded when the event starts, programs.events.activate_event): what the car would
  have drawn in each event slot without the event — its plan in force before the event, or
  charging at full power from plug-in until its ceiling, as the program says.
- Metered: the mean of the car's measured power in each slot (vehicle telemetry or the charger's
  meter values, both arrive as VehicleReadings). A slot without a measurement is flagged and
  counts nothing: missing data is never invented.
- Delivered kW per slot = baseline − metered (less import, or export, helps the grid).
- Settlement (`settle_event`, once per event however many workers try): the incentive rules of
  the terms each owner accepted — per event taken part in, per kWh delivered, annual cap — and
  the opt-out fees beyond the monthly allowance, as one balanced ledger transaction.
Also the enrollment bonus (on activation) and the monthly smart-charging bonus.
"""

from __future__ import annotations

import logging
import math
import zoneinfo
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.notifications import services as notifications
from chargescape.db import update_rows
from programs import ledger
from programs.ledger import Line
from programs.models import (
    ChargingPlan,
    Enrollment,
    EventParticipation,
    GridEvent,
    LedgerEntry,
    LedgerTransaction,
    Program,
)
from vehicles.models import Vehicle, VehicleReading

logger = logging.getLogger(__name__)
SLOT = timedelta(minutes=15)
SLOT_H = 0.25


def event_slots(event: GridEvent) -> list[datetime]:
    count = math.ceil((event.ends_at - event.starts_at) / SLOT)
    return [event.starts_at + index * SLOT for index in range(count)]


# --- Baseline and measurement -------------------------------------------------------------------


def _plan_kw(plan: ChargingPlan, at: datetime) -> float:
    index = int((at - plan.start) / SLOT)
    return float(plan.power_kw[index]) if 0 <= index < len(plan.power_kw) else 0.0


def baselines(
    *, event: GridEvent, vehicle_ids: list[Any], readings: dict[Any, VehicleReading]
) -> dict[Any, list[float]]:
    """kW per event slot each car would have drawn without the event (read before the event's
    plans are stored)."""
    slots = event_slots(event)
    result: dict[Any, list[float]] = {}
    if event.program.baseline == Program.Baseline.PLAN:
        plans = (
            ChargingPlan.objects.filter(vehicle_id__in=vehicle_ids, start__lte=slots[0])
            .order_by("vehicle_id", "-version")
            .distinct("vehicle_id")
            .only("vehicle_id", "start", "power_kw")
        )
        for plan in plans:
            result[plan.vehicle_id] = [_plan_kw(plan, at) for at in slots]
    vehicles = Vehicle.objects.filter(pk__in=[v for v in vehicle_ids if v not in result]).only(
        "pk", "battery_kwh", "max_ac_kw"
    )
    efficiency = settings.PLANNING_DEFAULTS["charge_efficiency"]
    for vehicle in vehicles:  # unmanaged: full power from plug-in until the car is full
        reading = readings.get(vehicle.pk)
        soc = reading.soc_pct if reading and reading.soc_pct is not None else 100.0
        ceiling = (reading.charge_limit_pct if reading else None) or 100
        room_kwh = max(0.0, (ceiling - soc) / 100 * float(vehicle.battery_kwh)) / efficiency
        power = float(vehicle.max_ac_kw)
        line = []
        for _ in slots:
            kw = min(power, room_kwh / SLOT_H)
            room_kwh -= kw * SLOT_H
            line.append(round(kw, 3))
        result[vehicle.pk] = line
    return result


def measure(*, event: GridEvent) -> int:
    """Metered kW per slot and delivered kWh of every participant, from the readings in the
    window (two queries and one bulk update). Returns the participants measured."""
    slots = event_slots(event)
    participations = list(event.participations.all())
    index = {p.vehicle_id: n for n, p in enumerate(participations)}
    sums = np.zeros((len(participations), len(slots)))
    counts = np.zeros((len(participations), len(slots)))
    readings = VehicleReading.objects.filter(
        vehicle_id__in=list(index),
        recorded_at__gte=event.starts_at,
        recorded_at__lt=event.ends_at,
        power_kw__isnull=False,
    ).values_list("vehicle_id", "recorded_at", "power_kw")
    for vehicle_id, recorded_at, power_kw in readings.iterator(chunk_size=5000):
        slot = int((recorded_at - event.starts_at) / SLOT)
        sums[index[vehicle_id], slot] += power_kw
        counts[index[vehicle_id], slot] += 1
    for row, participation in enumerate(participations):
        metered = [
            round(sums[row, s] / counts[row, s], 3) if counts[row, s] else None
            for s in range(len(slots))
        ]
        baseline = participation.baseline_kw or [0.0] * len(slots)
        delivered = sum(
            max(0.0, float(baseline[s]) - kw) * SLOT_H
            for s, kw in enumerate(metered)
            if kw is not None and s < len(baseline)
        )
        participation.metered_kw = metered
        participation.missing_slots = sum(kw is None for kw in metered)
        participation.delivered_kwh = round(delivered, 3)
    update_rows(participations, ["metered_kw", "missing_slots", "delivered_kwh"])
    return len(participations)


# --- Settlement ---------------------------------------------------------------------------------


def _year_earned_cents(owner_ids: list[Any], program: Program, year: int) -> dict[Any, int]:
    """Incentives already credited this calendar year, by owner, for the annual cap."""
    rows = (
        LedgerEntry.objects.filter(
            account__kind=ledger.Kind.OWNER_PAYABLE,
            account__owner_id__in=owner_ids,
            transaction__program=program,
            transaction__created_at__year=year,
            amount_cents__lt=0,
        )
        .values_list("account__owner_id")
        .annotate(total=Sum("amount_cents"))
    )
    return {owner_id: -total for owner_id, total in rows}


def incentive_cents(participation: EventParticipation, rules: dict[str, Any]) -> int:
    """What taking part earned: the per-event reward (unless fully opted out) plus the per-kWh
    reward on the delivered kWh, rounded half up to the cent."""
    if participation.opted_out_at is not None and participation.keep_soc_pct is None:
        return 0
    per_kwh = rules.get("per_kwh_cents", 0) * (participation.delivered_kwh or 0)
    return int(rules.get("per_event_cents", 0) + math.floor(per_kwh + 0.5))


def settle_event(*, event_id: int) -> LedgerTransaction | None:
    """Measure and settle a completed event once: incentives credited to owners (charged to the
    utility), opt-out fees collected up to what an owner holds. Twenty workers at once still
    make one transaction: the event row is locked and the ledger key is unique."""
    with transaction.atomic():
        event = (
            GridEvent.objects.select_for_update()
            .select_related("program__utility")
            .get(pk=event_id)
        )
        key = f"event:{event.pk}:settlement"
        if event.settled_at is not None:
            return LedgerTransaction.objects.filter(key=key).first()
        if event.status != GridEvent.Status.COMPLETED:
            raise ValueError(f"event {event.pk} is {event.status}; only completed events settle")
        measure(event=event)
        program = event.program
        participations = list(
            event.participations.select_related("enrollment__terms", "vehicle__owner")
        )
        owners = {p.vehicle.owner_id: p.vehicle.owner for p in participations}
        year = event.starts_at.year
        earned = _year_earned_cents(list(owners), program, year)
        receivable = ledger.account(ledger.Kind.UTILITY_RECEIVABLE, utility=program.utility)
        fees_account = ledger.account(ledger.Kind.FEES)
        lines: list[Line] = []
        for participation in participations:
            rules = participation.enrollment.terms.incentives
            owner = owners[participation.vehicle.owner_id]
            amount = incentive_cents(participation, rules)
            if cap := rules.get("annual_cap_cents"):
                amount = max(0, min(amount, cap - earned.get(owner.pk, 0)))
            earned[owner.pk] = earned.get(owner.pk, 0) + amount
            payable = ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner)
            detail = {
                "participation": participation.pk,
                "vehicle": str(participation.vehicle_id),
                "delivered_kwh": participation.delivered_kwh,
                "missing_slots": participation.missing_slots,
            }
            if amount:
                lines += [
                    Line(payable, -amount, detail | {"line": "incentive"}),
                    Line(receivable, amount, detail | {"line": "incentive"}),
                ]
            fee = participation.opt_out_fee_cents
            if fee:
                # Never more than the owner holds (this event's reward included): no negative
                # payable balance.
                holds = ledger.payable_cents(owner) + amount
                fee = min(fee, max(0, holds))
                lines += [
                    Line(payable, fee, detail | {"line": "opt_out_fee"}),
                    Line(fees_account, -fee, detail | {"line": "opt_out_fee"}),
                ]
        posted, _ = ledger.post(
            key=key,
            kind=LedgerTransaction.Kind.EVENT_SETTLEMENT,
            memo=f"{program.name} event {event.starts_at:%Y-%m-%d %H:%M} UTC",
            lines=lines,
            program=program,
            event=event,
        )
        notifications.notify_many(
            kind="event_ended",
            key=f"event:{event.pk}:settled",
            shared={"program": program.name},
            recipients=(
                (
                    line.account.owner_id,
                    {
                        "earned_cents": -line.amount_cents,
                        "delivered_kwh": line.detail["delivered_kwh"],
                        "vehicle_id": line.detail["vehicle"],
                    },
                )
                for line in lines
                if line.detail["line"] == "incentive" and line.amount_cents < 0
            ),
        )
        event.settled_at = timezone.now()
        event.save(update_fields=["settled_at", "updated_at"])
        return posted


def _incentive(*, owner: Any, program: Program, cents: int, detail: dict) -> list[Line]:
    """An incentive's two sides: credited to the owner, charged to the program's utility."""
    utility = ledger.account(ledger.Kind.UTILITY_RECEIVABLE, utility=program.utility)
    return [
        Line(ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner), -cents, detail),
        Line(utility, cents, detail),
    ]


def credit_enrollment_bonus(*, enrollment: Enrollment) -> LedgerTransaction | None:
    """The terms' joining bonus, once per enrollment, when it first becomes active."""
    cents = enrollment.terms.incentives.get("enrollment_bonus_cents", 0)
    if not cents:
        return None
    program = enrollment.program
    owner = enrollment.vehicle.owner
    detail = {"enrollment": enrollment.pk, "vehicle": str(enrollment.vehicle_id)}
    posted, _ = ledger.post(
        key=f"enrollment:{enrollment.pk}:bonus",
        kind=LedgerTransaction.Kind.ENROLLMENT_BONUS,
        memo=f"Welcome bonus, {program.name}",
        lines=_incentive(owner=owner, program=program, cents=cents, detail=detail),
        program=program,
    )
    return posted


def offpeak_share(*, vehicle: Vehicle, since: datetime, until: datetime) -> float | None:
    """Share of the car's charging energy in the period that fell in the cheapest price band of
    its owner's tariff; None without any measured charging."""
    from programs.services import schedule_for_owner

    schedule = schedule_for_owner(vehicle.owner)
    cheapest = min([schedule.default_price, *(p.price for p in schedule.periods)])
    readings = list(
        VehicleReading.objects.filter(
            vehicle=vehicle, recorded_at__gte=since, recorded_at__lt=until, power_kw__gt=0
        )
        .order_by("recorded_at")
        .values_list("recorded_at", "power_kw")
    )
    if not readings:
        return None
    zone = vehicle.owner.time_zone
    total = offpeak = 0.0
    for (at, kw), following in zip(readings, [*readings[1:], (None, None)], strict=True):
        hours = min(0.25, ((following[0] or at + SLOT) - at).total_seconds() / 3600)
        energy = kw * hours
        total += energy
        price = schedule.import_prices(start=at, slots=1, time_zone=zone)[0]
        if price <= cheapest + 1e-9:
            offpeak += energy
    return offpeak / total if total else None


def settle_month(*, month: date) -> int:
    """The monthly smart-charging bonus for every enrollment active in `month` whose terms
    offer one and whose off-peak share met the threshold. Idempotent per enrollment and month."""
    posted = 0
    enrollments = Enrollment.objects.filter(status=Enrollment.Status.ACTIVE).select_related(
        "terms", "program__utility", "vehicle__owner"
    )
    for enrollment in enrollments:
        rules = enrollment.terms.incentives
        cents = rules.get("monthly_bonus_cents", 0)
        if not cents:
            continue
        zone = zoneinfo.ZoneInfo(enrollment.vehicle.owner.time_zone)
        since = datetime(month.year, month.month, 1, tzinfo=zone)
        until = (since + timedelta(days=32)).replace(day=1)
        share = offpeak_share(vehicle=enrollment.vehicle, since=since, until=until)
        if share is None or share * 100 < rules.get("monthly_bonus_min_offpeak_pct", 0):
            continue
        owner, program = enrollment.vehicle.owner, enrollment.program
        detail = {"enrollment": enrollment.pk, "offpeak_pct": round(share * 100, 1)}
        _, created = ledger.post(
            key=f"enrollment:{enrollment.pk}:month:{month:%Y-%m}",
            kind=LedgerTransaction.Kind.MONTHLY_BONUS,
            memo=f"Smart charging bonus {month:%B %Y}, {program.name}",
            lines=_incentive(owner=owner, program=program, cents=cents, detail=detail),
            program=program,
        )
        posted += created
    return posted
