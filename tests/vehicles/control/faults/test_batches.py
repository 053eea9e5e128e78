"""Several commands per send task (`control.send_commands`, B6): one claim transaction, the cars'
cloud requests in flight together, one transaction for the outcomes, and still every
per-command guarantee. One command's failure, retry, refusal or held row never touches its
batch-mates; a worker killed mid-batch leaves each command recoverable on its own (I1, I2, I7).

The in-process tests call the send service on a fleet linked to the simulated cloud; the last
one runs a real worker and kills it while a batch is on the wire.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from psycopg import sql

from tests.vehicles.control.faults.conftest import accepted, side_connection, wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control import services
from vehicles.control.models import Command
from vehicles.control.tasks import send_commands
from vehicles.models import VehicleReading

pytestmark = pytest.mark.django_db(transaction=True)


def _starts(vehicles, *, prefix="batch"):
    done = services.create_commands(
        specs=[
            services.CommandSpec(
                vehicle=vehicle, action=Command.Action.START_CHARGE, idempotency_key=f"{prefix}-{i}"
            )
            for i, vehicle in enumerate(vehicles)
        ],
        actor="test",
    )
    return [command for command, _ in done]


def _kinds(command) -> list[str]:
    """The command's audit trail, without the relay's "published" rows."""
    return list(command.events.exclude(kind="published").values_list("kind", flat=True))


def test_each_command_of_a_batch_keeps_its_own_outcome(fleet, cloud, settings):
    """Five cars in one send: a bare 500 (ambiguous: retried, read first next time), a 429 with
    Retry-After (retried no sooner, no read needed), a request our deadline gives up on while
    the cloud holds it, a curtailment the gateway refuses (the car is below its floor), and a
    plain start. Each gets its own outcome and audit trail; the good one is sent at once."""
    settings.CONTROL_OEM_TIMEOUT_SECONDS = 0.5
    failing, limited, stalled, low, good = fleet.vehicles[:5]
    cloud.inject_fault("server_error", endpoint="vehicle.start_charge", vin=failing.vin)
    cloud.inject_fault(
        "rate_limit", endpoint="vehicle.start_charge", vin=limited.vin, retry_after_s=120
    )
    cloud.inject_fault("hold", endpoint="vehicle.start_charge", vin=stalled.vin, effect="after")
    VehicleReading.objects.filter(vehicle=low).update(soc_pct=20.0)  # floor 30 %
    starts = _starts([failing, limited, stalled, good])
    (curtail, _) = services.create_command(
        vehicle=low,
        action=Command.Action.STOP_CHARGE,
        idempotency_key="curtail",
        lease_end=timezone.now() + timedelta(minutes=10),
        actor="test",
    )
    ids = [starts[0].pk, starts[1].pk, starts[2].pk, curtail.pk, starts[3].pk]

    now = timezone.now()
    outcomes = {o.command_id: o for o in services.send_commands(command_ids=ids, now=now)}
    cloud.release_holds()
    assert list(outcomes) == ids
    by_key = {c.idempotency_key: c for c in Command.objects.filter(pk__in=ids)}
    first, second, third, good_one = (by_key[f"batch-{i}"] for i in range(4))
    refused = by_key["curtail"]

    assert good_one.state == Command.State.SENT
    assert outcomes[good_one.pk].retry is None
    assert _kinds(good_one) == ["created", "sending", "sent"]
    assert accepted(cloud, good) == 1

    assert first.state == Command.State.PENDING
    assert first.verify_before_send
    assert outcomes[first.pk].retry.countdown >= settings.CONTROL_AMBIGUOUS_SETTLE_SECONDS
    assert second.state == Command.State.PENDING
    assert not second.verify_before_send
    assert outcomes[second.pk].retry.countdown >= 120
    assert second.next_attempt_at >= now + timedelta(seconds=120)
    assert third.state == Command.State.PENDING
    assert third.verify_before_send
    for command in (first, second, third):
        assert command.attempts == 1
        assert _kinds(command) == ["created", "sending", "retry"]

    assert refused.state == Command.State.REFUSED
    assert refused.events.get(kind="refused").data == {"code": "below_floor"}
    assert refused.attempts == 0
    assert cloud.request_count("vehicle.stop_charge") == 0


def test_a_retried_command_goes_on_alone_while_its_batch_mates_are_done(fleet, cloud, fast_retries):
    """The Celery task with a 500×3 on one car: its retries run as `control.send_command` (here
    in-process), each preceded by a read of the car (I2); the three other cars were sent once,
    on the first attempt."""
    flaky, *steady = fleet.vehicles[:4]
    cloud.inject_fault("server_error", count=3, endpoint="vehicle.start_charge", vin=flaky.vin)
    commands = _starts([flaky, *steady])
    send_commands.apply(args=[[c.pk for c in commands]])

    for command in commands:
        command.refresh_from_db()
        assert command.state == Command.State.SENT
    assert commands[0].attempts == 4
    assert [c.attempts for c in commands[1:]] == [1, 1, 1]
    assert _kinds(commands[0]).count("verified") == 3
    for vehicle in [flaky, *steady]:
        assert accepted(cloud, vehicle) == 1
    assert_invariants(cloud)


def test_a_401_in_a_batch_refreshes_the_shared_link_once(fleet, cloud):
    """The fleet shares one OAuth link: every request of the batch gets a 401, the link is
    refreshed once, and every command is then sent."""
    cloud.expire_access_tokens()
    commands = _starts(fleet.vehicles[:6])
    services.send_commands(command_ids=[c.pk for c in commands])
    assert {c.state for c in Command.objects.filter(pk__in=[c.pk for c in commands])} == {
        Command.State.SENT
    }
    assert cloud.request_count("auth.exchange_refresh_token") == 1
    for vehicle in fleet.vehicles[:6]:
        assert accepted(cloud, vehicle) == 1


def test_a_command_another_transaction_holds_waits_without_holding_up_its_batch(fleet, cloud):
    """A batch-mate's row is locked elsewhere right now (a duplicate delivery claiming it): it is
    skipped and comes back in a second or two, untouched; the others go out meanwhile."""
    commands = _starts(fleet.vehicles[:3])
    held = commands[1]
    with side_connection() as side:
        side.execute(
            sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(
                sql.Identifier(Command._meta.db_table)
            ),
            [held.pk],
        )
        outcomes = services.send_commands(command_ids=[c.pk for c in commands])
        side.rollback()
    assert [o.retry is not None for o in outcomes] == [False, True, False]
    assert 0 < outcomes[1].retry.countdown <= 2 * services.LOCKED_RETRY_S
    held.refresh_from_db()
    assert (held.state, held.attempts) == (Command.State.PENDING, 0)
    assert accepted(cloud, fleet.vehicles[1]) == 0
    assert services.send_command(command_id=held.pk).state == Command.State.SENT
    for vehicle in fleet.vehicles[:3]:
        assert accepted(cloud, vehicle) == 1


@pytest.mark.stack
def test_a_worker_killed_mid_batch_leaves_each_command_recoverable(fleet, processes, cloud):
    """Four starts in one `control.send_commands` message. The cloud answers three and holds the
    fourth (the car already acted); SIGKILL while the batch waits for it, before any outcome is
    stored. The message comes back (acks_late): each command is `sending` with a live claim, so
    each waits on its own for the claim to lapse, reads its car, and is confirmed without a
    second start — four cars, four effects."""
    worker = processes.worker(concurrency=1)
    held, *answered = fleet.vehicles[:4]
    cloud.inject_fault(
        "hold", endpoint="vehicle.start_charge", vin=held.vin, effect="before", count=1
    )
    commands = _starts([held, *answered])  # the fast path publishes them as one batch
    wait_for(lambda: cloud.held_count() == 1, timeout_s=30, what="the request to be held")
    wait_for(
        lambda: all(accepted(cloud, v) == 1 for v in answered),
        timeout_s=30,
        what="the batch-mates' requests to be answered",
    )
    assert {c.state for c in Command.objects.all()} == {Command.State.SENDING}
    assert worker.kill_children()
    cloud.release_holds()  # the answer goes to a dead socket

    wait_until_settled(timeout_s=60)
    for command in commands:
        command.refresh_from_db()
        assert command.state == Command.State.CONFIRMED, command.idempotency_key
        kinds = _kinds(command)
        assert "worker_lost" in kinds
        assert "sent" not in kinds  # the killed worker's outcome never committed
        assert command.events.filter(kind="verified", detail="already in place").exists()
    for vehicle in (held, *answered):
        assert accepted(cloud, vehicle) == 1
    assert "control.send_commands" in worker.log()
    assert_invariants(cloud)
