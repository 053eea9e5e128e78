"""Leases (I8): a dispatch is a TxProfile with a bounded end, so a dropped link cannot freeze it.
Discharging fails closed (stops at the lease end), charging fails open (back to the day plan)."""

from datetime import timedelta

import pytest
import time_machine

from tests.vehicles.chargers.conftest import db, eventually, refreshed, run
from vehicles.chargers import services
from vehicles.chargers.models import Charger, ChargingProfile, ProfilePurpose


async def _apply(profile):
    profile = await db(
        lambda: ChargingProfile.objects.select_related("charger", "session").get(pk=profile.pk)
    )()
    return await db(services.apply_profile)(profile=profile, timeout=10)


@pytest.mark.parametrize(("version", "power_kw"), [("2.1", -6), ("1.6", 2), ("2.0.1", 2)])
def test_a_dropped_link_during_a_lease_ends_the_dispatch_at_the_lease_end(
    simulator, version, power_kw
):
    """Link drops mid-lease: the charger keeps the dispatch until validTo, then returns to the
    3 kW day plan on its own — for V2G the discharge stops exactly at the lease end. After the
    charger reboots and reconnects, the CSMS re-sends the day plan but not the lapsed lease."""
    charger, sim = simulator(version, v2g=power_kw < 0)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        stored = await refreshed(charger)
        plan = await db(services.set_day_plan)(
            charger=stored,
            start=clock.now - timedelta(hours=1),
            periods=[{"start_s": 0, "limit_w": 3000}],
            duration_s=24 * 3600,
        )
        assert await _apply(plan) == "Accepted"
        lease = await db(services.dispatch_lease)(
            charger=stored, power_kw=power_kw, lease=timedelta(minutes=10), now=clock.now
        )
        assert await _apply(lease) == "Accepted"
        lease_end = clock.now + timedelta(minutes=10)

        await sim.disconnect()  # the link drops; the car stays plugged in
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

        clock.advance(9 * 60)
        sim.advance()
        assert sim.power_w == power_kw * 1000  # still dispatched, offline
        exported = sim.energy_export_wh
        clock.now = lease_end
        sim.advance()
        assert sim.power_w == 3000  # the lease lapsed: back to the day plan
        clock.advance(15 * 60)
        sim.advance()
        assert sim.power_w == 3000
        if power_kw < 0:
            assert exported > 0
            assert sim.energy_export_wh == pytest.approx(6000 * 600 / 3600)  # not a Wh more

        sim.profiles.clear()  # a reboot loses what the charger held
        with time_machine.travel(clock.now, tick=True):  # the CSMS's clock catches up too
            await sim.connect()
            await sim.boot()
            await eventually(
                lambda: (
                    not ChargingProfile.objects.filter(
                        charger=charger, purpose=ProfilePurpose.TX
                    ).exists()
                )
            )
            await eventually(lambda: [p.purpose for p in sim.profiles.values()])
            assert [p.purpose for p in sim.profiles.values()] == ["TxDefaultProfile"]
            await sim.disconnect()
            await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())


def test_renewing_a_lease_moves_its_end(simulator):
    """Re-dispatching while the lease holds replaces the profile (same id) with a later validTo."""
    charger, sim = simulator("2.1", v2g=True)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        stored = await refreshed(charger)
        first = await db(services.dispatch_lease)(
            charger=stored, power_kw=-4, lease=timedelta(minutes=5), now=clock.now
        )
        assert await _apply(first) == "Accepted"
        clock.advance(240)
        renewed = await db(services.dispatch_lease)(
            charger=stored, power_kw=-4, lease=timedelta(minutes=5), now=clock.now
        )
        assert renewed.pk == first.pk
        assert await _apply(renewed) == "Accepted"
        assert len(sim.profiles) == 1
        clock.advance(200)  # past the first lease's end, inside the renewed one
        sim.advance()
        assert sim.power_w == -4000
        await sim.disconnect()
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())
