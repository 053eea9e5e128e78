"""The lease watchdog (I8, charging fails open): a car whose cloud stop lapsed with nothing in
force after it is told to charge again, once, through the outbox and the gateway, unless the
owner paused smart charging or the car is unplugged. Against the simulated cloud through the
real SDK (the `car` fixture); the car's own state says whether it charges."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chargescape.celery import app as celery_app
from vehicles.control import services, watchdog
from vehicles.control.models import Command
from vehicles.control.tasks import release_lapsed_stops, send_command

pytestmark = pytest.mark.django_db


def _stop(car, key="plan:stop-1", *, lease_minutes=10, send=True, soc_pct=50):
    """A plan's stop with a lease, sent to the car (which then stops charging); the car has
    just reported `soc_pct` (the gateway curtails only a car with a known SoC above its floor)."""
    car.report(soc_pct=soc_pct)
    command, _ = services.create_command(
        vehicle=car.vehicle,
        action=Command.Action.STOP_CHARGE,
        idempotency_key=key,
        lease_end=timezone.now() + timedelta(minutes=lease_minutes),
        plan_version=3,
        actor="test",
    )
    if send:
        send_command.apply(args=[command.pk])
        command.refresh_from_db()
    return command


def _after(command, minutes):
    return command.lease_end + timedelta(minutes=minutes)


def test_a_stop_nobody_renews_is_undone_after_the_grace_period(car, cloud):
    """The plan ended on a stop: within the grace period nothing happens; after it the car gets
    one start (key from the stop, actor "watchdog") and charges; later runs add nothing."""
    cloud.set_state(car.vin, charging=True)
    stop = _stop(car)
    assert stop.state == Command.State.SENT
    assert not cloud.car(car.vin).charging

    assert watchdog.release_lapsed_stops(now=stop.lease_end - timedelta(minutes=1))["started"] == 0
    assert watchdog.release_lapsed_stops(now=_after(stop, 4))["started"] == 0
    assert Command.objects.count() == 1

    counts = watchdog.release_lapsed_stops(now=_after(stop, 6))
    assert counts == {"started": 1, "paused": 0, "unplugged": 0}
    start = Command.objects.exclude(pk=stop.pk).get()
    assert start.action == Command.Action.START_CHARGE
    assert start.idempotency_key == f"watchdog:{stop.pk}"
    assert start.plan_version == stop.plan_version
    created = start.events.get(kind="created")
    assert created.actor == "watchdog"
    assert start.outbox.count() == 1

    send_command.apply(args=[start.pk])
    start.refresh_from_db()
    assert start.state == Command.State.SENT
    assert cloud.car(car.vin).charging
    assert watchdog.release_lapsed_stops(now=_after(stop, 7))["started"] == 0
    assert watchdog.release_lapsed_stops(now=_after(stop, 60))["started"] == 0
    assert Command.objects.count() == 2


def test_a_renewed_stop_or_a_start_in_force_is_left_alone(car):
    """Execution renewing the stop (a newer stop, lease ahead) or a newer start that is pending
    or sent: the car is where the plan wants it, the watchdog sends nothing."""
    first = _stop(car)
    renewal = _stop(car, "plan:stop-2", lease_minutes=15, send=False)
    later = _after(first, 6)
    assert renewal.lease_end > later - watchdog.GRACE
    assert watchdog.release_lapsed_stops(now=later)["started"] == 0

    services.create_command(
        vehicle=car.vehicle,
        action=Command.Action.START_CHARGE,
        idempotency_key="plan:start",
        actor="test",
    )
    assert watchdog.release_lapsed_stops(now=_after(renewal, 30))["started"] == 0
    assert not Command.objects.filter(idempotency_key__startswith="watchdog:").exists()


def test_a_failed_start_after_the_stop_does_not_hide_it(car, cloud, settings):
    """The replan asked for charging but its start failed (the cloud rate-limited it past the
    budget): the car is still stopped, so the watchdog starts it."""
    settings.CONTROL_MAX_ATTEMPTS = 1
    stop = _stop(car)
    cloud.inject_fault("rate_limit", count=1, endpoint="vehicle.start_charge")
    failed, _ = services.create_command(
        vehicle=car.vehicle,
        action=Command.Action.START_CHARGE,
        idempotency_key="plan:start",
        actor="test",
    )
    send_command.apply(args=[failed.pk])
    failed.refresh_from_db()
    assert failed.state == Command.State.FAILED
    assert not cloud.car(car.vin).charging

    assert watchdog.release_lapsed_stops(now=_after(stop, 6))["started"] == 1
    start = Command.objects.get(idempotency_key=f"watchdog:{stop.pk}")
    send_command.apply(args=[start.pk])
    assert cloud.car(car.vin).charging


def test_a_refused_or_never_sent_stop_is_not_a_reason_to_start(car, cloud):
    """A stop the gateway refused (the car was below its floor) never reached the car: nothing
    to undo."""
    refused = _stop(car, soc_pct=20)  # below the 30 % floor
    assert refused.state == Command.State.REFUSED
    assert watchdog.release_lapsed_stops(now=_after(refused, 6))["started"] == 0


def test_paused_or_unplugged_cars_get_nothing_until_that_changes(car, cloud):
    """Paused smart charging: we send the car nothing (the owner's settings rule); the first run
    after the pause ends starts it. Unplugged: nothing to start."""
    stop = _stop(car)
    preference = car.vehicle.preference
    preference.pause_until = _after(stop, 30)
    preference.save()
    assert watchdog.release_lapsed_stops(now=_after(stop, 6)) == {
        "started": 0,
        "paused": 1,
        "unplugged": 0,
    }
    car.report(soc_pct=55, plugged_in=False)
    assert watchdog.release_lapsed_stops(now=_after(stop, 31)) == {
        "started": 0,
        "paused": 0,
        "unplugged": 1,
    }
    car.report(soc_pct=55, plugged_in=True)
    assert watchdog.release_lapsed_stops(now=_after(stop, 32))["started"] == 1
    assert Command.objects.filter(idempotency_key=f"watchdog:{stop.pk}").count() == 1


def test_the_beat_runs_the_watchdog_every_minute(car):
    """The task is on the beat schedule every 60 s and runs the watchdog."""
    entries = [
        entry
        for entry in celery_app.conf.beat_schedule.values()
        if entry["task"] == "control.release_lapsed_stops"
    ]
    assert [entry["schedule"] for entry in entries] == [60.0]
    stop = _stop(car, lease_minutes=1)
    Command.objects.filter(pk=stop.pk).update(lease_end=timezone.now() - timedelta(minutes=6))
    assert release_lapsed_stops.apply().get()["started"] == 1
    assert Command.objects.filter(idempotency_key=f"watchdog:{stop.pk}").exists()
