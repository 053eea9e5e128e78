"""Quiet hours in the owner's own time zone (pure: no database).

A window such as 22:00–07:00 wraps past midnight; the end is found on the owner's local calendar,
so a DST change inside the night still ends the quiet at 07:00 local time.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta


def quiet_until(
    *, enabled: bool, start: time, end: time, time_zone: str, now: datetime
) -> datetime | None:
    """When the quiet hours holding `now` end (aware, in the owner's zone), or None when `now` is
    outside them (or they are off, or start equals end)."""
    if not enabled or start == end:
        return None
    zone = zoneinfo.ZoneInfo(time_zone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start < end:  # same-day window, e.g. 13:00–15:00
        inside = start <= clock < end
        end_day = local.date()
    else:  # wraps past midnight, e.g. 22:00–07:00
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone)
