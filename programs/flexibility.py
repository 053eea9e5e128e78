"""What the enrolled fleet can give the grid, for program managers: kW that could be curtailed
(charge-only) or sent back (V2G) now and over the next 48 h, by region and feeder; and, for one
grid event, what its participants were asked, committed and delivered, slot by slot.

Read by the admin's flexibility dashboard and event pages (programs.admin_views). A few queries
whatever the fleet size — the enrolled cars with owner and preference in one, their latest
readings in one (DISTINCT ON), the feeders in one — and numpy over the arrays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db.models import Avg, DateTimeField, F, Func, Q, TextField, Value
from django.db.models.functions import Cast
from django.utils import timezone

from programs.models import Enrollment, EventParticipation, Feeder, GridEvent, Program
from programs.services import SLOT, slot_start
from vehicles.control.models import Command
from vehicles.models import SOC_STALE_AFTER, Vehicle, VehicleReading
from vehicles.preferences import next_departure

HORIZON_SLOTS = 48 * 4  # the dashboard looks 48 h ahead in 15-minute slots
# A car silent for longer than this is not counted as plugged in: its plug state is a guess.
PLUG_STATE_MAX_AGE = timedelta(hours=6)
OUTSIDE = "Outside the feeders"
SLOT_HOURS = SLOT.total_seconds() / 3600


@dataclass
class FeederFlex:
    """One feeder's enrolled cars and what they could give in each slot of the horizon."""

    region: str
    feeder: str
    enrolled_cars: int = 0
    enrolled_kw: float = 0.0  # every enrolled car's charging power, plugged in or not
    v2g_cars: int = 0  # V2G-capable with the owner's consent
    v2g_enrolled_kw: float = 0.0
    plugged_in_cars: int = 0
    curtail_kw: np.ndarray = field(default_factory=lambda: np.zeros(HORIZON_SLOTS))
    export_kw: np.ndarray = field(default_factory=lambda: np.zeros(HORIZON_SLOTS))

    @property
    def label(self) -> str:
        return f"{self.region} / {self.feeder}" if self.feeder else self.region

    @property
    def in_12h(self) -> float:
        return float(self.curtail_kw[12 * 4])

    @property
    def in_24h(self) -> float:
        return float(self.curtail_kw[24 * 4])


@dataclass
class Flexibility:
    now: datetime
    slot_starts: list[datetime]
    feeders: list[FeederFlex]

    def by_region(self) -> list[FeederFlex]:
        return [region for region, _ in self.grouped()]

    def grouped(self) -> list[tuple[FeederFlex, list[FeederFlex]]]:
        """Each region's subtotal with its feeders."""
        regions: dict[str, tuple[FeederFlex, list[FeederFlex]]] = {}
        for row in self.feeders:
            subtotal, rows = regions.setdefault(
                row.region, (FeederFlex(region=row.region, feeder=""), [])
            )
            _add(subtotal, row)
            rows.append(row)
        return list(regions.values())

    def total(self) -> FeederFlex:
        total = FeederFlex(region="All regions", feeder="")
        for row in self.feeders:
            _add(total, row)
        return total


def _add(into: FeederFlex, row: FeederFlex) -> None:
    into.enrolled_cars += row.enrolled_cars
    into.enrolled_kw += row.enrolled_kw
    into.v2g_cars += row.v2g_cars
    into.v2g_enrolled_kw += row.v2g_enrolled_kw
    into.plugged_in_cars += row.plugged_in_cars
    into.curtail_kw = into.curtail_kw + row.curtail_kw
    into.export_kw = into.export_kw + row.export_kw


def flexibility_for(
    *,
    utility_ids: Iterable[int],
    program: Program | None = None,
    now: datetime | None = None,
) -> Flexibility:
    """Available kW of the utilities' actively enrolled, linked cars (a car in two programs
    counts once). A car plugged in now gives its charging power (curtailable) until its next
    departure; a V2G car with its owner's consent, a fresh SoC above its V2G floor also gives
    that power as export. Cars not plugged in give nothing: we do not guess when they arrive."""
    now = now or timezone.now()
    start = slot_start(now)
    slot_starts = [start + index * SLOT for index in range(HORIZON_SLOTS)]
    utility_ids = list(utility_ids)
    feeders = list(
        Feeder.objects.filter(utility_id__in=utility_ids).values_list("region", "code", "zip_codes")
    )
    rows = {(region, code): FeederFlex(region=region, feeder=code) for region, code, _ in feeders}
    by_zip = {zip_code: (region, code) for region, code, zips in feeders for zip_code in zips}

    enrollments = Enrollment.objects.filter(
        status=Enrollment.Status.ACTIVE,
        program__utility_id__in=utility_ids,
        vehicle__link_state=Vehicle.LinkState.LINKED,
    )
    if program is not None:
        enrollments = enrollments.filter(program=program)
    # The schedule as text: most owners share a handful of schedules, so each distinct one is
    # decoded and its next departure found once (see `departures` below).
    enrollments = enrollments.annotate(
        schedule_text=Cast("vehicle__preference__weekly_schedule", TextField())
    )
    cars = {
        row[0]: row
        for row in enrollments.values_list(
            "vehicle_id",
            "vehicle__max_ac_kw",
            "vehicle__v2g_capable",
            "vehicle__owner__service_zip",
            "vehicle__owner__time_zone",
            "vehicle__preference__v2g_consent",
            "vehicle__preference__v2g_min_soc_pct",
            "schedule_text",
            "vehicle__preference__override_departure_at",
            "vehicle__preference__override_target_soc_pct",
        )
    }
    readings = _latest_plug_states(vehicle_ids=enrollments.values("vehicle_id"), now=now)
    departures: dict[tuple[str, str], datetime | None] = {}

    group_of: list[tuple[str, str]] = []
    curtail, export, until = [], [], []
    for (
        vehicle_id,
        kw,
        v2g,
        zip_code,
        zone,
        consent,
        floor,
        schedule,
        override,
        target,
    ) in cars.values():
        key = by_zip.get(zip_code, (OUTSIDE, ""))
        row = rows.get(key) or rows.setdefault(key, FeederFlex(region=key[0], feeder=key[1]))
        kw = float(kw)
        can_export = bool(v2g and consent)
        row.enrolled_cars += 1
        row.enrolled_kw += kw
        row.v2g_cars += can_export
        row.v2g_enrolled_kw += kw if can_export else 0.0
        reading = readings.get(vehicle_id)
        if reading is None or not reading[1]:
            continue
        recorded_at, _, soc_pct = reading
        row.plugged_in_cars += 1
        if override is not None and target is not None and override > now:
            leaves: datetime | None = override  # a one-off departure
        else:
            key_ = (schedule or "{}", zone)
            if key_ not in departures:
                found = next_departure(
                    schedule=json.loads(key_[0]),
                    override_at=None,
                    override_target_soc_pct=None,
                    time_zone=zone,
                    now=now,
                )
                departures[key_] = found.at if found else None
            leaves = departures[key_]
        slots = (
            HORIZON_SLOTS
            if leaves is None
            else min(HORIZON_SLOTS, math.ceil((leaves - start) / SLOT))
        )
        # I3: no discharge on a stale or unknown SoC, nor below the owner's V2G floor.
        fresh_soc = soc_pct is not None and now - recorded_at <= SOC_STALE_AFTER
        exports = can_export and fresh_soc and soc_pct > (floor or 0)
        group_of.append(key)
        curtail.append(kw)
        export.append(kw if exports else 0.0)
        until.append(max(0, slots))

    keys = list(rows)
    if group_of:
        index = {key: position for position, key in enumerate(keys)}
        groups = np.array([index[key] for key in group_of])
        ends = np.array(until)
        for amounts, attribute in ((curtail, "curtail_kw"), (export, "export_kw")):
            # Each car adds its kW from slot 0 up to its departure: a difference array, summed.
            steps = np.zeros((len(keys), HORIZON_SLOTS + 1))
            np.add.at(steps, (groups, 0), amounts)
            np.add.at(steps, (groups, ends), np.negative(amounts))
            totals = np.cumsum(steps, axis=1)[:, :HORIZON_SLOTS]
            for position, key in enumerate(keys):
                setattr(rows[key], attribute, np.round(totals[position], 1))
    ordered = sorted(rows.values(), key=lambda row: (row.region == OUTSIDE, row.region, row.feeder))
    return Flexibility(now=now, slot_starts=slot_starts, feeders=ordered)


def _latest_plug_states(*, vehicle_ids: Any, now: datetime) -> dict[Any, tuple]:
    """(recorded_at, plugged_in, soc_pct) of each car's newest reading of the last
    PLUG_STATE_MAX_AGE, in one DISTINCT ON query. Like vehicles.selectors.latest_readings, but
    only the three columns and only recent rows: at 10,000 cars building full readings was most
    of the dashboard's time, and an older reading is not trusted for the plug state anyway."""
    rows = (
        VehicleReading.objects.filter(
            vehicle_id__in=vehicle_ids, recorded_at__gte=now - PLUG_STATE_MAX_AGE
        )
        .order_by("vehicle_id", "-recorded_at")
        .distinct("vehicle_id")
        .values_list("vehicle_id", "recorded_at", "plugged_in", "soc_pct")
    )
    return {row[0]: row[1:] for row in rows}


# --- One event's delivery ----------------------------------------------------------------------


class DateBin(Func):
    """PostgreSQL date_bin: the start of the fixed-width bin holding a timestamp."""

    function = "date_bin"
    output_field = DateTimeField()


@dataclass
class Delivery:
    """kW per event slot: asked (the target), committed (the participants' plans), delivered
    (measured from their cars' readings: import for a cap, export for a request)."""

    slot_starts: list[datetime]
    requested_kw: float
    committed_kw: list[float]
    delivered_kw: list[float | None]  # None: the slot has not started yet
    measured_kwh: dict[Any, float] = field(default_factory=dict)  # per vehicle, so far


def event_slots(event: GridEvent) -> list[datetime]:
    first = slot_start(event.starts_at)
    count = max(1, math.ceil((event.ends_at - first) / SLOT))
    return [first + index * SLOT for index in range(count)]


def participating(event: GridEvent):  # type: ignore[no-untyped-def]
    """The event's participants still taking part (no opt-out, or a partial one)."""
    return event.participations.filter(Q(opted_out_at=None) | ~Q(keep_soc_pct=None))


def event_delivery(*, event: GridEvent, now: datetime | None = None) -> Delivery:
    now = now or timezone.now()
    slots = event_slots(event)
    committed = np.zeros(len(slots))
    for plan in participating(event).values_list("committed_kw", flat=True):
        if not plan:
            continue
        # Commitments start at the slot the event was activated in: they end with the window.
        values = np.array(plan[-len(slots) :], dtype=float)
        committed[len(slots) - len(values) :] += values
    measured = measured_kw(event=event, vehicle_ids=participating(event).values("vehicle_id"))
    sign = 1.0 if event.kind == GridEvent.Kind.IMPORT_CAP else -1.0
    delivered: list[float | None] = []
    per_vehicle: dict[Any, float] = {}
    for index, start in enumerate(slots):
        if start > now:
            delivered.append(None)
            continue
        values = measured.get(index, {})
        delivered.append(round(sign * sum(values.values()), 2))
        for vehicle_id, kw in values.items():
            per_vehicle[vehicle_id] = per_vehicle.get(vehicle_id, 0.0) + sign * kw * SLOT_HOURS
    return Delivery(
        slot_starts=slots,
        requested_kw=event.target_kw,
        committed_kw=np.round(committed, 2).tolist(),
        delivered_kw=delivered,
        measured_kwh=per_vehicle,
    )


def measured_kw(*, event: GridEvent, vehicle_ids: Any) -> dict[int, dict[Any, float]]:
    """Mean measured power (kW, positive charges) of each car in each event slot it reported in,
    keyed by slot index, in one grouped query."""
    slots = event_slots(event)
    rows = (
        VehicleReading.objects.filter(
            vehicle_id__in=vehicle_ids,
            recorded_at__gte=slots[0],
            recorded_at__lt=event.ends_at,
            power_kw__isnull=False,
        )
        .annotate(slot=DateBin(Value(SLOT), F("recorded_at"), Value(slots[0])))
        .values("vehicle_id", "slot")
        .annotate(kw=Avg("power_kw"))
        .values_list("slot", "vehicle_id", "kw")
    )
    measured: dict[int, dict[Any, float]] = {}
    for start, vehicle_id, kw in rows:
        measured.setdefault(int((start - slots[0]) / SLOT), {})[vehicle_id] = kw
    return measured


def failing_commands(*, event: GridEvent, limit: int = 50) -> list[Command]:
    """Participants' device commands that failed or were refused since the event was dispatched."""
    since = min(event.notified_at or event.starts_at, event.starts_at)
    return list(
        Command.objects.filter(
            vehicle_id__in=event.participations.values("vehicle_id"),
            state__in=[Command.State.FAILED, Command.State.REFUSED],
            created_at__gte=since,
            created_at__lt=event.ends_at,
        )
        .select_related("vehicle")
        .order_by("-created_at")[:limit]
    )


def opted_out(*, event: GridEvent) -> list[EventParticipation]:
    return list(
        event.participations.exclude(opted_out_at=None)
        .select_related("vehicle")
        .order_by("-opted_out_at")
    )
