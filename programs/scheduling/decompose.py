"""Phase two of an event without the big LP: a price decomposition on the event rows only.

`planner._plan_event_group` calls `plan_event_rows` for a group coupled only by events whose
phase-one response meets every event row (so the event-shortfall stage's optimum is 0 and the rows
are hard). The problem is then: each car's own constraints (power, floor, ceiling, departure fixed
at its own best), the event rows Σ(c − d) ≤ limit in their slots, and the least total cost.

Dantzig–Wolfe column generation over cars. Every car has a pool of plans: its own plan and phase
one's to start (phase one's meets the rows, so the master is feasible at once), then one more per
round. The master chooses, per car, a convex combination of its plans, under one row per event
slot, at least cost. Its event-row prices μ (one per slot, ≥ 0) are added to the cost of each kW
of net import in those slots, and every car's best response under those prices is its exact plan
from the vectorised dynamic programme (`v2g.plan_v2g_exact`, which also plans charge-only cars
exactly); it joins the pool. For any μ ≥ 0, Σ_i best_i(μ) − μ·limit is a lower bound on the
optimum (Lagrangian duality), and the master's plan (feasible) an upper bound, so the loop stops
with a proven gap: `STOP_GAP` (1e-5) of the group's cost scale (Σ |cost| of phase one's plans).
A result is accepted up to 0.5 % (the issue's tolerance for V2G plans); past that it returns None
and the caller solves the LP.

The master is solved through its dual, which has only the R event prices as variables:
φ(μ) = Σ_i min_j (cost_ij + μ·load_ij) − μ·limit, concave and piecewise linear, costs one
matrix product and one minimum per car to evaluate. `_Master` maximises it by cutting planes
(Kelley): each evaluation gives a cut φ ≤ C + μ·(A − limit), where C and A are the cost and the
event-slot load of the fleet when every car takes its cheapest plan at that μ, and a small LP over
the cuts (R + 1 variables, one row per cut) proposes the next μ. The LP's row duals λ weigh those
fleet selections: Σλ = 1, Σ λ·A ≤ limit, cost Σ λ·C, i.e. a feasible point of the master whose
cost is the LP's optimum, within `MASTER_GAP` of the master's optimum. Cuts stay valid when the pool
grows (each is the cost of an actual selection), so one LP serves every round. This replaced one
HiGHS LP over every car's plans per round (one convexity row per car: 2–4 s per solve at 100,000
cars, against ~0.1 s here).

The first masters know few plans and put extreme prices on single slots (0.38 per kW-slot where
the optimum's are ~0.002 in bench B4), and best responses to those prices are wasted rounds. So
the prices are tried within a box around the best ones so far (those of the best lower bound; 0
at first): half-width `BOX_STEP` of the mean cost of a kW for a slot, doubled when a boxed price
improves the bound, halved when it does not; the master's own prices are taken once inside it.
The box only chooses where to price: the bounds, and so the proven gap, stand whatever it does.

Each car's final plan is its blend, charge and discharge blended apart and then netted by
`lp.net_power`: the stored energy is then the blend of the plans' energies, so every floor,
ceiling and departure bound holds, and netting only lowers the net import in a slot.
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
MASTER_GAP = 0.05  # the master is solved to this share of the stop gap (it adds to the gap)
MAX_CUTS_PER_MASTER = 500  # a master still open after this many cuts ends the decomposition
BOX_STEP = 0.1  # the box's first half-width, as a share of the mean cost of a kW for a slot
PRICE_BOUND = 1.0  # first bound on μ, per kW and slot; multiplied by 10 while a price reaches it
FEASIBILITY_KW = 1e-7  # HiGHS's primal feasibility tolerance: what an LP may exceed a row by
MAX_PRICE_BOUND = 1e12  # past this the master is taken as failed (it cannot be: phase one fits)


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

    `columns`: starting plans (N, T) each, every car's plan feasible for it; the last one meets
    the rows (phase one's response does)."""
    n = fleet.size
    row_slot = np.concatenate([c.slots for c in couplings]).astype(np.int64)
    row_limit = np.concatenate([c.limit_kw for c in couplings]).astype(np.float64)
    c_cost = charge_cost_per_kw(signals, dt_h)
    d_cost = discharge_cost_per_kw(signals, dt_h, fleet.degradation_cost_per_kwh)

    def cost_of(plan: FloatArray) -> FloatArray:
        return np.maximum(plan, 0.0) @ c_cost + (np.maximum(-plan, 0.0) * d_cost).sum(axis=1)

    plans = list(columns)  # every car's j-th plan is plans[j][car]
    costs = [cost_of(p) for p in plans]
    loads = [p[:, row_slot] for p in plans]
    scale = max(1.0, float(np.abs(costs[-1]).sum()))
    master = _Master(row_limit, MASTER_GAP * stop_gap * scale)
    # Prices are tried within a box around the best ones so far (the centre): the first masters
    # know few plans and put extreme prices on single slots; a box of half-width `step` keeps the
    # pricing near prices that proved good, and widens while the centre keeps moving.
    center = np.zeros(len(row_limit))
    step = BOX_STEP * float(np.abs(c_cost).mean())
    lower = -np.inf
    gap = np.inf
    weights = np.zeros((n, len(plans)))
    weights[:, -1] = 1.0
    for _ in range(max_rounds):
        cost = np.stack(costs, axis=1)
        load = np.stack(loads, axis=1)
        solved = master.solve(cost, load)
        if solved is None:
            break
        weights = _within_limits(solved[0], load, row_limit, len(columns) - 1)
        mu = solved[1]
        upper = float((weights * cost).sum())
        gap = max(upper - lower, 0.0) / scale
        if gap <= stop_gap:
            break
        lo = np.maximum(center - step, 0.0)
        hi = center + step
        boxed = bool(np.any(mu < lo) or np.any(mu > hi))
        if boxed:
            found = master.best_in_box(cost, load, lo, hi)
            if found is None:
                break
            mu = found
        mu_slot = np.zeros(slots)
        np.add.at(mu_slot, row_slot, mu)
        # Every car's best response to the event prices: the Lagrangian lower bound.
        best = plan_v2g_exact(
            fleet, derived, signals, dt_h, slots, extra_kw_cost=mu_slot, workers=PRICING_THREADS
        )
        best_cost = cost_of(best)
        best_load = best[:, row_slot]
        value = best_cost + best_load @ mu
        bound = float(value.sum() - mu @ row_limit)
        if bound > lower:  # a better centre: move there; widen the box if it held the prices
            center = mu
            lower = bound
            step *= 2.0 if boxed else 1.0
        elif boxed:
            step /= 2.0
        gap = max(upper - lower, 0.0) / scale
        if gap <= stop_gap:
            break
        pooled = (cost + load @ mu).min(axis=1)
        if not np.any(value < pooled - 1e-9 * scale / n):
            if not boxed:
                break  # no car has a cheaper plan at the master's prices: it is the optimum
            step *= 4.0
            continue
        plans.append(best)
        costs.append(best_cost)
        loads.append(best_load)
    if gap > accept_gap:
        return None
    charge = np.zeros((n, slots))
    discharge = np.zeros((n, slots))
    for j in np.flatnonzero(weights.any(axis=0)):
        w = weights[:, j, None]
        charge += w * np.maximum(plans[j], 0.0)
        discharge += w * np.maximum(-plans[j], 0.0)
    return net_power(charge, discharge, derived), gap


def _within_limits(
    weights: FloatArray, load: FloatArray, limit: FloatArray, safe: int
) -> FloatArray:
    """The master's weights; if the LP's λ exceed a limit by more than HiGHS's own feasibility
    tolerance (never seen: ~1e-10 kW at 100,000 cars), moved toward plan `safe` (phase one's,
    inside the limits) just enough to undo it. Within that tolerance the planner's slack under
    the reporting tolerance (`planner._plan_event_group`) absorbs it, as it does for the LP."""
    excess = np.einsum("ij,ijr->r", weights, load) - limit
    over = excess > FEASIBILITY_KW
    if not np.any(over):
        return weights
    margin = limit - load[:, safe].sum(axis=0)
    if np.any(margin[over] <= 0):
        return weights
    share = float(np.max(excess[over] / (excess[over] + margin[over])))
    moved = weights * (1.0 - share)
    moved[:, safe] += share
    return moved


class _Master:
    """The master's dual max_μ≥0 φ(μ) by cutting planes, one LP kept across rounds.

    LP: maximise θ subject to θ − μ·(A_k − limit) ≤ C_k for every cut k, lo ≤ μ ≤ hi.
    `selections[k]` is the plan each car took in cut k (an index into its pool)."""

    def __init__(self, limit: FloatArray, tolerance: float) -> None:
        self.limit = limit
        self.tolerance = tolerance
        self.rows = len(limit)
        self.bound = PRICE_BOUND
        self.selections: list[IntArray] = []
        self.highs = new_highs()
        self.highs.setOptionValue("solver", "simplex")
        inf = highspy.kHighsInf
        self.highs.addVar(-inf, inf)  # θ
        self.highs.changeColCost(0, -1.0)
        for _ in range(self.rows):
            self.highs.addVar(0.0, self.bound)
        self.columns = np.arange(self.rows + 1, dtype=np.int32)
        self.mu = np.zeros(self.rows)

    def solve(self, cost: FloatArray, load: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """Weights (N, J) of each car's plans (rows sum to 1) and the prices μ of a master
        solution within `tolerance` of its optimum; None if the LP fails or does not converge.

        `cost` (N, J), `load` (N, J, R): each car's plans' costs and event-slot loads."""
        while True:
            found = self._maximise(cost, load, np.zeros(self.rows), np.full(self.rows, self.bound))
            if found is None:
                return None
            mu, lam = found
            if not np.any(mu >= self.bound * (1.0 - 1e-9)):
                break
            if self.bound >= MAX_PRICE_BOUND:
                return None
            # A price at its bound: the LP's λ may exceed a limit there. Widen and go on.
            self.bound *= 10.0
        cars = np.arange(cost.shape[0])
        weights = np.zeros(cost.shape)
        for k in np.flatnonzero(lam > 0):
            weights[cars, self.selections[k]] += lam[k]
        return weights, mu

    def best_in_box(
        self, cost: FloatArray, load: FloatArray, lo: FloatArray, hi: FloatArray
    ) -> FloatArray | None:
        """The μ maximising φ (to `tolerance`) within lo ≤ μ ≤ hi."""
        found = self._maximise(cost, load, lo, hi)
        return None if found is None else found[0]

    def _maximise(
        self, cost: FloatArray, load: FloatArray, lo: FloatArray, hi: FloatArray
    ) -> tuple[FloatArray, FloatArray] | None:
        cars = np.arange(cost.shape[0])
        for r in range(self.rows):
            self.highs.changeColBounds(r + 1, float(lo[r]), float(hi[r]))
        best = -np.inf
        mu = np.clip(self.mu, lo, hi)
        for _ in range(MAX_CUTS_PER_MASTER):
            pick = np.argmin(cost + load @ mu, axis=1)
            total_cost = float(cost[cars, pick].sum())
            slope = load[cars, pick].sum(axis=0) - self.limit
            best = max(best, total_cost + float(mu @ slope))
            self.selections.append(pick.astype(np.int32))
            self.highs.addRow(
                -highspy.kHighsInf, total_cost, self.rows + 1, self.columns, np.r_[1.0, -slope]
            )
            self.highs.run()
            if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return None
            solution = self.highs.getSolution()
            mu = np.clip(np.asarray(solution.col_value)[1:], lo, hi)
            top = -float(self.highs.getInfo().objective_function_value)
            if top - best <= self.tolerance:
                self.mu = mu
                lam = np.clip(-np.asarray(solution.row_dual), 0.0, None)
                return mu, lam / lam.sum()
        return None
