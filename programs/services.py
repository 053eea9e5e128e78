"""Planning for one car: turn its preferences, telemetry and tariff into a stored plan.

Called by the `programs.replan_vehicle` task, which the vehicles app's signals (plug-in, unplug,
SoC drift, preference change) enqueue through programs.receivers. The numbers are worked out by
the pure core (programs.scheduling); this module only gathers inputs and stores the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone
from psycopg.types.json import Jsonb

from programs.models import ChargingPlan, EventParticipation, GridEvent
from programs.scheduling import Event, Fleet, Plan, Problem, Signals, plan_fleet, why_sentence
from programs.tariffs import PriceSchedule, schedule_for, tariff_for_zip
from vehicles import selectors as vehicle_selectors
from vehicles.models import ChargingPreference, Vehicle, VehicleReading
from vehicles.preferences import next_departure

logger = logging.getLogger(__name__)
SLOT = timedelta(minutes=15)
# Replans an owner asked for (preferences, boost, pause, opt-out): their first slot goes out on the
# `control` queue, which never waits behind fleet work (DESIGN.md I4).
OWNER_TRIGGERS = frozenset({"preference_changed", "opt_out"})


def slot_start(moment: datetime) -> datetime:
    """The 15-minute UTC slot containing `moment`."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _needs_replan(vehicle: Vehicle, trigger: str, soc_pct: float) -> bool:
    """SoC updates replan only when the car has drifted off its plan (debounce)."""
    if trigger != "soc_changed":
        return True
    plan = ChargingPlan.objects.filter(vehicle=vehicle).order_by("-version").first()
    if plan is None:
        return True
    slot = int((timezone.now() - plan.start) / SLOT)
    if not 0 <= slot < len(plan.soc):
        return True
    drift = abs(plan.soc[slot] * 100 - soc_pct)
    return drift > settings.PLANNING_DEFAULTS["soc_drift_replan_pct"]


@dataclass(frozen=True)
class CarInputs:
    """What the planner needs of one plugged-in car, read from its preferences and telemetry."""

    vehicle: Vehicle
    soc_pct: float
    min_soc_pct: int
    ceiling_pct: float
    target_pct: float
    departure_at: datetime | None
    departure_slot: int
    boost: bool
    v2g: bool
    v2g_min_soc_pct: int


def car_inputs(
    *,
    vehicle: Vehicle,
    preference: ChargingPreference,
    reading: VehicleReading,
    start: datetime,
    now: datetime,
) -> CarInputs:
    defaults = settings.PLANNING_DEFAULTS
    departure = next_departure(
        schedule=preference.weekly_schedule,
        override_at=preference.override_departure_at,
        override_target_soc_pct=preference.override_target_soc_pct,
        time_zone=vehicle.owner.time_zone,
        now=now,
    )
    ceiling_pct = min(preference.max_soc_pct, reading.charge_limit_pct or 100)
    boosting = bool(preference.boost_until and preference.boost_until > now)
    paused = bool(preference.pause_until and preference.pause_until > now)
    if departure is not None:
        departure_slot = math.ceil((departure.at - start) / SLOT)
        departure_slot = min(max(departure_slot, 1), defaults["max_horizon_slots"])
        target_pct = departure.target_soc_pct
    else:
        departure_slot, target_pct = defaults["horizon_slots"], preference.min_soc_pct
    if boosting:
        target_pct = preference.boost_to_soc_pct or target_pct
    if paused:  # smart charging off: charge at once to the ceiling, like an unmanaged charger
        target_pct = ceiling_pct
    return CarInputs(
        vehicle=vehicle,
        soc_pct=reading.soc_pct,
        min_soc_pct=preference.min_soc_pct,
        ceiling_pct=ceiling_pct,
        target_pct=min(target_pct, ceiling_pct),
        departure_at=departure.at if departure else None,
        departure_slot=departure_slot,
        boost=boosting or paused,
        v2g=vehicle.v2g_capable and preference.v2g_consent and not (boosting or paused),
        v2g_min_soc_pct=preference.v2g_min_soc_pct,
    )


def solve(
    *,
    cars: list[CarInputs],
    start: datetime,
    time_zone: str,
    schedule: PriceSchedule,
    events: Sequence[Event] = (),
    min_slots: int = 4,
) -> tuple[list[dict[str, Any]], Plan]:
    """Plan cars that share one price curve (a tariff read in one time zone) in one problem,
    with the grid events given (each over every car of the problem). Returns the stored fields of
    each car's plan, in the order given, and the core's plan (for event delivery)."""
    defaults = settings.PLANNING_DEFAULTS
    slots = max(min_slots, max(car.departure_slot for car in cars))
    max_kw = np.array([float(car.vehicle.max_ac_kw) for car in cars])
    fleet = Fleet.build(
        len(cars),
        capacity_kwh=np.array([float(car.vehicle.battery_kwh) for car in cars]),
        soc=np.array([car.soc_pct for car in cars]) / 100,
        min_soc=np.array([car.min_soc_pct for car in cars]) / 100,
        max_soc=np.array([car.ceiling_pct for car in cars]) / 100,
        target_soc=np.array([car.target_pct for car in cars]) / 100,
        plug_slot=0,
        departure_slot=np.array([car.departure_slot for car in cars]),
        max_charge_kw=max_kw,
        max_discharge_kw=np.where([car.v2g for car in cars], max_kw, 0.0),
        charge_efficiency=defaults["charge_efficiency"],
        discharge_efficiency=defaults["discharge_efficiency"],
        v2g_min_soc=np.array([car.v2g_min_soc_pct for car in cars]) / 100,
        degradation_cost_per_kwh=defaults["degradation_cost_per_kwh"],
        boost=np.array([car.boost for car in cars]),
    )
    prices = schedule.import_prices(start=start, slots=slots, time_zone=time_zone)
    signals = Signals(
        import_price=prices,
        export_price=schedule.export_prices(slots=slots),
        carbon_g_per_kwh=np.zeros(slots),
    )
    problem = Problem(
        start=start,
        slots=slots,
        signals=signals,
        fleet=fleet,
        vehicle_ids=[str(car.vehicle.pk) for car in cars],
        events=list(events),
    )
    plan = plan_fleet(problem)
    # Stored to the watt: a fleet's stored sum may differ from the solver's by 0.5 W a car.
    power = np.round(plan.power_kw, 3)
    soc = np.round(plan.soc, 4)
    rounded_prices = np.round(prices, 4)
    results = []
    for index, car in enumerate(cars):
        # Each car's arrays end at its departure: that is all the owner's page shows.
        end = car.departure_slot
        why = why_sentence(
            power_kw=plan.power_kw[index, :end],
            reasons=plan.reasons[index, :end],
            soc=plan.soc[index, : end + 1],
            start=start,
            target_soc=car.target_pct / 100,
            departure_slot=end,
            tz=car.vehicle.owner.time_zone,
        )
        results.append(
            {
                "start": start,
                "power_kw": power[index, :end].tolist(),
                "soc": soc[index, : end + 1].tolist(),
                "reasons": plan.reasons[index, :end].tolist(),
                "import_price": rounded_prices[:end].tolist(),
                "departure_at": car.departure_at,
                "departure_slot": end,
                "target_soc_pct": round(car.target_pct),
                "min_soc_pct": car.min_soc_pct,
                "shortfall_kwh": float(plan.shortfall_kwh[index]),
                "cost": float(plan.cost[index]),
                "why": why[:300],
            }
        )
    return results, plan


def schedule_for_owner(owner: Any, cache: dict[str, PriceSchedule] | None = None) -> PriceSchedule:
    """The price curve an owner pays: their utility's default tariff by service ZIP, else the
    platform default. `cache` (by ZIP) saves a query per car in fleet replans."""
    if cache is not None and owner.service_zip in cache:
        return cache[owner.service_zip]
    schedule = schedule_for(tariff_for_zip(owner.service_zip))
    if cache is not None:
        cache[owner.service_zip] = schedule
    return schedule


def replan_vehicle(
    *, vehicle_id: Any, trigger: str, now: datetime | None = None
) -> ChargingPlan | None:
    """Plan a plugged-in car from now to its next departure; None when there is nothing to plan
    (unlinked, not plugged in, SoC unknown) or the car is still on its current plan."""
    vehicle = Vehicle.objects.select_related("owner", "preference").filter(pk=vehicle_id).first()
    if vehicle is None or vehicle.link_state != Vehicle.LinkState.LINKED:
        return None
    reading = vehicle_selectors.latest_reading(vehicle=vehicle)
    if reading is None or reading.soc_pct is None or not reading.plugged_in:
        return None
    if not _needs_replan(vehicle, trigger, reading.soc_pct):
        return None
    now = now or timezone.now()
    start = slot_start(now)
    car = car_inputs(
        vehicle=vehicle,
        preference=vehicle_selectors.preference_for(vehicle=vehicle),
        reading=reading,
        start=start,
        now=now,
    )
    owner = vehicle.owner
    events = []
    from programs import events as grid_events  # events plan through this module

    participation = grid_events.active_participation(vehicle.pk, now=now)
    if participation is not None:  # keep the car's share of a running event
        if participation.keep_soc_pct is not None:
            car = grid_events.with_floor(car, participation.keep_soc_pct)
        if (event := grid_events.car_event(participation, start=start)) is not None:
            events.append(event)
    (fields,), _ = solve(
        cars=[car],
        start=start,
        time_zone=owner.time_zone,
        schedule=schedule_for_owner(owner),
        events=events,
        min_slots=max((event.end_slot for event in events), default=4),
    )
    return store_plan(vehicle=vehicle, trigger=trigger, **fields)


def replan_fleet(
    *, vehicle_ids: list[Any] | None = None, trigger: str, now: datetime | None = None
) -> int:
    """Replan many plugged-in cars at once (new prices, an event, a nightly pass): a handful of
    queries, one planning problem per time zone, versions and rows written in bulk. Returns the
    number of plans stored. Cars not plugged in or without a SoC are skipped."""
    now = now or timezone.now()
    start = slot_start(now)
    linked = Vehicle.objects.filter(link_state=Vehicle.LinkState.LINKED)
    if vehicle_ids is not None:
        linked = linked.filter(pk__in=vehicle_ids)
    # Cars in a running event keep the event's plan; the event's end replans them.
    linked = linked.exclude(
        pk__in=EventParticipation.objects.filter(
            event__status=GridEvent.Status.ACTIVE, opted_out_at=None
        ).values("vehicle_id")
    )
    # Subqueries rather than lists of 100,000 ids in the SQL text.
    vehicles = {v.pk: v for v in linked.select_related("owner", "preference")}
    readings = vehicle_selectors.latest_readings(vehicle_ids=linked.values("pk"))
    schedules: dict[str, PriceSchedule] = {}
    groups: dict[tuple[str, str], list[CarInputs]] = {}
    for vehicle_id, reading in readings.items():
        vehicle = vehicles[vehicle_id]
        if reading.soc_pct is None or not reading.plugged_in:
            continue
        preference = getattr(vehicle, "preference", None) or ChargingPreference(vehicle=vehicle)
        car = car_inputs(
            vehicle=vehicle, preference=preference, reading=reading, start=start, now=now
        )
        schedule = schedule_for_owner(vehicle.owner, schedules)
        groups.setdefault((schedule.key, vehicle.owner.time_zone), []).append(car)
    rows: list[dict[str, Any]] = []
    for (key, zone), cars in groups.items():
        schedule = next(s for s in schedules.values() if s.key == key)
        results, _ = solve(cars=cars, start=start, time_zone=zone, schedule=schedule)
        for car, fields in zip(cars, results, strict=True):
            rows.append({"vehicle_id": car.vehicle.pk, "trigger": trigger, **fields})
    return store_plans(plans=rows, vehicles=linked)


def replan_plugged_in(*, vehicle_ids: list[Any], now: datetime | None = None) -> list[Any]:
    """Cars just plugged in, planned in one pass (issue 6, B6: one solve per tariff and zone
    instead of one task each). A car in a running event is planned on its own so it keeps its
    share of the event. Returns the ids of the cars whose plans were stored by the fleet pass
    (the in-event ones send their first slot themselves, like any single replan)."""
    now = now or timezone.now()
    in_event = set(
        EventParticipation.objects.filter(
            vehicle_id__in=vehicle_ids, event__status=GridEvent.Status.ACTIVE, opted_out_at=None
        ).values_list("vehicle_id", flat=True)
    )
    for vehicle_id in in_event:
        replan_vehicle(vehicle_id=vehicle_id, trigger="plugged_in", now=now)
    others = [v for v in vehicle_ids if v not in {str(i) for i in in_event}]
    replan_fleet(vehicle_ids=others, trigger="plugged_in", now=now)
    return others


# Columns written by store_plans' COPY, in order.
PLAN_COLUMNS = [
    "vehicle_id",
    "version",
    "trigger",
    "start",
    "slot_minutes",
    "power_kw",
    "soc",
    "reasons",
    "import_price",
    "departure_at",
    "departure_slot",
    "target_soc_pct",
    "min_soc_pct",
    "shortfall_kwh",
    "cost",
    "why",
    "created_at",
]


@transaction.atomic
def store_plans(*, plans: list[dict[str, Any]], vehicles: QuerySet[Vehicle]) -> int:
    """Bulk-save next versions of the plans of `vehicles` (locked, so no version is taken twice).

    Written with PostgreSQL COPY: at fleet scale the INSERT statements of bulk_create cost
    three times as much (bench/fleet_replan.py)."""
    list(vehicles.select_for_update().values_list("pk", flat=True))
    latest = dict(
        ChargingPlan.objects.filter(vehicle__in=vehicles.values("pk"))
        .values_list("vehicle_id")
        .annotate(Max("version"))
    )
    created = timezone.now()
    table = ChargingPlan._meta.db_table
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({', '.join(PLAN_COLUMNS)}) FROM STDIN") as copy,
    ):
        for plan in plans:
            copy.write_row(
                (
                    plan["vehicle_id"],
                    latest.get(plan["vehicle_id"], 0) + 1,
                    plan["trigger"],
                    plan["start"],
                    15,
                    Jsonb(plan["power_kw"]),
                    Jsonb(plan["soc"]),
                    Jsonb(plan["reasons"]),
                    Jsonb(plan["import_price"]),
                    plan["departure_at"],
                    plan["departure_slot"],
                    plan["target_soc_pct"],
                    plan["min_soc_pct"],
                    plan["shortfall_kwh"],
                    plan["cost"],
                    plan["why"],
                    created,
                )
            )
    return len(plans)


@transaction.atomic
def store_plan(*, vehicle: Vehicle, **fields: Any) -> ChargingPlan:
    """Save the next version of a car's plan (versions never collide: the row lock serialises)
    and send its current slot to the device at once, not at the next beat (owner actions on the
    `control` queue)."""
    from programs.tasks import execute_vehicle_slot  # tasks import services

    Vehicle.objects.select_for_update().filter(pk=vehicle.pk).first()
    latest = ChargingPlan.objects.filter(vehicle=vehicle).aggregate(Max("version"))["version__max"]
    plan = ChargingPlan.objects.create(vehicle=vehicle, version=(latest or 0) + 1, **fields)
    queue = "control" if plan.trigger in OWNER_TRIGGERS else "default"
    transaction.on_commit(
        lambda: execute_vehicle_slot.apply_async(args=[str(vehicle.pk)], queue=queue)
    )
    return plan
