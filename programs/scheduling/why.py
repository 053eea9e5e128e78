"""The one-line "why" shown to owners under tonight's plan, from a plan row and plain data.

`why_sentence` turns one car's power, reasons and SoC into e.g. "Charging 01:00–04:30, the cheapest
hours, to reach 80 % by 07:00". Times are shown in the owner's zone, passed in as a zoneinfo name or
a fixed UTC offset, so the sentence is right on DST days too.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import numpy as np

from programs.scheduling.model import Reason

PHRASES: dict[Reason, str] = {
    Reason.CHEAPEST: "the cheapest hours",
    Reason.CARBON: "the cleanest hours",
    Reason.FLOOR: "straight away to get back above your minimum",
    Reason.BOOST: "at full power because you asked for a boost",
    Reason.FEEDER: "within your area's grid limit",
    Reason.EVENT: "around a grid event",
}


def _zone(tz: str | float | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, int | float):
        return timezone(timedelta(hours=float(tz)))
    return ZoneInfo(tz)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def why_sentence(
    *,
    power_kw: np.ndarray,
    reasons: np.ndarray,
    soc: np.ndarray,
    start: datetime,
    target_soc: float,
    departure_slot: int,
    tz: str | float | tzinfo = "UTC",
    slot_minutes: int = 15,
) -> str:
    """One sentence for one car's plan.

    start: the UTC start of slot 0; tz: a zoneinfo name ("Europe/Berlin") or hours east of UTC.
    """
    zone = _zone(tz)
    step = timedelta(minutes=slot_minutes)

    def at(slot: int) -> str:
        return (start + slot * step).astimezone(zone).strftime("%H:%M")

    departure_slot = int(min(max(departure_slot, 0), len(power_kw)))
    reached = float(soc[departure_slot])
    goal = f"to reach {round(target_soc * 100)} % by {at(departure_slot)}"
    if reached < target_soc - 1e-6:
        goal = (
            f"reaching {round(reached * 100)} % by {at(departure_slot)}, the most possible "
            f"of your {round(target_soc * 100)} % (boost to charge now at full power)"
        )
    charging = power_kw > 1e-9
    discharging = power_kw < -1e-9
    parts: list[str] = []
    if charging.any():
        runs = _runs(charging)
        spans = [f"{at(a)}–{at(b)}" for a, b in runs]
        when = spans[0] if len(spans) == 1 else f"{', '.join(spans[:-1])} and {spans[-1]}"
        if len(spans) > 3:
            when = f"in {len(spans)} blocks between {at(runs[0][0])} and {at(runs[-1][1])}"
        counts = Counter(Reason(int(r)) for r in reasons[charging])
        top = next((r for r, _ in counts.most_common() if r in PHRASES), Reason.CHEAPEST)
        parts.append(f"Charging {when}, {PHRASES[top]}, {goal}")
    elif reached >= target_soc - 1e-6:
        parts.append(f"No charging needed: already at {round(float(soc[0]) * 100)} %")
    else:
        parts.append(f"Not charging: {goal}")
    if discharging.any():
        runs = _runs(discharging)
        spans = [f"{at(a)}–{at(b)}" for a, b in runs]
        event = any(Reason(int(r)) == Reason.EVENT for r in reasons[discharging])
        purpose = "for a grid event" if event else "when it pays most"
        parts.append(f"sending power to the grid {', '.join(spans[:3])} {purpose}")
    return "; ".join(parts) + "."
