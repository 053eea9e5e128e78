"""Plugging the paired car into a managed charger (or out of it) has the car's cloud read at once,
over the real OCPP process: the plug-in replan needs the car's own plugged-in state and SoC, and
a sleeping car's cloud may not say so for minutes. The poll itself (`fresh`: even while webhooks
flow) is a real SDK call to the simulated cloud (tests/vehicles/test_linking.py)."""

import pytest

from tests.factories import UserFactory, VehicleFactory
from tests.vehicles.chargers.conftest import eventually, run
from vehicles.chargers import services
from vehicles.chargers.models import ChargingSession, SessionState
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db(transaction=True)


def polls(published) -> list[list]:
    return [args for _, task, args in published if task == "vehicles.poll_vehicle"]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_plugging_into_the_paired_charger_polls_the_car_at_once(simulator, published, version):
    owner = UserFactory()
    car = VehicleFactory(owner=owner)
    charger, sim = simulator(version)
    charger.owner = owner
    charger.save(update_fields=["owner"])
    services.pair_vehicle(charger=charger, vehicle=car)

    async def scenario():
        await sim.connect()
        await sim.boot()
        assert polls(published) == []
        await sim.plug_in()
        await eventually(lambda: polls(published) == [[str(car.pk), True]])
        await sim.unplug()
        await eventually(lambda: polls(published) == [[str(car.pk), True]] * 2)
        await sim.disconnect()

    run(scenario())


def test_no_poll_without_a_linked_paired_car(simulator, published):
    """A charger with no car paired, or paired with a car whose link needs sign-in: nothing to
    ask (a poll would only fail)."""
    owner = UserFactory()
    unlinked = VehicleFactory(owner=owner, link_state=Vehicle.LinkState.NEEDS_REAUTH)
    lone, lone_sim = simulator("1.6")
    paired, paired_sim = simulator("1.6")
    for charger in (lone, paired):
        charger.owner = owner
        charger.save(update_fields=["owner"])
    services.pair_vehicle(charger=paired, vehicle=unlinked)

    async def scenario():
        for sim in (lone_sim, paired_sim):
            await sim.connect()
            await sim.boot()
            await sim.plug_in()
        # Both sessions are open (the signal comes after that commit), and no poll was asked.
        await eventually(lambda: open_sessions(lone, paired) == 2)
        assert polls(published) == []
        for sim in (lone_sim, paired_sim):
            await sim.unplug()
            await sim.disconnect()

    run(scenario())


def open_sessions(*chargers) -> int:
    return ChargingSession.objects.filter(charger__in=chargers, state=SessionState.ACTIVE).count()
