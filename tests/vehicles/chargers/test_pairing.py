"""Owners pair a charger with the car that usually plugs in — only with their own cars (I6)."""

import pytest
from django.urls import reverse

from tests.factories import UserFactory, VehicleFactory
from vehicles.chargers import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def my_charger(owner):
    provisioned = services.provision_charger(charge_point_id="CS-PAIR-1", v2g_capable=True)
    return services.claim_charger(
        owner=owner, charge_point_id="CS-PAIR-1", pairing_code=provisioned.pairing_code
    )


def test_owner_pairs_their_car_and_can_clear_it(owner_client, owner, my_charger):
    car = VehicleFactory(owner=owner)
    url = reverse("vehicles:chargers:charger-detail", args=[my_charger.pk])
    page = owner_client.get(url).content.decode()
    assert car.display_name in page
    assert owner_client.post(url, {"vehicle": str(car.pk)}).status_code == 302
    my_charger.refresh_from_db()
    assert my_charger.usual_vehicle == car
    assert owner_client.post(url, {"vehicle": ""}).status_code == 302
    my_charger.refresh_from_db()
    assert my_charger.usual_vehicle is None


def test_another_owners_car_cannot_be_paired(owner_client, my_charger):
    """A foreign vehicle id is not a choice: the form refuses it and nothing changes."""
    theirs = VehicleFactory(owner=UserFactory())
    url = reverse("vehicles:chargers:charger-detail", args=[my_charger.pk])
    response = owner_client.post(url, {"vehicle": str(theirs.pk)})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    my_charger.refresh_from_db()
    assert my_charger.usual_vehicle is None
    with pytest.raises(services.ChargerError):
        services.pair_vehicle(charger=my_charger, vehicle=theirs)


def test_another_owners_charger_is_not_found(client, my_charger):
    client.force_login(UserFactory())
    url = reverse("vehicles:chargers:charger-detail", args=[my_charger.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"vehicle": ""}).status_code == 404
