"""A managed charger's meter readings reach its owner's open pages as news of the paired car
(charging / sending energy back, the power, the SoC when reported), over the real OCPP process,
Redis channel layer and owner websocket; nobody else hears them, and an idle charger says
nothing about a car."""

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from chargescape.asgi import application
from tests.factories import UserFactory, VehicleFactory
from tests.vehicles.chargers.conftest import db, run
from vehicles.chargers import services

pytestmark = pytest.mark.django_db(transaction=True)


def owner_socket(user) -> WebsocketCommunicator:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )


async def charger_update_at(socket: WebsocketCommunicator, at: str, timeout: float = 5) -> dict:
    """The live message from the charger's reading sampled `at` (2.x chargers also meter the
    start of a transaction; other kinds of message are skipped)."""
    while True:
        message = await socket.receive_json_from(timeout=timeout)
        if message.get("source") == "charger" and message["recorded_at"] == at:
            return message


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_meter_values_reach_the_owner_of_the_paired_car_only(simulator, version):
    owner, stranger = UserFactory(), UserFactory()
    car = VehicleFactory(owner=owner)
    VehicleFactory(owner=stranger)
    charger, sim = simulator(version)
    charger.owner = owner
    charger.save(update_fields=["owner"])
    services.pair_vehicle(charger=charger, vehicle=car)
    mine, theirs = owner_socket(owner), owner_socket(stranger)

    async def scenario():
        assert (await mine.connect())[0]
        assert (await theirs.connect())[0]
        await sim.connect()
        await sim.boot()

        # No transaction: the charger's readings say nothing about a car.
        await sim.send_meter_values()
        assert await mine.receive_nothing(timeout=0.5)

        await sim.plug_in()
        sim.clock.advance(900)
        await sim.send_meter_values()
        update = await charger_update_at(mine, sim.clock.now.isoformat())
        assert update["vehicle"] == str(car.pk)
        assert update["plugged_in"] is True
        assert update["charging_state"] == "CHARGING"
        assert update["power_kw"] > 1
        assert update["soc_pct"] is None or 0 < update["soc_pct"] <= 100
        assert await theirs.receive_nothing(timeout=0.5)

        # The car goes elsewhere: the same charger's readings no longer tell this owner about it.
        await db(services.pair_vehicle)(charger=charger, vehicle=None)
        sim.clock.advance(60)
        await sim.send_meter_values()
        assert await mine.receive_nothing(timeout=0.5)

        await sim.unplug()
        await sim.disconnect()
        await mine.disconnect()
        await theirs.disconnect()

    run(scenario())
