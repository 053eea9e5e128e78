"""The exact LP reference: the whole problem as one lexicographic HiGHS model, no shortcuts.

Slow by design (one model for every car, every feeder and every event) and used only by the tests
and benchmarks to check that the fast planner's floors, shortfalls and costs are optimal.
"""

from __future__ import annotations

import time

import numpy as np

from programs.scheduling.lp import Coupling, net_power, new_highs, solve_lp
from programs.scheduling.model import Plan, Problem, derive
from programs.scheduling.outcome import _event_limit, _event_members, _event_slots, finish_plan


def reference_plan(problem: Problem, *, solver: str = "simplex") -> Plan:
    """The optimum of the full LP: floor, then departure shortfall, then events, then cost."""
    began = time.perf_counter()
    fleet = problem.fleet
    derived = derive(fleet, problem.slots, problem.dt_h)
    couplings: list[Coupling] = []
    curtailable = np.zeros(fleet.size, bool)  # on a feeder with a hard cap in some slot
    for f in range(len(problem.feeder_names)):
        caps = problem.feeder_caps_kw[f]
        capped = np.flatnonzero(np.isfinite(caps))
        if len(capped):
            curtailable |= fleet.feeder == f
            couplings.append(
                Coupling(
                    f"feeder:{f}", fleet.feeder == f, capped, np.maximum(caps[capped], 0.0), False
                )
            )
    for event in problem.events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        if len(slots):
            limit = np.full(len(slots), _event_limit(event.kind, event.kw))
            members = _event_members(problem, event.feeder)
            couplings.append(Coupling(f"event:{event.id}", members, slots, limit, True))
    result = solve_lp(
        fleet=fleet,
        derived=derived,
        signals=problem.signals,
        dt_h=problem.dt_h,
        slots=problem.slots,
        couplings=couplings,
        soft_floor=curtailable,
        solver=solver,
    )
    plan = finish_plan(problem, derived, net_power(result.charge_kw, result.discharge_kw, derived))
    plan.solve_seconds = time.perf_counter() - began
    return plan


def per_car_lp_plan(problem: Problem, cars: np.ndarray) -> tuple[np.ndarray, float]:
    """The baseline of the benchmarks: one HiGHS model per car (no coupling), for the cars in
    `cars`. Returns their (len(cars), T) power and the seconds spent."""
    began = time.perf_counter()
    highs = new_highs()
    out = np.zeros((len(cars), problem.slots))
    for i, n in enumerate(cars):
        one = problem.fleet.take(np.array([n]))
        derived = derive(one, problem.slots, problem.dt_h)
        result = solve_lp(
            fleet=one,
            derived=derived,
            signals=problem.signals,
            dt_h=problem.dt_h,
            slots=problem.slots,
            highs=highs,
        )
        out[i] = net_power(result.charge_kw, result.discharge_kw, derived)[0]
    return out, time.perf_counter() - began
