"""The charger side of each OCPP version for the simulator: real `ocpp` ChargePoint classes.

Handlers only change the SimulatedCharger's state and answer; anything that must send a CALL back
(a remote start) is started as a task, because awaiting the CSMS inside a handler would block the
very loop that reads its answer. Incoming profiles (snake_case dicts, as the library passes them)
become vehicles.sim.ocpp_schedule.Profile objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

from vehicles.sim.ocpp_schedule import CHARGER_MAX, Period, Profile, amps_to_watts

if TYPE_CHECKING:
    from vehicles.sim.chargers import SimulatedCharger


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _periods(schedule: dict[str, Any]) -> list[Period]:
    amps = schedule.get("charging_rate_unit") == "A"
    periods = []
    for raw in schedule["charging_schedule_period"]:
        values = [_number(raw.get(key)) for key in ("limit", "setpoint", "discharge_limit")]
        if amps:
            phases = raw.get("number_phases")
            values = [None if v is None else amps_to_watts(v, phases) for v in values]
        limit, setpoint, discharge = values
        if raw.get("operation_mode") not in (None, "CentralSetpoint"):
            setpoint = discharge = None  # only CentralSetpoint is simulated; others charge only
        periods.append(Period(int(raw["start_period"]), limit, setpoint, discharge))
    return periods


def profile_16(connector_id: int, raw: dict[str, Any]) -> Profile:
    schedule = raw["charging_schedule"]
    tx = raw.get("transaction_id")
    return Profile(
        profile_id=int(raw["charging_profile_id"]),
        evse_id=connector_id,
        purpose=raw["charging_profile_purpose"],
        stack_level=int(raw["stack_level"]),
        periods=_periods(schedule),
        kind=raw["charging_profile_kind"],
        recurrency=raw.get("recurrency_kind"),
        start_schedule=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_time(raw.get("valid_from")),
        valid_to=parse_time(raw.get("valid_to")),
        transaction_id=str(tx) if tx is not None else None,
    )


def profile_2x(evse_id: int, raw: dict[str, Any]) -> Profile:
    schedule = raw["charging_schedule"][0]  # one schedule per profile is all the CSMS sends
    purpose = raw["charging_profile_purpose"].replace("ChargingStationMaxProfile", CHARGER_MAX)
    return Profile(
        profile_id=int(raw["id"]),
        evse_id=evse_id,
        purpose=purpose,
        stack_level=int(raw["stack_level"]),
        periods=_periods(schedule),
        kind=raw["charging_profile_kind"],
        recurrency=raw.get("recurrency_kind"),
        start_schedule=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_time(raw.get("valid_from")),
        valid_to=parse_time(raw.get("valid_to")),
        transaction_id=raw.get("transaction_id"),
    )


class SimBase:
    sim: SimulatedCharger


class Sim16(SimBase, ChargePoint16):
    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict) -> Any:
        status = self.sim.install_profile(profile_16(connector_id, cs_charging_profiles))
        return result16.SetChargingProfile(status=status)

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **criteria: Any) -> Any:
        removed = self.sim.clear_profiles(
            profile_id=criteria.get("id"),
            evse_id=criteria.get("connector_id"),
            purpose=criteria.get("charging_profile_purpose"),
            stack_level=criteria.get("stack_level"),
        )
        return result16.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, connector_id: int, duration: int, **_: Any) -> Any:
        composite = self.sim.composite(connector_id, duration)
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=iso(composite.start),
            charging_schedule={
                "duration": duration,
                "start_schedule": iso(composite.start),
                "charging_rate_unit": "W",
                "charging_schedule_period": [
                    {"start_period": offset, "limit": round(value.limit_w or 0.0, 1)}
                    for offset, value in composite.periods
                ],
            },
        )

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(self, id_tag: str, **extra: Any) -> Any:
        self.sim.spawn(self.sim.plug_in(id_tag=id_tag, evse_id=extra.get("connector_id", 1)))
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int) -> Any:
        if self.sim.transaction is None or self.sim.transaction.transaction_id != str(
            transaction_id
        ):
            return result16.RemoteStopTransaction(status="Rejected")
        self.sim.spawn(self.sim.unplug(reason="Remote"))
        return result16.RemoteStopTransaction(status="Accepted")

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.sim.configuration[key] = value
        return result16.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        wanted = key or list(self.sim.configuration)
        known = [
            {"key": name, "readonly": False, "value": self.sim.configuration[name]}
            for name in wanted
            if name in self.sim.configuration
        ]
        unknown = [name for name in wanted if name not in self.sim.configuration]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)


class Sim2xMixin:
    _result: Any
    sim: SimulatedCharger

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_: Any) -> Any:
        status = self.sim.install_profile(profile_2x(evse_id, charging_profile))
        return self._result.SetChargingProfile(status=status)

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **request: Any) -> Any:
        criteria = request.get("charging_profile_criteria") or {}
        purpose = criteria.get("charging_profile_purpose")
        removed = self.sim.clear_profiles(
            profile_id=request.get("charging_profile_id"),
            evse_id=criteria.get("evse_id"),
            purpose=purpose.replace("ChargingStationMaxProfile", CHARGER_MAX) if purpose else None,
            stack_level=criteria.get("stack_level"),
        )
        return self._result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, duration: int, evse_id: int, **_: Any) -> Any:
        composite = self.sim.composite(evse_id, duration)
        periods = []
        for offset, value in composite.periods:
            period: dict[str, Any] = {"start_period": offset, "limit": value.limit_w or 0.0}
            if value.setpoint_w is not None:
                period.update(
                    operation_mode="CentralSetpoint",
                    setpoint=value.setpoint_w,
                    discharge_limit=min(0.0, value.discharge_limit_w or 0.0),
                )
            periods.append(period)
        return self._result.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": iso(composite.start),
                "charging_rate_unit": "W",
                "charging_schedule_period": periods,
            },
        )

    @on("RequestStartTransaction")
    def on_request_start_transaction(self, id_token: dict, remote_start_id: int, **extra) -> Any:
        evse_id = extra.get("evse_id") or 1
        self.sim.spawn(self.sim.plug_in(id_tag=id_token["id_token"], evse_id=evse_id))
        return self._result.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str, **_: Any) -> Any:
        tx = self.sim.transaction
        if tx is None or tx.transaction_id != transaction_id:
            return self._result.RequestStopTransaction(status="Rejected")
        self.sim.spawn(self.sim.unplug(reason="Remote"))
        return self._result.RequestStopTransaction(status="Accepted")

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            self.sim.configuration[item["variable"]["name"]] = item["attribute_value"]
            results.append(
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return self._result.SetVariables(set_variable_result=results)

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            name = item["variable"]["name"]
            found = name in self.sim.configuration
            result = {
                "attribute_status": "Accepted" if found else "UnknownVariable",
                "component": item["component"],
                "variable": item["variable"],
            }
            if found:
                result["attribute_value"] = self.sim.configuration[name]
            results.append(result)
        return self._result.GetVariables(get_variable_result=results)


class Sim201(Sim2xMixin, SimBase, ChargePoint201):
    _result = result201


class Sim21(Sim2xMixin, SimBase, ChargePoint21):
    _result = result21


CHARGE_POINT_CLASSES: dict[str, type] = {"1.6": Sim16, "2.0.1": Sim201, "2.1": Sim21}
