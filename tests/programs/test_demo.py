"""`make run`'s demo data: the utility with three feeders, a TOU tariff and three programs; a
fleet linked through the simulated cloud's real consent flow, enrolled; an evening event."""

from datetime import UTC, datetime

import pytest
import time_machine

from chargescape.management.commands.seed_demo import seed_demo_accounts
from programs import demo
from programs.models import Enrollment, Feeder, GridEvent, Program, Tariff
from tests.vehicles.conftest import simulated_cloud
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db


def test_demo_utility_fleet_and_evening_event(settings):
    accounts = seed_demo_accounts()
    seed_demo_accounts()  # idempotent
    utility = accounts.manager.managed_utilities.get()
    assert Feeder.objects.filter(utility=utility).count() == 3
    assert Tariff.objects.get(utility=utility).is_default
    assert set(Program.objects.values_list("kind", flat=True)) == {
        "managed_charging",
        "demand_response",
        "v2g",
    }
    with simulated_cloud(settings, cars=demo.OWNER_CARS + 5) as sim:
        assert demo.seed_fleet(count=5) == 5
        assert demo.seed_fleet(count=5) == 0  # idempotent
    cars = Vehicle.objects.filter(owner__email__startswith="fleet")
    owners_cars = {car.vehicle_id for car in sim.cars[: demo.OWNER_CARS]}
    assert {car.provider_vehicle_id for car in cars} <= {car.vehicle_id for car in sim.cars}
    assert not {car.provider_vehicle_id for car in cars} & owners_cars  # left for the owner
    assert cars.values("provider_vehicle_id").distinct().count() == 5
    smart = Enrollment.objects.filter(program__code="smart-charge", status="active")
    assert smart.count() == 5
    v2g = cars.filter(v2g_capable=True)
    assert Enrollment.objects.filter(program__code="grid-return").count() == v2g.count()
    # 15:00 in San Francisco: tonight 17:00-19:00 local, owners told now.
    with time_machine.travel(datetime(2026, 11, 25, 23, 0, tzinfo=UTC), tick=False):
        event = demo.schedule_evening_event()
        assert demo.schedule_evening_event() is None
    assert event.status == GridEvent.Status.SCHEDULED
    assert event.starts_at == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert (
        event.participations.count()
        == Enrollment.objects.filter(program__code="peak-saver").count()
    )
