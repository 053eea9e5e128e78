"""The rules a charging preference must follow, shared by the form and the API serializer."""

from typing import Any

from vehicles.preferences import WEEKDAYS


def preference_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """Field → messages for values that contradict each other (ranges are checked by fields).

    `values` holds min_soc_pct, max_soc_pct, v2g_min_soc_pct, weekly_schedule ({"0": {"departure",
    "target_soc_pct"}}) and optionally override_target_soc_pct and boost_to_soc_pct.
    """
    errors: dict[str, list[str]] = {}
    floor, ceiling = values["min_soc_pct"], values["max_soc_pct"]
    if floor > ceiling:
        errors.setdefault("min_soc_pct", []).append(
            f"The minimum charge ({floor} %) can't be above the maximum ({ceiling} %)."
        )
    if values.get("v2g_consent") and values["v2g_min_soc_pct"] < floor:
        errors.setdefault("v2g_min_soc_pct", []).append(
            f"The V2G floor must be at least your minimum charge ({floor} %)."
        )
    for day, entry in sorted(values.get("weekly_schedule", {}).items()):
        target = entry.get("target_soc_pct")
        if target is None:
            continue
        if target < floor:
            errors.setdefault(f"target_{day}", []).append(
                f"{WEEKDAYS[int(day)]}: the target ({target} %) must be at least your minimum "
                f"charge ({floor} %)."
            )
        if target > ceiling:
            errors.setdefault(f"target_{day}", []).append(
                f"{WEEKDAYS[int(day)]}: the target ({target} %) is above your maximum "
                f"({ceiling} %)."
            )
    for name in ("override_target_soc_pct", "boost_to_soc_pct"):
        target = values.get(name)
        if target is not None and not floor <= target <= ceiling:
            errors.setdefault(name, []).append(
                f"Choose between your minimum ({floor} %) and maximum ({ceiling} %)."
            )
    return errors
