"""Plans carried out through a paired home charger (issue 6): every slot is a setpoint lease on
the charger (real power modulation), a discharge slot on a V2G charger is a negative setpoint,
and the safety gateway still has the last word (stale SoC, consent, V2G floor). Cars whose
charger is offline or has no car plugged in stay on their cloud.

Real OCPP over websockets: the OCPP process of tests/vehicles/chargers (uvicorn on loopback, the
Redis channel layer) and simulated charge points whose power follows the profiles they hold.
"""

from datetime import timedelta

import pytest

from programs import execution
from programs.services import slot_start, store_plan
from tests.factories import UserFactory, VehicleFactory
from tests.vehicles.chargers.conftest import (  # the OCPP process of those tests
    db,
    eventually,
    ocpp_url,  # noqa: F401 — a fixture
    quiet_ocpp_server,  # noqa: F401 — an autouse fixture: sockets closed before the flush
    run,
)
from vehicles import services as vehicle_services
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import ChargingSession, SessionState
from vehicles.control import services as control_services
from vehicles.control.models import Command
from vehicles.oem.base import VehicleState
from vehicles.sim.chargers import ManualClock, SimulatedCharger

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = timedelta(minutes=15)


@pytest.fixture
def home(ocpp_url, transactional_db):  # noqa: F811 — ocpp_url is the imported fixture
    """home(version, v2g) -> (vehicle, charger, SimulatedCharger): an owner's V2G-capable car
    (consent given, floor 30 %, V2G floor 40 %) and a charger they claimed and paired with it."""

    def make(version: str = "2.1", *, v2g: bool = True, consent: bool = True):
        owner = UserFactory()
        vehicle = VehicleFactory(owner=owner, v2g_capable=True, battery_kwh=60, max_ac_kw=7.2)
        preference = vehicle.preference
        preference.v2g_consent = consent
        preference.min_soc_pct, preference.v2g_min_soc_pct = 30, 40
        preference.save()
        provisioned = charger_services.provision_charger(
            charge_point_id=f"V2G-{vehicle.pk.hex[:12]}", v2g_capable=v2g, max_power_kw=11
        )
        charger = charger_services.claim_charger(
            owner=owner,
            charge_point_id=provisioned.charger.charge_point_id,
            pairing_code=provisioned.pairing_code,
        )
        charger = charger_services.pair_vehicle(charger=charger, vehicle=vehicle)
        sim = SimulatedCharger(
            charge_point_id=charger.charge_point_id,
            authorization_key=provisioned.authorization_key,
            version=version,
            url=ocpp_url,
            clock=ManualClock(),
            v2g=v2g,
        )
        return vehicle, charger, sim

    return make


def _plan(vehicle, power_kw, *, start):
    slots = len(power_kw)
    return store_plan(
        vehicle=vehicle,
        trigger="plugged_in",
        start=start,
        power_kw=power_kw,
        soc=[0.7] * (slots + 1),
        reasons=[0] * slots,
        import_price=[0.1] * slots,
        departure_slot=slots,
        target_soc_pct=80,
        min_soc_pct=30,
        cost=0.0,
        why="test",
    )


def _report(vehicle, *, soc_pct, at):
    """A reading as the car's telemetry stores it (the gateway reads the newest one)."""
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=at, soc_pct=soc_pct, plugged_in=True),
        source="poll",
    )


def _execute_and_send(vehicle, now):
    """The beat's step for this car at `now`, then the worker's send (both as the tasks run
    them); the command as it ended."""
    (plan,) = execution.current_plans(now=now, vehicle_id=vehicle.pk)
    command = execution.execute_plan_slot(plan=plan, now=now)
    assert command is not None
    control_services.send_command(command_id=command.pk, now=now)
    command.refresh_from_db()
    return command


def _session_open(charger):
    return ChargingSession.objects.filter(charger=charger, state=SessionState.ACTIVE).exists()


def test_a_v2g_charger_discharges_charges_and_modulates_on_the_plan(home):
    """Slots of −6, 7.2, 3 and 0 kW become setpoints on the charger, each a lease of at most 15
    min renewed slot by slot; the charger (and the car behind it) follows each of them."""
    vehicle, charger, sim = home("2.1", v2g=True)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        await eventually(lambda: _session_open(charger))
        begin = slot_start(clock.now) + SLOT
        await db(_plan)(vehicle, [-6.0, 7.2, 3.0, 0.0], start=begin)
        for index, expected_w in enumerate([-6000, 7200, 3000, 0]):
            clock.now = begin + index * SLOT + timedelta(minutes=1)
            await db(_report)(vehicle, soc_pct=70, at=clock.now)
            command = await db(_execute_and_send)(vehicle, clock.now)
            assert command.state == Command.State.SENT, command.last_error
            assert command.charger_id == charger.pk
            assert command.action == Command.Action.SET_POWER
            assert command.power_kw == expected_w / 1000
            assert clock.now < command.lease_end <= clock.now + timedelta(minutes=15)
            assert command.lease_end >= begin + (index + 1) * SLOT  # outlives its slot
            sim.advance()
            assert sim.power_w == expected_w
        assert [purpose for purpose, _ in sim.profile_log] == ["TxProfile"] * 4
        assert [status for _, status in sim.profile_log] == ["Accepted"] * 4
        assert sim.energy_export_wh > 0
        # Nobody renews the last lease: the charger ends it on its own (I8, fails open).
        clock.now = (await db(Command.objects.order_by("id").last)()).lease_end
        sim.advance()
        assert sim.power_w == sim.max_power_w  # full power again: no day plan to fall back on
        await sim.disconnect()

    run(scenario())
    assert Command.objects.filter(charger__isnull=True).count() == 0  # never the cloud


def test_the_gateway_refuses_unsafe_discharges_before_the_charger_hears_them(home):
    """Stale SoC, a discharge that would cross the V2G floor within its lease, and a withdrawn
    consent: refused with the gateway's code, and the charger receives nothing (I3)."""
    vehicle, charger, sim = home("2.1", v2g=True)
    clock = sim.clock
    cases = [
        ("soc_stale", {"soc_pct": 70, "minutes_ago": 20}),
        ("below_v2g_floor", {"soc_pct": 41, "minutes_ago": 0}),
        ("no_v2g_consent", {"soc_pct": 70, "minutes_ago": 0, "consent": False}),
    ]

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        await eventually(lambda: _session_open(charger))
        begin = slot_start(clock.now) + SLOT
        await db(_plan)(vehicle, [-6.0] * len(cases), start=begin)
        for index, (code, case) in enumerate(cases):
            clock.now = begin + index * SLOT + timedelta(minutes=1)
            if case.get("consent") is False:
                preference = vehicle.preference
                preference.v2g_consent = False
                await db(preference.save)()
            at = clock.now - timedelta(minutes=case["minutes_ago"])
            await db(_report)(vehicle, soc_pct=case["soc_pct"], at=at)
            command = await db(_execute_and_send)(vehicle, clock.now)
            assert command.state == Command.State.REFUSED
            refusal = await db(lambda c=command: c.events.get(kind="refused"))()
            assert refusal.data["code"] == code
        sim.advance()
        assert sim.profile_log == []
        assert sim.energy_export_wh == 0
        await sim.disconnect()

    run(scenario())


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charger_without_v2g_modulates_power_and_holds_discharge_slots_at_zero(home, version):
    """A car paired with a charger that cannot discharge: a charge slot of 3 kW is a 3 kW limit
    (not a start/stop through the cloud), and a discharge slot holds the car at 0 kW."""
    vehicle, charger, sim = home(version, v2g=False)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        await eventually(lambda: _session_open(charger))
        begin = slot_start(clock.now) + SLOT
        await db(_plan)(vehicle, [3.0, -6.0], start=begin)
        for index, expected_w in enumerate([3000, 0]):
            clock.now = begin + index * SLOT + timedelta(minutes=1)
            await db(_report)(vehicle, soc_pct=70, at=clock.now)
            command = await db(_execute_and_send)(vehicle, clock.now)
            assert command.state == Command.State.SENT, command.last_error
            assert command.power_kw == expected_w / 1000
            sim.advance()
            assert sim.power_w == expected_w
        assert sim.energy_export_wh == 0
        await sim.disconnect()

    run(scenario())
    assert not Command.objects.filter(charger__isnull=True).exists()


def test_the_charger_path_needs_the_charger_online_with_the_car_plugged_in_there(home):
    """Paired but offline, or online with no session (the car charges somewhere else): the plan
    goes through the car's cloud. Once the car is plugged in at home, through the charger."""
    vehicle, charger, sim = home("2.1", v2g=True)
    clock = sim.clock

    async def scenario():
        begin = slot_start(clock.now) + SLOT
        await db(_plan)(vehicle, [7.2, 7.2, 5.0], start=begin)
        clock.now = begin + timedelta(minutes=1)
        offline = await db(execution.execute_due_slots)(now=clock.now)
        assert offline == 1
        await sim.connect()
        await sim.boot()
        clock.now = begin + SLOT + timedelta(minutes=1)
        await db(execution.execute_due_slots)(now=clock.now)
        cloud = await db(lambda: list(Command.objects.values_list("action", "charger_id")))()
        assert cloud == [(Command.Action.START_CHARGE, None)]  # not repeated on the same plan
        await sim.plug_in()
        await eventually(lambda: _session_open(charger))
        clock.now = begin + 2 * SLOT + timedelta(minutes=1)
        await db(_report)(vehicle, soc_pct=70, at=clock.now)
        command = await db(_execute_and_send)(vehicle, clock.now)
        assert (command.charger_id, command.power_kw) == (charger.pk, 5.0)
        assert command.state == Command.State.SENT, command.last_error
        sim.advance()
        assert sim.power_w == 5000
        await sim.disconnect()

    run(scenario())
