"""The in-app channel over the owner's live websocket (/ws/live/): a new notification reaches the
open page with the unread count; a page that reconnects sends the last id it saw and gets exactly
what it missed, oldest first, and never another owner's."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.notifications import services
from accounts.notifications.models import Notification
from chargescape.asgi import application
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _socket(cookie: bytes) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )


def _cookie(client, user) -> bytes:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _tell(owner, program: str) -> Notification:
    """Store and deliver one notification, as the worker would."""
    notification = services.notify(
        owner=owner, kind="enrollment_approved", context={"program": program}
    )
    services.deliver_notifications(notification_ids=[notification.pk])
    return notification


def test_a_new_notification_reaches_the_owners_open_page_live(client):
    owner, stranger = UserFactory(), UserFactory()
    cookie = _cookie(client, owner)

    async def scenario():
        socket = _socket(cookie)
        connected, _ = await socket.connect()
        assert connected
        await sync_to_async(_tell)(stranger, "Not yours")
        assert await socket.receive_nothing(timeout=0.5)
        mine = await sync_to_async(_tell)(owner, "Peak Saver")
        message = await socket.receive_json_from(timeout=5)
        assert message["notification"]["id"] == mine.pk
        assert message["notification"]["title"] == "You're in: Peak Saver"
        assert message["notification"]["read"] is False
        assert message["unread"] == 1
        assert "replay" not in message
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_reconnecting_page_gets_what_it_missed(client):
    owner, stranger = UserFactory(), UserFactory()
    cookie = _cookie(client, owner)

    async def scenario():
        socket = _socket(cookie)
        assert (await socket.connect())[0]
        seen = await sync_to_async(_tell)(owner, "First")
        assert (await socket.receive_json_from(timeout=5))["notification"]["id"] == seen.pk
        await socket.disconnect()

        # Offline (a tunnel, a sleeping phone): two arrive, and a stranger's.
        missed = [await sync_to_async(_tell)(owner, name) for name in ("Second", "Third")]
        await sync_to_async(_tell)(stranger, "Not yours")

        socket = _socket(cookie)
        assert (await socket.connect())[0]
        await socket.send_json_to({"notifications_after": seen.pk})
        replayed = [await socket.receive_json_from(timeout=5) for _ in missed]
        assert [m["notification"]["id"] for m in replayed] == [n.pk for n in missed]
        assert [m["notification"]["title"] for m in replayed] == [
            "You're in: Second",
            "You're in: Third",
        ]
        assert all(m["replay"] and m["unread"] == 3 for m in replayed)
        assert await socket.receive_nothing(timeout=0.5)
        # Nothing newer than the newest: nothing replayed; junk is ignored.
        await socket.send_json_to({"notifications_after": missed[-1].pk})
        await socket.send_json_to({"notifications_after": "all"})
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_vehicle_updates_still_flow_on_the_same_socket(client):
    """The notification messages join the vehicle ones; a vehicle update is unchanged."""
    from django.utils import timezone

    from tests.factories import VehicleFactory
    from vehicles import services as vehicle_services
    from vehicles.oem.base import VehicleState

    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner)
    cookie = _cookie(client, owner)
    state = VehicleState(recorded_at=timezone.now(), soc_pct=61.0, plugged_in=True)

    async def scenario():
        socket = _socket(cookie)
        assert (await socket.connect())[0]
        await sync_to_async(vehicle_services.record_reading)(
            vehicle=vehicle, state=state, source="poll"
        )
        update = await socket.receive_json_from(timeout=5)
        assert update["vehicle"] == str(vehicle.pk)
        assert "notification" not in update
        await socket.disconnect()

    async_to_sync(scenario)()
