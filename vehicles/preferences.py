"""Departure times in the owner's time zone, DST-safe, and the preference rules.

Owners think in local wall-clock time ("weekdays at 07:00"); the planner works in UTC. A local
time that does not exist (the spring-forward gap) moves forward by the gap (02:30 → 03:30); a time
that happens twice (fall back) means the first occurrence — the earlier, safer departure.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_DEPARTURE = time(7, 0)
DEFAULT_TARGET_SOC_PCT = 80


@dataclass(frozen=True)
class Departure:
    at: datetime  # aware, UTC
    target_soc_pct: int
    one_off: bool


def default_schedule() -> dict[str, dict[str, object]]:
    return {
        str(day): {
            "departure": DEFAULT_DEPARTURE.strftime("%H:%M"),
            "target_soc_pct": DEFAULT_TARGET_SOC_PCT,
        }
        for day in range(7)
    }


def localize(day: datetime, wall: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """`day`'s date at wall-clock `wall` in `zone`, as UTC (DST rules in the module docstring).

    fold=0 is PEP 495's "first occurrence": it picks the earlier of a repeated time, and reads a
    missing time with the offset before the gap, which lands after the gap.
    """
    return datetime.combine(day.date(), wall).replace(tzinfo=zone, fold=0).astimezone(UTC)


def next_departure(
    *,
    schedule: dict[str, dict[str, object]],
    override_at: datetime | None,
    override_target_soc_pct: int | None,
    time_zone: str,
    now: datetime,
) -> Departure | None:
    """The next time the owner leaves, from a one-off override or the weekly schedule."""
    if override_at is not None and override_at > now and override_target_soc_pct is not None:
        return Departure(
            at=override_at.astimezone(UTC), target_soc_pct=override_target_soc_pct, one_off=True
        )
    zone = zoneinfo.ZoneInfo(time_zone)
    local_now = now.astimezone(zone)
    for offset in range(8):
        day = local_now + timedelta(days=offset)
        entry = schedule.get(str(day.weekday()))
        if not entry or not entry.get("departure"):
            continue
        wall = time.fromisoformat(str(entry["departure"]))
        at = localize(day, wall, zone)
        if at > now:
            return Departure(at=at, target_soc_pct=int(entry["target_soc_pct"]), one_off=False)
    return None
