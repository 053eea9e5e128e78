"""Phase one of a grid event: a fast, feasible response that keeps every departure and floor.

`respond_to_events` is what the services call the moment an event arrives (and `plan_fleet` uses
it to split an event on every feeder into per-feeder targets); `plan_fleet` is phase two. The work
is restricted to the cars that can change anything: those plugged in during an event they belong
to that either charge in its slots in the plan in force or can discharge (V2G). Every other car
keeps its plan, which is already optimal with the event slots priced out.
"""

from __future__ import annotations

import time

import numpy as np

from programs.scheduling.greedy import fill_cheapest
from programs.scheduling.independent import plan_charge_only, plan_independent
from programs.scheduling.lp import discharge_allowed
from programs.scheduling.model import (
    BoolArray,
    Derived,
    Fleet,
    FloatArray,
    IntArray,
    Plan,
    Problem,
    charge_cost_per_kw,
    derive,
    discharge_cost_per_kw,
    window_mask,
)
from programs.scheduling.outcome import (
    _caps_breached,
    _event_limit,
    _event_members,
    _event_slots,
    finish_plan,
)


def respond_to_events(
    problem: Problem, *, base: FloatArray | None = None, base_plan: Plan | None = None
) -> Plan:
    """Phase one of an event: a fast, feasible response.

    Cars an event can use are re-planned by the cheapest fill with the event slots priced out (so
    they charge there only what their departure needs), then V2G cars discharge in the event slots
    what they can give back before departure without touching their floor, scaled per slot to the
    kW asked, and recharge it afterwards in the cheapest free slots. Departures and floors are kept
    by construction. `base` is the power of the plan in force (the independent plan when None); any
    feeder whose cap the response would breach keeps its base plan and waits for phase two.
    `base_plan`, the finished plan in force, may be given instead: then the SoC and cost of the
    cars the response leaves alone are taken from it rather than recomputed.
    """
    began = time.perf_counter()
    fleet = problem.fleet
    slots, dt_h = problem.slots, problem.dt_h
    derived = derive(fleet, slots, dt_h)
    if base is None and base_plan is not None:
        base = base_plan.power_kw
    if base is None:
        base = plan_independent(problem, derived)
    power = base.copy()
    events = [
        (event, _event_slots(problem, event.start_slot, event.end_slot)) for event in problem.events
    ]
    # in_event[:, e]: the car belongs to event e and is plugged in during some of its slots.
    in_event = np.zeros((fleet.size, len(events)), bool)
    for e, (event, slot_idx) in enumerate(events):
        if len(slot_idx):
            overlap = (derived.start <= slot_idx[-1]) & (derived.end > slot_idx[0])
            in_event[:, e] = _event_members(problem, event.feeder) & overlap
    candidates = np.flatnonzero(in_event.any(axis=1))
    event_mask = _event_mask(in_event[candidates], events, slots)
    # A charge-only car that does not charge in its event slots already has the cheapest plan
    # that avoids them: re-planning it would change nothing.
    charging = (base[candidates] > 0) & event_mask
    useful = derived.v2g[candidates] | charging.any(axis=1)
    idx = candidates[useful]
    changed = idx
    if len(idx):
        power[idx] = _fast_response(
            problem,
            fleet.take(idx),
            derived.take(idx),
            event_mask[useful],
            in_event[idx],
            power,
            idx,
        )
        for f in np.flatnonzero(_caps_breached(problem, power, np.unique(fleet.feeder[idx]))):
            members = fleet.feeder == f
            power[members] = base[members]
    plan = finish_plan(problem, derived, power, base=base_plan, changed=changed)
    plan.solve_seconds = time.perf_counter() - began
    return plan


def _event_mask(in_event: BoolArray, events: list, slots: int) -> BoolArray:
    """(n, T) the slots of the events each car takes part in."""
    mask = np.zeros((in_event.shape[0], slots), bool)
    for e, (_, slot_idx) in enumerate(events):
        rows = np.flatnonzero(in_event[:, e])
        if len(rows) and len(slot_idx):
            mask[rows[:, None], slot_idx[None, :]] = True
    return mask


def _fast_response(
    problem: Problem,
    fleet: Fleet,
    derived: Derived,
    event_mask: BoolArray,
    in_event: BoolArray,
    power_all: FloatArray,
    idx: IntArray,
) -> FloatArray:
    slots, dt_h, signals = problem.slots, problem.dt_h, problem.signals
    base_cost = charge_cost_per_kw(signals, dt_h)
    penalty = 1e3 * (np.abs(base_cost).max() + 1.0)  # above any price: event slots only if needed
    # One cost row per combination of events (cars in the same events share an event mask).
    _, first, group = np.unique(
        np.packbits(in_event, axis=1) if in_event.shape[1] else np.zeros((len(idx), 1), np.uint8),
        axis=0,
        return_index=True,
        return_inverse=True,
    )
    group = group.ravel()
    cost = base_cost[None, :] + penalty * event_mask[first]
    charge = plan_charge_only(fleet, derived, signals, dt_h, slots, cost=cost, group=group)
    # V2G give-back: what each car can discharge in its event slots and still recharge in time.
    window = window_mask(derived, slots)
    d_cost = discharge_cost_per_kw(signals, dt_h, fleet.degradation_cost_per_kwh)
    eligible = (
        event_mask
        & window
        & (charge <= 0)
        & derived.v2g[:, None]
        & discharge_allowed(signals, dt_h, derived, d_cost)
    )
    t = np.arange(slots)
    last_in_event = slots - 1 - np.argmax(event_mask[:, ::-1], axis=1)
    last_event = np.where(event_mask.any(axis=1), last_in_event, -1)
    after = window & (t[None, :] > last_event[:, None])
    spare_kw = np.where(after, fleet.max_charge_kw[:, None] - charge, 0.0)
    spare_kwh = (spare_kw * derived.charge_gain[:, None]).sum(axis=1)
    energy = derived.e0[:, None] + np.cumsum(charge * derived.charge_gain[:, None], axis=1)
    energy = np.concatenate([derived.e0[:, None], energy], axis=1)
    first_event = np.argmax(eligible, axis=1)
    at_start = energy[np.arange(fleet.size), first_event]
    budget = np.maximum(np.minimum(at_start - derived.floor, spare_kwh), 0.0)
    k = eligible.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(k > 0, budget / (derived.discharge_drain * np.maximum(k, 1)), 0.0)
    rate = np.minimum(rate, fleet.max_discharge_kw)
    discharge = np.zeros_like(charge)
    replanned = np.zeros(problem.fleet.size, bool)
    replanned[idx] = True
    for event in problem.events:
        slot_idx = _event_slots(problem, event.start_slot, event.end_slot)
        if len(slot_idx) == 0:
            continue
        members_all = _event_members(problem, event.feeder)
        members = members_all[idx]
        # Net import in the event slots: the cars kept as they are, plus the re-planned ones.
        kept = members_all & ~replanned
        load = kept.astype(np.float64) @ power_all[:, slot_idx]
        load += (charge[members][:, slot_idx] - discharge[members][:, slot_idx]).sum(axis=0)
        need = load - _event_limit(event.kind, event.kw)
        offer = np.where(eligible[:, slot_idx] & members[:, None], rate[:, None], 0.0)
        offer = np.maximum(offer - discharge[:, slot_idx], 0.0)
        total = offer.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.clip(np.where(total > 0, need / total, 0.0), 0.0, 1.0)
        discharge[:, slot_idx] += offer * alpha[None, :]
    refill = (discharge * derived.discharge_drain[:, None]).sum(axis=1)
    extra = fill_cheapest(
        cost=base_cost,
        group=None,
        available_kw=spare_kw,
        gain=derived.charge_gain,
        need_kwh=refill,
        room_kwh=refill,
    )
    return charge + extra - discharge
