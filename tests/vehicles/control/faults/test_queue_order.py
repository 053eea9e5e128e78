"""The order a worker takes work in, from a real Redis broker with the app's own transport options:
device commands before planning, planning before bulk work, and an event's notice batches after
everything else — so thousands of emails never hold up the event's commands (chargescape/celery.py,
accounts.notifications.services.FANOUT_PRIORITY; measured in bench/execution.py)."""

import pytest
from kombu import Queue

from accounts.notifications import services as notifications
from chargescape.celery import app
from programs.tasks import execute_vehicle_slots, fan_out, replan_plugged_in
from tests.factories import UserFactory
from vehicles.control.tasks import send_commands

pytestmark = pytest.mark.django_db(transaction=True)
WORKER_QUEUES = ("commands", "default", "bulk")  # README's worker: -Q commands,default,bulk


def taken_in_order(url: str, count: int) -> list[str]:
    """The task names a worker consuming WORKER_QUEUES receives, one message at a time."""
    names: list[str] = []

    def on_message(body, message):
        names.append(message.headers["task"])
        message.ack()

    queues = [Queue(name, routing_key=name) for name in WORKER_QUEUES]
    with (
        app.connection_for_read(url) as connection,
        connection.Consumer(queues, callbacks=[on_message], prefetch_count=1),
    ):
        while len(names) < count:
            connection.drain_events(timeout=5)
    return names


def test_commands_then_planning_then_the_fan_out_then_notices(
    broker, django_capture_on_commit_callbacks
):
    """`broker`: a Redis of this test process (faults/conftest.py), so nothing else consumes."""
    owners = UserFactory.create_batch(2)
    # Published in the worst order: an event's notices first, the commands last.
    with django_capture_on_commit_callbacks(execute=True):
        stored = notifications.notify_many(
            kind="statement_ready",
            recipients=[(owner.pk, {"month": "2026-10-01"}) for owner in owners],
        )
    assert stored == 2
    with django_capture_on_commit_callbacks(execute=True):
        fan_out(execute_vehicle_slots, ["a-car"])
    replan_plugged_in.apply_async(queue="default")
    send_commands.apply_async(args=[[1, 2]], queue="commands")
    send_commands.apply_async(args=[[3, 4]], queue="commands")

    # Both command batches first: queues in -Q order, not taken in turns (round robin would
    # hand out the plan between them).
    assert taken_in_order(broker.url, 5) == [
        "control.send_commands",
        "control.send_commands",
        "programs.replan_plugged_in",
        "programs.execute_vehicle_slots",
        "accounts.deliver_notifications",
    ]
