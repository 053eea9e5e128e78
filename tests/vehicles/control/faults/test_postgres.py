"""PostgreSQL crashes and comes back in the middle of a fan-out (our own server, never the
machine's): no task is left stuck, no command lost, none doubled (I1, I2)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from tests.vehicles.control.faults.conftest import commands_in, wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import Command

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

DOWN_S = 3.0  # how long the database stays down


def test_postgres_crash_and_restart_during_a_fan_out(own_postgres, fleet, processes, cloud):
    """An immediate shutdown (every backend killed, crash recovery on start) while 16 commands
    go out, 0.3 s each at the cloud: workers fail to claim or to store answers for DOWN_S
    seconds, then every command ends within 30 s of the restart — with the production stall
    timeout (2 min), so no re-drive by the relay can have saved them — and each car starts once.
    A command caught mid-send keeps its claim (6 s here, 2 min in production) and is then
    confirmed from the car."""
    processes.worker(concurrency=2, FAULTS_CONTROL_STALL_AFTER_SECONDS="120")
    processes.beat(FAULTS_CONTROL_STALL_AFTER_SECONDS="120")
    vehicles = fleet.vehicles[:16]
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", delay_s=0.3, count=100)
    for i, vehicle in enumerate(vehicles):
        services.create_command(
            vehicle=vehicle,
            action=Command.Action.START_CHARGE,
            idempotency_key=f"fan-out-{i}",
            actor="test",
        )
    wait_for(lambda: commands_in(Command.State.SENT) >= 2, timeout_s=30, what="the fan-out")

    connection.close()
    own_postgres.crash()
    time.sleep(DOWN_S)  # the outage itself
    own_postgres.start()

    wait_until_settled(timeout_s=30, what="every command to end after the restart")
    summary = assert_invariants(cloud)
    assert summary.states[Command.State.SENT] + summary.states[Command.State.CONFIRMED] == 16
    for vehicle in vehicles:
        assert summary.effects[(vehicle.provider_vehicle_id, "vehicle.start_charge")] == 1
