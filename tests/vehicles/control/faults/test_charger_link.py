"""A V2G charger drops its link mid-discharge (I8): the discharge ends at the lease end on the
charger's own, and when the charger comes back its profiles are re-synced once.

tests/vehicles/chargers/test_leases.py already shows the lease ending offline and the end
state after the reconnect; this adds what it leaves open: the re-sync sends the day plan once
and not the lapsed lease, counted at the charger (its SetChargingProfile log).
"""

from datetime import timedelta

import pytest
import time_machine

from tests.vehicles.chargers.conftest import (  # the OCPP process and chargers of those tests
    db,
    eventually,
    ocpp_url,  # noqa: F401 — a fixture
    provision,  # noqa: F401 — a fixture
    refreshed,
    run,
    simulator,  # noqa: F401 — a fixture
)
from vehicles.chargers import services
from vehicles.chargers.models import Charger, ChargingProfile

pytestmark = pytest.mark.django_db(transaction=True)


async def _apply(profile):
    profile = await db(
        lambda: ChargingProfile.objects.select_related("charger", "session").get(pk=profile.pk)
    )()
    return await db(services.apply_profile)(profile=profile, timeout=10)


def test_a_discharge_ends_at_the_lease_end_offline_and_the_reconnect_resyncs_once(simulator):  # noqa: F811
    charger, sim = simulator("2.1", v2g=True)
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
            charger=stored, power_kw=-6, lease=timedelta(minutes=10), now=clock.now
        )
        assert await _apply(lease) == "Accepted"
        lease_end = clock.now + timedelta(minutes=10)

        await sim.disconnect()  # mid-discharge; the car stays plugged in
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)
        clock.now = lease_end - timedelta(seconds=1)
        sim.advance()
        assert sim.power_w == -6000  # still discharging, offline, inside the lease
        clock.now = lease_end
        sim.advance()
        assert sim.power_w == 3000  # fails closed: the discharge stopped at the lease end
        clock.advance(30 * 60)
        sim.advance()
        assert sim.energy_export_wh == pytest.approx(6000 * 600 / 3600)  # not a Wh more

        sim.profiles.clear()  # the charger reboots and forgets its profiles
        before = len(sim.profile_log)
        with time_machine.travel(clock.now, tick=True):
            await sim.connect()
            await sim.boot()
            await eventually(lambda: sim.profile_log[before:])
            await sim.heartbeat()  # a round trip behind any push still queued for it
            await sim.status("Occupied")
            await sim.heartbeat()
            assert sim.profile_log[before:] == [("TxDefaultProfile", "Accepted")]
            assert [p.purpose for p in sim.profiles.values()] == ["TxDefaultProfile"]
            await sim.disconnect()
            await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())
