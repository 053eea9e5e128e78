"""Boot → session → profile → composite schedule → meter values that follow the profile, for each
OCPP version, over a real websocket with the simulated charger (issue 4, "Must show")."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.vehicles.chargers.conftest import db, eventually, refreshed, run
from vehicles.chargers import services
from vehicles.chargers.models import ChargingSession, OcppMessage, ProfileState, SessionState

VERSIONS = ["1.6", "2.0.1", "2.1"]


@pytest.mark.parametrize("version", VERSIONS)
def test_boot_session_profile_composite_and_meter_values_follow_the_plan(simulator, version):
    """A 7.4 kW then 3.7 kW day plan is accepted, reported back by GetCompositeSchedule and
    followed: meter values show 7.4 kW and the energy it delivers, then 3.7 kW after the step."""
    charger, sim = simulator(version)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        boot = await sim.boot()
        assert boot.status == "Accepted"
        stored = await refreshed(charger)
        assert stored.is_connected
        assert stored.protocol == version
        assert (stored.vendor, stored.model) == ("ChargeScape", "SimBox")

        tx = await sim.plug_in()
        session = await db(ChargingSession.objects.get)(charger=charger)
        assert session.state == SessionState.ACTIVE
        assert session.transaction_id == tx.transaction_id

        plan = await db(services.set_day_plan)(
            charger=stored,
            start=clock.now - timedelta(minutes=1),
            periods=[{"start_s": 0, "limit_w": 7400}, {"start_s": 3600, "limit_w": 3700}],
        )
        plan = await db(
            lambda: services.ChargingProfile.objects.select_related("charger").get(pk=plan.pk)
        )()
        assert await db(services.apply_profile)(profile=plan, timeout=10) == "Accepted"
        assert (await db(services.ChargingProfile.objects.get)(pk=plan.pk)).state == (
            ProfileState.ACCEPTED
        )
        assert [p.purpose for p in sim.profiles.values()] == ["TxDefaultProfile"]

        start, periods = await db(services.get_composite_schedule)(
            charger=stored, evse_id=1, duration_s=7200, timeout=10
        )
        assert start == clock.now
        # The plan's last slot ends 15 minutes after it starts; then charging fails open (11 kW).
        assert [(p["start_s"], p["limit_w"]) for p in periods] == [
            (0, 7400.0),
            (3540, 3700.0),
            (4440, 11000.0),
        ]

        clock.advance(900)
        await sim.send_meter_values()
        session = await db(ChargingSession.objects.get)(pk=session.pk)
        assert session.power_kw == Decimal("7.400")
        assert session.energy_import_wh == 1850  # 7.4 kW × 15 min
        assert session.soc_pct > Decimal("40")

        clock.advance(3540 - 900 + 600)  # 10 minutes into the 3.7 kW step
        await sim.send_meter_values()
        session = await db(ChargingSession.objects.get)(pk=session.pk)
        assert session.power_kw == Decimal("3.700")
        assert session.energy_import_wh == round(7400 * 3540 / 3600 + 3700 * 600 / 3600)

        await sim.unplug()
        session = await db(ChargingSession.objects.get)(pk=session.pk)
        assert session.state == SessionState.ENDED
        await sim.disconnect()
        await eventually(lambda: not type(charger).objects.get(pk=charger.pk).is_connected)
        # The operator's log holds the exchange (heartbeats excluded).
        actions = await db(
            lambda: set(
                OcppMessage.objects.filter(charger=charger).values_list("action", flat=True)
            )
        )()
        assert {"BootNotification", "SetChargingProfile", "GetCompositeSchedule"} <= actions

    run(scenario())


def test_v2g_setpoint_on_21_discharges_and_meters_show_export(simulator):
    """On OCPP 2.1 a −5 kW dispatch becomes a TxProfile with operationMode=CentralSetpoint,
    setpoint −5000 W and dischargeLimit ≤ 0; the car discharges and the meter shows export."""
    charger, sim = simulator("2.1", v2g=True)
    clock = sim.clock

    async def scenario():
        await sim.connect()
        await sim.boot()
        await sim.plug_in()
        stored = await refreshed(charger)
        session = await db(ChargingSession.objects.get)(charger=charger)
        assert session.ev_charging_needs["requestedEnergyTransfer"] == "AC_BPT"
        assert session.departure_at is not None

        lease = await db(services.dispatch_lease)(
            charger=stored, power_kw=-5, lease=timedelta(minutes=5), now=clock.now
        )
        lease = await db(
            lambda: type(lease).objects.select_related("charger", "session").get(pk=lease.pk)
        )()
        assert await db(services.apply_profile)(profile=lease, timeout=10) == "Accepted"
        installed = next(iter(sim.profiles.values()))
        assert installed.purpose == "TxProfile"
        assert installed.stack_level == 10
        assert installed.periods[0].setpoint_w == -5000
        assert installed.periods[0].discharge_limit_w <= 0
        assert installed.valid_to == clock.now + timedelta(minutes=5)

        _start, periods = await db(services.get_composite_schedule)(
            charger=stored, evse_id=1, duration_s=600, timeout=10
        )
        assert periods[0]["setpoint_w"] == -5000
        assert periods[1]["start_s"] == 300
        assert periods[1]["setpoint_w"] is None

        clock.advance(120)
        await sim.send_meter_values()
        session = await db(ChargingSession.objects.get)(pk=session.pk)
        assert session.power_kw == Decimal("-5.000")
        assert session.energy_export_wh == round(5000 * 120 / 3600)
        assert session.soc_pct < Decimal("40")
        await sim.disconnect()

    run(scenario())


def test_discharge_is_refused_without_ocpp_21(provision):
    """A negative setpoint needs a V2G charger on 2.1: anything else fails closed, unsent."""
    charger, _ = provision(v2g=True)
    charger.protocol = "2.0.1"
    with pytest.raises(services.ChargerError):
        services.dispatch_lease(charger=charger, power_kw=-3, lease=timedelta(minutes=5))


def test_a_lease_longer_than_15_minutes_is_refused(provision):
    """I8: a dispatch lease is bounded (≤ 15 min); the database refuses longer ones too."""
    charger, _ = provision()
    with pytest.raises(services.ChargerError):
        services.dispatch_lease(charger=charger, power_kw=3, lease=timedelta(minutes=16))
