"""Another owner's vehicle is 404 on every route, and lists never show it (DESIGN.md I6)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from django.utils import timezone

from chargescape.asgi import application
from tests.factories import UserFactory, VehicleFactory
from vehicles import services
from vehicles.models import Vehicle
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign_vehicle():
    return VehicleFactory(owner=UserFactory())


@pytest.mark.parametrize(
    ("method", "url_name", "body"),
    [
        ("get", "api:vehicle-detail", None),
        ("get", "api:vehicle-readings", None),
        ("get", "api:vehicle-preferences", None),
        (
            "put",
            "api:vehicle-preferences",
            {"weekly_schedule": [], "min_soc_pct": 0, "max_soc_pct": 100},
        ),
        ("post", "api:vehicle-unlink", None),
        ("get", "vehicles:vehicle-detail", None),
        ("post", "vehicles:vehicle-detail", {"min_soc_pct": 0}),
        ("post", "vehicles:vehicle-unlink", None),
        ("post", "vehicles:vehicle-set-home", None),
        ("post", "vehicles:vehicle-action", {"action": "boost"}),
    ],
)
def test_foreign_vehicle_is_not_found_and_unchanged(
    owner_client, foreign_vehicle, method, url_name, body
):
    url = reverse(url_name, args=[foreign_vehicle.pk])
    kwargs = {"content_type": "application/json"} if url_name.startswith("api:") else {}
    response = getattr(owner_client, method)(url, body or {}, **kwargs)
    assert response.status_code == 404
    foreign_vehicle.refresh_from_db()
    assert foreign_vehicle.link_state == Vehicle.LinkState.LINKED
    assert foreign_vehicle.preference.min_soc_pct == 30


def test_lists_show_only_the_owners_vehicles(owner_client, owner, foreign_vehicle):
    mine = VehicleFactory(owner=owner)
    api = owner_client.get(reverse("api:vehicle-list")).json()
    assert [v["id"] for v in api] == [str(mine.pk)]
    page = owner_client.get(reverse("vehicles:vehicle-list")).content.decode()
    assert str(mine.pk) in page
    assert str(foreign_vehicle.pk) not in page


def _socket(headers):
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def test_live_socket_refuses_anonymous_and_foreign_origins():
    async def scenario():
        anonymous = _socket([(b"origin", b"http://127.0.0.1")])
        connected, code = await anonymous.connect()
        assert not connected
        assert code == 4401
        foreign = _socket([(b"origin", b"http://evil.example")])
        connected, _ = await foreign.connect()
        assert not connected

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_live_socket_carries_only_the_owners_vehicles(client):
    """An owner's open page hears about their car, never about another owner's."""
    owner = UserFactory()
    mine, theirs = VehicleFactory(owner=owner), VehicleFactory(owner=UserFactory())
    client.force_login(owner)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    state = VehicleState(recorded_at=timezone.now(), soc_pct=55.0, plugged_in=True)

    async def scenario():
        socket = _socket([(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)])
        connected, _ = await socket.connect()
        assert connected
        await sync_to_async(services.record_reading)(vehicle=theirs, state=state, source="poll")
        assert await socket.receive_nothing(timeout=0.5)
        await sync_to_async(services.record_reading)(vehicle=mine, state=state, source="poll")
        update = await socket.receive_json_from(timeout=5)
        assert update["vehicle"] == str(mine.pk)
        assert update["soc_pct"] == 55.0
        await socket.disconnect()

    async_to_sync(scenario)()
