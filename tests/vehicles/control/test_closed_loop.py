"""The closed loop (issue 6): a command the car's cloud accepted is confirmed only by the car's own
telemetry; without a sign after the confirmation window the car is asked for fresh data, then the
command is sent once more or failed with a diagnosis in plain words, and higher layers hear of a
command that will not be re-sent. Time is moved with time-machine; the car is the simulated cloud
behind the real Smartcar SDK."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from tests.vehicles.conftest import simulated_cloud
from vehicles import services as vehicle_services
from vehicles import signals
from vehicles.control import services
from vehicles.control.models import Command
from vehicles.control.tasks import check_sent_commands
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

WINDOW = timedelta(minutes=3)


@pytest.fixture(autouse=True)
def _window(settings):
    settings.CONTROL_CONFIRM_AFTER_SECONDS = int(WINDOW.total_seconds())


@pytest.fixture
def cloud(settings):
    """The shared simulated cloud, but with its clock running in step with ours, so what a poll
    reads is stamped after the command was sent (the shared one stands still in January 2026)."""
    with simulated_cloud(settings, cars=1, time_scale=1.0, start=None) as sim:
        yield sim


@pytest.fixture
def not_confirmed():
    """(vehicle_id, command_id, code) of every command_not_confirmed signal."""
    heard = []

    def listen(sender, vehicle_id, command_id, code, **kwargs):
        heard.append((vehicle_id, command_id, code))

    signals.command_not_confirmed.connect(listen, weak=False)
    yield heard
    signals.command_not_confirmed.disconnect(listen)


def _sent(car, action=Command.Action.START_CHARGE, key="k1", **fields):
    command, _ = services.create_command(
        vehicle=car.vehicle, action=action, idempotency_key=key, actor="test", **fields
    )
    command = services.send_command(command_id=command.pk)
    assert command.state == Command.State.SENT
    return command


def _report(car, **state):
    """A reading stamped now (the travelled clock), as a webhook or poll would store it."""
    defaults = {"soc_pct": 55.0, "plugged_in": True, "charging_state": "NOT_CHARGING"}
    return vehicle_services.record_reading(
        vehicle=car.vehicle,
        state=VehicleState(recorded_at=timezone.now(), **{**defaults, **state}),
        source="webhook",
    )


def _beat(capture):
    """The beat task as a worker runs it, with on-commit hooks (publishes) carried out."""
    with capture(execute=True):
        check_sent_commands.apply()


def _kinds(command):
    return list(command.events.values_list("kind", flat=True))


def test_a_start_is_confirmed_when_a_fresh_poll_shows_the_car_charging(
    car, cloud, published, django_capture_on_commit_callbacks, owner_client
):
    """Too early: left alone. At the window with no news: the car is polled (a real poll of the
    simulated car through the SDK). The next beat confirms from that reading."""
    command = _sent(car)
    assert cloud.car(car.vin).charging

    with time_machine.travel(command.sent_at + timedelta(minutes=1), tick=False):
        _beat(django_capture_on_commit_callbacks)
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert "telemetry_requested" not in _kinds(command)

    with time_machine.travel(command.sent_at + WINDOW, tick=False):
        _beat(django_capture_on_commit_callbacks)
    command.refresh_from_db()
    assert command.state == Command.State.SENT
    assert _kinds(command)[-1] == "telemetry_requested"
    polls = [list(args) for _, task, args in published if task == "vehicles.poll_vehicle"]
    assert polls == [[str(car.vehicle.pk)]]

    reading = vehicle_services.poll_vehicle(vehicle_id=car.vehicle.pk)  # as the worker does
    assert reading.charging_state == "CHARGING"
    with time_machine.travel(command.sent_at + WINDOW + timedelta(minutes=1), tick=False):
        _beat(django_capture_on_commit_callbacks)
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    event = command.events.order_by("-id").first()
    assert event.kind == "confirmed"
    assert event.actor == "control.confirm"
    assert event.detail == "Confirmed by telemetry: the car reports charging."
    assert event.data["by"] == "telemetry"

    page = owner_client.get(reverse("vehicles:vehicle-activity", args=[car.vehicle.pk]))
    assert "Confirmed by the car&#x27;s own data: the car reports charging." in page.text


def test_no_effect_is_sent_once_more_then_failed_with_a_diagnosis(
    car, cloud, published, django_capture_on_commit_callbacks, not_confirmed, owner_client
):
    """The car says yes but keeps reporting "not charging": after the window and a fresh reading
    the command fails with a plain-words diagnosis and is sent once more; the re-send failing
    too is not sent a third time, and higher layers hear of it (replan)."""
    command = _sent(car)
    with time_machine.travel(command.sent_at + WINDOW, tick=False):
        _report(car)
        _beat(django_capture_on_commit_callbacks)
    with time_machine.travel(command.sent_at + 2 * WINDOW - timedelta(seconds=1), tick=False):
        _beat(django_capture_on_commit_callbacks)  # still waiting for the fresh reading
    command.refresh_from_db()
    assert command.state == Command.State.SENT

    with time_machine.travel(command.sent_at + 2 * WINDOW, tick=False):
        _report(car)
        _beat(django_capture_on_commit_callbacks)
    command.refresh_from_db()
    assert command.state == Command.State.FAILED
    unconfirmed = command.events.get(kind="unconfirmed")
    assert unconfirmed.data["code"] == "no_effect"
    assert unconfirmed.detail == (
        "No sign of it in the car's data after 6 min. The car accepted our request to charge "
        "but isn't drawing power. Sending it once more."
    )
    resend = Command.objects.get(idempotency_key=f"resend:{command.pk}")
    assert (resend.action, resend.source, resend.state) == ("start_charge", "plan", "pending")
    assert unconfirmed.data["resent_as"] == resend.pk
    sends = [args[0] for _, task, args in published if task == "control.send_command"]
    assert sends == [resend.pk]
    assert not_confirmed == []
    log = owner_client.get(reverse("vehicles:vehicle-activity", args=[car.vehicle.pk])).text
    assert 'class="badge warn">Sent again<' in log
    assert "Asked again: the first request showed no effect in the car&#x27;s data." in log

    resend = services.send_command(command_id=resend.pk)
    for minutes in (3, 6):
        with time_machine.travel(resend.sent_at + timedelta(minutes=minutes), tick=False):
            _report(car)
            _beat(django_capture_on_commit_callbacks)
    resend.refresh_from_db()
    assert resend.state == Command.State.FAILED
    assert "Sending it once more" not in resend.last_error
    assert Command.objects.filter(vehicle=car.vehicle).count() == 2  # no third attempt
    assert not_confirmed == [(car.vehicle.pk, resend.pk, "no_effect")]


def test_an_unplugged_car_is_not_sent_again_and_the_reason_is_plain(
    car, cloud, django_capture_on_commit_callbacks, not_confirmed, owner_client
):
    command = _sent(car)
    for minutes in (3, 6):
        with time_machine.travel(command.sent_at + timedelta(minutes=minutes), tick=False):
            _report(car, plugged_in=False)
            _beat(django_capture_on_commit_callbacks)
    command.refresh_from_db()
    assert command.state == Command.State.FAILED
    assert command.events.get(kind="unconfirmed").data["code"] == "not_plugged_in"
    assert not Command.objects.filter(idempotency_key__startswith="resend:").exists()
    assert not_confirmed == [(car.vehicle.pk, command.pk, "not_plugged_in")]
    page = owner_client.get(reverse("vehicles:vehicle-activity", args=[car.vehicle.pk])).text
    assert "The car reports no charging cable connected, so it can&#x27;t charge." in page


def test_a_stop_and_a_charge_limit_are_confirmed_by_what_the_car_reports(
    car, cloud, django_capture_on_commit_callbacks
):
    """Stop: "not charging" confirms, "charging" does not. Limit: only the new limit confirms."""
    cloud.set_state(car.vin, charging=True)  # else the car answers "not charging" at once (409)
    car.report(soc_pct=55)
    stop = _sent(
        car,
        Command.Action.STOP_CHARGE,
        key="stop",
        lease_end=timezone.now() + timedelta(minutes=14),
    )
    with time_machine.travel(stop.sent_at + WINDOW, tick=False):
        _report(car, charging_state="CHARGING", power_kw=7.2)
        _beat(django_capture_on_commit_callbacks)
    stop.refresh_from_db()
    assert stop.state == Command.State.SENT  # the car still charges: not confirmed
    with time_machine.travel(stop.sent_at + WINDOW + timedelta(minutes=1), tick=False):
        _report(car, charging_state="NOT_CHARGING", power_kw=0.0)
        _beat(django_capture_on_commit_callbacks)
    stop.refresh_from_db()
    assert stop.state == Command.State.CONFIRMED
    assert stop.events.get(kind="confirmed").data["summary"] == "the car reports it is not charging"

    limit = _sent(car, Command.Action.SET_CHARGE_LIMIT, key="limit", limit_pct=80)
    with time_machine.travel(limit.sent_at + WINDOW, tick=False):
        _report(car, charge_limit_pct=90)
        _beat(django_capture_on_commit_callbacks)
    limit.refresh_from_db()
    assert limit.state == Command.State.SENT
    with time_machine.travel(limit.sent_at + WINDOW + timedelta(minutes=1), tick=False):
        _report(car, charge_limit_pct=80)
        _beat(django_capture_on_commit_callbacks)
    limit.refresh_from_db()
    assert limit.state == Command.State.CONFIRMED


def test_a_command_with_a_newer_one_is_left_to_history(
    car, cloud, django_capture_on_commit_callbacks
):
    """The plan moved on (a newer command was sent): the older one is not judged or re-sent."""
    older = _sent(car, key="older")
    car.report(soc_pct=55)
    newer = _sent(
        car,
        Command.Action.STOP_CHARGE,
        key="newer",
        lease_end=timezone.now() + timedelta(minutes=14),
    )
    with time_machine.travel(newer.sent_at + 2 * WINDOW, tick=False):
        _report(car)
        _beat(django_capture_on_commit_callbacks)
    older.refresh_from_db()
    assert older.state == Command.State.SENT
    assert _kinds(older)[-1] == "sent"
    newer.refresh_from_db()
    assert newer.state == Command.State.CONFIRMED
