"""Reads of vehicles with their owners' access checks: another owner's vehicle is a 404.

Also what the owner's pages say about execution: the activity log of a car's commands, whether
its departure target is out of reach, and why it isn't charging when it should be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Manager, OuterRef, Prefetch, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from vehicles.control import diagnosis
from vehicles.control.models import Command, CommandEvent
from vehicles.models import ChargingPreference, Vehicle, VehicleReading


def _with_latest_reading(vehicles: QuerySet[Vehicle]) -> QuerySet[Vehicle]:
    latest = VehicleReading.objects.filter(vehicle=OuterRef("pk")).order_by("-recorded_at")
    return vehicles.annotate(latest_reading_id=Subquery(latest.values("pk")[:1]))


def list_vehicles_for_owner(*, owner: User) -> list[Vehicle]:
    """The owner's linked cars, each with `.latest` (reading or None) and `.preference` loaded."""
    vehicles = list(
        _with_latest_reading(
            Vehicle.objects.filter(owner=owner).exclude(link_state=Vehicle.LinkState.UNLINKED)
        ).select_related("preference")
    )
    readings = VehicleReading.objects.in_bulk(
        [v.latest_reading_id for v in vehicles if v.latest_reading_id]
    )
    for vehicle in vehicles:
        vehicle.latest = readings.get(vehicle.latest_reading_id)
    now = timezone.now()
    outlooks = plan_outlooks_for(vehicles=vehicles, now=now)
    for vehicle in vehicles:
        outlook = outlooks.get(vehicle.pk)
        vehicle.promise = (
            outlook.promise(now=now, preference=vehicle.preference) if outlook else None
        )
    return vehicles


def get_owned_vehicle(*, owner: User, vehicle_id: UUID | str) -> Vehicle:
    """The owner's (still linked) vehicle, or Http404 — also for other owners' vehicles."""
    try:
        vehicle = (
            Vehicle.objects.select_related("preference", "link")
            .exclude(link_state=Vehicle.LinkState.UNLINKED)
            .get(pk=vehicle_id, owner=owner)
        )
    except (Vehicle.DoesNotExist, ValueError) as error:
        raise Http404("No such vehicle.") from error
    vehicle.latest = latest_reading(vehicle=vehicle)
    return vehicle


def latest_reading(*, vehicle: Vehicle) -> VehicleReading | None:
    return vehicle.readings.order_by("-recorded_at").first()


def readings_since(*, vehicle: Vehicle, since: datetime) -> QuerySet[VehicleReading]:
    return vehicle.readings.filter(recorded_at__gte=since).order_by("recorded_at")


def preference_for(*, vehicle: Vehicle) -> ChargingPreference:
    return ChargingPreference.objects.get_or_create(vehicle=vehicle)[0]


def latest_readings(*, vehicle_ids: list[Any] | QuerySet) -> dict[Any, VehicleReading]:
    """The newest reading of each vehicle, in one query (PostgreSQL DISTINCT ON)."""
    readings = (
        VehicleReading.objects.filter(vehicle_id__in=vehicle_ids)
        .order_by("vehicle_id", "-recorded_at")
        .distinct("vehicle_id")
    )
    return {reading.vehicle_id: reading for reading in readings}


# --- The current plan, as the vehicle pages need it ----------------------------------------------

# A plan is made for a few days at most; an older newest plan says nothing about now.
PLAN_LOOKBACK = timedelta(days=3)
# Below this a shortfall is the planner's float noise, not a missed target.
SHORTFALL_KWH = 0.05


def _plans() -> Manager | None:
    """programs' ChargingPlan, through the reverse relation `Vehicle.plans` it declares.

    Programs decide, vehicles act, and vehicles never imports programs (DESIGN.md §3): the vehicle
    pages only read the newest plan's public numbers by field name. None without programs.
    """
    try:
        return Vehicle._meta.get_field("plans").related_model._default_manager
    except FieldDoesNotExist:
        return None


@dataclass(frozen=True)
class DeparturePromise:
    """The owner will leave with less than their target (DESIGN.md §5: told early, can boost)."""

    departure_at: datetime
    target_soc_pct: int
    expected_soc_pct: int
    plan_version: int
    boosting: bool
    soon: bool  # within a day: "at 07:00" reads clearly; later ones name the day

    def message(self, *, time_zone: Any = None) -> str:
        local = timezone.localtime(self.departure_at, time_zone)
        when = f"at {local:%H:%M}" if self.soon else f"on {local:%A} at {local:%H:%M}"
        return (
            f"You'll leave with about {self.expected_soc_pct} % instead of "
            f"{self.target_soc_pct} % {when}."
        )


@dataclass(frozen=True)
class PlanOutlook:
    """What the newest plan of a plugged-in car says about now and about the departure."""

    version: int
    start: datetime
    slot_minutes: int
    power_kw: list[float]
    departure_at: datetime | None
    target_soc_pct: int
    expected_soc_pct: float | None
    shortfall_kwh: float

    def _slot(self, now: datetime) -> int | None:
        index = int((now - self.start) / timedelta(minutes=self.slot_minutes))
        return index if 0 <= index < len(self.power_kw) else None

    def charging_at(self, now: datetime) -> bool:
        index = self._slot(now)
        return index is not None and float(self.power_kw[index]) > diagnosis.IDLE_KW

    def charging_since(self, now: datetime) -> datetime | None:
        """Start of the run of charging slots that contains `now` (None when not charging)."""
        index = self._slot(now)
        if index is None or not self.charging_at(now):
            return None
        while index > 0 and float(self.power_kw[index - 1]) > diagnosis.IDLE_KW:
            index -= 1
        return self.start + index * timedelta(minutes=self.slot_minutes)

    def promise(self, *, now: datetime, preference: ChargingPreference) -> DeparturePromise | None:
        """The early warning when the target is out of reach; None when it is reachable."""
        if self.departure_at is None or self.departure_at <= now or self.expected_soc_pct is None:
            return None
        expected = round(self.expected_soc_pct)
        if self.shortfall_kwh <= SHORTFALL_KWH or expected >= self.target_soc_pct:
            return None
        return DeparturePromise(
            departure_at=self.departure_at,
            target_soc_pct=self.target_soc_pct,
            expected_soc_pct=expected,
            plan_version=self.version,
            boosting=bool(preference.boost_until and preference.boost_until > now),
            soon=self.departure_at - now < timedelta(hours=20),
        )


# What _outlook reads of a plan: not its reasons or prices (two more arrays a slot) nor its text.
OUTLOOK_FIELDS = (
    "vehicle_id", "version", "start", "slot_minutes", "power_kw", "soc", "departure_at",
    "departure_slot", "target_soc_pct", "shortfall_kwh",
)  # fmt: skip


def _outlook(plan: Any, *, battery_kwh: float) -> PlanOutlook:
    expected = None
    if plan.departure_slot is not None and plan.departure_slot < len(plan.soc):
        expected = float(plan.soc[plan.departure_slot]) * 100
    elif battery_kwh > 0:
        expected = plan.target_soc_pct - plan.shortfall_kwh / battery_kwh * 100
    return PlanOutlook(
        version=plan.version,
        start=plan.start,
        slot_minutes=plan.slot_minutes,
        power_kw=list(plan.power_kw),
        departure_at=plan.departure_at,
        target_soc_pct=plan.target_soc_pct,
        expected_soc_pct=expected,
        shortfall_kwh=float(plan.shortfall_kwh or 0),
    )


def plan_outlooks_for(*, vehicles: list[Vehicle], now: datetime) -> dict[Any, PlanOutlook]:
    """The newest plan of each plugged-in car among `vehicles` (each with `.latest` loaded), in
    one query. Like the plan card, an unplugged car has no current plan."""
    plans = _plans()
    plugged = {v.pk: v for v in vehicles if getattr(v, "latest", None) and v.latest.plugged_in}
    if plans is None or not plugged:
        return {}
    newest = (
        plans.filter(vehicle_id__in=list(plugged), start__gte=now - PLAN_LOOKBACK)
        .only(*OUTLOOK_FIELDS)
        .order_by("vehicle_id", "-version")
        .distinct("vehicle_id")
    )
    return {
        plan.vehicle_id: _outlook(plan, battery_kwh=float(plugged[plan.vehicle_id].battery_kwh))
        for plan in newest
    }


def plan_outlook_for(*, vehicle: Vehicle, now: datetime) -> PlanOutlook | None:
    if not hasattr(vehicle, "latest"):
        vehicle.latest = latest_reading(vehicle=vehicle)
    return plan_outlooks_for(vehicles=[vehicle], now=now).get(vehicle.pk)


def departure_promises_at_risk(*, now: datetime) -> list[tuple[Vehicle, DeparturePromise]]:
    """Every linked, plugged-in car whose newest plan misses its departure target (the beat
    records these). Only plans with a shortfall are read, newest version each."""
    plans = _plans()
    if plans is None:
        return []
    newest_version = (
        plans.filter(vehicle=OuterRef("vehicle")).order_by("-version").values("version")[:1]
    )
    at_risk = list(
        plans.filter(
            shortfall_kwh__gt=SHORTFALL_KWH,
            departure_at__gt=now,
            start__gte=now - PLAN_LOOKBACK,
            vehicle__link_state=Vehicle.LinkState.LINKED,
            version=Subquery(newest_version),
        ).select_related("vehicle__owner", "vehicle__preference")
    )
    readings = latest_readings(vehicle_ids=[plan.vehicle_id for plan in at_risk])
    found = []
    for plan in at_risk:
        reading = readings.get(plan.vehicle_id)
        if reading is None or not reading.plugged_in:
            continue
        vehicle = plan.vehicle
        outlook = _outlook(plan, battery_kwh=float(vehicle.battery_kwh))
        promise = outlook.promise(now=now, preference=preference_for(vehicle=vehicle))
        if promise is not None:
            found.append((vehicle, promise))
    return found


# --- Why isn't my car charging? ------------------------------------------------------------------


def confirm_window() -> timedelta:
    return timedelta(seconds=settings.CONTROL_CONFIRM_AFTER_SECONDS)


def charging_diagnosis_for(
    *, vehicle: Vehicle, outlook: PlanOutlook | None, now: datetime
) -> diagnosis.Diagnosis | None:
    """A diagnosis when the car should be charging and isn't, or its last start failed.

    "Should": the plan has asked for charging for longer than the confirmation window, and no
    start command is younger than that (a car needs a minute or two to start and report it).
    """
    reading = getattr(vehicle, "latest", None)
    facts_reading = diagnosis.reading_facts(reading)
    if facts_reading is not None and facts_reading.charging:
        return None
    latest = Command.objects.filter(vehicle=vehicle).order_by("-id").first()
    window = confirm_window()
    start_failed = (
        latest is not None
        and latest.action == Command.Action.START_CHARGE
        and latest.state == Command.State.FAILED
        and latest.finished_at is not None
        and now - latest.finished_at <= diagnosis.TROUBLE_WINDOW
        and (reading is None or reading.plugged_in is not False)
    )
    since = outlook.charging_since(now) if outlook is not None else None
    starting = (
        latest is not None
        and latest.action == Command.Action.START_CHARGE
        and now - latest.created_at < window
    )
    should_charge = since is not None and now - since >= window and not starting
    if not (start_failed or should_charge):
        return None
    facts = diagnosis.facts_for(
        vehicle=vehicle,
        now=now,
        target_soc_pct=outlook.target_soc_pct if outlook else None,
        reading=reading,
    )
    return diagnosis.diagnose(facts, want=diagnosis.Want.CHARGE)


# --- The activity log ----------------------------------------------------------------------------


@dataclass
class ActivityStep:
    at: datetime
    tone: str
    text: str
    times: int = 1


@dataclass
class ActivityEntry:
    command_id: int
    title: str
    at: datetime
    badge: str
    tone: str
    device: str
    steps: list[ActivityStep] = field(default_factory=list)


def list_commands_for_vehicle(*, vehicle: Vehicle) -> QuerySet[Command]:
    """The car's commands, newest first, each with the steps an owner sees (`owner_events`)."""
    steps = CommandEvent.objects.filter(kind__in=diagnosis.OWNER_EVENT_KINDS).order_by("at", "id")
    return (
        Command.objects.filter(vehicle=vehicle)
        .select_related("charger")
        .prefetch_related(Prefetch("events", queryset=steps, to_attr="owner_events"))
        .order_by("-created_at", "-id")
    )


def activity_entries(*, commands: Any) -> list[ActivityEntry]:
    """Commands (from list_commands_for_vehicle) in plain words; repeated steps (retries) fold
    into one line with a count."""
    entries = []
    for command in commands:
        device = "charger" if command.charger_id else "car"
        badge, tone = diagnosis.STATE_BADGES.get(command.state, (command.state, "info"))
        entry = ActivityEntry(
            command_id=command.pk,
            title=diagnosis.command_title(
                action=command.action, power_kw=command.power_kw, limit_pct=command.limit_pct
            ),
            at=command.created_at,
            badge=badge,
            tone=tone,
            device=device,
        )
        for event in command.owner_events:
            described = diagnosis.describe_event(
                kind=event.kind,
                detail=event.detail,
                data=event.data,
                actor=event.actor,
                source=command.source,
                device=device,
            )
            if described is None:
                continue
            step_tone, text = described
            if entry.steps and entry.steps[-1].text == text:
                entry.steps[-1].times += 1
                entry.steps[-1].at = event.at
                continue
            entry.steps.append(ActivityStep(at=event.at, tone=step_tone, text=text))
            if event.kind == "unconfirmed" and event.data.get("resent_as"):
                entry.badge, entry.tone = "Sent again", "warn"
        entries.append(entry)
    return entries
