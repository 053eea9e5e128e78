"""Planning for one car: turn its preferences, telemetry and tariff into a stored plan.

Called by the `programs.replan_vehicle` task, which the vehicles app's signals (plug-in, unplug,
SoC drift, preference change) enqueue through programs.receivers. The numbers are worked out by
the pure core (programs.scheduling); this module only gathers inputs and stores the result.
"""

from __future__ import annotations

import logging
import math
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from programs.models import ChargingPlan
from programs.scheduling import Fleet, Problem, Signals, plan_fleet, why_sentence
from vehicles import selectors as vehicle_selectors
from vehicles.models import Vehicle
from vehicles.preferences import next_departure

logger = logging.getLogger(__name__)
SLOT = timedelta(minutes=15)


def slot_start(moment: datetime) -> datetime:
    """The 15-minute UTC slot containing `moment`."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def tariff_prices(*, start: datetime, slots: int, time_zone: str) -> np.ndarray:
    """Import price per slot from the default time-of-use tariff, read in the owner's zone."""
    tariff = settings.DEFAULT_TARIFF
    zone = zoneinfo.ZoneInfo(time_zone)
    periods = [
        (time.fromisoformat(p["start"]), time.fromisoformat(p["end"]), float(p["price"]))
        for p in tariff["periods"]
    ]
    prices = np.full(slots, float(tariff["default_price"]))
    for index in range(slots):
        local = (start + index * SLOT).astimezone(zone).time()
        for begin, end, price in periods:
            if begin <= local < end:
                prices[index] = price
                break
    return prices


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
    preference = vehicle_selectors.preference_for(vehicle=vehicle)
    defaults = settings.PLANNING_DEFAULTS
    start = slot_start(now)
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
    slots = max(departure_slot, 4)
    v2g = vehicle.v2g_capable and preference.v2g_consent and not (boosting or paused)
    max_kw = float(vehicle.max_ac_kw)
    fleet = Fleet.build(
        1,
        capacity_kwh=float(vehicle.battery_kwh),
        soc=reading.soc_pct / 100,
        min_soc=preference.min_soc_pct / 100,
        max_soc=ceiling_pct / 100,
        target_soc=min(target_pct, ceiling_pct) / 100,
        plug_slot=0,
        departure_slot=departure_slot,
        max_charge_kw=max_kw,
        max_discharge_kw=max_kw if v2g else 0.0,
        charge_efficiency=defaults["charge_efficiency"],
        discharge_efficiency=defaults["discharge_efficiency"],
        v2g_min_soc=preference.v2g_min_soc_pct / 100,
        degradation_cost_per_kwh=defaults["degradation_cost_per_kwh"],
        boost=boosting or paused,
    )
    prices = tariff_prices(start=start, slots=slots, time_zone=vehicle.owner.time_zone)
    signals = Signals(
        import_price=prices,
        export_price=np.full(slots, float(settings.DEFAULT_TARIFF["export_price"])),
        carbon_g_per_kwh=np.zeros(slots),
    )
    problem = Problem(
        start=start, slots=slots, signals=signals, fleet=fleet, vehicle_ids=[str(vehicle.pk)]
    )
    plan = plan_fleet(problem)
    power, soc, reasons = plan.power_kw[0], plan.soc[0], plan.reasons[0]
    why = why_sentence(
        power_kw=power,
        reasons=reasons,
        soc=soc,
        start=start,
        target_soc=min(target_pct, ceiling_pct) / 100,
        departure_slot=departure_slot,
        tz=vehicle.owner.time_zone,
    )
    return store_plan(
        vehicle=vehicle,
        trigger=trigger,
        start=start,
        power_kw=[round(float(x), 3) for x in power],
        soc=[round(float(x), 4) for x in soc],
        reasons=[int(x) for x in reasons],
        import_price=[round(float(x), 4) for x in prices],
        departure_at=departure.at if departure else None,
        departure_slot=departure_slot,
        target_soc_pct=int(min(target_pct, ceiling_pct)),
        min_soc_pct=preference.min_soc_pct,
        shortfall_kwh=float(plan.shortfall_kwh[0]),
        cost=float(plan.cost[0]),
        why=why[:300],
    )


@transaction.atomic
def store_plan(*, vehicle: Vehicle, **fields: Any) -> ChargingPlan:
    """Save the next version of a car's plan (versions never collide: the row lock serialises)
    and send its current slot to the device at once, not at the next beat (owner actions on the
    `control` queue)."""
    from programs.tasks import execute_vehicle_slot  # tasks import services

    Vehicle.objects.select_for_update().filter(pk=vehicle.pk).first()
    latest = ChargingPlan.objects.filter(vehicle=vehicle).aggregate(Max("version"))["version__max"]
    plan = ChargingPlan.objects.create(vehicle=vehicle, version=(latest or 0) + 1, **fields)
    queue = "control" if plan.trigger == "preference_changed" else "default"
    transaction.on_commit(
        lambda: execute_vehicle_slot.apply_async(args=[str(vehicle.pk)], queue=queue)
    )
    return plan
