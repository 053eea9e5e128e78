"""The broker (our own Redis server) dies or loses its data in the middle of a fan-out: the worker
takes new work within 30 s of Redis coming back, and every command still reaches its car
exactly once (I1, I2)."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.utils import timezone

from tests.vehicles.control.faults.conftest import commands_in, wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import TERMINAL_STATES, Command, CommandEvent

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def _start_charges(vehicles, *, prefix: str, source=Command.Source.PLAN) -> list[Command]:
    commands = []
    for i, vehicle in enumerate(vehicles):
        command, _ = services.create_command(
            vehicle=vehicle,
            action=Command.Action.START_CHARGE,
            idempotency_key=f"{prefix}-{i}",
            source=source,
            actor="test",
        )
        commands.append(command)
    return commands


def _each_car_started_once(cloud, vehicles) -> None:
    accepted = assert_invariants(cloud).effects
    for vehicle in vehicles:
        assert accepted[(vehicle.provider_vehicle_id, "vehicle.start_charge")] == 1, vehicle.vin


def test_redis_killed_and_restarted_during_a_fan_out(fleet, broker, processes, cloud):
    """kill -9 on Redis while 10 commands are going out, 10 more written while it is down (their
    fast-path publish fails; the outbox keeps them), Redis back on the same port: an owner's
    boost written then reaches its car within 30 s (I4), and all 21 cars start exactly once."""
    processes.worker(concurrency=2)
    processes.beat()
    first, down, (boosted,) = fleet.vehicles[:10], fleet.vehicles[10:20], fleet.vehicles[20:21]
    # Each start takes 0.3 s at the cloud, so the fan-out is still running when Redis dies.
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", delay_s=0.3, count=100)
    _start_charges(first, prefix="before")
    wait_for(lambda: commands_in(Command.State.SENT) >= 2, timeout_s=30, what="the fan-out")

    broker.kill()
    with transaction.atomic():  # one commit, so the failing fast path is tried once per command
        _start_charges(down, prefix="down")
    broker.start()  # same port, same append-only file

    restarted = time.monotonic()
    (boost,) = _start_charges([boosted], prefix="boost", source=Command.Source.OWNER)
    wait_for(
        lambda: Command.objects.get(pk=boost.pk).state == Command.State.SENT,
        timeout_s=30,
        what="the worker to take new work after the restart",
    )
    assert time.monotonic() - restarted <= 30

    wait_until_settled(timeout_s=60)
    assert commands_in(Command.State.SENT) + commands_in(Command.State.CONFIRMED) == 21
    _each_car_started_once(cloud, [*first, *down, boosted])


def test_redis_wiped_during_a_fan_out_is_republished_by_the_relay(fleet, broker, processes, cloud):
    """FLUSHALL while 20 commands wait in the queue: the relay notices its marker is gone and
    publishes every live command again within 60 s — with the production stall timeout (2 min),
    so only the marker can have done it — and each car starts exactly once."""
    processes.worker(concurrency=1, FAULTS_CONTROL_STALL_AFTER_SECONDS="120")
    processes.beat(FAULTS_CONTROL_STALL_AFTER_SECONDS="120")
    vehicles = fleet.vehicles[:20]
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", delay_s=0.3, count=100)
    _start_charges(vehicles, prefix="fan-out")
    wait_for(lambda: commands_in(Command.State.SENT) >= 1, timeout_s=30, what="the fan-out")

    broker.client().flushall()
    wiped = timezone.now()
    lost = set(
        Command.objects.filter(state=Command.State.PENDING, attempts=0).values_list("pk", flat=True)
    )
    assert lost, "nothing was waiting in the queue when Redis was wiped"

    def republished() -> bool:
        again = set(
            CommandEvent.objects.filter(kind="redriven", at__gte=wiped).values_list(
                "command_id", flat=True
            )
        )
        ended = set(
            Command.objects.filter(pk__in=lost, state__in=TERMINAL_STATES).values_list(
                "pk", flat=True
            )
        )
        return bool(again & lost) and lost <= again | ended

    wait_for(republished, timeout_s=60, what="the relay to re-publish the lost commands")
    assert (timezone.now() - wiped).total_seconds() <= 60
    wait_until_settled(timeout_s=60)
    assert CommandEvent.objects.filter(kind="redriven", detail="broker lost its messages").exists()
    _each_car_started_once(cloud, vehicles)
