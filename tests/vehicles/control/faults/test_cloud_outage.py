"""The vehicle cloud goes down for minutes, or stalls past our deadline, under a real worker.

Command timings run ~20× faster than production (conftest.FAST_TIMINGS: 0.25 s backoff base
instead of 5 s, 1.5 s settle instead of 30 s), so the 12 s outage here is a four-minute outage
in production terms and the budget of 8 attempts is the production one.
"""

from __future__ import annotations

import time

import pytest

from tests.vehicles.control.faults.conftest import commands_in, wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import Command, CommandEvent

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

OUTAGE_S = 12.0  # 4 minutes at production timings


def _start_charges(vehicles, *, prefix: str) -> list[Command]:
    return [
        services.create_command(
            vehicle=vehicle,
            action=Command.Action.START_CHARGE,
            idempotency_key=f"{prefix}-{i}",
            actor="test",
        )[0]
        for i, vehicle in enumerate(vehicles)
    ]


def test_a_cloud_outage_of_minutes_delays_commands_and_doubles_none(fleet, processes, cloud):
    """Every request answers 503 (no Retry-After: it may have acted) for the outage: commands
    back off, read the car before each re-send, fail none within the budget, and once the cloud
    is back each car starts exactly once."""
    processes.worker(concurrency=2)
    vehicles = fleet.vehicles[:12]
    cloud.inject_fault("server_error", status=503, endpoint="vehicle.*", count=1_000_000)
    commands = _start_charges(vehicles, prefix="outage")
    began = time.monotonic()
    wait_for(
        lambda: CommandEvent.objects.filter(kind="retry").count() >= 2 * len(commands),
        timeout_s=30,
        what="every command to retry twice",
    )
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))  # the outage itself
    assert commands_in(Command.State.FAILED) == 0
    assert commands_in(Command.State.SENT) == 0
    cloud.clear_faults()

    wait_until_settled(timeout_s=60)
    assert commands_in(Command.State.SENT) == len(commands)
    summary = assert_invariants(cloud)
    for vehicle in vehicles:
        assert summary.effects[(vehicle.provider_vehicle_id, "vehicle.start_charge")] == 1
    for command in Command.objects.all():
        assert 2 < command.attempts <= 8
        kinds = list(command.events.values_list("kind", flat=True))
        # After an ambiguous 503 the next attempt reads the car first (I2).
        assert kinds[-3:] == ["sending", "verified", "sent"]


def test_a_stall_10_s_past_our_deadline_is_confirmed_from_the_car(fleet, processes, cloud):
    """One car's cloud takes 12 s (our deadline: 2 s) and does start the charge. The worker
    gives up on it at 2 s and carries on with the other cars meanwhile; after the settle time
    (12 s, as production's 30 s outlasts its 20 s deadline by more than the stall) it reads the
    car, finds it charging and confirms without a second start."""
    processes.worker(
        concurrency=1,
        FAULTS_CONTROL_OEM_TIMEOUT_SECONDS="2",
        FAULTS_CONTROL_AMBIGUOUS_SETTLE_SECONDS="12",
    )
    stalled, *others = fleet.vehicles[:6]
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", vin=stalled.vin, delay_s=12.0)
    (first,) = _start_charges([stalled], prefix="stalled")
    wait_for(
        lambda: CommandEvent.objects.filter(command=first, kind="retry").exists(),
        timeout_s=30,
        what="the worker to give up waiting",
    )
    _start_charges(others, prefix="others")
    wait_for(
        lambda: commands_in(Command.State.SENT) == len(others),
        timeout_s=30,
        what="the other cars' commands while one request is stalled",
    )
    assert not cloud.car(stalled.vin).charging  # still stalled at the cloud
    assert Command.objects.get(pk=first.pk).state == Command.State.PENDING

    wait_until_settled(timeout_s=45)
    first.refresh_from_db()
    assert first.state == Command.State.CONFIRMED
    assert first.attempts == 2
    summary = assert_invariants(cloud)
    assert summary.effects[(stalled.provider_vehicle_id, "vehicle.start_charge")] == 1
    assert cloud.car(stalled.vin).charging
