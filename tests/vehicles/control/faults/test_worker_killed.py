"""A worker killed with SIGKILL at each point of a send ends with each command once-effective.

The kill points are real waits, nothing patched: a PostgreSQL lock the worker must wait for (on
the vehicle link right after the claim committed: before send; on the command row when it
stores the answer: after the reply, before commit) or a request the simulated cloud holds after
the car acted (after send, before the reply).
"""

from __future__ import annotations

import pytest
from psycopg import sql

from tests.vehicles.control.faults.conftest import (
    accepted,
    backends_waiting_on_locks,
    side_connection,
    wait_until_settled,
)
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import Command
from vehicles.models import VehicleLink

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def _start_charge(vehicle, key="start-1") -> Command:
    command, _ = services.create_command(
        vehicle=vehicle, action=Command.Action.START_CHARGE, idempotency_key=key, actor="test"
    )
    return command


def _state(command: Command) -> str:
    command.refresh_from_db()
    return command.state


def _kinds(command: Command) -> list[str]:
    return list(command.events.values_list("kind", flat=True))


def test_killed_after_the_claim_before_sending_sends_once(fleet, processes, cloud):
    """SIGKILL between the committed claim and the request: the command is left `sending` and the
    car never heard it. The re-delivered task waits out the claim, reads the car (not charging)
    and sends once."""
    worker = processes.worker(concurrency=1)
    vehicle = fleet.vehicles[0]
    with side_connection() as side:
        # The worker reads the vehicle's link (its token) after claiming, before any I/O.
        side.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(VehicleLink._meta.db_table)
            )
        )
        command = _start_charge(vehicle)
        wait_for(backends_waiting_on_locks, timeout_s=30, what="the worker to reach the send")
        assert _state(command) == Command.State.SENDING
        assert worker.kill_children()
        side.rollback()
    assert cloud.commands() == []  # nothing reached the car

    wait_until_settled(timeout_s=45)
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert command.attempts == 2
    assert "worker_lost" in _kinds(command)
    assert command.events.filter(kind="verified", detail__startswith="not in place").exists()
    assert accepted(cloud, vehicle) == 1
    assert cloud.car(vehicle.vin).charging
    assert_invariants(cloud)


def test_killed_after_the_car_acted_before_the_reply_is_confirmed_not_resent(
    fleet, processes, cloud
):
    """SIGKILL while the cloud holds its answer (the car already started charging): the re-run
    reads the car, finds it charging and confirms without a second start."""
    worker = processes.worker(concurrency=1)
    vehicle = fleet.vehicles[0]
    cloud.inject_fault("hold", endpoint="vehicle.start_charge", effect="before")
    command = _start_charge(vehicle)
    wait_for(lambda: cloud.held_count() == 1, timeout_s=30, what="the request to be held")
    assert worker.kill_children()
    cloud.release_holds()  # the answer goes to a dead socket

    wait_until_settled(timeout_s=45)
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    assert "worker_lost" in _kinds(command)
    assert command.events.filter(kind="verified", detail="already in place").exists()
    assert accepted(cloud, vehicle) == 1
    assert cloud.car(vehicle.vin).charging
    assert_invariants(cloud)


def test_killed_after_the_reply_before_the_commit_is_confirmed_not_resent(fleet, processes, cloud):
    """SIGKILL while the worker waits to store the car's 200 (the command row is locked): the
    `sent` transition and its audit row never commit; the re-run confirms from the car."""
    worker = processes.worker(concurrency=1)
    vehicle = fleet.vehicles[0]
    cloud.inject_fault("hold", endpoint="vehicle.start_charge", effect="before")
    command = _start_charge(vehicle)
    wait_for(lambda: cloud.held_count() == 1, timeout_s=30, what="the request to be held")
    with side_connection() as side:
        side.execute(
            sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(
                sql.Identifier(Command._meta.db_table)
            ),
            [command.pk],
        )
        cloud.release_holds()  # the worker gets its 200 and tries to store it
        wait_for(backends_waiting_on_locks, timeout_s=30, what="the worker to store the reply")
        assert worker.kill_children()
        side.rollback()
    assert accepted(cloud, vehicle) == 1

    wait_until_settled(timeout_s=45)
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    kinds = _kinds(command)
    assert "sent" not in kinds  # the killed worker's commit never happened, audit row included
    assert "worker_lost" in kinds
    assert accepted(cloud, vehicle) == 1
    assert_invariants(cloud)


def test_whole_worker_killed_mid_send_is_redriven_to_a_fresh_worker(fleet, processes, cloud):
    """The whole worker (main process and child) dies with the message unacknowledged, as when
    its machine goes: the broker would hand the message out again only after the visibility
    timeout (an hour). The relay re-drives the stalled command and a fresh worker confirms it
    from the car; three other commands of the same fan-out are not sent twice."""
    worker = processes.worker(concurrency=1)
    held, *others = fleet.vehicles[:4]
    cloud.inject_fault(
        "hold", endpoint="vehicle.start_charge", vin=held.vin, effect="before", count=1
    )
    commands = [_start_charge(held, key="held")]
    wait_for(lambda: cloud.held_count() == 1, timeout_s=30, what="the request to be held")
    worker.kill()
    cloud.release_holds()
    commands += [_start_charge(v, key=f"other-{i}") for i, v in enumerate(others)]

    processes.worker(concurrency=2)
    processes.beat()  # the relay, every 5 s
    wait_until_settled(timeout_s=60)
    first = Command.objects.get(pk=commands[0].pk)
    assert first.state == Command.State.CONFIRMED
    assert "redriven" in _kinds(first)
    assert {c.state for c in Command.objects.exclude(pk=first.pk)} == {Command.State.SENT}
    for vehicle in (held, *others):
        assert accepted(cloud, vehicle) == 1
    assert_invariants(cloud)
