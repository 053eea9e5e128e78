"""Vehicle API shapes and battery physics, read through the real `smartcar` SDK."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import smartcar

from .conftest import auth_client


def _vehicle(linked, index=0, **options):
    access, ids = linked
    return smartcar.Vehicle(ids[index], access.access_token, options or None)


def _renewed(cloud, linked, index=0):
    """Access tokens live two simulated hours; after a long advance, refresh like an app would."""
    access, ids = linked
    renewed = auth_client(cloud).exchange_refresh_token(access.refresh_token)
    return smartcar.Vehicle(ids[index], renewed.access_token)


def test_battery_and_charge_limit_use_smartcar_fractions(cloud, linked):
    """percentRemaining and limit are fractions (0–1); range is in km by default."""
    state = cloud.set_state(linked[1][0], soc_pct=42.0, charge_limit_pct=90)
    vehicle = _vehicle(linked)
    battery = vehicle.battery()
    assert battery.percent_remaining == 0.42
    assert battery.range == pytest.approx(state.range_km, abs=0.05)
    assert vehicle.get_charge_limit().limit == 0.9
    assert vehicle.battery_capacity().capacity == state.battery_kwh
    assert vehicle.set_charge_limit(0.8).status == "success"
    assert vehicle.get_charge_limit().limit == 0.8
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        vehicle.set_charge_limit(0.3)
    assert (excinfo.value.status_code, excinfo.value.type) == (400, "VALIDATION")


def test_imperial_units_convert_distances(cloud, linked):
    """sc-unit-system: imperial turns odometer and range into miles."""
    metric = _vehicle(linked).odometer().distance
    imperial = _vehicle(linked, unit_system="imperial").odometer()
    assert imperial.distance == pytest.approx(metric / 1.609344, abs=0.1)
    assert imperial.meta.unit_system == "imperial"


def test_start_charge_needs_a_plug(cloud, linked):
    """Starting to charge an unplugged car is 409 VEHICLE_STATE CHARGING_PLUG_NOT_CONNECTED."""
    cloud.set_state(linked[1][0], plugged=False)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        _vehicle(linked).start_charge()
    assert excinfo.value.status_code == 409
    assert excinfo.value.code == "CHARGING_PLUG_NOT_CONNECTED"


def test_charging_adds_power_times_time_and_stops_at_the_limit(cloud, linked):
    """SoC rises by max AC kW × hours / capacity, then holds at the charge limit, FULLY_CHARGED."""
    vin = linked[1][0]
    car = cloud.set_state(
        vin, soc_pct=30.0, charge_limit_pct=80, plugged=True, follows_routine=False
    )
    vehicle = _vehicle(linked)
    assert vehicle.charge().state == "NOT_CHARGING"
    vehicle.start_charge()
    cloud.advance(3600)
    expected = 30.0 + car.max_ac_kw / car.battery_kwh * 100
    assert vehicle.battery().percent_remaining == pytest.approx(expected / 100, abs=1e-4)
    charge = vehicle.charge()
    assert (charge.is_plugged_in, charge.state) == (True, "CHARGING")

    events = cloud.advance(24 * 3600)
    vehicle = _renewed(cloud, linked)
    assert vehicle.battery().percent_remaining == 0.8
    assert vehicle.charge().state == "FULLY_CHARGED"
    assert cloud.car(vin).energy_in_kwh == pytest.approx(0.5 * car.battery_kwh)
    assert [e.kind for e in events if e.vin == car.vin] == ["charge_complete"]
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        vehicle.start_charge()
    assert excinfo.value.code == "FULLY_CHARGED"


def test_stop_charge_holds_the_soc(cloud, linked):
    """After stop_charge, time passes and SoC does not move; a second stop is NOT_CHARGING."""
    vin = linked[1][0]
    cloud.set_state(vin, soc_pct=50.0, plugged=True, charging=True, follows_routine=False)
    vehicle = _vehicle(linked)
    vehicle.stop_charge()
    cloud.advance(2 * 3600)
    vehicle = _renewed(cloud, linked)
    assert vehicle.battery().percent_remaining == 0.5
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        vehicle.stop_charge()
    assert excinfo.value.code == "NOT_CHARGING"


def test_lowering_the_limit_below_soc_stops_charging(cloud, linked):
    """Setting the charge limit under the current SoC ends the charging session."""
    cloud.set_state(linked[1][0], soc_pct=85.0, charge_limit_pct=100, plugged=True, charging=True)
    vehicle = _vehicle(linked)
    vehicle.set_charge_limit(0.8)
    assert vehicle.charge().state == "FULLY_CHARGED"
    cloud.advance(600)
    assert vehicle.battery().percent_remaining == 0.85


def test_v2g_discharge_moves_soc_down_and_stops_at_empty(cloud, linked):
    """A negative setpoint drains the pack at that power and never below 0 %."""
    ford = next(c for c in cloud.cars if c.v2g_capable)
    cloud.set_state(ford.vin, soc_pct=20.0, plugged=True, follows_routine=False)
    cloud.set_power_kw(ford.vin, -ford.max_ac_kw)
    cloud.advance(1800)
    drained = 20.0 - ford.max_ac_kw * 0.5 / ford.battery_kwh * 100
    assert cloud.car(ford.vin).soc_pct == pytest.approx(drained)
    cloud.advance(48 * 3600)
    after = cloud.car(ford.vin)
    assert after.soc_pct == 0.0
    assert after.power_kw == 0.0
    assert after.energy_out_kwh == pytest.approx(0.2 * ford.battery_kwh)


def test_setpoints_respect_car_limits(cloud):
    """Beyond ±max AC kW, discharge on a car without V2G, or any power unplugged is refused."""
    ford = next(c for c in cloud.cars if c.v2g_capable)
    no_v2g = next(c for c in cloud.cars if not c.v2g_capable)
    cloud.set_state(ford.vin, plugged=True)
    cloud.set_state(no_v2g.vin, plugged=True)
    with pytest.raises(ValueError, match="between"):
        cloud.set_power_kw(ford.vin, ford.max_ac_kw + 1)
    with pytest.raises(ValueError, match="V2G"):
        cloud.set_power_kw(no_v2g.vin, -3)
    cloud.set_state(ford.vin, plugged=False)
    with pytest.raises(ValueError, match="plugged"):
        cloud.set_power_kw(ford.vin, 3)


def test_daily_routine_drives_away_and_plugs_in_at_night(cloud):
    """On a weekday each car leaves home unplugged in the morning and is home by night, plugged
    in on the evenings the owner remembers, with the commute on the odometer."""
    before = {c.vin: c for c in cloud.cars}
    for vin in before:
        cloud.set_state(vin, soc_pct=70.0, plugged=True)
    cloud.advance(8 * 3600)  # 12:00 local
    assert all(not c.at_home and not c.plugged for c in cloud.cars)
    events = cloud.advance(16 * 3600)  # 04:00 the next day
    for car in cloud.cars:
        kinds = [e.kind for e in events if e.vin == car.vin]
        assert kinds[0] == "arrive"
        assert car.at_home
        assert car.plugged == ("plug_in" in kinds)
        assert car.odometer_km > before[car.vin].odometer_km
        assert car.soc_pct < 70.0 or car.plugged


def test_weekend_cars_stay_home(cloud):
    """Saturday and Sunday have no commute: no departure events."""
    cloud.advance(5 * 24 * 3600)  # Monday 04:00 → Saturday 04:00 in Los Angeles
    events = cloud.advance(2 * 24 * 3600)
    assert all(e.kind not in ("depart", "arrive") for e in events)


def test_sleeping_car_reports_old_data_until_a_command_wakes_it(cloud, linked):
    """Reads of a sleeping car carry an old sc-data-age and do not wake it; a command does."""
    vin = linked[1][0]
    cloud.set_state(vin, plugged=True, data_age_s=1800, follows_routine=False)
    vehicle = _vehicle(linked)
    meta = vehicle.battery().meta
    age = datetime.fromisoformat(meta.fetched_at) - datetime.fromisoformat(meta.data_age)
    assert age == timedelta(minutes=30)
    assert cloud.car(vin).wake_count == 0
    vehicle.start_charge()
    assert cloud.car(vin).wake_count == 1
    meta = vehicle.battery().meta
    assert meta.data_age == meta.fetched_at


def test_batch_answers_each_path_on_its_own(cloud, linked):
    """A batch returns every path; a fault on one path only fails that path."""
    cloud.inject_fault("server_error", endpoint="vehicle.location", status=500)
    result = _vehicle(linked).batch(["/battery", "/charge", "/location", "/"])
    assert 0 <= result.battery().percent_remaining <= 1
    assert result.charge().state in ("CHARGING", "FULLY_CHARGED", "NOT_CHARGING")
    assert result.attributes().id == linked[1][0]
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        result.location()
    assert (excinfo.value.status_code, excinfo.value.type) == (500, "SERVER")
