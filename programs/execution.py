"""Plans become device commands: the due 15-minute slot of each current plan (DESIGN.md §6.1).

Programs decide, vehicles act: this module reads plans and hands a batch's due steps to
`vehicles.control.services.create_commands`, which writes the commands with their outbox entries
in a few statements; the control services take each through the safety gateway to its device.
The `programs.execute_due_slots` beat task (every minute) fans the fleet out in batches
(`programs.execute_vehicle_slots` on `bulk`); right after a new plan is stored,
`programs.execute_vehicle_slot` runs its first slot at once, and plug-ins run theirs from the
`programs.replan_plugged_in` batch that planned them.

A car paired with a charger (`Charger.usual_vehicle`) that is connected and has a session open
is driven through that charger: every slot becomes a power setpoint (a TxProfile lease, real
power modulation; negative power discharges on a V2G charger). Any other car, and a car whose
home charger is offline or has no car plugged in, goes through its cloud (start / stop).

Idempotent by construction: a step's idempotency key is plan version + slot + device, so a second
beat, a second beat process or a re-delivered task finds the command and adds nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


def _capped_partials(steps: list[_Step]) -> set[Any]:
    """The cars among `steps` (cloud-only, drawing part of their power) whose slot falls in an
    import-cap event they take part in: a car its cloud can only start or stop cannot draw
    part of its power, so there a partial plan is a pause and the cap holds. The energy it
    misses shows as SoC drift and is replanned after the event. One query for the batch."""
    if not steps:
        return set()
    earliest = min(step.begin for step in steps)
    latest = max(step.end for step in steps)
    windows: dict[Any, list[tuple[datetime, datetime]]] = {}
    for vehicle_id, starts_at, ends_at in EventParticipation.objects.filter(
        vehicle_id__in=[step.plan.vehicle_id for step in steps],
        opted_out_at=None,
        event__kind=GridEvent.Kind.IMPORT_CAP,
        event__status=GridEvent.Status.ACTIVE,
        event__starts_at__lt=latest,
        event__ends_at__gt=earliest,
    ).values_list("vehicle_id", "event__starts_at", "event__ends_at"):
        windows.setdefault(vehicle_id, []).append((starts_at, ends_at))
    return {
        step.plan.vehicle_id
        for step in steps
        if any(
            starts_at < step.end and ends_at > step.begin
            for starts_at, ends_at in windows.get(step.plan.vehicle_id, ())
        )
    }


def _owners_first(plans: list[ChargingPlan]) -> set[Any]:
    """The cars among `plans` whose plan an owner's action made and has no command yet."""
    owners = [plan for plan in plans if plan.trigger in OWNER_TRIGGERS]
    if not owners:
        return set()
    started = set(
        Command.objects.filter(
            vehicle_id__in=[plan.vehicle_id for plan in owners],
            plan_version__in={plan.version for plan in owners},
        ).values_list("vehicle_id", "plan_version")
    )
    return {plan.vehicle_id for plan in owners if (plan.vehicle_id, plan.version) not in started}


def command_source(plan: ChargingPlan) -> str:
    """The first command of a plan an owner's action made (opt-out, a preference, boost) is the
    owner's: it goes out on the `control` queue and never waits behind a fleet fan-out (I4). The
    plan's later slots are ordinary plan steps (the gateway's pause and boost checks apply)."""
    return Command.Source.OWNER if _owners_first([plan]) else Command.Source.PLAN


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


@dataclass(frozen=True)
class _Step:
    """The slot of a plan due now, and the charger it goes through (None: the car's cloud)."""

    plan: ChargingPlan
    begin: datetime
    power_kw: float
    charger: Charger | None

    @property
    def end(self) -> datetime:
        return self.begin + timedelta(minutes=self.plan.slot_minutes)


def _charger_spec(
    step: _Step, charger: Charger, *, now: datetime, source: str
) -> control_services.CommandSpec:
    """Every slot is a setpoint lease on the charger, renewed slot by slot (I8): the charger ends
    it by itself when nobody renews it, link or no link (charging falls back to the day plan or
    full power, a discharge stops). The safety gateway re-checks the floor, stale SoC, consent
    and the V2G floor right before it goes out (I3)."""
    plan = step.plan
    return control_services.CommandSpec(
        vehicle=plan.vehicle,
        charger=charger,
        action=Command.Action.SET_POWER,
        power_kw=round(_charger_setpoint_kw(plan, charger, step.power_kw), 3),
        idempotency_key=slot_key(plan=plan, slot_start=step.begin, device=f"charger:{charger.pk}"),
        lease_end=min(step.end + LEASE_MARGIN, now + MAX_LEASE),
        source=source,
        plan_version=plan.version,
        slot_start=step.begin,
    )


def _due_step(plan: ChargingPlan, *, now: datetime, chargers: dict[Any, Charger]) -> _Step | None:
    slot = timedelta(minutes=plan.slot_minutes)
    index = int((now - plan.start) / slot)
    if not 0 <= index < len(plan.power_kw):
        return None  # the plan has ended (or not begun)
    return _Step(
        plan=plan,
        begin=plan.start + index * slot,
        power_kw=float(plan.power_kw[index]),
        charger=chargers.get(plan.vehicle_id),
    )


def execute_plan_slot(
    *, plan: ChargingPlan, now: datetime, actor: str = ACTOR, charger: Any = _LOOK_UP
) -> Command | None:
    """Turn the plan's slot containing `now` into a command: `execute_plan_slots` for one plan.
    `charger`: the car's paired charger (`paired_chargers`) or None; looked up when not given."""
    chargers = None if charger is _LOOK_UP else {plan.vehicle_id: charger} if charger else {}
    done = execute_plan_slots(plans=[plan], now=now, actor=actor, chargers=chargers)
    return done.get(plan.vehicle_id)


def execute_plan_slots(
    *,
    plans: list[ChargingPlan],
    now: datetime,
    actor: str = ACTOR,
    chargers: dict[Any, Charger] | None = None,
) -> dict[Any, Command]:
    """Turn the slot containing `now` of each plan into a command; {vehicle id: command (new or
    existing)} for the plans that have one. A plan gets none when it has ended, a newer plan
    has replaced it, or the step needs nothing sent (a discharge without a V2G path).
    `chargers`: each car's paired charger (`paired_chargers`); looked up when not given.

    One transaction for the batch, a fixed number of queries whatever its size, the commands
    written by `create_commands` in one go (B6). Under the cars' row locks (the ones
    `store_plan` takes to number versions, taken in id order): a fan-out batch that read the
    plans before an owner's opt-out stored a newer one must not write the old plan's command
    after the owner's, superseding it (I4); it finds the newer version and leaves the car to
    that plan's own task."""
    if not plans:
        return {}
    with transaction.atomic():
        vehicle_ids = list(
            Vehicle.objects.select_for_update()
            .filter(pk__in={plan.vehicle_id for plan in plans})
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        newest = dict(
            ChargingPlan.objects.filter(vehicle_id__in=vehicle_ids)
            .order_by()
            .values_list("vehicle_id")
            .annotate(Max("version"))
        )
        current = [plan for plan in plans if newest.get(plan.vehicle_id, 0) <= plan.version]
        if chargers is None:
            chargers = paired_chargers(vehicle_ids=[plan.vehicle_id for plan in current])
        steps = [step for plan in current if (step := _due_step(plan, now=now, chargers=chargers))]
        return _execute_steps(steps, now=now, actor=actor)


def _execute_steps(steps: list[_Step], *, now: datetime, actor: str) -> dict[Any, Command]:
    owners = _owners_first([step.plan for step in steps])
    capped = _capped_partials(
        [
            step
            for step in steps
            if step.charger is None
            and IDLE_KW < step.power_kw < float(step.plan.vehicle.max_ac_kw) - IDLE_KW
        ]
    )
    charging = [step for step in steps if step.charger is None and step.power_kw > IDLE_KW]
    previous = {
        command.vehicle_id: command
        for command in Command.objects.filter(
            vehicle_id__in=[step.plan.vehicle_id for step in charging], charger__isnull=True
        )
        .order_by("vehicle_id", "-id")
        .distinct("vehicle_id")
    }
    done: dict[Any, Command] = {}
    specs: list[control_services.CommandSpec] = []
    for step in steps:
        plan = step.plan
        source = Command.Source.OWNER if plan.vehicle_id in owners else Command.Source.PLAN
        if step.charger is not None:
            specs.append(_charger_spec(step, step.charger, now=now, source=source))
            continue
        power_kw = step.power_kw
        if power_kw < -IDLE_KW:
            # A cloud can start and stop a car, not discharge it: that takes a paired V2G charger.
            logger.info("plan %s slot at %s discharges: no V2G charger", plan.pk, step.begin)
            continue
        if plan.vehicle_id in capped:
            power_kw = 0.0
        if power_kw > IDLE_KW:
            last = previous.get(plan.vehicle_id)
            if (
                last is not None
                and last.action == Command.Action.START_CHARGE
                and last.plan_version == plan.version
                and last.state not in (Command.State.FAILED, Command.State.EXPIRED)
            ):
                done[plan.vehicle_id] = last  # still charging on the same plan: no new wake-up
                continue
            action, lease_end = Command.Action.START_CHARGE, None
        else:
            # Curtailment is a lease renewed every slot while the plan holds (I8).
            action, lease_end = Command.Action.STOP_CHARGE, step.end
        specs.append(
            control_services.CommandSpec(
                vehicle=plan.vehicle,
                action=action,
                idempotency_key=slot_key(plan=plan, slot_start=step.begin, device="car"),
                lease_end=lease_end,
                source=source,
                plan_version=plan.version,
                slot_start=step.begin,
            )
        )
    for command, _ in control_services.create_commands(specs=specs, actor=actor):
        done[command.vehicle_id] = command
    return done


def execute_due_slots(
    *, now: datetime | None = None, vehicle_id: Any = None, vehicle_ids: list[Any] | None = None
) -> int:
    """Materialise the due slot of the current plans (of one car, of some, or of all); returns
    how many commands now exist for those slots (created or found)."""
    now = now or timezone.now()
    plans = current_plans(now=now, vehicle_id=vehicle_id, vehicle_ids=vehicle_ids)
    chargers = paired_chargers(vehicle_ids=[plan.vehicle_id for plan in plans])
    return len(execute_plan_slots(plans=plans, now=now, chargers=chargers))


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
