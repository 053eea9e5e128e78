"""A simulated vehicle cloud on loopback with the Smartcar provider pointed at it."""

import contextlib
import copy
from datetime import UTC, datetime

import pytest

from vehicles.sim.cloud import SimulatedCloud

# Monday 2026-01-05 04:00 in Los Angeles: every car is at home.
MONDAY_4AM = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@contextlib.contextmanager
def simulated_cloud(settings, *, cars: int = 3, seed: int = 7, **options):
    """A simulated cloud with `cars` cars on its demo account (its clock stands still on
    MONDAY_4AM unless `options` say otherwise), and VEHICLE_PROVIDERS["smartcar"] pointed at it
    for the test."""
    redirect_uri = settings.VEHICLE_PROVIDERS["smartcar"]["REDIRECT_URI"]
    options.setdefault("start", MONDAY_4AM)
    with SimulatedCloud(cars=cars, seed=seed, redirect_uris=(redirect_uri,), **options) as sim:
        providers = copy.deepcopy(settings.VEHICLE_PROVIDERS)
        providers["smartcar"].update(
            CLIENT_ID=sim.client_id,
            CLIENT_SECRET=sim.client_secret,
            MANAGEMENT_TOKEN=sim.management_token,
            API_ORIGIN=sim.sdk_config["API_ORIGIN"],
            AUTH_ORIGIN=sim.sdk_config["AUTH_ORIGIN"],
            CONNECT_ORIGIN=sim.sdk_config["CONNECT_ORIGIN"],
            MANAGEMENT_API_ORIGIN=sim.sdk_config["MANAGEMENT_API_ORIGIN"],
        )
        settings.VEHICLE_PROVIDERS = providers
        yield sim


@pytest.fixture
def cloud(settings):
    """Three simulated cars; VEHICLE_PROVIDERS["smartcar"] talks to this server."""
    with simulated_cloud(settings) as sim:
        yield sim
