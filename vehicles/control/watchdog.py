"""The lease watchdog for cars commanded through their cloud (DESIGN.md I8: charging fails open).

A charger enforces a lease itself: its TxProfile carries a validTo and lapses on the charger,
link or no link. A vehicle cloud does not: `stop_charge` has a lease end in our database, but the
car stays stopped until someone tells it otherwise. Execution renews a stop every slot while the
plan holds; when nothing follows (the plan ended, execution stopped renewing, a replan asked for
charging but its command failed), the car would stay stopped for good.

Every minute the beat runs `control.release_lapsed_stops` → `release_lapsed_stops`: a car whose
newest cloud command in force is a stop whose lease ended more than GRACE ago gets `start_charge`
(idempotency key `watchdog:<stop id>`, actor "watchdog"), unless the owner paused smart charging
(then we send the car nothing at all; the next run after the pause acts) or the car's newest
reading says it is unplugged. The start goes through the outbox and the safety gateway like any
command, and the closed loop (confirm.py) checks that the car charges.

Only cloud commands count: a car now on its charger path may still hold a stop from its cloud,
and the charger cannot undo that.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from vehicles import selectors as vehicle_selectors
from vehicles.control import services
from vehicles.control.models import Command
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

ACTOR = "watchdog"
KEY_PREFIX = "watchdog:"
# Execution renews a stop within a minute of the slot boundary (its beat runs every 60 s) and the
# send takes seconds; five minutes past the lease end means nobody is going to renew it.
GRACE = timedelta(minutes=5)
# How far back a lapsed stop is still looked at: a week covers a week-long pause (acted on when
# it ends) and a watchdog that was down for days; it also bounds the scan.
LOOKBACK = timedelta(days=7)
# A newer command hides a stop only while it can still act or has acted; a refused, expired,
# superseded or failed one (a replan's start that never got through) leaves the stop in force.
IN_FORCE = (
    Command.State.PENDING,
    Command.State.SENDING,
    Command.State.SENT,
    Command.State.CONFIRMED,
)


def lapsed_stops(*, now: datetime, grace: timedelta = GRACE) -> list[Command]:
    """Stops that may hold at the car (sent, confirmed, or an attempt that may have acted) with
    no cloud command in force after them, of a linked car, whose lease ended more than `grace`
    ago: oldest first."""
    newer = Command.objects.filter(
        vehicle=OuterRef("vehicle"),
        charger__isnull=True,
        pk__gt=OuterRef("pk"),
        state__in=IN_FORCE,
    )
    return list(
        Command.objects.filter(
            Q(state__in=(Command.State.SENT, Command.State.CONFIRMED))
            | Q(verify_before_send=True),  # an attempt may have reached the car (I2)
            action=Command.Action.STOP_CHARGE,
            charger__isnull=True,
            lease_end__lt=now - grace,
            lease_end__gte=now - LOOKBACK,
            vehicle__link_state=Vehicle.LinkState.LINKED,
        )
        .exclude(Exists(newer))
        .select_related("vehicle")
        .order_by("lease_end", "id")
    )


def _hold_reason(vehicle: Vehicle, *, now: datetime) -> str:
    """Why the car gets no start now ("" when it should get one)."""
    preference = vehicle_selectors.preference_for(vehicle=vehicle)
    if preference.pause_until and preference.pause_until > now:
        return "paused"
    reading = vehicle_selectors.latest_reading(vehicle=vehicle)
    if reading is not None and reading.plugged_in is False:
        return "unplugged"
    return ""


def release_lapsed_stops(
    *, now: datetime | None = None, grace: timedelta = GRACE
) -> dict[str, int]:
    """Send `start_charge` to every car left stopped by a lapsed lease; counts per outcome
    (started, paused, unplugged). Idempotent: the key is derived from the stop, so two beats at
    once (or a re-run) write one start, and once the start exists the stop is no longer newest."""
    now = now or timezone.now()
    counts = {"started": 0, "paused": 0, "unplugged": 0}
    for stop in lapsed_stops(now=now, grace=grace):
        reason = _hold_reason(stop.vehicle, now=now)
        if reason:
            counts[reason] += 1
            continue
        _, created = services.create_command(
            vehicle=stop.vehicle,
            action=Command.Action.START_CHARGE,
            idempotency_key=f"{KEY_PREFIX}{stop.pk}",
            source=Command.Source.OPERATOR,
            # The same plan version: if that plan charges next, execution need not start again.
            plan_version=stop.plan_version,
            actor=ACTOR,
        )
        if created:
            counts["started"] += 1
            logger.info(
                "watchdog: stop #%s of %s lapsed at %s with nothing after it; starting",
                stop.pk,
                stop.vehicle_id,
                stop.lease_end,
            )
    return counts
