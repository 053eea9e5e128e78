"""Phase two of an event without the big LP: a price decomposition on the event rows only.

`planner._plan_event_group` calls `plan_event_rows` for a group coupled only by events whose
phase-one response meets every event row (so the event-shortfall stage's optimum is 0 and the rows
are hard). The problem is then: each car's own constraints (power, floor, ceiling, departure fixed
at its own best), the event rows Σ(c − d) ≤ limit in their slots, and the least total cost.

Dantzig–Wolfe column generation over cars. The master LP chooses, per car, a convex combination
of its current plan and the plans found for it so far (its own plan and phase one's to start,
phase one's being the first current plan: the master is feasible from the first solve), with one
row per event slot and one convexity row per car. Its event-row duals μ (one price per event slot,
≥ 0) are added to the cost of each kW of net import in those slots, and every car's best response
under those prices is its exact plan from the vectorised dynamic programme (`v2g.plan_v2g_exact`,
which also plans charge-only cars exactly). A response cheaper at those prices than the car's
current plan enters the pool; the next master holds only those cars and the ones the last master
left blended, the others keeping their current plans (their load comes off the limits). For any
μ ≥ 0, Σ_i best_i(μ) − μ·limit is a lower bound on the optimum (Lagrangian duality), and the
current plan's cost an upper bound, so the loop stops with a proven gap: `STOP_GAP` (1e-5) of the
group's cost scale (Σ |cost| of the starting plans). A result is accepted up to 0.5 % (the issue's
tolerance for V2G plans); past that it returns None and the caller solves the LP.

Each car's final plan is the master's blend of its plans, charge and discharge blended apart and
then netted by `lp.net_power`: the stored energy is then the blend of the plans' energies, so every
floor, ceiling and departure bound holds, and netting only lowers the net import in a slot.
"""

from __future__ import annotations

import highspy
import numpy as np

from programs.scheduling.lp import Coupling, net_power, new_highs
from programs.scheduling.model import (
    Derived,
    Fleet,
    FloatArray,
    IntArray,
    Signals,
    charge_cost_per_kw,
    discharge_cost_per_kw,
)
from programs.scheduling.v2g import plan_v2g_exact

STOP_GAP = 1e-5  # proven optimality gap, relative to the group's cost scale, that ends the loop
ACCEPT_GAP = 5e-3  # the V2G tolerance: a larger proven gap falls back to the LP
MAX_ROUNDS = 40
PRICING_THREADS = 2  # the best responses, chunk by chunk, in this many threads (1.8x on 2 cores)
IPM_FROM_COLUMNS = 5000  # masters with this many columns are solved by the interior point method


def plan_event_rows(
    *,
    fleet: Fleet,
    derived: Derived,
    signals: Signals,
    dt_h: float,
    slots: int,
    couplings: list[Coupling],
    columns: list[FloatArray],
    stop_gap: float = STOP_GAP,
    accept_gap: float = ACCEPT_GAP,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[FloatArray, float] | None:
    """(N, T) net power of the least-cost plan meeting the hard `couplings` (every member: the
    group's cars), and the proven relative gap; None when the gap stays above `accept_gap`.

    `columns`: starting plans (N, T) each, every car's plan feasible for it, and at least one
    combination meeting the rows (phase one's response does)."""
    n = fleet.size
    row_slot = np.concatenate([c.slots for c in couplings]).astype(np.int64)
    row_limit = np.concatenate([c.limit_kw for c in couplings]).astype(np.float64)
    c_cost = charge_cost_per_kw(signals, dt_h)
    d_cost = discharge_cost_per_kw(signals, dt_h, fleet.degradation_cost_per_kwh)

    def cost_of(cars: IntArray, plan: FloatArray) -> FloatArray:
        return np.maximum(plan, 0.0) @ c_cost + (np.maximum(-plan, 0.0) * d_cost[cars]).sum(axis=1)

    def cost_cd(cars: IntArray, charge: FloatArray, discharge: FloatArray) -> FloatArray:
        return charge @ c_cost + (discharge * d_cost[cars]).sum(axis=1)

    every = np.arange(n)
    start = columns[-1]
    charge = np.maximum(start, 0.0)
    discharge = np.maximum(-start, 0.0)
    scale = max(1.0, float(np.abs(cost_cd(every, charge, discharge)).sum()))
    # Every plan found so far, as (cars, plans (len(cars), T)).
    pool: list[tuple[IntArray, FloatArray]] = [(every, c) for c in columns[:-1]]
    active = every
    gap = np.inf
    for _ in range(max_rounds):
        # The master over the active cars: each blends its current plan and every plan found
        # for it; the other cars keep their current plans (their load comes off the limits).
        is_active = np.zeros(n, bool)
        is_active[active] = True
        position = np.cumsum(is_active) - 1
        fixed_load = (charge[~is_active] - discharge[~is_active])[:, row_slot].sum(axis=0)
        owners = [np.arange(len(active))]
        plans_c = [charge[active]]
        plans_d = [discharge[active]]
        for cars, plans in pool:
            hit = is_active[cars]
            owners.append(position[cars[hit]])
            plans_c.append(np.maximum(plans[hit], 0.0))
            plans_d.append(np.maximum(-plans[hit], 0.0))
        owner = np.concatenate(owners)
        all_c = np.concatenate(plans_c)
        all_d = np.concatenate(plans_d)
        solved = _solve_master(
            len(active),
            owner,
            cost_cd(active[owner], all_c, all_d),
            (all_c - all_d)[:, row_slot],
            row_limit - fixed_load,
        )
        if solved is None:
            return None
        weights, mu = solved
        blend_c = np.zeros((len(active), slots))
        blend_d = np.zeros((len(active), slots))
        used = np.flatnonzero(weights > 0)
        np.add.at(blend_c, owner[used], weights[used, None] * all_c[used])
        np.add.at(blend_d, owner[used], weights[used, None] * all_d[used])
        charge[active] = blend_c
        discharge[active] = blend_d
        upper = float(cost_cd(every, charge, discharge).sum())
        mu_slot = np.zeros(slots)
        np.add.at(mu_slot, row_slot, mu)
        # Every car's best response to the event prices: the Lagrangian lower bound.
        best = plan_v2g_exact(
            fleet, derived, signals, dt_h, slots, extra_kw_cost=mu_slot, workers=PRICING_THREADS
        )
        value = cost_of(every, best) + best @ mu_slot
        lower = float(value.sum() - mu @ row_limit)
        gap = max(upper - lower, 0.0) / scale
        if gap <= stop_gap:
            break
        current = cost_cd(every, charge, discharge) + (charge - discharge) @ mu_slot
        improving = np.flatnonzero(value < current - 1e-9 * scale / n)
        if len(improving) == 0:
            break
        pool.append((improving, best[improving]))
        # Next master: the improving cars and those whose blend is not one plan of the pool.
        mixed = active[np.bincount(owner[weights > 1e-9], minlength=len(active)) > 1]
        active = np.union1d(improving, mixed)
    if gap > accept_gap:
        return None
    return net_power(charge, discharge, derived), gap


def _solve_master(
    n: int, owner: IntArray, cost: FloatArray, load: FloatArray, limit: FloatArray
) -> tuple[FloatArray, FloatArray] | None:
    """The restricted master LP: each of `n` cars blends its plans (column j belongs to car
    `owner[j]`), Σ load·w ≤ limit per event row, least cost. Returns the weights and the
    event-row prices μ ≥ 0."""
    n_rows = len(limit)
    n_cols = len(cost)
    nz_col, nz_row = np.nonzero(load)
    col = np.concatenate([np.arange(n_cols), nz_col])
    row = np.concatenate([owner, n + nz_row])
    val = np.concatenate([np.ones(n_cols), load[nz_col, nz_row]])
    order = np.argsort(col, kind="stable")
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n + n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = np.full(n_cols, np.inf)
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(n_rows, -np.inf)])
    lp.row_upper_ = np.concatenate([np.ones(n), limit])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(col[order], np.arange(n_cols + 1)).astype(np.int32)
    lp.a_matrix_.index_ = row[order].astype(np.int32)
    lp.a_matrix_.value_ = val[order]
    h = new_highs()
    # A large master is degenerate (many cars alike): the interior point method with crossover
    # (an optimal vertex, as the simplex gives) takes a third of the dual simplex's time there.
    h.setOptionValue("solver", "ipm" if n_cols >= IPM_FROM_COLUMNS else "simplex")
    h.setOptionValue("run_crossover", "on")
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = h.getSolution()
    weights = np.clip(np.asarray(solution.col_value), 0.0, None)
    total = np.bincount(owner, weights, minlength=n)
    weights /= np.maximum(total[owner], 1e-300)
    mu = np.maximum(-np.asarray(solution.row_dual)[n:], 0.0)
    return weights, mu
