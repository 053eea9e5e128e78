"""I1 Nothing lost: a command and its outbox entry commit together; the relay publishes what the
fast path missed, re-drives commands whose broker message was lost, and a second publish of the
same command has one effect on the car (I2)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from vehicles.control import services
from vehicles.control.models import Command, CommandEvent, OutboxEntry
from vehicles.control.tasks import relay_outbox, send_command

pytestmark = pytest.mark.django_db


def _start(vehicle, key="k1", **fields):
    command, created = services.create_command(
        vehicle=vehicle,
        action=Command.Action.START_CHARGE,
        idempotency_key=key,
        actor="test",
        **fields,
    )
    assert created
    return command


def _sends(published):
    return [args for queue, task, args in published if task == "control.send_command"]


def test_i1_commit_without_publish_is_published_by_the_relay(car, published):
    """The process dies right after commit (no on-commit hook ran): the relay beat publishes the
    entry once, and a second relay finds nothing left to publish."""
    command = _start(car.vehicle)
    entry = OutboxEntry.objects.get(command=command)
    assert entry.published_at is None
    assert published == []

    relay_outbox.apply()
    assert published == [("commands", "control.send_command", [command.pk])]
    entry.refresh_from_db()
    assert entry.published_at is not None
    assert entry.publish_count == 1
    assert services.relay_outbox() == 0
    assert len(published) == 1
    kinds = list(command.events.values_list("kind", flat=True))
    assert kinds == ["created", "published"]


def test_i1_fast_path_publishes_on_commit_and_owner_commands_use_the_control_queue(
    car, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        command = _start(car.vehicle, source=Command.Source.OWNER)
    assert published == [("control", "control.send_command", [command.pk])]
    assert services.relay_outbox() == 0


def test_i2_published_twice_starts_charging_once(car, cloud, published):
    """Crash after publishing but before marking the entry published: the relay publishes again;
    both deliveries run, the car hears the command once."""
    command = _start(car.vehicle)
    assert services.relay_outbox() == 1
    OutboxEntry.objects.filter(command=command).update(published_at=None)  # the lost commit
    assert services.relay_outbox() == 1
    assert _sends(published) == [[command.pk], [command.pk]]

    for _ in _sends(published):
        send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert command.attempts == 1
    assert cloud.request_count("vehicle.start_charge") == 1
    assert cloud.car(car.vin).charging


def test_i1_a_command_whose_message_was_lost_is_redriven(car, published):
    """Redis wiped after publishing: the command sits pending with no message anywhere; the relay
    gives it a new entry and publishes it (once, not every beat)."""
    command = _start(car.vehicle)
    services.relay_outbox()
    published.clear()
    assert services.redrive_stalled_commands() == 0  # fresh: its message may still be queued
    Command.objects.filter(pk=command.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    relay_outbox.apply()
    assert _sends(published) == [[command.pk]]
    assert OutboxEntry.objects.filter(command=command).count() == 2
    assert services.redrive_stalled_commands() == 0  # just touched: not re-driven again
    assert CommandEvent.objects.filter(command=command, kind="redriven").count() == 1


def test_i2_same_idempotency_key_adds_nothing(car, published):
    command = _start(car.vehicle)
    again, created = services.create_command(
        vehicle=car.vehicle, action=Command.Action.START_CHARGE, idempotency_key="k1", actor="t"
    )
    assert (again.pk, created) == (command.pk, False)
    assert OutboxEntry.objects.filter(command=command).count() == 1


def test_a_newer_intent_supersedes_a_waiting_command(car, cloud):
    """Only the newest intent reaches the device: a stop waiting for its retry is superseded by a
    newer start, and the stop's delivery, when it comes, sends nothing."""
    stop, _ = services.create_command(
        vehicle=car.vehicle,
        action=Command.Action.STOP_CHARGE,
        idempotency_key="stop",
        lease_end=timezone.now() + timedelta(minutes=10),
        actor="t",
    )
    start = _start(car.vehicle, key="start")
    stop.refresh_from_db()
    assert stop.state == Command.State.SUPERSEDED
    send_command.apply(args=[stop.pk])
    assert cloud.request_counts() == {}
    assert start.state == Command.State.PENDING
