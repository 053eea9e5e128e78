"""Plans become device commands: the due 15-minute slot of each current plan (DESIGN.md §6.1).

Programs decide, vehicles act: this module reads plans and hands each due step to
`vehicles.control.services.create_command`, which writes the command with its outbox entry and
takes it through the safety gateway to the device. The `programs.execute_due_slots` beat task
(every minute) fans the fleet out in batches (`programs.execute_vehicle_slots` on `bulk`); right
after a new plan is stored, `programs.execute_vehicle_slot` runs its first slot at once.

A car paired with a charger (`Charger.usual_vehicle`) that is connected and has a session open
is driven through that charger: every slot becomes a power setpoint (a TxProfile lease, real
power modulation; negative power discharges on a V2G charger). Any other car, and a car whose
home charger is offline or has no car plugged in, goes through its cloud (start / stop).

Idempotent by construction: a step's idempotency key is plan version + slot + device, so a second
beat, a second beat process or a re-delivered task finds the command and adds nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from programs.models import ChargingPlan, EventParticipation, GridEvent
from programs.services import OWNER_TRIGGERS
from vehicles.chargers.models import Charger, ChargingSession, OcppVersion, SessionState
from vehicles.control import services as control_services
from vehicles.control.gateway import MAX_LEASE
from vehicles.control.models import Command
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

# Plans are made for at most a few days; an older one cannot have a due slot.
PLAN_LOOKBACK = timedelta(days=3)
# The planner's kW carry float noise; below this a slot is "no power".
IDLE_KW = 0.05
ACTOR = "programs.execute_due_slots"
# A charger setpoint is a lease (I8) that must outlive the slot boundary until the next slot's
# setpoint replaces it: the beat writes that one within a minute of the boundary. Without the
# margin every curtailed charger would jump to full power between two slots (a feeder-wide spike
# during an import cap); with it, a plan that stops being renewed still ends 3 min after its slot.
LEASE_MARGIN = timedelta(minutes=3)
# Looked up in this call: execute_plan_slot finds the paired charger itself.
_LOOK_UP: Any = object()


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


def command_source(plan: ChargingPlan) -> str:
    """The first command of a plan an owner's action made (opt-out, a preference, boost) is the
    owner's: it goes out on the `control` queue and never waits behind a fleet fan-out (I4). The
    plan's later slots are ordinary plan steps (the gateway's pause and boost checks apply)."""
    if (
        plan.trigger in OWNER_TRIGGERS
        and not Command.objects.filter(
            vehicle_id=plan.vehicle_id, plan_version=plan.version
        ).exists()
    ):
        return Command.Source.OWNER
    return Command.Source.PLAN


def paired_chargers(*, vehicle_ids: list[Any]) -> dict[Any, Charger]:
    """The charger each car is driven through now: paired with it (`usual_vehicle`), connected,
    with a charging session open (the car is plugged in there). One query for a whole batch; a
    car with several such chargers gets the one whose session started last."""
    chargers: dict[Any, Charger] = {}
    sessions = (
        ChargingSession.objects.filter(
            state=SessionState.ACTIVE,
            charger__usual_vehicle_id__in=vehicle_ids,
            charger__is_connected=True,
        )
        .select_related("charger")
        .order_by("started_at")
    )
    for session in sessions:
        chargers[session.charger.usual_vehicle_id] = session.charger  # the latest wins
    return chargers


def can_discharge(charger: Charger) -> bool:
    """Negative setpoints need a V2G charger speaking OCPP 2.1 (CentralSetpoint)."""
    return charger.v2g_capable and charger.protocol == OcppVersion.V21


def _charger_setpoint_kw(plan: ChargingPlan, charger: Charger, power_kw: float) -> float:
    """The slot's power as a setpoint the car and charger can both carry. A discharge without a
    V2G path holds at 0 kW: the plan wanted energy out of the car, never into it."""
    limit_kw = min(float(plan.vehicle.max_ac_kw), float(charger.max_power_kw))
    if power_kw < -IDLE_KW:
        return max(power_kw, -limit_kw) if can_discharge(charger) else 0.0
    if power_kw > IDLE_KW:
        return min(power_kw, limit_kw)
    return 0.0


def _execute_on_charger(
    *,
    plan: ChargingPlan,
    charger: Charger,
    power_kw: float,
    begin: datetime,
    now: datetime,
    actor: str,
) -> Command:
    """Every slot is a setpoint lease on the charger, renewed slot by slot (I8): the charger ends
    it by itself when nobody renews it, link or no link (charging falls back to the day plan or
    full power, a discharge stops). The safety gateway re-checks the floor, stale SoC, consent
    and the V2G floor right before it goes out (I3)."""
    end = begin + timedelta(minutes=plan.slot_minutes)
    command, _ = control_services.create_command(
        vehicle=plan.vehicle,
        charger=charger,
        action=Command.Action.SET_POWER,
        power_kw=round(_charger_setpoint_kw(plan, charger, power_kw), 3),
        idempotency_key=slot_key(plan=plan, slot_start=begin, device=f"charger:{charger.pk}"),
        lease_end=min(end + LEASE_MARGIN, now + MAX_LEASE),
        source=command_source(plan),
        plan_version=plan.version,
        slot_start=begin,
        actor=actor,
    )
    return command


def execute_plan_slot(
    *, plan: ChargingPlan, now: datetime, actor: str = ACTOR, charger: Any = _LOOK_UP
) -> Command | None:
    """Turn the plan's slot containing `now` into a command; the command (new or existing) or
    None when the plan has ended, a newer plan has replaced it, or the step needs nothing sent.
    `charger`: the car's paired charger (`paired_chargers`) or None; looked up when not given.

    Under the car's row lock (the one `store_plan` takes to number versions): a fan-out batch
    that read the plans before an owner's opt-out stored a newer one must not write the old
    plan's command after the owner's, superseding it (I4); it finds the newer version and
    leaves the car to that plan's own task."""
    with transaction.atomic():
        Vehicle.objects.select_for_update().filter(pk=plan.vehicle_id).first()
        newest = ChargingPlan.objects.filter(vehicle_id=plan.vehicle_id).aggregate(
            newest=Max("version")
        )["newest"]
        if newest is not None and newest > plan.version:
            return None
        return _execute_plan_slot(plan=plan, now=now, actor=actor, charger=charger)


def _execute_plan_slot(
    *, plan: ChargingPlan, now: datetime, actor: str, charger: Any
) -> Command | None:
    slot = timedelta(minutes=plan.slot_minutes)
    index = int((now - plan.start) / slot)
    if not 0 <= index < len(plan.power_kw):
        return None
    power_kw = float(plan.power_kw[index])
    begin = plan.start + index * slot
    if charger is _LOOK_UP:
        charger = paired_chargers(vehicle_ids=[plan.vehicle_id]).get(plan.vehicle_id)
    if charger is not None:
        return _execute_on_charger(
            plan=plan, charger=charger, power_kw=power_kw, begin=begin, now=now, actor=actor
        )
    if power_kw < -IDLE_KW:
        # A cloud can start and stop a car, not discharge it: that takes a paired V2G charger.
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
        source=command_source(plan),
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
    plans = current_plans(now=now, vehicle_id=vehicle_id, vehicle_ids=vehicle_ids)
    chargers = paired_chargers(vehicle_ids=[plan.vehicle_id for plan in plans])
    count = 0
    for plan in plans:
        charger = chargers.get(plan.vehicle_id)
        if execute_plan_slot(plan=plan, now=now, charger=charger) is not None:
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
