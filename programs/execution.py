"""Plans become device commands: the due 15-minute slot of each current plan (DESIGN.md §6.1).

Programs decide, vehicles act: this module reads plans and hands each due step to
`vehicles.control.services.create_command`, which writes the command with its outbox entry and
takes it through the safety gateway to the device. The `programs.execute_due_slots` beat task
(every minute) fans the fleet out in batches (`programs.execute_vehicle_slots` on `bulk`); right
after a new plan is stored, `programs.execute_vehicle_slot` runs its first slot at once.

Idempotent by construction: a step's idempotency key is plan version + slot + device, so a second
beat, a second beat process or a re-delivered task finds the command and adds nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from programs.models import ChargingPlan, EventParticipation, GridEvent
from vehicles.control import services as control_services
from vehicles.control.models import Command
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

# Plans are made for at most a few days; an older one cannot have a due slot.
PLAN_LOOKBACK = timedelta(days=3)
# The planner's kW carry float noise; below this a slot is "no power".
IDLE_KW = 0.05
ACTOR = "programs.execute_due_slots"


def slot_key(*, plan: ChargingPlan, slot_start: datetime, device: str) -> str:
    """plan version + slot + device (issue 6): the same step always maps to the same key."""
    return f"plan:{plan.vehicle_id}:v{plan.version}:{slot_start:%Y%m%dT%H%MZ}:{device}"


def _started_plans(now: datetime) -> QuerySet[ChargingPlan]:
    return ChargingPlan.objects.filter(
        start__lte=now,
        start__gte=now - PLAN_LOOKBACK,
        vehicle__link_state=Vehicle.LinkState.LINKED,
    )


def current_plans(
    *, now: datetime, vehicle_id: Any = None, vehicle_ids: list[Any] | None = None
) -> list[ChargingPlan]:
    """The newest plan of each linked car that has started (DISTINCT ON, one row per car)."""
    plans = _started_plans(now)
    if vehicle_id is not None:
        plans = plans.filter(vehicle_id=vehicle_id)
    if vehicle_ids is not None:
        plans = plans.filter(vehicle_id__in=vehicle_ids)
    return list(
        plans.select_related("vehicle").order_by("vehicle_id", "-version").distinct("vehicle_id")
    )


def _capped_partial(plan: ChargingPlan, *, power_kw: float, at: datetime) -> bool:
    """A car its cloud can only start or stop cannot draw part of its power: in a slot of an
    import-cap event it takes part in, a partial plan is a pause, so the cap holds. The energy
    it misses shows as SoC drift and is replanned after the event."""
    if power_kw >= float(plan.vehicle.max_ac_kw) - IDLE_KW:
        return False
    return EventParticipation.objects.filter(
        vehicle_id=plan.vehicle_id,
        opted_out_at=None,
        event__kind=GridEvent.Kind.IMPORT_CAP,
        event__status=GridEvent.Status.ACTIVE,
        event__starts_at__lt=at + timedelta(minutes=plan.slot_minutes),
        event__ends_at__gt=at,
    ).exists()


def execute_plan_slot(*, plan: ChargingPlan, now: datetime, actor: str = ACTOR) -> Command | None:
    """Turn the plan's slot containing `now` into a command; the command (new or existing) or
    None when the plan has ended or the step needs nothing sent."""
    slot = timedelta(minutes=plan.slot_minutes)
    index = int((now - plan.start) / slot)
    if not 0 <= index < len(plan.power_kw):
        return None
    power_kw = float(plan.power_kw[index])
    begin = plan.start + index * slot
    if power_kw < -IDLE_KW:
        # Discharging goes through a V2G charger; cars are not yet paired with chargers.
        logger.info("plan %s slot %s discharges: no V2G charger to carry it", plan.pk, index)
        return None
    if power_kw > IDLE_KW and _capped_partial(plan, power_kw=power_kw, at=begin):
        power_kw = 0.0
    if power_kw > IDLE_KW:
        previous = (
            Command.objects.filter(vehicle_id=plan.vehicle_id, charger__isnull=True)
            .order_by("-id")
            .first()
        )
        if (
            previous is not None
            and previous.action == Command.Action.START_CHARGE
            and previous.plan_version == plan.version
            and previous.state not in (Command.State.FAILED, Command.State.EXPIRED)
        ):
            return previous  # still charging on the same plan: do not wake the car again
        action, lease_end = Command.Action.START_CHARGE, None
    else:
        # Curtailment is a lease renewed every slot while the plan holds (I8).
        action, lease_end = Command.Action.STOP_CHARGE, begin + slot
    command, _ = control_services.create_command(
        vehicle=plan.vehicle,
        action=action,
        idempotency_key=slot_key(plan=plan, slot_start=begin, device="car"),
        lease_end=lease_end,
        plan_version=plan.version,
        slot_start=begin,
        actor=actor,
    )
    return command


def execute_due_slots(
    *, now: datetime | None = None, vehicle_id: Any = None, vehicle_ids: list[Any] | None = None
) -> int:
    """Materialise the due slot of the current plans (of one car, of some, or of all); returns
    how many commands now exist for those slots (created or found)."""
    now = now or timezone.now()
    count = 0
    for plan in current_plans(now=now, vehicle_id=vehicle_id, vehicle_ids=vehicle_ids):
        if execute_plan_slot(plan=plan, now=now) is not None:
            count += 1
    return count


def fan_out_due_slots(*, now: datetime | None = None) -> int:
    """The beat's minute: every car with a started plan, in batches of PROGRAMS_FANOUT_BATCH on
    the `bulk` queue (DESIGN.md §2), so more workers mean proportionally more throughput and the
    `control` queue never waits. Returns the number of batches enqueued."""
    from programs.tasks import execute_vehicle_slots

    now = now or timezone.now()
    ids = [
        str(vehicle_id)
        for vehicle_id in _started_plans(now)
        .order_by("vehicle_id")
        .distinct("vehicle_id")
        .values_list("vehicle_id", flat=True)
    ]
    batch = settings.PROGRAMS_FANOUT_BATCH
    for offset in range(0, len(ids), batch):
        execute_vehicle_slots.apply_async(args=[ids[offset : offset + batch]], queue="bulk")
    return -(-len(ids) // batch)
