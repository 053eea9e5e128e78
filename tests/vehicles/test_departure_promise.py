"""The departure promise (DESIGN.md §5): when the plan cannot reach the owner's target in time,
the owner is told early, on the car's page and the home card, with the SoC they will leave with
and a one-tap Boost; the warning is recorded, and it goes away once the target is reachable."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from programs.services import store_plan
from tests.factories import UserFactory, VehicleFactory
from vehicles import services as vehicle_services
from vehicles.control.confirm import record_departure_warnings
from vehicles.control.models import OwnerAlert
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

# Tuesday 6 January 2026, 04:00 in Chicago; the owner leaves at 07:00 (13:00 UTC), 12 slots on.
NOW = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
DEPARTURE = datetime(2026, 1, 6, 13, 0, tzinfo=UTC)
SLOTS = 12
BATTERY_KWH = 60


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def vehicle(owner):
    vehicle = VehicleFactory(owner=owner, battery_kwh=BATTERY_KWH, nickname="Leafy")
    _report(vehicle, plugged_in=True)
    return vehicle


def _report(vehicle, *, plugged_in, soc_pct=40.0):
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(
            recorded_at=timezone.now(),
            soc_pct=soc_pct,
            plugged_in=plugged_in,
            charging_state="CHARGING" if plugged_in else "NOT_CHARGING",
            power_kw=7.2 if plugged_in else 0.0,
        ),
        source="webhook",
    )


def _plan(vehicle, *, reaches_pct, target_pct=80, departure_at=DEPARTURE, start=NOW):
    """A plan charging every slot from 40 % that ends at `reaches_pct` at departure."""
    slots = int((departure_at - start) / timedelta(minutes=15))
    step = (reaches_pct - 40) / 100 / slots
    soc = [round(0.40 + step * i, 4) for i in range(slots + 1)]
    return store_plan(
        vehicle=vehicle,
        trigger="plugged_in",
        start=start,
        power_kw=[7.2] * slots,
        soc=soc,
        reasons=[0] * slots,
        import_price=[0.1] * slots,
        departure_at=departure_at,
        departure_slot=slots,
        target_soc_pct=target_pct,
        min_soc_pct=30,
        shortfall_kwh=max(target_pct - reaches_pct, 0) / 100 * BATTERY_KWH,
        cost=1.0,
        why="Charging at full power: you plugged in late.",
    )


WARNING = "You'll leave with about <strong>62 %</strong> instead of <strong>80 %</strong> at"


def test_an_unreachable_target_shows_the_expected_soc_and_a_boost_on_the_car_page(
    owner_client, vehicle
):
    _plan(vehicle, reaches_pct=62)
    page = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk])).text
    assert "Your car won't be ready in time" in page
    assert WARNING in page
    assert ">07:00</time>" in page  # Chicago time, not 13:00 UTC
    assert 'value="boost"' in page
    assert "⚡ Boost to 80 %" in page


def test_the_home_card_warns_and_its_boost_brings_the_owner_back_home(owner_client, owner, vehicle):
    _plan(vehicle, reaches_pct=62)
    home = owner_client.get(reverse("home")).text
    assert WARNING in home
    assert 'name="next" value="/"' in home

    response = owner_client.post(
        reverse("vehicles:vehicle-action", args=[vehicle.pk]), {"action": "boost", "next": "/"}
    )
    assert response.status_code == 302
    assert response.url == "/"
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.boost_until > NOW
    assert vehicle.preference.boost_to_soc_pct == 80

    # Boosting, the plan still falls short: say so, without offering the button again.
    home = owner_client.get(reverse("home")).text
    assert WARNING in home
    assert "Boost is on: the car is already charging as fast as it can." in home
    assert "⚡ Boost to 80 %" not in home


def test_boost_never_redirects_off_site(owner_client, vehicle):
    response = owner_client.post(
        reverse("vehicles:vehicle-action", args=[vehicle.pk]),
        {"action": "boost", "next": "https://evil.example/"},
    )
    assert response.url == reverse("vehicles:vehicle-detail", args=[vehicle.pk])


def test_the_warning_disappears_when_the_target_is_reachable(owner_client, vehicle):
    _plan(vehicle, reaches_pct=62)
    _plan(vehicle, reaches_pct=80)  # replanned: the owner boosted, or an event ended
    for url in (reverse("home"), reverse("vehicles:vehicle-detail", args=[vehicle.pk])):
        page = owner_client.get(url).text
        assert "You'll leave with about" not in page


def test_no_warning_for_a_rounding_shortfall_an_unplugged_car_or_a_past_departure(
    owner_client, vehicle, clock
):
    detail = reverse("vehicles:vehicle-detail", args=[vehicle.pk])
    _plan(vehicle, reaches_pct=79.8)  # 0.1 kWh short: "about 80 % instead of 80 %" says nothing
    assert "You'll leave with about" not in owner_client.get(detail).text

    _plan(vehicle, reaches_pct=62)
    clock.shift(timedelta(minutes=1))
    _report(vehicle, plugged_in=False)  # like the plan card, an unplugged car has no plan
    assert "You'll leave with about" not in owner_client.get(detail).text

    clock.shift(timedelta(minutes=1))
    _report(vehicle, plugged_in=True)
    assert "You'll leave with about" in owner_client.get(detail).text  # plugged in again
    clock.move_to(DEPARTURE + timedelta(minutes=1))
    assert "You'll leave with about" not in owner_client.get(detail).text


def test_a_departure_more_than_a_day_away_names_the_day(owner_client, vehicle):
    _plan(vehicle, reaches_pct=50, departure_at=DEPARTURE + timedelta(days=1))
    page = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk])).text
    assert "instead of <strong>80 %</strong> on Wednesday at <time" in page


def test_the_warning_is_recorded_once_per_departure_and_resolved_when_reachable(vehicle):
    """The beat records one open alert per departure, follows the expected SoC as plans change,
    and resolves it once a plan reaches the target; other owners' cars are not mixed in."""
    stranger = VehicleFactory(owner=UserFactory(), battery_kwh=BATTERY_KWH)
    _report(stranger, plugged_in=True)
    _plan(stranger, reaches_pct=80)

    _plan(vehicle, reaches_pct=62)
    assert record_departure_warnings() == {"open": 1, "resolved": 0}
    alert = OwnerAlert.objects.get()
    assert alert.vehicle == vehicle
    assert alert.kind == OwnerAlert.Kind.DEPARTURE_AT_RISK
    assert alert.message == "You'll leave with about 62 % instead of 80 % at 07:00."
    assert alert.data["expected_soc_pct"] == 62
    assert alert.resolved_at is None

    _plan(vehicle, reaches_pct=70)
    record_departure_warnings()
    alert.refresh_from_db()
    assert OwnerAlert.objects.count() == 1
    assert alert.message == "You'll leave with about 70 % instead of 80 % at 07:00."

    _plan(vehicle, reaches_pct=80)
    assert record_departure_warnings() == {"open": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.resolved_at == NOW
