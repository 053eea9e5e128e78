"""The JSON problem and plan formats of docs/planning.md, to and from the core's dataclasses.

Used by the CLI (`python -m programs.scheduling solve PROBLEM.json`) and by anyone who wants to
hand the planner a problem without Django. Validation errors raise `ValueError` with the field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from programs.scheduling.model import (
    REASON_NAMES,
    Event,
    EventKind,
    Fleet,
    Plan,
    Problem,
    Reason,
    Signals,
)

REQUIRED_VEHICLE_FIELDS = (
    "id",
    "capacity_kwh",
    "soc",
    "target_soc",
    "plug_slot",
    "departure_slot",
    "max_charge_kw",
)
VEHICLE_DEFAULTS: dict[str, Any] = {
    "min_soc": 0.0,
    "max_soc": 1.0,
    "max_discharge_kw": 0.0,
    "charge_efficiency": 1.0,
    "discharge_efficiency": 1.0,
    "v2g_min_soc": 0.0,
    "degradation_cost_per_kwh": 0.0,
    "feeder": None,
    "boost": False,
}


def _series(data: dict[str, Any], key: str, slots: int, default: float | None = None) -> np.ndarray:
    if key not in data:
        if default is None:
            raise ValueError(f"signals.{key} is required")
        return np.full(slots, default)
    values = np.asarray(data[key], dtype=np.float64)
    if values.shape != (slots,):
        raise ValueError(f"signals.{key} must have {slots} values, got {values.shape}")
    return values


def problem_from_json(data: dict[str, Any]) -> Problem:
    """Build a `Problem` from the documented JSON object."""
    start = datetime.fromisoformat(str(data["start"]).replace("Z", "+00:00"))
    if start.tzinfo is None:
        raise ValueError("start must carry a UTC offset")
    start = start.astimezone(UTC)
    slot_minutes = int(data.get("slot_minutes", 15))
    slots = int(data["slots"])
    sig = data.get("signals", {})
    signals = Signals(
        import_price=_series(sig, "import_price", slots),
        export_price=_series(sig, "export_price", slots, 0.0),
        carbon_g_per_kwh=_series(sig, "carbon_g_per_kwh", slots, 0.0),
        carbon_weight=float(sig.get("carbon_weight", 0.0)),
    )
    feeders = data.get("feeders", {}) or {}
    feeder_names = list(feeders)
    caps = np.full((len(feeder_names), slots), np.inf)
    for f, name in enumerate(feeder_names):
        raw = feeders[name].get("max_import_kw")
        if raw is not None:
            caps[f] = [math.inf if v is None else float(v) for v in raw]
    feeder_index = {name: i for i, name in enumerate(feeder_names)}

    def feeder_of(name: Any, where: str) -> int:
        if name is None:
            return -1
        if name not in feeder_index:
            raise ValueError(f"{where}: unknown feeder {name!r}")
        return feeder_index[name]

    vehicles = data.get("vehicles", [])
    rows = [{**VEHICLE_DEFAULTS, **v} for v in vehicles]
    for row in rows:
        for key in REQUIRED_VEHICLE_FIELDS:
            if key not in row:
                raise ValueError(f"vehicle {row.get('id')!r}: {key} is required")
        if row["capacity_kwh"] <= 0:
            raise ValueError(f"vehicle {row['id']!r}: capacity_kwh must be positive")
    n = len(rows)

    def col(key: str) -> np.ndarray:
        return np.array([float(r[key]) for r in rows], dtype=np.float64).reshape(n)

    def icol(key: str) -> np.ndarray:
        return np.array([int(r[key]) for r in rows], dtype=np.int64).reshape(n)

    fleet = Fleet(
        capacity_kwh=col("capacity_kwh"),
        soc=col("soc"),
        min_soc=col("min_soc"),
        max_soc=col("max_soc"),
        target_soc=col("target_soc"),
        plug_slot=icol("plug_slot"),
        departure_slot=icol("departure_slot"),
        max_charge_kw=col("max_charge_kw"),
        max_discharge_kw=col("max_discharge_kw"),
        charge_efficiency=col("charge_efficiency"),
        discharge_efficiency=col("discharge_efficiency"),
        v2g_min_soc=col("v2g_min_soc"),
        degradation_cost_per_kwh=col("degradation_cost_per_kwh"),
        feeder=np.array(
            [feeder_of(r["feeder"], f"vehicle {r['id']!r}") for r in rows], dtype=np.int64
        ).reshape(n),
        boost=np.array([bool(r["boost"]) for r in rows], dtype=np.bool_).reshape(n),
    )
    events = [
        Event(
            id=str(e["id"]),
            kind=EventKind.IMPORT_CAP if e["kind"] == "import_cap" else EventKind.EXPORT_REQUEST,
            start_slot=int(e["start_slot"]),
            end_slot=int(e["end_slot"]),
            kw=float(e["kw"]),
            feeder=feeder_of(e.get("feeder"), f"event {e['id']!r}"),
        )
        for e in data.get("events", []) or []
    ]
    for e in data.get("events", []) or []:
        if e["kind"] not in ("import_cap", "export_request"):
            raise ValueError(f"event {e['id']!r}: unknown kind {e['kind']!r}")
    return Problem(
        start=start,
        slots=slots,
        signals=signals,
        fleet=fleet,
        vehicle_ids=[str(r["id"]) for r in rows],
        slot_minutes=slot_minutes,
        feeder_names=feeder_names,
        feeder_caps_kw=caps,
        events=events,
    )


def _round(values: np.ndarray, digits: int = 6) -> list[float]:
    return [float(v) for v in np.round(values, digits)]


def plan_to_json(problem: Problem, plan: Plan) -> dict[str, Any]:
    """The documented plan JSON object."""
    vehicles = {
        vid: {
            "power_kw": _round(plan.power_kw[n]),
            "soc": _round(plan.soc[n]),
            "shortfall_kwh": round(float(plan.shortfall_kwh[n]), 6),
            "cost": round(float(plan.cost[n]), 6),
            "reasons": [REASON_NAMES[Reason(int(r))] for r in plan.reasons[n]],
        }
        for n, vid in enumerate(problem.vehicle_ids)
    }
    events = {
        key: {
            "delivered_kw": _round(plan.event_delivered_kw[key]),
            "shortfall_kw": _round(plan.event_shortfall_kw[key]),
        }
        for key in plan.event_delivered_kw
    }
    return {
        "vehicles": vehicles,
        "events": events,
        "total_cost": round(plan.total_cost, 6),
        "solve_seconds": round(plan.solve_seconds, 6),
    }
