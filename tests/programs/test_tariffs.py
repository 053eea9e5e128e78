"""Prices per slot from a utility's tariff: time-of-use periods by weekday and season, a price
feed whose newest price wins, and new prices replanning the cars that pay them."""

from datetime import UTC, datetime, timedelta

import pytest

from programs import services, tariffs
from programs.models import Tariff
from tests.factories import UserFactory, VehicleFactory
from vehicles import services as vehicle_services
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

# Wednesday 2026-11-25 00:00 in Chicago.
MIDNIGHT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def test_time_of_use_periods_by_weekday_and_wrapping_midnight(utility):
    schedule = tariffs.schedule_for(Tariff.objects.get(utility=utility))
    prices = schedule.import_prices(start=MIDNIGHT, slots=96, time_zone="America/Chicago")
    assert prices[0] == pytest.approx(0.08)  # 23:00-06:00 wraps midnight
    assert prices[4 * 6] == pytest.approx(0.20)  # 06:00: the default price
    assert prices[4 * 15] == pytest.approx(0.40)  # 15:00 on a weekday: peak
    assert prices[4 * 23] == pytest.approx(0.08)
    saturday = MIDNIGHT + timedelta(days=3)
    weekend = schedule.import_prices(start=saturday, slots=96, time_zone="America/Chicago")
    assert weekend[4 * 15] == pytest.approx(0.20)  # no peak at weekends


def test_malformed_periods_are_refused_with_the_period_number():
    with pytest.raises(ValueError, match="Period 2: weekdays are 0"):
        tariffs.parse_periods(
            [
                {"start": "00:00", "end": "06:00", "price": 0.1},
                {"start": "16:00", "end": "21:00", "price": 0.5, "weekdays": [7]},
            ]
        )


def test_price_feed_newest_price_wins_and_replans_the_territory(
    utility, published, django_capture_on_commit_callbacks
):
    tariff = Tariff.objects.get(utility=utility)
    tariff.kind = Tariff.Kind.PRICE_FEED
    tariff.save()
    owner = UserFactory(service_zip="60601")
    vehicle = VehicleFactory(owner=owner)
    VehicleFactory(owner=UserFactory(service_zip="94110"))  # elsewhere: not replanned
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=MIDNIGHT, soc_pct=40, plugged_in=True),
        source="poll",
    )
    with django_capture_on_commit_callbacks(execute=True):
        stored = tariffs.publish_prices(
            tariff=tariff,
            prices=[(MIDNIGHT + timedelta(hours=1), 0.03, None), (MIDNIGHT, 0.5, 0.2)],
            source="openadr",
        )
    assert stored == 2
    schedule = tariffs.schedule_for(tariff)
    prices = schedule.import_prices(start=MIDNIGHT, slots=12, time_zone="America/Chicago")
    assert list(prices[:4]) == [0.5] * 4
    assert list(prices[4:12]) == [0.03] * 8
    assert published == [("bulk", "programs.replan_vehicles", [[str(vehicle.pk)], "new_prices"])]
    plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="new_prices", now=MIDNIGHT)
    charged = [i for i, kw in enumerate(plan.power_kw[:12]) if kw > 0]
    assert charged
    assert all(i >= 4 for i in charged)  # not at 0.50, but from 01:00 at 0.03
