"""A fleet account links every car of its grant, however many pages GET /vehicles takes.

Found while building the fault tests' fleet: the adapter read only the first page (Smartcar's
default of 10 vehicles), so an owner granting 24 cars got 10 of them managed.
"""

import pytest

from tests.vehicles.control.faults.conftest import FLEET_SIZE

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_grant_of_more_than_ten_cars_links_them_all(fleet, cloud):
    assert FLEET_SIZE > 10
    linked = {vehicle.provider_vehicle_id for vehicle in fleet.vehicles}
    assert linked == {car.vehicle_id for car in cloud.cars}
