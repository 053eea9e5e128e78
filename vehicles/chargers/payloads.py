"""OCPP payloads, version by version: what the CSMS sends and how it reads meter values.

Pure functions over plain values (no ORM, no I/O), called by services (commands for any process)
and by the consumer (profiles re-applied after a boot). Profiles are kept version-neutral in watts
(`ChargingProfile.periods`: start_s, limit_w, setpoint_w, discharge_limit_w) and rendered here:

- 1.6: `csChargingProfiles` with one schedule; a TxProfile carries the integer transactionId.
- 2.0.1 / 2.1: `chargingProfile` with a list of schedules; ChargePointMaxProfile is spelled
  ChargingStationMaxProfile; 2.1 periods may carry operationMode=CentralSetpoint with a signed
  `setpoint` and a `dischargeLimit` ≤ 0 (V2G).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

V16 = "1.6"


def iso(moment: datetime) -> str:
    """OCPP timestamps: UTC with a Z, second precision (what every charger firmware parses)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ProfileSpec:
    """What a SetChargingProfile needs, independent of the ORM row."""

    profile_id: int
    evse_id: int
    purpose: str  # ChargePointMaxProfile | TxDefaultProfile | TxProfile (1.6 spelling)
    stack_level: int
    start_schedule: datetime
    periods: list[dict[str, Any]]
    duration_s: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None


def _watts(value: float) -> float:
    # 1.6 limits are `multipleOf 0.1`; whole watts are exact in every version.
    return float(round(value))


def _period_16(period: dict[str, Any]) -> dict[str, Any]:
    return {"startPeriod": int(period["start_s"]), "limit": _watts(period["limit_w"])}


def _period_2x(period: dict[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"startPeriod": int(period["start_s"])}
    setpoint = period.get("setpoint_w")
    if setpoint is not None:
        if version != "2.1":
            raise ValueError("Setpoints (V2G) need OCPP 2.1.")
        out["operationMode"] = "CentralSetpoint"
        out["setpoint"] = _watts(setpoint)
        discharge = period.get("discharge_limit_w")
        out["dischargeLimit"] = _watts(min(0.0, discharge if discharge is not None else setpoint))
        if period.get("limit_w") is not None:
            out["limit"] = _watts(period["limit_w"])
    else:
        out["limit"] = _watts(period["limit_w"])
    return out


def set_charging_profile(spec: ProfileSpec, version: str) -> tuple[str, dict[str, Any]]:
    """(action, payload) of the SetChargingProfile CALL for `version`."""
    if version == V16:
        schedule: dict[str, Any] = {
            "startSchedule": iso(spec.start_schedule),
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [_period_16(p) for p in spec.periods],
        }
        if spec.duration_s is not None:
            schedule["duration"] = spec.duration_s
        profile: dict[str, Any] = {
            "chargingProfileId": spec.profile_id,
            "stackLevel": spec.stack_level,
            "chargingProfilePurpose": spec.purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": schedule,
        }
        if spec.transaction_id is not None:
            profile["transactionId"] = int(spec.transaction_id)
        payload = {"connectorId": spec.evse_id, "csChargingProfiles": profile}
    else:
        schedule = {
            "id": spec.profile_id,
            "startSchedule": iso(spec.start_schedule),
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [_period_2x(p, version) for p in spec.periods],
        }
        if spec.duration_s is not None:
            schedule["duration"] = spec.duration_s
        purpose = spec.purpose.replace("ChargePointMaxProfile", "ChargingStationMaxProfile")
        profile = {
            "id": spec.profile_id,
            "stackLevel": spec.stack_level,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [schedule],
        }
        if spec.transaction_id is not None:
            profile["transactionId"] = spec.transaction_id
        payload = {"evseId": spec.evse_id, "chargingProfile": profile}
    for key, moment in (("validFrom", spec.valid_from), ("validTo", spec.valid_to)):
        if moment is not None:
            profile[key] = iso(moment)
    return "SetChargingProfile", payload


def clear_charging_profile(profile_id: int, version: str) -> tuple[str, dict[str, Any]]:
    if version == V16:
        return "ClearChargingProfile", {"id": profile_id}
    return "ClearChargingProfile", {"chargingProfileId": profile_id}


def get_composite_schedule(evse_id: int, duration_s: int, version: str) -> tuple[str, dict]:
    if version == V16:
        payload = {"connectorId": evse_id, "duration": duration_s, "chargingRateUnit": "W"}
    else:
        payload = {"evseId": evse_id, "duration": duration_s, "chargingRateUnit": "W"}
    return "GetCompositeSchedule", payload


def composite_periods(response: dict[str, Any], version: str) -> tuple[datetime | None, list]:
    """(start, [{"start_s", "limit_w", "setpoint_w"}]) from a GetCompositeSchedule reply."""
    if version == V16:
        schedule = response.get("chargingSchedule") or {}
        start = parse_time(response.get("scheduleStart") or schedule.get("startSchedule"))
    else:
        schedule = response.get("schedule") or {}
        start = parse_time(schedule.get("scheduleStart"))
    periods = [
        {
            "start_s": period["startPeriod"],
            "limit_w": float(period["limit"]) if "limit" in period else None,
            "setpoint_w": float(period["setpoint"]) if "setpoint" in period else None,
        }
        for period in schedule.get("chargingSchedulePeriod", [])
    ]
    return start, periods


def remote_start(evse_id: int, id_tag: str, remote_start_id: int, version: str) -> tuple[str, dict]:
    if version == V16:
        return "RemoteStartTransaction", {"connectorId": evse_id, "idTag": id_tag}
    return "RequestStartTransaction", {
        "evseId": evse_id,
        "remoteStartId": remote_start_id,
        "idToken": {"idToken": id_tag, "type": "Central"},
    }


def remote_stop(transaction_id: str, version: str) -> tuple[str, dict]:
    if version == V16:
        return "RemoteStopTransaction", {"transactionId": int(transaction_id)}
    return "RequestStopTransaction", {"transactionId": transaction_id}


def set_configuration(component: str, variable: str, value: str, version: str) -> tuple[str, dict]:
    """1.6 ChangeConfiguration(key=variable) or 2.x SetVariables(component.variable)."""
    if version == V16:
        return "ChangeConfiguration", {"key": variable, "value": value}
    return "SetVariables", {
        "setVariableData": [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "attributeValue": value,
            }
        ]
    }


def get_configuration(component: str, variables: list[str], version: str) -> tuple[str, dict]:
    if version == V16:
        return "GetConfiguration", {"key": variables}
    return "GetVariables", {
        "getVariableData": [
            {"component": {"name": component}, "variable": {"name": name}} for name in variables
        ]
    }


# --- Meter values ---------------------------------------------------------------------------------


@dataclass
class Reading:
    """One meterValue entry, summed over what the charger sent, in our units."""

    sampled_at: datetime
    energy_import_wh: int | None = None
    energy_export_wh: int | None = None
    power_kw: Decimal | None = None
    soc_pct: Decimal | None = None
    context: str = ""


_SCALE = {"Wh": 1, "kWh": 1000, "W": 1, "kW": 1000, "Percent": 1}


def _sample_value(sample: dict[str, Any]) -> float | None:
    """A sampled value in base units (Wh, W, %), or None for units we do not read."""
    unit_of_measure = sample.get("unit_of_measure") or {}
    unit = sample.get("unit") or unit_of_measure.get("unit")
    measurand = sample.get("measurand") or "Energy.Active.Import.Register"
    if unit is None:
        unit = "Percent" if measurand == "SoC" else ("W" if "Power" in measurand else "Wh")
    if unit not in _SCALE:
        return None
    multiplier = 10 ** int(unit_of_measure.get("multiplier", 0))
    return float(sample["value"]) * _SCALE[unit] * multiplier


def parse_meter_values(meter_values: list[dict[str, Any]]) -> list[Reading]:
    """Readings from 1.6 / 2.x `meterValue` lists (keys already snake_case, as the ocpp lib
    passes them). Per-phase samples are ignored when the total is present, else summed."""
    readings = []
    for entry in meter_values:
        reading = Reading(sampled_at=parse_time(entry["timestamp"]))  # type: ignore[arg-type]
        totals: dict[str, float] = {}
        phases: dict[str, float] = {}
        for sample in entry.get("sampled_value", []):
            value = _sample_value(sample)
            if value is None:
                continue
            measurand = sample.get("measurand") or "Energy.Active.Import.Register"
            reading.context = sample.get("context") or reading.context
            target = phases if sample.get("phase") and measurand != "SoC" else totals
            target[measurand] = target.get(measurand, 0.0) + value
        values = {**phases, **totals}  # a total wins over the sum of its phases
        if "Energy.Active.Import.Register" in values:
            reading.energy_import_wh = round(values["Energy.Active.Import.Register"])
        if "Energy.Active.Export.Register" in values:
            reading.energy_export_wh = round(values["Energy.Active.Export.Register"])
        if "Power.Active.Import" in values or "Power.Active.Export" in values:
            watts = values.get("Power.Active.Import", 0.0) - values.get("Power.Active.Export", 0.0)
            reading.power_kw = Decimal(watts / 1000).quantize(Decimal("0.001"))
        if "SoC" in values:
            reading.soc_pct = Decimal(values["SoC"]).quantize(Decimal("0.1"))
        readings.append(reading)
    return readings
