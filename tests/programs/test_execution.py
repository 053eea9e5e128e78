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


def test_a_batch_of_due_slots_costs_the_same_statements_for_3_cars_as_for_30():
    """B6: a batch's due slots become commands in one transaction with a fixed number of
    statements (locks, versions, chargers, previous commands, create_commands), not a few per
    car; every car still gets its own command."""
    from django.test.utils import CaptureQueriesContext

    few, many = [VehicleFactory() for _ in range(3)], [VehicleFactory() for _ in range(30)]
    for index, vehicle in enumerate(few + many):
        _plan(vehicle, [7.2, 7.2] if index % 2 else [0.0, 0.0])
    counts = []
    for cars in (few, many):
        with CaptureQueriesContext(connection) as queries:
            assert execution.execute_due_slots(vehicle_ids=[v.pk for v in cars]) == len(cars)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert Command.objects.filter(vehicle__in=many).count() == 30
    assert OutboxEntry.objects.filter(command__vehicle__in=many).count() == 30


def test_a_batch_leaves_out_a_car_whose_plan_was_replaced_and_carries_out_the_rest():
    """A batch read two cars' event plans, then one owner opted out (a newer plan): that car is
    left to its newer plan's own task (I4); the other car's step is written as usual."""
    opted, other = VehicleFactory(), VehicleFactory()
    begin = slot_start(timezone.now())
    now = begin + timedelta(minutes=1)
    for vehicle in (opted, other):
        _plan(vehicle, [0.0, 0.0], start=begin, trigger="event")
    stale = execution.current_plans(now=now, vehicle_ids=[opted.pk, other.pk])
    _plan(opted, [7.2, 7.2], start=begin, trigger="opt_out")
    done = execution.execute_plan_slots(plans=stale, now=now)
    assert set(done) == {other.pk}
    assert done[other.pk].action == Command.Action.STOP_CHARGE
    assert not Command.objects.filter(vehicle=opted).exists()


def test_plug_ins_are_batched_by_one_task_chain_that_gathers_under_load(monkeypatch):
    """B6: one plug-in batch task at a time. Cars still waiting after a batch are taken by the
    same task queued again a moment later (so they gather into one batch, and no second task
    runs beside it); once the set is empty the flag is cleared and the next plug-in queues a
    task at once."""
    from celery.signals import after_task_publish
    from django.core.cache import cache

    from programs import tasks

    seen = []

    def record(sender, headers, routing_key, body, **kwargs):
        seen.append((headers["task"], headers.get("eta") is not None))

    monkeypatch.setattr(tasks, "PLUGGED_IN_BATCH", 2)
    cars = [str(VehicleFactory().pk) for _ in range(4)]
    after_task_publish.connect(record, weak=False)
    try:
        for car in cars[:3]:
            tasks.request_plugged_in_replan(car)
        assert seen == [("programs.replan_plugged_in", False)]  # one task for three plug-ins
        tasks.replan_plugged_in.apply()  # takes two: the third waits for the next batch
        assert seen[1:] == [("programs.replan_plugged_in", True)]  # itself, a moment later
        assert cache.get(tasks.PLUGGED_IN_QUEUED) == 1
        tasks.request_plugged_in_replan(cars[3])  # joins the waiting batch: no second task
        assert len(seen) == 2
        tasks.replan_plugged_in.apply()  # the last two: the set is empty
        assert len(seen) == 2
        assert cache.get(tasks.PLUGGED_IN_QUEUED) is None
        client, key = tasks._plugged_in_set()
        assert client.scard(key) == 0
        tasks.request_plugged_in_replan(cars[0])  # a quiet system: planned at once
        assert seen[2:] == [("programs.replan_plugged_in", False)]
    finally:
        after_task_publish.disconnect(record)
        cache.delete(tasks.PLUGGED_IN_QUEUED)
        client, key = tasks._plugged_in_set()
        client.delete(key)
