"""Fleet planning (`plan_fleet`, phase two of an event): each car on its own, then the couplings.

Called by the Django services (through `plan_fleet` and `respond_to_events`) and by the CLI.
- Each car on its own (`independent`): the vectorised cheapest-slot fill for charge-only cars,
  the vectorised dynamic programme for V2G cars.
- A feeder whose cap those plans breach: for charge-only cars, the exact flow augmentation of
  `feeder.plan_capped_charge_only`; otherwise, or where it declines, one lexicographic LP.
- A group an unmet event couples (no feeder cap): the cars that can change the event's net import
  are re-planned, the others keep their own plans; by the price decomposition of `decompose` when
  phase one meets every event row, else (or if its proven gap stays above 0.5 %) by the LP. An
  event on every feeder is split into per-feeder targets from the phase-one response
  (`events.respond_to_events`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from programs.scheduling.decompose import plan_event_rows
from programs.scheduling.events import respond_to_events
from programs.scheduling.feeder import plan_capped_charge_only
from programs.scheduling.independent import plan_charge_only, plan_independent, plan_v2g
from programs.scheduling.lp import Coupling, SolveError, net_power, solve_lp
from programs.scheduling.model import (
    BoolArray,
    Derived,
    Fleet,
    FloatArray,
    Plan,
    Problem,
    charge_cost_per_kw,
    derive,
)
from programs.scheduling.outcome import (
    CAP_TOLERANCE_KW,
    _caps_breached,
    _event_limit,
    _event_slots,
    _events_unmet,
    _net_import,
    finish_plan,
)

# Phase two's event rows: "decompose" (price decomposition, `decompose.plan_event_rows`, falling
# back to the LP when its proven gap stays above the tolerance) or "lp" (the LP alone).
EVENT_METHOD = "decompose"

# Re-exported: the benchmarks and older callers import these from here.
__all__ = [
    "plan_charge_only",
    "plan_fleet",
    "plan_independent",
    "plan_v2g",
    "respond_to_events",
]


def plan_fleet(problem: Problem, *, time_limit_s: float | None = None) -> Plan:
    """The optimal plan (phase two for events): independent exact plans, then one LP per feeder
    that a cap or an unmet event couples. `time_limit_s` bounds each coupled LP (HiGHS raises
    `lp.SolveError` past it); the benchmarks use it, the services leave it unset."""
    began = time.perf_counter()
    fleet = problem.fleet
    derived = derive(fleet, problem.slots, problem.dt_h)
    power = plan_independent(problem, derived)
    breached = _caps_breached(problem, power)
    unmet = _events_unmet(problem, power)
    groups: set[int] = {int(f) for f in np.flatnonzero(breached)}
    global_unmet = [e for e, u in zip(problem.events, unmet, strict=True) if u and e.feeder < 0]
    for event, u in zip(problem.events, unmet, strict=True):
        if u and event.feeder >= 0:
            groups.add(event.feeder)
    shares: dict[tuple[str, int], FloatArray] = {}
    fast_power: FloatArray | None = None  # phase one's plan, a feasible point for the event LPs
    if global_unmet:
        groups |= {int(f) for f in np.unique(fleet.feeder)}
        fast = respond_to_events(problem, base=power)
        shares = _split_global_events(problem, global_unmet, fast.power_kw)
        fast_power = fast.power_kw
    for feeder in sorted(groups):
        members = fleet.feeder == feeder
        if not members.any():
            continue
        power[members] = _plan_group(
            problem,
            feeder,
            members,
            shares,
            time_limit_s,
            own=power[members],
            hint=None if fast_power is None else fast_power[members],
        )
    plan = finish_plan(problem, derived, power)
    plan.solve_seconds = time.perf_counter() - began
    return plan


def _split_global_events(
    problem: Problem, events: list, power: FloatArray
) -> dict[tuple[str, int], FloatArray]:
    """Per-feeder limits for events on every feeder: each feeder keeps what the phase-one
    response achieved there, plus a share of the remaining gap in proportion to its cars."""
    feeders = problem.fleet.feeder
    keys, counts = np.unique(feeders, return_counts=True)
    weight = counts / counts.sum()
    shares: dict[tuple[str, int], FloatArray] = {}
    for event in events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        loads = np.stack([_net_import(power, feeders == k)[slots] for k in keys])
        gap = _event_limit(event.kind, event.kw) - loads.sum(axis=0)
        for i, key in enumerate(keys):
            shares[(event.id, int(key))] = loads[i] + gap * weight[i]
    return shares


def _plan_group(
    problem: Problem,
    feeder: int,
    members: BoolArray,
    shares: dict[tuple[str, int], FloatArray],
    time_limit_s: float | None = None,
    *,
    own: FloatArray | None = None,
    hint: FloatArray | None = None,
) -> FloatArray:
    """The coupled plan of one feeder's cars (feeder -1: cars without a feeder): the flow
    augmentation of `feeder.plan_capped_charge_only` for charge-only cars under a cap alone
    (`own`: their independent plans), else the lexicographic LP."""
    idx = np.flatnonzero(members)
    sub_fleet = problem.fleet.take(idx)
    sub = derive(sub_fleet, problem.slots, problem.dt_h)
    all_sub = np.ones(len(idx), bool)
    couplings: list[Coupling] = []
    if 0 <= feeder < len(problem.feeder_names):
        caps = problem.feeder_caps_kw[feeder]
        capped = np.flatnonzero(np.isfinite(caps))
        if len(capped):
            couplings.append(
                Coupling(f"feeder:{feeder}", all_sub, capped, np.maximum(caps[capped], 0.0), False)
            )
    for event in problem.events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        if len(slots) == 0:
            continue
        if event.feeder >= 0 and event.feeder == feeder:
            limit = np.full(len(slots), _event_limit(event.kind, event.kw))
        elif event.feeder < 0 and (event.id, feeder) in shares:
            limit = shares[(event.id, feeder)]
        else:
            continue
        couplings.append(Coupling(f"event:{event.id}", all_sub, slots, limit, True))
    hard = any(not c.soft for c in couplings)
    if own is not None and hard and len(couplings) == 1 and not sub.v2g.any():
        flow = plan_capped_charge_only(
            power=own,
            forced=sub.forced_kw,
            max_kw=sub_fleet.max_charge_kw,
            start=sub.start,
            end=sub.end,
            caps=problem.feeder_caps_kw[feeder],
            cost=charge_cost_per_kw(problem.signals, problem.dt_h),
        )
        if flow is not None:
            return flow
    if own is not None and not hard:
        return _plan_event_group(problem, sub_fleet, sub, couplings, own, time_limit_s, hint)
    result = solve_lp(
        fleet=sub_fleet,
        derived=sub,
        signals=problem.signals,
        dt_h=problem.dt_h,
        slots=problem.slots,
        couplings=couplings,
        # Only a hard feeder cap can curtail a car's floor or departure. Without one, every car
        # reaches its own best departure (events rank below it), so that stage is fixed up front.
        soft_floor=hard,
        departure_fixed=not hard,
        time_limit_s=time_limit_s,
    )
    return net_power(result.charge_kw, result.discharge_kw, sub)


def _plan_event_group(
    problem: Problem,
    fleet: Fleet,
    derived: Derived,
    couplings: list[Coupling],
    own: FloatArray,
    time_limit_s: float | None,
    hint: FloatArray | None = None,
) -> FloatArray:
    """A group coupled only by events (soft caps on net import, no feeder cap): the LP over the
    cars that can change the net import in an event slot, the others keeping their own plans.

    Exact: a car unplugged in every event slot does not enter an event row, and a charge-only car
    whose own plan imports nothing there already imports the least it can; in any optimum, giving
    those cars their own (cheapest, departure-keeping) plans changes no event row and no cost.

    `hint` (phase one's plan of the group) meeting every event row means the event-shortfall
    stage's optimum is 0: the rows are then hard limits (plus half the reporting tolerance) in one
    cost solve, and soft ones, two stages, if HiGHS finds that infeasible."""
    relevant = np.zeros(fleet.size, bool)
    for coupling in couplings:
        plugged = (derived.start <= coupling.slots[-1]) & (derived.end > coupling.slots[0])
        charging = (own[:, coupling.slots] > 0).any(axis=1)
        relevant |= plugged & (derived.v2g | charging)
    out = own.copy()
    keep = np.flatnonzero(relevant)
    if len(keep) == 0:
        return out
    fixed = ~relevant
    reduced = [
        replace(
            coupling,
            members=np.ones(len(keep), bool),
            limit_kw=coupling.limit_kw - own[fixed][:, coupling.slots].sum(axis=0),
        )
        for coupling in couplings
    ]
    sub = derived.take(keep)
    met = hint is not None and all(
        np.all(hint[:, c.slots].sum(axis=0) <= c.limit_kw + CAP_TOLERANCE_KW / 4) for c in couplings
    )
    slack = CAP_TOLERANCE_KW / 2  # under the reporting tolerance: a shortfall this small is none
    hard = [replace(c, soft=False, limit_kw=c.limit_kw + slack) for c in reduced]
    if met and hint is not None and EVENT_METHOD == "decompose":
        found = plan_event_rows(
            fleet=fleet.take(keep),
            derived=sub,
            signals=problem.signals,
            dt_h=problem.dt_h,
            slots=problem.slots,
            couplings=hard,
            columns=[own[keep], hint[keep]],  # the last: the starting plan
        )
        if found is not None:
            out[keep] = found[0]
            return out
    attempts = [hard] if met else []
    attempts.append(reduced)
    for attempt in attempts:
        try:
            result = solve_lp(
                fleet=fleet.take(keep),
                derived=sub,
                signals=problem.signals,
                dt_h=problem.dt_h,
                slots=problem.slots,
                couplings=attempt,
                departure_fixed=True,
                time_limit_s=time_limit_s,
            )
        except SolveError as error:
            if attempt is reduced or "nfeasible" not in str(error):
                raise
            continue
        out[keep] = net_power(result.charge_kw, result.discharge_kw, sub)
        return out
    raise AssertionError("unreachable: the soft attempt returns or raises")
