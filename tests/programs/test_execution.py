"""Plan slots become commands: the due slot of each current plan, once per plan version + slot +
device however many beats (or beat processes) run; curtailment carries a lease to the slot's end
(I8); a new plan's first slot is queued at once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from programs import execution
from programs.services import slot_start, store_plan
from programs.tasks import execute_due_slots, execute_vehicle_slots
from tests.factories import VehicleFactory
from vehicles.control.models import Command, OutboxEntry

pytestmark = pytest.mark.django_db


def _plan(vehicle, power_kw, *, start=None, trigger="plugged_in"):
    start = start or slot_start(timezone.now())
    slots = len(power_kw)
    return store_plan(
        vehicle=vehicle,
        trigger=trigger,
        start=start,
        power_kw=power_kw,
        soc=[0.5] * (slots + 1),
        reasons=[0] * slots,
        import_price=[0.1] * slots,
        departure_slot=slots,
        target_soc_pct=80,
        min_soc_pct=30,
        cost=0.0,
        why="test",
    )


def test_two_beats_make_one_command_per_slot(published, settings):
    """Each beat fans the fleet out in batches on `bulk`; running every batch of two beats
    still makes one command per car and slot."""
    settings.PROGRAMS_FANOUT_BATCH = 2
    vehicle = VehicleFactory()
    others = [VehicleFactory() for _ in range(2)]
    plan = _plan(vehicle, [7.2, 7.2, 0.0, 0.0])
    for other in others:
        _plan(other, [0.0, 0.0])
    execute_due_slots.apply()
    execute_due_slots.apply()
    batches = [args for queue, task, args in published if task == "programs.execute_vehicle_slots"]
    assert len(batches) == 4  # 3 cars in batches of 2, per beat
    assert {queue for queue, task, _ in published if task.endswith("slots")} == {"bulk"}
    for args in batches:
        execute_vehicle_slots.apply(args=args)
    assert Command.objects.count() == 3
    command = Command.objects.get(vehicle=vehicle)
    assert command.action == Command.Action.START_CHARGE
    assert command.plan_version == plan.version
    assert command.idempotency_key.endswith(f":v{plan.version}:{plan.start:%Y%m%dT%H%MZ}:car")
    assert OutboxEntry.objects.filter(command=command).count() == 1


def test_a_zero_slot_curtails_with_a_lease_ending_with_the_slot():
    vehicle = VehicleFactory()
    begin = slot_start(timezone.now())
    _plan(vehicle, [0.0, 7.2], start=begin)
    now = begin + timedelta(minutes=4)
    assert execution.execute_due_slots(now=now) == 1
    command = Command.objects.get(vehicle=vehicle)
    assert command.action == Command.Action.STOP_CHARGE
    assert command.lease_end == begin + timedelta(minutes=15)
    assert command.lease_end - now <= timedelta(minutes=15)


def test_charging_on_the_same_plan_is_not_repeated_but_a_new_plan_is_carried_out():
    vehicle = VehicleFactory()
    begin = slot_start(timezone.now())
    _plan(vehicle, [7.2, 7.2, 0.0], start=begin)
    execution.execute_due_slots(now=begin + timedelta(minutes=1))
    execution.execute_due_slots(now=begin + timedelta(minutes=16))  # slot 1, still charging
    assert Command.objects.filter(vehicle=vehicle).count() == 1
    execution.execute_due_slots(now=begin + timedelta(minutes=31))  # slot 2: stop
    newer = _plan(vehicle, [7.2, 7.2], start=begin + timedelta(minutes=30), trigger="boost")
    execution.execute_due_slots(now=begin + timedelta(minutes=32))
    actions = list(
        Command.objects.filter(vehicle=vehicle).order_by("id").values_list("action", "state")
    )
    assert actions == [
        ("start_charge", "superseded"),
        ("stop_charge", "superseded"),
        ("start_charge", "pending"),
    ]
    assert Command.objects.order_by("id").last().plan_version == newer.version


def test_ended_plans_and_discharge_slots_without_a_charger_send_nothing():
    ended, discharging = VehicleFactory(), VehicleFactory()
    _plan(ended, [7.2], start=slot_start(timezone.now()) - timedelta(hours=1))
    _plan(discharging, [-5.0, -5.0])
    assert execution.execute_due_slots() == 0
    assert not Command.objects.exists()


def test_a_new_plan_queues_its_first_slot_at_once(django_capture_on_commit_callbacks):
    """No wait for the next beat: owner-driven plans on `control`, others on `default`."""
    from celery.signals import after_task_publish

    seen = []

    def record(sender, headers, routing_key, body, **kwargs):
        seen.append((routing_key, headers["task"], body[0]))

    after_task_publish.connect(record, weak=False)
    try:
        vehicle = VehicleFactory()
        with django_capture_on_commit_callbacks(execute=True):
            _plan(vehicle, [7.2], trigger="preference_changed")
        with django_capture_on_commit_callbacks(execute=True):
            _plan(vehicle, [7.2], trigger="plugged_in")
    finally:
        after_task_publish.disconnect(record)
    assert seen == [
        ("control", "programs.execute_vehicle_slot", [str(vehicle.pk)]),
        ("default", "programs.execute_vehicle_slot", [str(vehicle.pk)]),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_beat_processes_at_once_make_one_command():
    """Two beats racing on separate connections: the unique idempotency key lets one insert win;
    the other finds it and adds neither a command nor an outbox entry."""
    vehicle = VehicleFactory()
    _plan(vehicle, [7.2, 7.2])
    barrier, errors = threading.Barrier(2), []

    def beat():
        try:
            barrier.wait(timeout=10)
            execution.execute_due_slots()
        except Exception as error:  # collected and asserted below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert Command.objects.filter(vehicle=vehicle).count() == 1
    assert OutboxEntry.objects.count() == 1


def test_an_owners_plan_reaches_the_device_on_control_then_its_slots_are_plan_steps(
    published, django_capture_on_commit_callbacks
):
    """I4: the first command of a plan an opt-out made is the owner's and is relayed on
    `control`, never behind a fan-out on `commands`; the plan's next slot is an ordinary step
    (so the gateway's pause and boost checks apply to it)."""
    vehicle = VehicleFactory()
    begin = slot_start(timezone.now())
    _plan(vehicle, [7.2, 0.0], start=begin, trigger="opt_out")
    with django_capture_on_commit_callbacks(execute=True):
        first = execution.execute_due_slots(now=begin + timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        execution.execute_due_slots(now=begin + timedelta(minutes=16))
    assert first == 1
    commands = list(Command.objects.filter(vehicle=vehicle).order_by("id"))
    assert [(c.action, c.source) for c in commands] == [
        (Command.Action.START_CHARGE, Command.Source.OWNER),
        (Command.Action.STOP_CHARGE, Command.Source.PLAN),
    ]
    sends = [(queue, args) for queue, task, args in published if task == "control.send_command"]
    assert sends == [("control", [commands[0].pk]), ("commands", [commands[1].pk])]


def test_a_stale_plan_never_overrides_a_newer_one():
    """A fan-out batch that read the car's plans before an opt-out stored a newer one: the old
    plan's slot writes nothing, so the owner's command is not superseded by it (I4)."""
    vehicle = VehicleFactory()
    begin = slot_start(timezone.now())
    now = begin + timedelta(minutes=1)
    event_plan = _plan(vehicle, [0.0, 0.0], start=begin, trigger="event")
    (stale,) = execution.current_plans(now=now, vehicle_id=vehicle.pk)  # the batch's read
    _plan(vehicle, [7.2, 7.2], start=begin, trigger="opt_out")
    assert execution.execute_due_slots(now=now, vehicle_id=vehicle.pk) == 1
    owner = Command.objects.get(vehicle=vehicle)
    assert execution.execute_plan_slot(plan=stale, now=now) is None
    assert stale.version == event_plan.version
    owner.refresh_from_db()
    assert (owner.action, owner.source, owner.state) == ("start_charge", "owner", "pending")
    assert Command.objects.filter(vehicle=vehicle).count() == 1
