"""Grid events: create (with the program's rules checked), preview, schedule (owners told),
activate (fleet allocation meets the kW target keeping every departure), complete, cancel, and
owners' opt-outs within their monthly budget.

Called by the manager's admin (programs.admin), the utility API and OpenADR, the beat task
`programs.advance_events` (activation and completion), and the owner's event banner.
Lifecycle: draft → scheduled → active → completed, or cancelled from draft/scheduled/active.
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.notifications import services as notifications
from chargescape.db import update_rows
from programs import audit, selectors, settlement
from programs.models import Enrollment, EventParticipation, Feeder, GridEvent, Program
from programs.scheduling import Event, EventKind
from programs.services import (
    SLOT,
    CarInputs,
    car_inputs,
    slot_start,
    solve,
    store_plans,
)
from programs.tariffs import PriceSchedule, schedule_for
from vehicles import selectors as vehicle_selectors
from vehicles.models import ChargingPreference, Vehicle

logger = logging.getLogger(__name__)
Status = GridEvent.Status
ACTIVE_STATES = (Status.SCHEDULED, Status.ACTIVE, Status.COMPLETED)
SUMMER_MONTHS = range(6, 10)  # June–September; the rest of the year is the winter season


# --- Rules ------------------------------------------------------------------------------------


def _season_bounds(local: datetime) -> tuple[datetime, datetime]:
    """The utility season holding `local`: summer June–September, winter October–May."""
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if local.month in SUMMER_MONTHS:
        return first.replace(month=6), first.replace(month=10)
    year = local.year if local.month >= 10 else local.year - 1
    return first.replace(year=year, month=10), first.replace(year=year + 1, month=6)


def _month_bounds(local: datetime) -> tuple[datetime, datetime]:
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def enrollments_in_scope(
    *, program: Program, feeder: Feeder | None, region: str
) -> QuerySet[Enrollment]:
    """Active enrollments the event reaches: the program, narrowed to a feeder or a region (by the
    owner's service ZIP on that feeder)."""
    enrollments = Enrollment.objects.filter(program=program, status=Enrollment.Status.ACTIVE)
    if feeder is not None:
        return enrollments.filter(vehicle__owner__service_zip__in=feeder.zip_codes)
    if region:
        zips = [
            zip_code
            for codes in Feeder.objects.filter(
                utility_id=program.utility_id, region=region
            ).values_list("zip_codes", flat=True)
            for zip_code in codes
        ]
        return enrollments.filter(vehicle__owner__service_zip__in=zips)
    return enrollments


def check_event(
    *,
    program: Program,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    target_kw: float,
    feeder: Feeder | None = None,
    region: str = "",
    now: datetime | None = None,
    exclude_id: int | None = None,
) -> None:
    """Raise ValidationError with field messages when the event breaks the program's rules."""
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}

    def refuse(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if starts_at <= now:
        refuse("starts_at", "The event must start in the future.")
    if ends_at <= starts_at:
        refuse("ends_at", "The event must end after it starts.")
    minutes = (ends_at - starts_at).total_seconds() / 60
    if minutes > program.max_event_minutes:
        refuse(
            "ends_at",
            f"Longer than the program allows ({program.max_event_minutes} min); "
            f"this one lasts {minutes:.0f} min.",
        )
    zone = zoneinfo.ZoneInfo(program.utility.time_zone)
    if starts_at > now and starts_at - now < timedelta(minutes=program.notice_minutes):
        earliest = (now + timedelta(minutes=program.notice_minutes)).astimezone(zone)
        refuse(
            "starts_at",
            f"Owners must hear of an event {program.notice_minutes} min ahead: start at "
            f"{earliest:%H:%M %Z} or later.",
        )
    if target_kw is None or target_kw <= 0:
        refuse("target_kw", "Give a positive number of kW.")
    if feeder is not None and feeder.utility_id != program.utility_id:
        refuse("feeder", "That feeder belongs to another utility.")
    if feeder is not None and region and feeder.region != region:
        refuse("region", "Give a region or a feeder, not both.")
    if region and not Feeder.objects.filter(utility_id=program.utility_id, region=region).exists():
        refuse("region", "No such region in this utility's territory.")
    if kind == GridEvent.Kind.EXPORT_REQUEST and program.kind != Program.Kind.V2G:
        refuse("kind", "Export requests need a V2G program.")
    local = starts_at.astimezone(zone)
    others = GridEvent.objects.filter(program=program, status__in=ACTIVE_STATES)
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    month = _month_bounds(local)
    if others.filter(starts_at__gte=month[0], starts_at__lt=month[1]).count() >= (
        program.max_events_per_month
    ):
        refuse("starts_at", f"This month already has its {program.max_events_per_month} event(s).")
    season = _season_bounds(local)
    if others.filter(starts_at__gte=season[0], starts_at__lt=season[1]).count() >= (
        program.max_events_per_season
    ):
        refuse(
            "starts_at", f"This season already has its {program.max_events_per_season} event(s)."
        )
    if target_kw and target_kw > 0 and not errors.get("feeder") and not errors.get("region"):
        enrolled_kw = flexible_kw(
            enrollments_in_scope(program=program, feeder=feeder, region=region), kind=kind
        )
        if kind == GridEvent.Kind.EXPORT_REQUEST and target_kw > enrolled_kw:
            refuse(
                "target_kw",
                f"More than enrolled: the V2G cars in scope can export at most "
                f"{enrolled_kw:,.0f} kW.",
            )
        if enrolled_kw == 0:
            refuse("target_kw", "No enrolled car in scope can respond to this event.")
    if errors:
        raise ValidationError(errors)


def flexible_kw(enrollments: QuerySet[Enrollment], *, kind: str) -> float:
    """The most kW the enrolled cars could shed (import cap) or export (export request)."""
    vehicles = Vehicle.objects.filter(
        pk__in=enrollments.values("vehicle_id"), link_state=Vehicle.LinkState.LINKED
    )
    if kind == GridEvent.Kind.EXPORT_REQUEST:
        vehicles = vehicles.filter(v2g_capable=True, preference__v2g_consent=True)
    return float(sum(vehicles.values_list("max_ac_kw", flat=True)))


# --- Lifecycle ---------------------------------------------------------------------------------


@transaction.atomic
def create_event(
    *,
    program: Program,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    target_kw: float,
    actor: Any,
    feeder: Feeder | None = None,
    region: str = "",
    source: str = "admin",
    external_id: str = "",
) -> GridEvent:
    """A draft event, checked against the program's rules (ValidationError when it breaks one)."""
    check_event(
        program=program,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        target_kw=target_kw,
        feeder=feeder,
        region=region,
    )
    event = GridEvent.objects.create(
        program=program,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        target_kw=target_kw,
        feeder=feeder,
        region=region,
        source=source,
        external_id=external_id,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(
        utility=program.utility_id, actor=actor, action="event.create", target=event, source=source
    )
    return event


def _notice(event: GridEvent) -> dict[str, Any]:
    """What every owner's notice of this event says (programs → accounts notifications)."""
    return {
        "program": event.program.name,
        "export": event.kind == GridEvent.Kind.EXPORT_REQUEST,
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
    }


def _scope(event: GridEvent) -> QuerySet[Enrollment]:
    """The enrollments an event reaches (export requests: V2G cars whose owners consent)."""
    enrollments = enrollments_in_scope(
        program=event.program, feeder=event.feeder, region=event.region
    )
    if event.kind == GridEvent.Kind.EXPORT_REQUEST:
        enrollments = enrollments.filter(
            vehicle__v2g_capable=True, vehicle__preference__v2g_consent=True
        )
    return enrollments


@transaction.atomic
def schedule_event(*, event: GridEvent, actor: Any) -> GridEvent:
    """Dispatch: rules checked again, every enrolled car in scope becomes a participant, owners
    are told (their event banner; the notifications issue adds push and email)."""
    event = GridEvent.objects.select_for_update().get(pk=event.pk)
    if event.status != Status.DRAFT:
        return event
    check_event(
        program=event.program,
        kind=event.kind,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        target_kw=event.target_kw,
        feeder=event.feeder,
        region=event.region,
        exclude_id=event.pk,
    )
    enrollments = _scope(event)
    EventParticipation.objects.bulk_create(
        [
            EventParticipation(event=event, vehicle_id=vehicle_id, enrollment_id=enrollment_id)
            for enrollment_id, vehicle_id in enrollments.values_list("pk", "vehicle_id")
        ],
        ignore_conflicts=True,
        batch_size=2000,
    )
    event.status = Status.SCHEDULED
    event.notified_at = timezone.now()
    event.save(update_fields=["status", "notified_at", "updated_at"])
    audit.record(
        utility=event.program.utility_id,
        actor=actor,
        action="event.dispatch",
        target=event,
        participants=event.participations.count(),
    )
    notifications.notify_many(
        kind="event_announced",
        key=f"event:{event.pk}:announced",
        shared=_notice(event),
        recipients=(
            (
                p.vehicle.owner_id,
                {
                    "participation": p.pk,
                    "vehicle": p.vehicle.display_name,
                    "earnings_cents": selectors.expected_earnings_cents(p),
                },
            )
            for p in event.participations.select_related("vehicle", "enrollment__terms", "event")
        ),
    )
    return event


@transaction.atomic
def cancel_event(*, event: GridEvent, actor: Any, reason: str = "") -> GridEvent:
    """Call an event off. Cars of a running event go back to their own plans at once."""
    event = GridEvent.objects.select_for_update().get(pk=event.pk)
    if event.status in (Status.COMPLETED, Status.CANCELLED):
        return event
    was_active = event.status == Status.ACTIVE
    event.status = Status.CANCELLED
    event.cancel_reason = reason.strip()[:200]
    event.save(update_fields=["status", "cancel_reason", "updated_at"])
    audit.record(utility=event.program.utility_id, actor=actor, action="event.cancel", target=event)
    if was_active:
        _release(event)
    return event


def advance_events(*, now: datetime | None = None) -> dict[str, int]:
    """Beat: start the events whose window opened, finish those whose window closed. Each event
    is claimed with SKIP LOCKED, so two beats never start one event twice."""
    now = now or timezone.now()
    remind_unplugged(now=now)
    counts = {"activated": 0, "completed": 0}
    while True:
        with transaction.atomic():
            event = (
                GridEvent.objects.select_for_update(skip_locked=True)
                .filter(
                    Q(status=Status.SCHEDULED, starts_at__lte=now)
                    | Q(status=Status.ACTIVE, ends_at__lte=now)
                )
                .order_by("starts_at")
                .first()
            )
            if event is None:
                return counts
            if event.status == Status.SCHEDULED and event.ends_at > now:
                activate_event(event=event, now=now)
                counts["activated"] += 1
            else:
                event.status = Status.COMPLETED
                event.save(update_fields=["status", "updated_at"])
                audit.record(
                    utility=event.program.utility_id,
                    actor=None,
                    action="event.complete",
                    target=event,
                )
                _release(event)
                counts["completed"] += 1


# Owners of participating cars that are unplugged hear this long before an event starts.
PLUG_IN_REMINDER_BEFORE = timedelta(hours=1)


def remind_unplugged(*, now: datetime) -> int:
    """Tell the owners of participating cars that are unplugged within the hour before an event
    starts (once per car and event: the notification is keyed). Returns the owners told now."""
    told = 0
    upcoming = GridEvent.objects.filter(
        status=Status.SCHEDULED,
        starts_at__gt=now,
        starts_at__lte=now + PLUG_IN_REMINDER_BEFORE,
    ).select_related("program")
    for event in upcoming:
        participations = list(
            event.participations.filter(opted_out_at=None).select_related("vehicle")
        )
        readings = vehicle_selectors.latest_readings(
            vehicle_ids=[p.vehicle_id for p in participations]
        )
        unplugged = [
            p
            for p in participations
            if (reading := readings.get(p.vehicle_id)) is not None and reading.plugged_in is False
        ]
        told += notifications.notify_many(
            kind="plug_in_reminder",
            key=f"event:{event.pk}:plug-in",
            shared=_notice(event),
            recipients=(
                (
                    p.vehicle.owner_id,
                    {"vehicle": p.vehicle.display_name, "vehicle_id": str(p.vehicle_id)},
                )
                for p in unplugged
            ),
        )
    return told


# --- Planning with events ------------------------------------------------------------------


@dataclass
class Allocation:
    """What the fleet plan of an event's participants promises: kW per event slot (net export for
    export requests, net import for caps), and the cars that will leave short of their target."""

    slot_starts: list[datetime]
    requested_kw: float
    expected_kw: list[float]
    participants: int
    plugged_in: int
    at_risk: list[str] = field(default_factory=list)  # vehicle ids short at departure
    rows: list[dict[str, Any]] = field(default_factory=list)  # plans to store
    committed: dict[Any, list[float]] = field(default_factory=dict)
    readings: dict[Any, Any] = field(default_factory=dict)  # the newest reading planned from


def _utility_schedule(program: Program) -> PriceSchedule:
    return schedule_for(program.utility.tariffs.filter(is_default=True).first())


def _participant_cars(
    event: GridEvent, *, start: datetime, now: datetime
) -> tuple[list[CarInputs], int, dict[Any, Any]]:
    """The participating cars that are plugged in with a known SoC, as planner inputs (partial
    opt-outs raise the floor to the SoC they keep), the number of participants, and the newest
    readings the inputs were made from."""
    if event.status == Status.DRAFT:  # a preview before dispatch: who dispatch would reach
        participations = {
            vehicle_id: EventParticipation(vehicle_id=vehicle_id)
            for vehicle_id in _scope(event).values_list("vehicle_id", flat=True)
        }
    else:
        participations = {
            p.vehicle_id: p
            for p in event.participations.filter(Q(opted_out_at=None) | ~Q(keep_soc_pct=None))
        }
    vehicles = Vehicle.objects.filter(
        pk__in=list(participations), link_state=Vehicle.LinkState.LINKED
    ).select_related("owner", "preference")
    readings = vehicle_selectors.latest_readings(vehicle_ids=[v.pk for v in vehicles])
    cars = []
    for vehicle in vehicles:
        reading = readings.get(vehicle.pk)
        if reading is None or reading.soc_pct is None or not reading.plugged_in:
            continue
        preference = getattr(vehicle, "preference", None) or ChargingPreference(vehicle=vehicle)
        car = car_inputs(
            vehicle=vehicle, preference=preference, reading=reading, start=start, now=now
        )
        keep = participations[vehicle.pk].keep_soc_pct
        if keep is not None:
            car = with_floor(car, keep)
        cars.append(car)
    return cars, len(participations), readings


def with_floor(car: CarInputs, floor_pct: int) -> CarInputs:
    floor = min(max(car.min_soc_pct, floor_pct), round(car.ceiling_pct))
    return replace(car, min_soc_pct=floor, target_pct=max(car.target_pct, floor))


def event_window_slots(event: GridEvent, start: datetime) -> tuple[int, int]:
    first = max(0, int((event.starts_at - start) / SLOT))
    last = max(first + 1, int(np.ceil((event.ends_at - start) / SLOT)))
    return first, last


def allocate(*, event: GridEvent, now: datetime | None = None) -> Allocation:
    """Plan every plugged-in participant together with the event as a constraint of the planning
    core (departure targets outrank event delivery), split into per-car commitments."""
    now = now or timezone.now()
    start = slot_start(now)
    first, last = event_window_slots(event, start)
    slot_starts = [start + index * SLOT for index in range(first, last)]
    cars, participants, readings = _participant_cars(event, start=start, now=now)
    allocation = Allocation(
        slot_starts=slot_starts,
        requested_kw=event.target_kw,
        expected_kw=[0.0] * (last - first),
        participants=participants,
        plugged_in=len(cars),
        readings=readings,
    )
    if not cars:
        return allocation
    kind = (
        EventKind.IMPORT_CAP
        if event.kind == GridEvent.Kind.IMPORT_CAP
        else EventKind.EXPORT_REQUEST
    )
    core_event = Event(
        id=str(event.pk), kind=kind, start_slot=first, end_slot=last, kw=event.target_kw
    )
    rows, plan = solve(
        cars=cars,
        start=start,
        time_zone=event.program.utility.time_zone,
        schedule=_utility_schedule(event.program),
        events=[core_event],
        min_slots=last,
    )
    window = plan.power_kw[:, first:last]
    sign = 1.0 if kind == EventKind.IMPORT_CAP else -1.0
    allocation.expected_kw = np.round(sign * window.sum(axis=0), 2).tolist()
    for index, (car, fields) in enumerate(zip(cars, rows, strict=True)):
        allocation.rows.append({"vehicle_id": car.vehicle.pk, "trigger": "event", **fields})
        allocation.committed[car.vehicle.pk] = np.round(sign * window[index], 3).tolist()
        if fields["shortfall_kwh"] > 1e-6:
            allocation.at_risk.append(str(car.vehicle.pk))
    return allocation


def preview_event(*, event: GridEvent, now: datetime | None = None) -> Allocation:
    """What dispatching would do now: participants, expected kW per slot, departures at risk.
    Reads only; stores nothing. For a draft, raises ValidationError when dispatch would be
    refused (the program's rules, checked as `schedule_event` will)."""
    if event.status == Status.DRAFT:
        check_event(
            program=event.program,
            kind=event.kind,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            target_kw=event.target_kw,
            feeder=event.feeder,
            region=event.region,
            now=now,
            exclude_id=event.pk,
        )
    return allocate(event=event, now=now)


def activate_event(*, event: GridEvent, now: datetime | None = None) -> GridEvent:
    """At the event's start (called in the beat's claim transaction): the fleet allocation becomes
    every participant's plan, its commitment is recorded, and the first slots go out in batches."""
    from programs.tasks import execute_vehicle_slots, fan_out

    now = now or timezone.now()
    allocation = allocate(event=event, now=now)
    # What each car would have done without the event, read before its event plan is stored.
    planned = list(allocation.committed)
    baseline = settlement.baselines(event=event, vehicle_ids=planned, readings=allocation.readings)
    if allocation.rows:
        store_plans(
            plans=allocation.rows,
            vehicles=Vehicle.objects.filter(pk__in=list(allocation.committed)),
        )
    participations = list(event.participations.filter(vehicle_id__in=list(allocation.committed)))
    for participation in participations:
        participation.committed_kw = allocation.committed[participation.vehicle_id]
        participation.baseline_kw = baseline.get(participation.vehicle_id, [])
    update_rows(participations, ["committed_kw", "baseline_kw"])
    event.status = Status.ACTIVE
    event.save(update_fields=["status", "updated_at"])
    audit.record(
        utility=event.program.utility_id,
        actor=None,
        action="event.start",
        target=event,
        expected_kw=max(allocation.expected_kw, default=0),
        at_risk=len(allocation.at_risk),
    )
    # The cars' batches before the owners' notices (both on `bulk`; the notices also carry a low
    # message priority, FANOUT_PRIORITY): the event reaches the devices before the emails.
    fan_out(execute_vehicle_slots, list(allocation.committed))
    notifications.notify_many(
        kind="event_starting",
        key=f"event:{event.pk}:starting",
        shared=_notice(event),
        recipients=(
            (p.vehicle.owner_id, {"participation": p.pk, "vehicle": p.vehicle.display_name})
            for p in event.participations.filter(opted_out_at=None).select_related("vehicle")
        ),
    )
    return event


def _release(event: GridEvent) -> None:
    """After an event ends or is cancelled its cars go back to their own plans."""
    from programs.tasks import fan_out, replan_vehicles

    fan_out(
        replan_vehicles,
        list(event.participations.values_list("vehicle_id", flat=True)),
        "event_end",
    )


def active_participation(vehicle_id: Any, *, now: datetime) -> EventParticipation | None:
    """The car's part in a running event, unless it opted out completely."""
    return (
        EventParticipation.objects.filter(
            vehicle_id=vehicle_id,
            event__status=Status.ACTIVE,
            event__starts_at__lte=now,
            event__ends_at__gt=now,
        )
        .filter(Q(opted_out_at=None) | ~Q(keep_soc_pct=None))
        .select_related("event")
        .first()
    )


def car_event(participation: EventParticipation, *, start: datetime) -> Event | None:
    """A single car's replan during an event keeps its own share of the event: its committed
    import (a cap) or its committed export (a request), as a one-car event."""
    event = participation.event
    first, last = event_window_slots(event, start)
    committed = [float(kw) for kw in participation.committed_kw] or [0.0]
    if event.kind == GridEvent.Kind.IMPORT_CAP:
        return Event(
            id=str(event.pk),
            kind=EventKind.IMPORT_CAP,
            start_slot=first,
            end_slot=last,
            kw=max(0.0, max(committed)),
        )
    export = float(np.mean(committed))
    if export <= 0:
        return None
    return Event(
        id=str(event.pk),
        kind=EventKind.EXPORT_REQUEST,
        start_slot=first,
        end_slot=last,
        kw=export,
    )


# --- Opt-outs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptOutBudget:
    allowed: int
    used: int
    fee_cents: int  # what the next opt-out costs

    @property
    def left(self) -> int:
        return max(0, self.allowed - self.used)

    def describe(self) -> str:
        cost = (
            "this one is free"
            if self.fee_cents == 0
            else f"this one costs ${self.fee_cents / 100:,.2f}"
        )
        return f"{self.left} of {self.allowed} opt-outs left this month; {cost}."


def opt_out_budget(*, enrollment: Enrollment, now: datetime | None = None) -> OptOutBudget:
    """Opt-outs of this enrollment in the current month (the owner's time zone) against the
    program's allowance; beyond it each costs the program's fee."""
    now = now or timezone.now()
    zone = zoneinfo.ZoneInfo(enrollment.vehicle.owner.time_zone)
    month_start, month_end = _month_bounds(now.astimezone(zone))
    program = enrollment.program
    used = EventParticipation.objects.filter(
        enrollment=enrollment, opted_out_at__gte=month_start, opted_out_at__lt=month_end
    ).count()
    fee = program.opt_out_fee_cents if used >= program.opt_outs_per_month else 0
    return OptOutBudget(allowed=program.opt_outs_per_month, used=used, fee_cents=fee)


@transaction.atomic
def opt_out(
    *, participation: EventParticipation, actor: Any, keep_soc_pct: int | None = None
) -> EventParticipation:
    """Withdraw a car from an upcoming or running event, fully or partly ("keep charging to
    40 %"). Idempotent; the fee beyond the monthly allowance is recorded for settlement; the car
    replans on the `control` queue so the device hears within seconds (I4)."""
    from programs.tasks import replan_vehicle

    participation = (
        EventParticipation.objects.select_for_update()
        .select_related("event", "enrollment__program", "enrollment__vehicle__owner")
        .get(pk=participation.pk)
    )
    if participation.opted_out_at is not None:
        return participation
    if participation.event.status not in (Status.SCHEDULED, Status.ACTIVE):
        raise ValidationError("This event is over; there is nothing to opt out of.")
    if keep_soc_pct is not None and not 1 <= keep_soc_pct <= 100:
        raise ValidationError({"keep_soc_pct": "Choose a charge level between 1 and 100 %."})
    budget = opt_out_budget(enrollment=participation.enrollment)
    participation.opted_out_at = timezone.now()
    participation.keep_soc_pct = keep_soc_pct
    participation.opt_out_fee_cents = budget.fee_cents
    participation.save(update_fields=["opted_out_at", "keep_soc_pct", "opt_out_fee_cents"])
    audit.record(
        utility=participation.enrollment.program.utility_id,
        actor=actor,
        action="event.opt_out" if keep_soc_pct is None else "event.partial_opt_out",
        target=participation,
        event=participation.event_id,
        keep_soc_pct=keep_soc_pct,
        fee_cents=budget.fee_cents,
    )
    if participation.event.status == Status.ACTIVE:
        vehicle_id = str(participation.vehicle_id)
        transaction.on_commit(
            lambda: replan_vehicle.apply_async(args=[vehicle_id, "opt_out"], queue="control")
        )
    return participation
