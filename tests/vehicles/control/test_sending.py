"""Sending through the vehicle cloud under faults (the real SDK against the simulated cloud):
retries with backoff and Retry-After, an ambiguous timeout reads the car before any re-send (I2),
a worker lost mid-send, one token refresh, and a budget after which the command fails for good."""

import itertools
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from vehicles.control import services
from vehicles.control.models import Command
from vehicles.control.tasks import send_command

pytestmark = pytest.mark.django_db

STATE_READS = ("vehicle.battery", "vehicle.charge", "vehicle.get_charge_limit")


def _command(car, action=Command.Action.START_CHARGE, **fields):
    command, _ = services.create_command(
        vehicle=car.vehicle, action=action, idempotency_key=f"{action}-1", actor="test", **fields
    )
    return command


def _wait_for_count(cloud, endpoint, count, timeout_s=10.0):
    """The simulated cloud finishes a slow request on its own thread: wait for it to be counted
    (an event we observe, bounded in time), not for a guessed duration."""
    deadline = time.monotonic() + timeout_s
    while cloud.request_count(endpoint) < count:
        assert time.monotonic() < deadline, f"{endpoint} never reached {count}"
        time.sleep(0.02)


def _endpoints(cloud):
    return [entry["endpoint"] for entry in cloud.world.request_log]


def test_three_500s_then_200_starts_charging(car, cloud, fast_retries):
    """500×3 then 200: retried in-process by Celery; each re-send is preceded by a state read
    (a bare 500 may have reached the car), and the fourth attempt starts charging."""
    cloud.inject_fault("server_error", count=3, endpoint="vehicle.start_charge")
    command = _command(car)
    send_command.apply(args=[command.pk])

    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert command.attempts == 4
    assert cloud.request_count("vehicle.start_charge") == 4
    assert cloud.car(car.vin).charging
    log = _endpoints(cloud)
    sends = [i for i, name in enumerate(log) if name == "vehicle.start_charge"]
    for before, after in itertools.pairwise(sends):
        assert "vehicle.charge" in log[before:after]  # read, then re-send
    kinds = list(command.events.values_list("kind", flat=True))
    assert kinds.count("retry") == 3
    assert kinds[-1] == "sent"


def test_429_waits_for_retry_after_and_sends_without_a_state_read(car, cloud):
    """A 429 said "not now" (nothing happened): the next attempt is not before Retry-After, an
    early delivery sends nothing, and the later one sends without reading the car first."""
    cloud.inject_fault("rate_limit", endpoint="vehicle.start_charge", retry_after_s=120)
    command = _command(car)
    now = timezone.now()
    with pytest.raises(services.RetryLater) as later:
        services.send_command(command_id=command.pk, now=now)
    assert later.value.countdown >= 120
    command.refresh_from_db()
    assert command.state == Command.State.PENDING
    assert command.next_attempt_at >= now + timedelta(seconds=120)
    assert not command.verify_before_send

    with pytest.raises(services.RetryLater):  # a duplicate message arriving early
        services.send_command(command_id=command.pk, now=now + timedelta(seconds=60))
    assert cloud.request_count("vehicle.start_charge") == 1

    services.send_command(command_id=command.pk, now=command.next_attempt_at)
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert cloud.request_count("vehicle.start_charge") == 2
    assert not any(cloud.request_count(name) for name in STATE_READS)


def test_i2_ambiguous_timeout_reads_the_car_and_does_not_send_again(car, cloud, settings):
    """The cloud takes 1 s (beyond our 0.3 s timeout) but does start the charge: the retry reads
    the car, finds it charging and confirms without a second start."""
    settings.CONTROL_OEM_TIMEOUT_SECONDS = 0.3
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", delay_s=1.0)
    command = _command(car)
    now = timezone.now()
    with pytest.raises(services.RetryLater) as later:
        services.send_command(command_id=command.pk, now=now)
    assert later.value.countdown >= settings.CONTROL_AMBIGUOUS_SETTLE_SECONDS
    command.refresh_from_db()
    assert command.verify_before_send
    assert command.state == Command.State.PENDING

    _wait_for_count(cloud, "vehicle.start_charge", 1)  # the slow request landed after all
    services.send_command(command_id=command.pk, now=command.next_attempt_at)
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    assert cloud.request_count("vehicle.start_charge") == 1
    assert cloud.request_count("vehicle.charge") == 1
    assert list(command.events.values_list("kind", flat=True))[-2:] == ["verified", "confirmed"]


def test_i2_ambiguous_failure_that_did_not_act_is_sent_again_after_the_read(car, cloud, settings):
    """Timeout, and the cloud in fact failed (a slow 500): the read shows no charge, so the
    command is sent again — read first, then one more start."""
    settings.CONTROL_OEM_TIMEOUT_SECONDS = 0.3
    cloud.inject_fault("server_error", endpoint="vehicle.start_charge", delay_s=1.0)
    command = _command(car)
    with pytest.raises(services.RetryLater):
        services.send_command(command_id=command.pk)
    _wait_for_count(cloud, "vehicle.start_charge", 1)
    command.refresh_from_db()
    services.send_command(command_id=command.pk, now=command.next_attempt_at)

    command.refresh_from_db()
    assert command.state == Command.State.SENT
    log = _endpoints(cloud)
    assert log.count("vehicle.start_charge") == 2
    assert log.index("vehicle.charge") < len(log) - 1 - log[::-1].index("vehicle.start_charge")
    assert cloud.car(car.vin).charging


def test_i2_worker_killed_after_sending_is_confirmed_from_the_car(car, cloud):
    """SIGKILL after the car acted, before the reply was stored: the re-delivered task finds the
    command `sending` with a lapsed claim, reads the car, and confirms without a second start."""
    command = _command(car)
    cloud.set_state(car.vin, charging=True)  # what the killed worker's request achieved
    cloud.reset_request_counts()
    claimed = timezone.now() - services.claim_timeout() - timedelta(seconds=1)
    Command.objects.filter(pk=command.pk).update(
        state=Command.State.SENDING, claimed_at=claimed, attempts=1
    )
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    assert cloud.request_count("vehicle.start_charge") == 0
    assert "worker_lost" in command.events.values_list("kind", flat=True)


def test_i2_a_live_claim_makes_a_duplicate_wait(car, cloud):
    """Another worker is sending right now: a duplicate delivery touches nothing."""
    command = _command(car)
    Command.objects.filter(pk=command.pk).update(
        state=Command.State.SENDING, claimed_at=timezone.now(), attempts=1
    )
    with pytest.raises(services.RetryLater):
        services.send_command(command_id=command.pk)
    assert cloud.request_counts() == {}


def test_a_sent_command_run_again_does_nothing(car, cloud):
    command = _command(car)
    send_command.apply(args=[command.pk])
    send_command.apply(args=[command.pk])
    assert cloud.request_count("vehicle.start_charge") == 1
    assert Command.objects.get(pk=command.pk).attempts == 1


def test_expired_access_token_is_refreshed_once(car, cloud):
    cloud.expire_access_tokens()
    command = _command(car, action=Command.Action.SET_CHARGE_LIMIT, limit_pct=80)
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert cloud.request_count("auth.exchange_refresh_token") == 1
    assert cloud.car(car.vin).charge_limit_pct == pytest.approx(80)


def test_after_the_budget_the_command_fails_for_good_with_the_reason(
    car, cloud, settings, fast_retries
):
    settings.CONTROL_MAX_ATTEMPTS = 3
    cloud.inject_fault("server_error", count=10, endpoint="vehicle.start_charge")
    command = _command(car)
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.FAILED
    assert command.last_error.startswith("Gave up after 3 attempts")
    assert cloud.request_count("vehicle.start_charge") == 3
    send_command.apply(args=[command.pk])  # a late duplicate: still nothing more
    assert cloud.request_count("vehicle.start_charge") == 3


def test_revoked_link_fails_at_once(car, cloud):
    cloud.revoke_tokens()
    command = _command(car)
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.FAILED
    assert "LinkRevokedError" in command.last_error
    assert command.attempts == 1


def test_a_curtailment_whose_lease_ended_is_never_sent(car, cloud):
    car.report(soc_pct=60)
    command = _command(
        car, action=Command.Action.STOP_CHARGE, lease_end=timezone.now() + timedelta(minutes=5)
    )
    services.send_command(command_id=command.pk, now=timezone.now() + timedelta(minutes=6))
    command.refresh_from_db()
    assert command.state == Command.State.EXPIRED
    assert cloud.request_counts() == {}
