"""Commands written in bulk (`create_commands`, B6): a batch's commands, their "created" audit
rows, the supersession of older waiting commands and their outbox entries in a handful of
statements, idempotent on the key even when two writers race for it (I1, I2, I7)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.factories import VehicleFactory
from tests.vehicles.control.faults.conftest import backends_waiting_on_locks
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import Command, CommandEvent, OutboxEntry

pytestmark = pytest.mark.django_db


def _start(vehicle, key, **fields):
    return services.CommandSpec(
        vehicle=vehicle, action=Command.Action.START_CHARGE, idempotency_key=key, **fields
    )


def _stop(vehicle, key):
    return services.CommandSpec(
        vehicle=vehicle,
        action=Command.Action.STOP_CHARGE,
        idempotency_key=key,
        lease_end=timezone.now() + timedelta(minutes=10),
    )


def test_a_batch_is_written_in_a_handful_of_statements_whatever_its_size(
    django_assert_max_num_queries,
):
    """20 cars cost the statements one car does: commands, audit rows, supersession, outbox."""
    one, twenty = [VehicleFactory()], [VehicleFactory() for _ in range(20)]
    with django_assert_max_num_queries(8):
        services.create_commands(specs=[_start(one[0], "one")], actor="test")
    with django_assert_max_num_queries(8):
        done = services.create_commands(
            specs=[_start(v, f"many-{i}") for i, v in enumerate(twenty)], actor="test"
        )
    assert [created for _, created in done] == [True] * 20
    assert [command.vehicle_id for command, _ in done] == [v.pk for v in twenty]
    commands = Command.objects.filter(idempotency_key__startswith="many-")
    assert commands.count() == 20
    assert OutboxEntry.objects.filter(command__in=commands).count() == 20
    created = CommandEvent.objects.filter(command__in=commands, kind="created", actor="test")
    assert created.count() == 20
    assert set(created.values_list("detail", flat=True)) == {"Start charging"}


def test_the_same_keys_again_return_the_existing_commands_and_add_nothing():
    """A second beat or a retried task: same keys → the same rows, created False, no second
    outbox entry or audit row; a key given twice in one call is written once."""
    cars = [VehicleFactory() for _ in range(3)]
    first = services.create_commands(
        specs=[_start(v, f"k{i}") for i, v in enumerate(cars)], actor="beat-1"
    )
    again = services.create_commands(
        specs=[_start(v, f"k{i}") for i, v in enumerate(cars)] + [_start(VehicleFactory(), "new")],
        actor="beat-2",
    )
    assert [(c.pk, created) for c, created in again[:3]] == [(c.pk, False) for c, _ in first]
    assert again[3][1] is True
    assert OutboxEntry.objects.count() == 4
    assert CommandEvent.objects.filter(kind="created").count() == 4
    assert not CommandEvent.objects.filter(actor="beat-2").exclude(command=again[3][0]).exists()

    twice = services.create_commands(
        specs=[_start(cars[1], "dup"), _start(cars[1], "dup")], actor="t"
    )
    assert twice[0][0].pk == twice[1][0].pk
    assert [created for _, created in twice] == [True, False]
    assert OutboxEntry.objects.filter(command=twice[0][0]).count() == 1


def test_new_commands_supersede_their_devices_older_waiting_ones_only():
    """Only the newest intent may reach a device: a car's pending command is superseded (with an
    audit row naming the newer one); a command being sent is left to its claim; another car's
    pending command is untouched; of two new commands for one car the later one stands."""
    car, busy, other = VehicleFactory(), VehicleFactory(), VehicleFactory()
    (old, _), (sending, _), _ = services.create_commands(
        specs=[_stop(car, "old"), _stop(busy, "sending"), _stop(other, "other")], actor="t"
    )
    Command.objects.filter(pk=sending.pk).update(
        state=Command.State.SENDING, claimed_at=timezone.now()
    )

    done = services.create_commands(
        specs=[_start(car, "new-1"), _start(car, "new-2"), _start(busy, "busy-new")], actor="beat"
    )
    (first, _), (second, _), _ = done
    states = dict(Command.objects.values_list("idempotency_key", "state"))
    assert states == {
        "old": "superseded",
        "sending": "sending",
        "other": "pending",
        "new-1": "superseded",
        "new-2": "pending",
        "busy-new": "pending",
    }
    event = CommandEvent.objects.get(command=old, kind="superseded")
    assert (event.actor, event.detail) == ("beat", f"by #{second.pk}")
    assert CommandEvent.objects.get(command=first, kind="superseded").detail == f"by #{second.pk}"
    old.refresh_from_db()
    assert old.finished_at is not None


def test_the_fast_path_publishes_fleet_commands_in_batches_and_owner_commands_alone(
    published, django_capture_on_commit_callbacks, monkeypatch
):
    """After commit: owner commands one a message on `control` (I4); fleet commands in
    `control.send_commands` messages of up to SEND_BATCH on `commands`, a lone one as usual."""
    monkeypatch.setattr(services, "SEND_BATCH", 2)
    cars = [VehicleFactory() for _ in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        done = services.create_commands(
            specs=[_start(v, f"plan-{i}") for i, v in enumerate(cars[:3])]
            + [_start(cars[3], "boost", source=Command.Source.OWNER)],
            actor="t",
        )
    a, b, c, owner = (command.pk for command, _ in done)
    assert published == [
        ("control", "control.send_command", [owner]),
        ("commands", "control.send_commands", [[a, b]]),
        ("commands", "control.send_command", [c]),
    ]
    assert not OutboxEntry.objects.filter(published_at__isnull=True).exists()
    assert services.relay_outbox() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_writer", ["commits", "rolls back"])
def test_a_writer_racing_for_the_same_keys_waits_and_never_duplicates(first_writer):
    """Two batches with overlapping keys at once (two beats, a re-delivered task): the second
    waits on the first's uncommitted rows. If the first commits, the second finds its commands
    and adds nothing; if it rolls back, the second writes them. Never two commands, outbox
    entries or "created" rows for one key, and the overlap written in reverse order does not
    deadlock."""
    cars = [VehicleFactory() for _ in range(4)]
    inserted, release, errors, results = threading.Event(), threading.Event(), [], {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = services.create_commands(
                    specs=[_start(v, f"k{i}") for i, v in enumerate(cars[:3])], actor="first"
                )
                inserted.set()
                release.wait(timeout=30)
                if first_writer == "rolls back":
                    raise _Rollback
        except _Rollback:
            pass
        except Exception as error:  # asserted below
            errors.append(error)
        finally:
            inserted.set()
            connection.close()

    def second() -> None:
        try:
            results["second"] = services.create_commands(
                specs=[_start(v, f"k{i}") for i, v in reversed(list(enumerate(cars)))],
                actor="second",
            )
        except Exception as error:  # asserted below
            errors.append(error)
        finally:
            connection.close()

    writers = [threading.Thread(target=first), threading.Thread(target=second)]
    writers[0].start()
    assert inserted.wait(timeout=30)
    writers[1].start()
    wait_for(backends_waiting_on_locks, timeout_s=30, what="the second writer to wait")
    release.set()
    for writer in writers:
        writer.join(timeout=30)
    assert errors == []

    assert Command.objects.count() == 4
    for i in range(4):
        command = Command.objects.get(idempotency_key=f"k{i}")
        assert OutboxEntry.objects.filter(command=command).count() == 1
        assert CommandEvent.objects.filter(command=command, kind="created").count() == 1
    second_created = {c.idempotency_key for c, created in results["second"] if created}
    if first_writer == "commits":
        assert second_created == {"k3"}
        assert set(CommandEvent.objects.filter(actor="first").values_list("kind", flat=True)) == {
            "created"
        }
    else:
        assert second_created == {"k0", "k1", "k2", "k3"}
        assert not CommandEvent.objects.filter(actor="first").exists()


class _Rollback(Exception):
    pass
