"""The exact LP behind every non-greedy plan, built with numpy and solved by HiGHS (`highspy`).

One builder serves three callers: V2G cars planned on their own (many cars as one block-diagonal
model), a feeder's coupled plan (feeder caps and events), and the reference used by the tests and
benchmarks (the whole problem as one model). The priorities of the design are solved
lexicographically: floor deficit (only possible when a feeder cap curtails a below-floor car), then
departure shortfall, then event shortfall, then cost; each stage fixes the optimum of the previous
one with a row and re-solves from the previous basis.

Formulation, per car and plugged slot k (SoC `e` in kWh after the slot):
  chain cars (V2G, or below-floor cars when a cap may curtail them):
      e_k - e_{k-1} - eta_c*dt*c_k + dt/eta_d*d_k = 0,  floor_k <= e_k <= ceiling
  transport cars (charge-only): sum_k eta_c*dt*c_k <= ceiling - e0, and the floor's forced charging
      as a lower bound on c; SoC is monotone so no per-slot rows are needed.
  coupling rows: sum over the group's cars of (c - d) - v <= cap, where v >= 0 is the event
      shortfall (feeder caps have no v: they are hard).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import highspy
import numpy as np

from programs.scheduling.model import (
    BoolArray,
    Derived,
    Fleet,
    FloatArray,
    IntArray,
    Signals,
    charge_cost_per_kw,
    discharge_cost_per_kw,
)

_banner_shown = False
# The departure bound is the exact reachable level less this (plus 1e-8 relative): HiGHS presolve
# declares a bound met only with this margin infeasible. Far below the 1e-5 kWh reporting threshold.
DEPARTURE_SLACK_KWH = 1e-6


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance. The library prints its banner to fd 1 on the first instance of a
    process, which would corrupt the CLI's JSON output, so that first construction is muted."""
    global _banner_shown
    if _banner_shown:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _banner_shown = True
    h.setOptionValue("output_flag", False)
    return h


@dataclass(frozen=True)
class Coupling:
    """One coupling row per slot in `slots`: sum over `members` of (c - d) <= limit_kw[slot].

    `soft` rows get a shortfall variable (events); hard rows have none (feeder caps).
    """

    key: str
    members: BoolArray  # (N,) cars of this group
    slots: IntArray
    limit_kw: FloatArray  # one per slot in `slots`
    soft: bool


@dataclass
class LpResult:
    charge_kw: FloatArray  # (N, T)
    discharge_kw: FloatArray  # (N, T)
    shortfall_kw: dict[str, FloatArray]  # per soft coupling key: (len(slots),)
    objective: list[float]
    status: str


class SolveError(RuntimeError):
    """HiGHS did not reach an optimum; the message carries its model status."""


def solve_lp(
    *,
    fleet: Fleet,
    derived: Derived,
    signals: Signals,
    dt_h: float,
    slots: int,
    couplings: list[Coupling] | None = None,
    departure_fixed: bool = False,
    soft_floor: bool | BoolArray = False,
    solver: str = "simplex",
    highs: highspy.Highs | None = None,
    time_limit_s: float | None = None,
) -> LpResult:
    """Solve the lexicographic plan LP for `fleet` and return charge and discharge per car and slot.

    departure_fixed: each car's departure bound is its own reachable target (exact when the cars
        are not coupled), so the cost is the only objective and one solve suffices.
    soft_floor: True, or a per-car mask, for cars a hard feeder cap may curtail. Those that plug in
        below their floor get the floor as a top-priority objective instead of a bound, and never
        discharge in this plan: the deficit objective alone would let a below-floor car hand energy
        to another below-floor car on its feeder (a tie at equal efficiencies) and let the later
        stages buy that within the stage tolerance, breaking "below the floor, never discharge".
    """
    couplings = couplings or []
    n_cars = fleet.size
    length = derived.end - derived.start
    n_entries = int(length.sum())
    car = np.repeat(np.arange(n_cars), length)
    offset = np.arange(n_entries) - np.repeat(np.cumsum(length) - length, length)
    slot = derived.start[car] + offset
    first = offset == 0
    last = offset == length[car] - 1
    below_floor = derived.e0 < derived.floor - 1e-12
    soft_car = below_floor & np.broadcast_to(np.asarray(soft_floor, dtype=bool), (n_cars,))
    chain_car = derived.v2g | soft_car
    chain = chain_car[car]

    full_kwh = fleet.max_charge_kw * derived.charge_gain
    floor_k = np.minimum(derived.floor[car], derived.e0[car] + (offset + 1) * full_kwh[car])
    forced_k = derived.forced_kw[car, slot]

    cols_lb: list[FloatArray] = []
    cols_ub: list[FloatArray] = []
    tiers: list[list[FloatArray]] = [[], [], [], []]  # floor deficit, shortfall, event, cost
    n_cols = 0

    def add_cols(lb: FloatArray, ub: FloatArray, tier_costs: dict[int, FloatArray]) -> IntArray:
        nonlocal n_cols
        count = len(lb)
        cols_lb.append(lb)
        cols_ub.append(ub)
        for tier in range(4):
            tiers[tier].append(tier_costs.get(tier, np.zeros(count)))
        index = np.arange(n_cols, n_cols + count)
        n_cols += count
        return index

    inf = np.inf
    c_ub = fleet.max_charge_kw[car]
    c_lb = np.where(chain | soft_car[car], 0.0, forced_k)
    c_col = add_cols(c_lb, c_ub, {3: charge_cost_per_kw(signals, dt_h)[slot]})
    chain_idx = np.flatnonzero(chain)
    ch_car = car[chain_idx]
    ch_slot = slot[chain_idx]
    d_cost = discharge_cost_per_kw(signals, dt_h, fleet.degradation_cost_per_kwh)
    no_discharge = (
        (forced_k[chain_idx] > 0)
        | soft_car[ch_car]
        | ~discharge_allowed(signals, dt_h, derived, d_cost)[ch_car, ch_slot]
    )
    d_ub = np.where(no_discharge, 0.0, fleet.max_discharge_kw[ch_car])
    d_col = add_cols(np.zeros(len(chain_idx)), d_ub, {3: d_cost[ch_car, ch_slot]})
    e_lb = np.where(soft_car[ch_car], 0.0, floor_k[chain_idx])
    if departure_fixed:
        goal = _departure_goal(derived)
        e_lb = np.where(last[chain_idx], np.maximum(e_lb, goal[ch_car]), e_lb)
    e_col = add_cols(e_lb, derived.ceiling[ch_car], {})

    active = length > 0
    s_col = np.full(n_cars, -1)
    if not departure_fixed:
        n_active = int(active.sum())
        s_col[active] = add_cols(np.zeros(n_active), np.full(n_active, inf), {1: np.ones(n_active)})

    rows_lb: list[FloatArray] = []
    rows_ub: list[FloatArray] = []
    trip_r: list[IntArray] = []
    trip_c: list[IntArray] = []
    trip_v: list[FloatArray] = []
    n_rows = 0

    def add_rows(lb: FloatArray, ub: FloatArray) -> IntArray:
        nonlocal n_rows
        rows_lb.append(lb)
        rows_ub.append(ub)
        index = np.arange(n_rows, n_rows + len(lb))
        n_rows += len(lb)
        return index

    def add_entries(r: IntArray, c: IntArray, v: FloatArray) -> None:
        trip_r.append(r)
        trip_c.append(c)
        trip_v.append(np.broadcast_to(v, r.shape).astype(np.float64))

    # Chain dynamics.
    n_chain = len(chain_idx)
    rhs = np.where(first[chain_idx], derived.e0[ch_car], 0.0)
    dyn = add_rows(rhs, rhs)
    add_entries(dyn, e_col, np.ones(n_chain))
    not_first = ~first[chain_idx]
    previous = e_col[np.flatnonzero(not_first) - 1]
    add_entries(dyn[not_first], previous, -np.ones(len(previous)))
    add_entries(dyn, c_col[chain_idx], -derived.charge_gain[ch_car])
    add_entries(dyn, d_col, derived.discharge_drain[ch_car])
    # Chain departure with shortfall.
    if not departure_fixed:
        ends = np.flatnonzero(last[chain_idx])
        dep = add_rows(derived.target[ch_car[ends]], np.full(len(ends), inf))
        add_entries(dep, e_col[ends], np.ones(len(ends)))
        add_entries(dep, s_col[ch_car[ends]], np.ones(len(ends)))
    # Soft floor: e_k + z_k >= floor_k for below-floor chain cars.
    soft_entries = np.flatnonzero(soft_car[ch_car])
    if len(soft_entries):
        z_col = add_cols(
            np.zeros(len(soft_entries)),
            np.full(len(soft_entries), inf),
            {0: np.ones(len(soft_entries))},
        )
        fl = add_rows(floor_k[chain_idx][soft_entries], np.full(len(soft_entries), inf))
        add_entries(fl, e_col[soft_entries], np.ones(len(soft_entries)))
        add_entries(fl, z_col, np.ones(len(soft_entries)))
    # Transport cars: one ceiling row and one departure row each.
    tr_cars = np.flatnonzero(active & ~chain_car)
    if len(tr_cars):
        tr_entries = np.flatnonzero(~chain)
        row_of_car = np.full(n_cars, -1)
        room = derived.ceiling[tr_cars] - derived.e0[tr_cars]
        ceil_rows = add_rows(np.full(len(tr_cars), -inf), room)
        row_of_car[tr_cars] = ceil_rows
        gains = derived.charge_gain[car[tr_entries]]
        add_entries(row_of_car[car[tr_entries]], c_col[tr_entries], gains)
        if departure_fixed:
            goal = _departure_goal(derived)
            dep_lb = goal[tr_cars] - derived.e0[tr_cars]
        else:
            dep_lb = derived.target[tr_cars] - derived.e0[tr_cars]
        dep_rows = add_rows(dep_lb, np.full(len(tr_cars), inf))
        row_of_car[tr_cars] = dep_rows
        add_entries(row_of_car[car[tr_entries]], c_col[tr_entries], gains)
        if not departure_fixed:
            add_entries(dep_rows, s_col[tr_cars], np.ones(len(tr_cars)))
    # Coupling rows.
    v_cols: dict[str, IntArray] = {}
    d_col_of_entry = np.full(n_entries, -1)
    d_col_of_entry[chain_idx] = d_col
    for coupling in couplings:
        slot_row = np.full(slots, -1)
        rows = add_rows(np.full(len(coupling.slots), -inf), coupling.limit_kw.astype(np.float64))
        slot_row[coupling.slots] = rows
        hit = coupling.members[car] & (slot_row[slot] >= 0)
        hit_idx = np.flatnonzero(hit)
        add_entries(slot_row[slot[hit_idx]], c_col[hit_idx], np.ones(len(hit_idx)))
        hit_d = hit_idx[d_col_of_entry[hit_idx] >= 0]
        add_entries(slot_row[slot[hit_d]], d_col_of_entry[hit_d], -np.ones(len(hit_d)))
        if coupling.soft:
            count = len(coupling.slots)
            v = add_cols(np.zeros(count), np.full(count, inf), {2: np.full(count, dt_h)})
            add_entries(rows, v, -np.ones(count))
            v_cols[coupling.key] = v

    if n_cols == 0:
        empty = np.zeros((n_cars, slots))
        return LpResult(empty, empty.copy(), {}, [], "empty")
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    col_lb = np.concatenate(cols_lb)
    col_ub = np.concatenate(cols_ub)
    lp.col_lower_ = col_lb
    lp.col_upper_ = col_ub
    lp.row_lower_ = np.concatenate(rows_lb) if rows_lb else np.zeros(0)
    lp.row_upper_ = np.concatenate(rows_ub) if rows_ub else np.zeros(0)
    r = np.concatenate(trip_r).astype(np.int64)
    c = np.concatenate(trip_c).astype(np.int64)
    v = np.concatenate(trip_v)
    order = np.argsort(c, kind="stable")
    starts = np.searchsorted(c[order], np.arange(n_cols + 1))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = r[order].astype(np.int32)
    lp.a_matrix_.value_ = v[order]
    tier_costs = [np.concatenate(t) for t in tiers]
    lp.col_cost_ = tier_costs[3]

    h = highs if highs is not None else new_highs()
    h.clearModel()
    h.setOptionValue("solver", solver)
    h.setOptionValue("time_limit", float("inf") if time_limit_s is None else time_limit_s)
    h.passModel(lp)
    objectives: list[float] = []
    all_cols = np.arange(n_cols, dtype=np.int32)
    staged = [t for t in range(3) if np.any(tier_costs[t] != 0)]
    for tier in [*staged, 3]:
        h.changeColsCost(n_cols, all_cols, tier_costs[tier])
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise SolveError(f"HiGHS stopped with status {h.modelStatusToString(status)}")
        value = float(h.getInfo().objective_function_value)
        objectives.append(value)
        if tier != 3:
            support = np.flatnonzero(tier_costs[tier]).astype(np.int32)
            bound = value + 1e-7 + 1e-9 * abs(value)
            h.addRow(-inf, bound, len(support), support, tier_costs[tier][support])
    x = np.asarray(h.getSolution().col_value)

    charge = np.zeros((n_cars, slots))
    discharge = np.zeros((n_cars, slots))
    charge[car, slot] = np.clip(x[c_col], 0.0, c_ub)
    discharge[ch_car, ch_slot] = np.clip(x[d_col], 0.0, d_ub)
    shortfall = {key: np.maximum(x[cols], 0.0) for key, cols in v_cols.items()}
    return LpResult(charge, discharge, shortfall, objectives, "optimal")


def _departure_goal(derived: Derived) -> FloatArray:
    goal = np.minimum(derived.target, derived.reachable)
    return goal - DEPARTURE_SLACK_KWH - 1e-8 * np.abs(goal)


def net_power(charge: FloatArray, discharge: FloatArray, derived: Derived) -> FloatArray:
    """One signed power per slot. Where an LP charges and discharges in the same slot (possible
    only when that is free or profitable), both are reduced by amounts that leave the stored energy
    unchanged, which never raises the cost in the slots `discharge_allowed` permits."""
    round_trip = (derived.charge_gain / derived.discharge_drain)[:, None]  # eta_c * eta_d
    cut_d = np.minimum(discharge, charge * round_trip)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut_c = np.where(round_trip > 0, cut_d / round_trip, 0.0)
    return (charge - cut_c) - (discharge - cut_d)


def discharge_allowed(
    signals: Signals, dt_h: float, derived: Derived, d_cost: FloatArray
) -> BoolArray:
    """(N, T) False in slots where charging and discharging at once would earn money (e.g. a
    negative import price next to a positive export price). A battery cannot do both in one slot,
    so the plan does not discharge there; every solver, the reference included, uses this rule."""
    round_trip = (derived.charge_gain / derived.discharge_drain)[:, None]
    return charge_cost_per_kw(signals, dt_h)[None, :] + round_trip * d_cost >= 0
