"""Grid carbon intensity for the Earnings tab's "CO₂ avoided" — an estimate, not a measurement.

ChargeScape stores no carbon signal yet. Until one is wired in (a utility feed or a public
marginal-emissions API), the demo and the owner pages use one typical day: grams of CO₂ per kWh
by local hour, shaped like a sunny-state grid (clean midday solar, a gas-heavy evening ramp,
a moderate night). The numbers are round figures of that shape, not any grid's data, so every
page that shows a result of this module labels it an estimate (`LABEL`).

Called by programs.earnings (savings); pure: no database.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from datetime import datetime

# g CO₂ per kWh by local hour 0–23. Night: mixed gas and imports; 7–9 morning ramp; 10–15
# solar at its strongest; 17–21 the evening peak served by gas peakers.
HOURLY_G_PER_KWH: tuple[float, ...] = (
    260, 255, 250, 250, 255, 270,  # 00–05
    300, 320, 280, 210, 160, 130,  # 06–11
    120, 120, 130, 170, 260, 360,  # 12–17
    400, 410, 390, 340, 300, 275,  # 18–23
)  # fmt: skip

LABEL = "An estimate from the grid's typical carbon intensity by hour of day, not a measurement."


def intensity_g_per_kwh(
    moment: datetime, *, time_zone: str, profile: Sequence[float] = HOURLY_G_PER_KWH
) -> float:
    """Grams of CO₂ per kWh drawn at `moment`, read from `profile` at the local hour."""
    if len(profile) != 24:
        raise ValueError("a carbon profile has one value per hour, 24 in all")
    return float(profile[moment.astimezone(zoneinfo.ZoneInfo(time_zone)).hour])
