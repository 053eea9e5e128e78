"""What a power plan means: SoC, shortfall, cost, event delivery and per-slot reasons.

`finish_plan` turns any solver's (N, T) power into a `Plan`; the helpers here say which cars an
event covers and whether a plan breaches a feeder cap or leaves an event unmet. Shared by
`planner`, `events` and `reference`.
"""

from __future__ import annotations

import numpy as np

from programs.scheduling.model import (
    BoolArray,
    Derived,
    EventKind,
    FloatArray,
    IntArray,
    Plan,
    Problem,
    Reason,
    plan_cost,
    soc_trajectory,
    window_mask,
)

CAP_TOLERANCE_KW = 1e-6
SHORTFALL_REPORT_KWH = 1e-5  # below this (LP rounding, 0.01 Wh) a departure counts as met


def _event_members(problem: Problem, feeder: int) -> BoolArray:
    return problem.fleet.feeder == feeder if feeder >= 0 else np.ones(problem.fleet.size, bool)


def _event_limit(kind: EventKind, kw: float) -> float:
    """Every event as a cap on net import: an export request of kw is net import <= -kw."""
    return kw if kind == EventKind.IMPORT_CAP else -kw


def _event_slots(problem: Problem, start: int, end: int) -> IntArray:
    return np.arange(max(start, 0), min(end, problem.slots))


def _net_import(power: FloatArray, members: BoolArray) -> FloatArray:
    if members.all():  # an event on every car: no (N, T) copy
        return power.sum(axis=0)
    return power[members].sum(axis=0)


def _caps_breached(
    problem: Problem, power: FloatArray, feeders: IntArray | None = None
) -> BoolArray:
    """(F,) True for feeders (among `feeders`, all when None) whose cap the plan breaches."""
    out = np.zeros(len(problem.feeder_names), bool)
    check = range(len(problem.feeder_names)) if feeders is None else feeders
    for f in check:
        if not 0 <= f < len(problem.feeder_names):
            continue
        caps = problem.feeder_caps_kw[f]
        if np.isfinite(caps).any():
            load = _net_import(power, problem.fleet.feeder == f)
            out[f] = bool(np.any(load > caps + CAP_TOLERANCE_KW))
    return out


def _events_unmet(problem: Problem, power: FloatArray) -> list[bool]:
    unmet = []
    for event in problem.events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        load = _net_import(power, _event_members(problem, event.feeder))[slots]
        unmet.append(bool(np.any(load > _event_limit(event.kind, event.kw) + CAP_TOLERANCE_KW)))
    return unmet


def finish_plan(
    problem: Problem,
    derived: Derived,
    power: FloatArray,
    *,
    base: Plan | None = None,
    changed: IntArray | None = None,
) -> Plan:
    """SoC, shortfall, cost, reasons and event delivery for a power plan.

    With `base` (a finished plan of this problem's fleet) and `changed` (the only rows where
    `power` differs from it), SoC, shortfall and cost are recomputed for those rows only and
    copied for the others; reasons and event delivery are always computed for the whole fleet
    (an event or a feeder's load relabels cars whose power did not change). Then `power` itself is
    the plan's power: its changed rows are zeroed outside the plug window in place (the others
    come from `base`, already clean), which spares a copy of the fleet's (N, T) array."""
    fleet = problem.fleet
    window = window_mask(derived, problem.slots)
    if base is None or changed is None:
        power = np.where(window, power, 0.0)
        soc = soc_trajectory(power, derived, fleet.capacity_kwh)
        cost = plan_cost(power, problem.signals, problem.dt_h, fleet)
    else:
        power[changed] = np.where(window[changed], power[changed], 0.0)
        soc = base.soc.copy()
        cost = base.cost.copy()
        if len(changed):
            sub = fleet.take(changed)
            soc[changed] = soc_trajectory(power[changed], derived.take(changed), sub.capacity_kwh)
            cost[changed] = plan_cost(power[changed], problem.signals, problem.dt_h, sub)
    final = soc[np.arange(fleet.size), derived.end] * fleet.capacity_kwh
    shortfall = np.maximum(derived.target - final, 0.0)
    shortfall = np.where(shortfall < SHORTFALL_REPORT_KWH, 0.0, shortfall)
    delivered: dict[str, FloatArray] = {}
    missing: dict[str, FloatArray] = {}
    event_slot = np.zeros((fleet.size, problem.slots), bool)
    for event in problem.events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        members = _event_members(problem, event.feeder)
        if members.all():
            event_slot[:, slots] = True
        else:
            event_slot[np.ix_(members, slots)] = True
        net = _net_import(power, members)
        d = np.zeros(problem.slots)
        s = np.zeros(problem.slots)
        if event.kind == EventKind.IMPORT_CAP:
            d[slots] = net[slots]
            s[slots] = np.maximum(net[slots] - event.kw, 0.0)
        else:
            d[slots] = -net[slots]
            s[slots] = np.maximum(event.kw + net[slots], 0.0)
        s[s < CAP_TOLERANCE_KW] = 0.0
        delivered[event.id] = d
        missing[event.id] = s
    feeder_full = np.zeros((fleet.size, problem.slots), bool)
    for f in range(len(problem.feeder_names)):
        members = fleet.feeder == f
        caps = problem.feeder_caps_kw[f]
        at_cap = _net_import(power, members) >= caps - 1e-3
        feeder_full[members] = at_cap[None, :]
    reasons = label_slots(problem, derived, power, event_slot, feeder_full, window=window)
    return Plan(power, soc, shortfall, cost, reasons, delivered, missing)


def label_slots(
    problem: Problem,
    derived: Derived,
    power: FloatArray,
    event_slot: BoolArray,
    feeder_full: BoolArray,
    *,
    window: BoolArray | None = None,
) -> np.ndarray:
    """(N, T) Reason codes: why each slot charges, discharges or rests."""
    if window is None:
        window = window_mask(derived, problem.slots)
    signals = problem.signals
    carbon = signals.carbon_weight * signals.carbon_g_per_kwh
    carbon_led = np.ptp(carbon) > np.ptp(signals.import_price)
    reasons = np.full(power.shape, int(Reason.IDLE), np.int8)
    charging = power > 1e-9
    reasons[charging] = int(Reason.CARBON if carbon_led else Reason.CHEAPEST)
    # The floor's forced slots run from plug-in (no need to build the (N, T) forced charging).
    t = np.arange(problem.slots)[None, :]
    forced = (t >= derived.start[:, None]) & (t < (derived.start + derived.forced_slots)[:, None])
    forced &= charging
    boost = problem.fleet.boost[:, None]
    reasons[forced & boost] = int(Reason.BOOST)
    reasons[forced & ~boost] = int(Reason.FLOOR)
    discharging = power < -1e-9
    reasons[discharging] = int(Reason.EXPORT)
    reasons[discharging & event_slot] = int(Reason.EVENT)
    resting = ~charging & ~discharging
    reasons[resting & event_slot] = int(Reason.EVENT)
    reasons[resting & ~event_slot & feeder_full] = int(Reason.FEEDER)
    reasons[~window] = int(Reason.UNPLUGGED)
    return reasons
