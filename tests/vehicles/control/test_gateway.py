"""I3 and I8 at the last moment: the safety gateway re-reads telemetry and preferences right
before I/O. A refused command is recorded and audited and never reaches the device (the simulated
cloud counts no request); charging fails open, discharging fails closed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from vehicles.chargers import services as charger_services
from vehicles.control import gateway, services
from vehicles.control.models import Command, CommandEvent
from vehicles.control.tasks import send_command

pytestmark = pytest.mark.django_db

LEASE = timedelta(minutes=10)


@pytest.fixture
def v2g_charger(car):
    """A V2G charger for the car, its owner consenting to V2G above a 40 % V2G floor."""
    charger = charger_services.provision_charger(
        charge_point_id=f"ctl-{car.vehicle.pk.hex[:12]}", max_power_kw=11, v2g_capable=True
    ).charger
    car.vehicle.v2g_capable = True
    car.vehicle.save()
    car.vehicle.preference.v2g_consent = True
    car.vehicle.preference.v2g_min_soc_pct = 40
    car.vehicle.preference.save()
    return charger


def _stop(lease=LEASE):
    return {"action": Command.Action.STOP_CHARGE, "lease_end": timezone.now() + lease}


def _discharge(kw=-7.2, lease=LEASE):
    return {"action": Command.Action.SET_POWER, "power_kw": kw, "lease_end": timezone.now() + lease}


def _boost(car):
    car.vehicle.preference.boost_until = timezone.now() + timedelta(hours=2)
    car.vehicle.preference.save()


def _pause(car):
    car.vehicle.preference.pause_until = timezone.now() + timedelta(hours=2)
    car.vehicle.preference.save()


# (case, SoC reported (None: no reading), minutes old, command fields, setup, refusal code)
REFUSALS = [
    ("curtail below the floor", 25, 0, _stop(), None, "below_floor"),
    ("curtail with SoC unknown", None, 0, _stop(), None, "soc_unknown"),
    ("curtail without a lease", 60, 0, {"action": "stop_charge"}, None, "no_lease"),
    ("curtail with a 30 min lease", 60, 0, _stop(timedelta(minutes=30)), None, "lease_too_long"),
    ("curtail while the owner boosts", 60, 0, _stop(), _boost, "owner_boost"),
    ("curtail while the owner paused", 60, 0, _stop(), _pause, "owner_pause"),
    ("limit below the floor", 60, 0, {"action": "set_charge_limit", "limit_pct": 25}, None,
     "below_floor"),
    ("discharge with stale SoC", 80, 16, _discharge(), "charger", "soc_stale"),
    ("discharge with SoC unknown", None, 0, _discharge(), "charger", "soc_unknown"),
    ("discharge past the V2G floor", 40.5, 0, _discharge(), "charger", "below_v2g_floor"),
    ("discharge without a charger", 80, 0, _discharge(), "consent", "no_v2g_charger"),
    ("discharge beyond the car's power", 80, 0, _discharge(kw=-20), "charger", "power_limit"),
    ("discharge for 20 minutes", 80, 0, _discharge(lease=timedelta(minutes=20)), "charger",
     "lease_too_long"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("soc", "age", "fields", "setup", "code"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_i3_i8_refused_commands_are_recorded_and_never_sent(
    car, cloud, request, soc, age, fields, setup, code
):
    charger = None
    if setup == "charger":
        charger = request.getfixturevalue("v2g_charger")
    elif setup == "consent":
        request.getfixturevalue("v2g_charger")  # consent given, but the command names no charger
    elif setup is not None:
        setup(car)
    if soc is not None:
        car.report(soc_pct=soc, minutes_ago=age)
    command, _ = services.create_command(
        vehicle=car.vehicle, idempotency_key="c", charger=charger, actor="test", **fields
    )
    send_command.apply(args=[command.pk])

    command.refresh_from_db()
    assert command.state == Command.State.REFUSED
    assert command.attempts == 0
    event = CommandEvent.objects.get(command=command, kind="refused")
    assert event.data == {"code": code}
    assert event.actor == "control.gateway"
    assert event.detail == command.last_error != ""
    assert cloud.request_counts() == {}  # nothing reached the car's cloud


def test_charging_fails_open_with_no_telemetry_at_all(car, cloud):
    """SoC unknown, owner paused: starting a charge is still allowed and sent."""
    _pause(car)
    command, _ = services.create_command(
        vehicle=car.vehicle, action=Command.Action.START_CHARGE, idempotency_key="s", actor="t"
    )
    send_command.apply(args=[command.pk])
    assert Command.objects.get(pk=command.pk).state == Command.State.SENT
    assert cloud.request_count("vehicle.start_charge") == 1


def test_owner_may_stop_their_own_car_while_boosting(car, cloud):
    car.report(soc_pct=60)
    cloud.set_state(car.vin, charging=True)
    _boost(car)
    command, _ = services.create_command(
        vehicle=car.vehicle,
        idempotency_key="o",
        source=Command.Source.OWNER,
        actor="owner",
        **_stop(),
    )
    send_command.apply(args=[command.pk])
    assert Command.objects.get(pk=command.pk).state == Command.State.SENT
    assert cloud.request_count("vehicle.stop_charge") == 1


def test_stopping_a_car_that_is_not_charging_is_already_done(car, cloud):
    """The cloud answers 409 NOT_CHARGING: the intent holds, so the command is confirmed (no
    retry storm against a car that already does what we want)."""
    car.report(soc_pct=60)
    command, _ = services.create_command(
        vehicle=car.vehicle, idempotency_key="n", actor="t", **_stop()
    )
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.CONFIRMED
    assert command.events.last().detail == "The car is not charging."
    assert cloud.request_count("vehicle.stop_charge") == 1


def test_a_car_that_is_not_plugged_in_fails_in_plain_words(car, cloud):
    cloud.set_state(car.vin, plugged=False)
    command, _ = services.create_command(
        vehicle=car.vehicle, action=Command.Action.START_CHARGE, idempotency_key="p", actor="t"
    )
    send_command.apply(args=[command.pk])
    command.refresh_from_db()
    assert command.state == Command.State.FAILED
    assert command.last_error == "The car is not plugged in."


def test_a_safe_discharge_passes_the_gateway(car, v2g_charger):
    """80 % fresh, 7.2 kW for 10 min on the car's battery stays far above the 40 % V2G floor."""
    car.report(soc_pct=80)
    command, _ = services.create_command(
        vehicle=car.vehicle, idempotency_key="d", charger=v2g_charger, actor="t", **_discharge()
    )
    assert gateway.check_command(command=command, now=timezone.now()).allowed


def test_an_offline_charger_is_retried_not_failed(car, v2g_charger):
    """The charger is not connected: a transient failure, retried later (never a lost command)."""
    from vehicles.chargers.models import ChargingSession

    ChargingSession.objects.create(
        charger=v2g_charger, transaction_id="tx-1", started_at=timezone.now()
    )
    car.report(soc_pct=60)
    command, _ = services.create_command(
        vehicle=car.vehicle,
        idempotency_key="cap",
        charger=v2g_charger,
        actor="t",
        action=Command.Action.SET_POWER,
        power_kw=3.0,
        lease_end=timezone.now() + LEASE,
    )
    with pytest.raises(services.RetryLater):
        services.send_command(command_id=command.pk)
    command.refresh_from_db()
    assert command.state == Command.State.PENDING
    assert command.attempts == 1
    assert "offline" in command.last_error
