"""Fixtures for command execution: a car linked (through the real SDK and `link_vehicles`) to the
simulated cloud, its telemetry, and the Celery messages a test publishes."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from vehicles import services as vehicle_services
from vehicles.models import Vehicle
from vehicles.oem.base import VehicleState
from vehicles.sim.cloud.grants import ALL_SCOPES


@dataclass
class LinkedCar:
    vehicle: Vehicle
    vin: str
    vehicle_id: str

    def report(self, *, soc_pct=None, minutes_ago=0, plugged_in=True, charging_state=""):
        """A reading as telemetry would store it (the gateway reads the newest one)."""
        return vehicle_services.record_reading(
            vehicle=self.vehicle,
            state=VehicleState(
                recorded_at=timezone.now() - timedelta(minutes=minutes_ago),
                soc_pct=soc_pct,
                plugged_in=plugged_in,
                charging_state=charging_state,
            ),
            source="poll",
        )


@pytest.fixture
def car(cloud, owner, settings):
    """The first simulated car, plugged in and not charging, linked to `owner` with floor 30 %."""
    sim_car = cloud.cars[0]
    redirect_uri = settings.VEHICLE_PROVIDERS["smartcar"]["REDIRECT_URI"]
    with cloud.world.lock:
        code = cloud.world.issue_code(
            client_id=cloud.client_id,
            vehicle_ids=[sim_car.vehicle_id],
            scopes=list(ALL_SCOPES),
            redirect_uri=redirect_uri,
        )
    (vehicle,) = vehicle_services.link_vehicles(
        owner=owner, provider="smartcar", code=code, redirect_uri=redirect_uri
    )
    vehicle.preference.min_soc_pct = 30
    vehicle.preference.save()
    cloud.set_state(sim_car.vin, soc_pct=50.0, plugged=True, charging=False, charge_limit_pct=90)
    cloud.reset_request_counts()
    return LinkedCar(vehicle=vehicle, vin=sim_car.vin, vehicle_id=sim_car.vehicle_id)


@pytest.fixture
def fast_retries(settings):
    """No backoff waits, so Celery's in-process `.apply()` runs every retry at once."""
    settings.CONTROL_RETRY_BASE_SECONDS = 0
    settings.CONTROL_AMBIGUOUS_SETTLE_SECONDS = 0
