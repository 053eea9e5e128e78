"""The one safety gateway every command passes right before device I/O (DESIGN.md I3, I8).

Plans are checked when they are made, but the world moves on: the owner boosts, the car reports a
lower SoC, a reading goes stale. `check_command` re-reads the latest telemetry and preferences and
answers whether the command may go out now. Charging fails open (starting a charge or clearing a
dispatch is always allowed); curtailing needs a known SoC at or above the floor; discharging fails
closed (fresh SoC, consent, a V2G charger, and enough energy above the V2G floor for the whole
lease). Called only by `vehicles.control.services` when it claims commands to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vehicles import selectors as vehicle_selectors
from vehicles.control.models import Command
from vehicles.models import SOC_STALE_AFTER, ChargingPreference, VehicleReading

# I8: a curtailment or discharge ends within 15 minutes unless renewed.
MAX_LEASE = timedelta(minutes=15)
# Float noise in kW from the planner must not refuse a command at exactly the car's limit.
POWER_TOLERANCE_KW = 0.01


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: str = ""
    reason: str = ""  # plain words, shown on the activity log and in the admin


ALLOW = Verdict(True)


def _refuse(code: str, reason: str) -> Verdict:
    return Verdict(False, code, reason)


# "Not given: read it here" (a batch passes what it read for all its commands at once).
_READ: Any = object()


def check_command(
    *,
    command: Command,
    now: datetime,
    preference: ChargingPreference | None = None,
    reading: VehicleReading | None = _READ,
) -> Verdict:
    """May `command` be sent now? Judged on the car's newest reading and the owner's
    preferences: read here, or given by a caller that read them in this transaction for a
    batch (`reading` None: the car has none)."""
    vehicle = command.vehicle
    if preference is None:
        preference = vehicle_selectors.preference_for(vehicle=vehicle)
    if reading is _READ:
        reading = vehicle_selectors.latest_reading(vehicle=vehicle)
    soc = reading.soc_pct if reading is not None else None
    soc_fresh = soc is not None and now - reading.recorded_at <= SOC_STALE_AFTER

    if command.lease_end is not None and command.lease_end - now > MAX_LEASE:
        return _refuse("lease_too_long", "The command's lease runs longer than 15 minutes.")
    if (
        command.action == Command.Action.SET_POWER
        and abs(command.power_kw) > command.max_power_kw + POWER_TOLERANCE_KW
    ):
        return _refuse(
            "power_limit",
            f"{command.power_kw:g} kW is beyond this car and charger's "
            f"{command.max_power_kw:g} kW.",
        )
    if command.action == Command.Action.SET_CHARGE_LIMIT:
        if command.limit_pct < preference.min_soc_pct:
            return _refuse(
                "below_floor",
                f"A {command.limit_pct:g} % limit is below the owner's "
                f"{preference.min_soc_pct} % minimum.",
            )
        if command.limit_pct > preference.max_soc_pct:
            return _refuse(
                "above_ceiling",
                f"A {command.limit_pct:g} % limit is above the owner's "
                f"{preference.max_soc_pct} % maximum.",
            )
    if not command.curtails_or_discharges:
        return ALLOW  # charging fails open

    if command.lease_end is None:
        return _refuse("no_lease", "Curtailing or discharging needs a lease end (≤ 15 min).")
    if command.source != Command.Source.OWNER:
        if preference.boost_until and preference.boost_until > now:
            return _refuse("owner_boost", "The owner asked to charge now (boost).")
        if preference.pause_until and preference.pause_until > now:
            return _refuse("owner_pause", "The owner paused smart charging.")
    if soc is None:
        return _refuse("soc_unknown", "The car's state of charge is unknown.")
    if soc < preference.min_soc_pct:
        return _refuse(
            "below_floor",
            f"The car is at {soc:.0f} %, below the owner's {preference.min_soc_pct} % minimum: "
            "it charges at full power.",
        )
    if not command.discharges:
        return ALLOW

    if not soc_fresh:
        return _refuse("soc_stale", "No discharge: the car's state of charge is over 15 min old.")
    if not (vehicle.v2g_capable and preference.v2g_consent):
        return _refuse("no_v2g_consent", "This car is not enrolled to send energy back.")
    if command.charger is None or not command.charger.v2g_capable:
        return _refuse("no_v2g_charger", "Discharging needs a V2G-capable charger.")
    floor_pct = max(preference.min_soc_pct, preference.v2g_min_soc_pct)
    hours = max((command.lease_end - now).total_seconds(), 0) / 3600
    after_pct = soc - abs(command.power_kw) * hours / float(vehicle.battery_kwh) * 100
    if after_pct < floor_pct:
        return _refuse(
            "below_v2g_floor",
            f"Discharging would take the car to {after_pct:.1f} %, below its {floor_pct} % "
            "V2G floor.",
        )
    return ALLOW
