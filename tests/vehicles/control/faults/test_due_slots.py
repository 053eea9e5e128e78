"""Several runs of the due-slot task at once (two beat processes, a re-delivered message, the
new-plan fast path) on a real worker: each due plan step becomes one command, one outbox entry,
one effect at the car."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import transaction
from django.utils import timezone

from chargescape.celery import app as celery_app
from programs.services import slot_start, store_plan
from tests.vehicles.control.faults.conftest import wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control.models import Command, OutboxEntry

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

RUNS = 4


def _plan(vehicle, power_kw: list[float]):
    slots = len(power_kw)
    with transaction.atomic():
        return store_plan(
            vehicle=vehicle,
            trigger="plugged_in",
            start=slot_start(timezone.now()),
            power_kw=power_kw,
            soc=[0.5] * (slots + 1),
            reasons=[0] * slots,
            import_price=[0.1] * slots,
            departure_slot=slots,
            target_soc_pct=80,
            min_soc_pct=30,
            cost=0.0,
            why="fault test",
        )


def test_concurrent_due_slot_runs_make_one_command_per_step(fleet, processes, cloud):
    """Ten cars plan to charge now and ten to hold off (a curtailment with a lease to the slot's
    end, while they are charging). Four `programs.execute_due_slots` runs are queued at once
    next to the plans' own fast-path runs, on four worker processes: every car gets one command
    for the step and hears it once."""
    charging, holding = fleet.vehicles[:10], fleet.vehicles[10:20]
    for vehicle in holding:
        cloud.set_state(vehicle.vin, charging=True)
    for vehicle in charging:
        _plan(vehicle, [7.2, 7.2, 7.2])
    for vehicle in holding:
        _plan(vehicle, [0.0, 0.0, 0.0])

    worker = processes.worker(concurrency=RUNS)
    for _ in range(RUNS):
        celery_app.send_task("programs.execute_due_slots", queue="default")

    wait_for(
        lambda: Command.objects.count() >= len(charging) + len(holding),
        timeout_s=45,
        what="the due steps to become commands",
    )
    wait_until_settled(timeout_s=45)
    per_car = Counter(Command.objects.values_list("vehicle_id", flat=True))
    steps = Counter(Command.objects.values_list("vehicle_id", "slot_start"))
    assert set(steps.values()) == {1}, "a due step became two commands"
    assert set(per_car) == {v.pk for v in [*charging, *holding]}
    assert OutboxEntry.objects.count() == Command.objects.count()
    assert "IntegrityError" not in worker.log()

    summary = assert_invariants(cloud)
    for vehicle in charging:
        assert summary.effects[(vehicle.provider_vehicle_id, "vehicle.start_charge")] == 1
    for vehicle in holding:
        # A second slot's stop finds the car stopped (NOT_CHARGING): confirmed, not re-sent.
        assert summary.effects[(vehicle.provider_vehicle_id, "vehicle.stop_charge")] == 1
