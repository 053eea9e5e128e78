"""The exact V2G plan of each car on its own, vectorised across the fleet (no LP solver).

`planner.plan_v2g` calls `plan_v2g_exact` for V2G cars that no feeder cap or event couples; the
HiGHS LP (`lp.solve_lp`, the same model with `departure_fixed`) stays the reference in the tests.

One car's LP is a dynamic programme in its stored energy e (kWh). The cheapest cost-to-go V_k(e)
from the start of slot k is convex and piecewise linear: a list of segments (slope, length) from
the lowest feasible energy upwards. Going back one slot adds two segments to that list, storing up
to X kWh at slope -alpha (alpha: cost per kWh stored) and draining up to Y kWh at slope beta (cost
per kWh drained), which is the infimal convolution of V with the slot's convex cost (convex because
`lp.discharge_allowed` keeps alpha + beta >= 0 wherever the car may discharge); then the domain is
clipped to the slot's floor and ceiling. Going forward, each slot moves the energy toward the
interval where V's slope lies in [-alpha, beta], within the slot's power and V's domain.

Each car's 2W + 1 slopes (W slots in its window) are known up front, so they are sorted once per
car: adding a segment then writes its length into a fixed column, and clipping is a cumulative sum,
for a whole chunk of cars at once. Cars are chunked by window length so the arrays stay small.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from programs.scheduling.lp import _departure_goal, discharge_allowed
from programs.scheduling.model import (
    Derived,
    Fleet,
    FloatArray,
    IntArray,
    Signals,
    charge_cost_per_kw,
    discharge_cost_per_kw,
)

CHUNK_CARS = 1024  # (chunk, 2W+1) float arrays of ~1.5 MB: they stay in cache


def plan_v2g_exact(
    fleet: Fleet,
    derived: Derived,
    signals: Signals,
    dt_h: float,
    slots: int,
    *,
    extra_kw_cost: FloatArray | None = None,
    workers: int = 1,
) -> FloatArray:
    """(N, T) each car's optimal plan: the floor (rising at full power for a below-floor car),
    the reachable target at departure, then the least cost; equal to the per-car LP optimum.

    `extra_kw_cost` (T,) >= 0, if given, is added to the cost of each kW of net import (charging
    costs more, discharging earns more): the price of an event row in `decompose`. Where the plan
    may discharge stays as the signals alone decide (`lp.discharge_allowed`); the cost stays convex
    because a round trip loses energy. `workers` > 1 solves the chunks of cars in that many
    threads (the same plan)."""
    power = np.zeros((fleet.size, slots))
    length = derived.end - derived.start
    active = np.flatnonzero(length > 0)
    if len(active) == 0:
        return power
    c_cost = charge_cost_per_kw(signals, dt_h)
    d_cost = discharge_cost_per_kw(signals, dt_h, fleet.degradation_cost_per_kwh)
    may_discharge = discharge_allowed(signals, dt_h, derived, d_cost) & (derived.forced_kw <= 0)
    if extra_kw_cost is not None:
        c_cost = c_cost + extra_kw_cost
        d_cost = d_cost - extra_kw_cost[None, :]
    goal = _departure_goal(derived)
    by_length = active[np.argsort(length[active], kind="stable")]

    def solve(lo: int) -> None:
        cars = by_length[lo : lo + CHUNK_CARS]
        power[cars] = _solve_chunk(fleet, derived, cars, c_cost, d_cost, may_discharge, goal, slots)

    starts = range(0, len(by_length), CHUNK_CARS)
    if workers > 1 and len(starts) > 1:
        # The chunks are independent and numpy releases the GIL in their array operations.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(solve, starts))
    else:
        for lo in starts:
            solve(lo)
    return power


def _solve_chunk(
    fleet: Fleet,
    derived: Derived,
    cars: IntArray,
    c_cost: FloatArray,
    d_cost: FloatArray,
    may_discharge: np.ndarray,
    goal: FloatArray,
    slots: int,
) -> FloatArray:
    n = len(cars)
    rows = np.arange(n)
    start = derived.start[cars]
    length = derived.end[cars] - start
    width = int(length.max())
    i = np.arange(width)
    inside = i[None, :] < length[:, None]  # (n, W) relative slot i is in the car's window
    t = np.minimum(start[:, None] + i[None, :], slots - 1)  # absolute slot of relative slot i
    gain = derived.charge_gain[cars][:, None]
    drain = derived.discharge_drain[cars][:, None]
    x_kwh = np.where(inside, fleet.max_charge_kw[cars][:, None] * gain, 0.0)
    y_kwh = np.where(
        inside & may_discharge[cars[:, None], t], fleet.max_discharge_kw[cars][:, None] * drain, 0.0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(gain > 0, c_cost[t] / gain, 0.0)  # cost per kWh stored
        beta = np.where(np.isfinite(drain), d_cost[cars[:, None], t] / drain, 0.0)
    y_kwh = np.where(np.isfinite(y_kwh), y_kwh, 0.0)
    # Energy bounds after relative slot i: the floor (reached at full power from plug-in), the
    # departure goal from the last plugged slot on, and the ceiling.
    e0 = derived.e0[cars]
    full = (fleet.max_charge_kw[cars] * derived.charge_gain[cars])[:, None]
    floor_after = np.minimum(derived.floor[cars][:, None], e0[:, None] + (i[None, :] + 1) * full)
    last = i[None, :] >= length[:, None] - 1
    floor_after = np.where(last, np.maximum(floor_after, goal[cars][:, None]), floor_after)
    ceiling = derived.ceiling[cars]
    # Segment 0 is V's value beyond departure (slope 0 on [goal, ceiling]); 1 + 2i and 2 + 2i are
    # relative slot i's charge and discharge. Sort each car's slopes once.
    slope = np.empty((n, 2 * width + 1))
    slope[:, 0] = 0.0
    slope[:, 1::2] = -alpha
    slope[:, 2::2] = beta
    order = np.argsort(slope, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(2 * width + 1)[None, :], axis=1)
    charge_pos = rank[:, 1::2]
    discharge_pos = rank[:, 2::2]

    lens = np.zeros((n, 2 * width + 1))
    bottom = floor_after[:, -1].copy()  # energy after the last slot: the departure bound
    lens[rows, rank[:, 0]] = np.maximum(ceiling - bottom, 0.0)
    up_to = np.empty((width, n))  # V_{i+1} is falling steeper than -alpha_i below this energy
    down_to = np.empty((width, n))  # and rising steeper than beta_i above this one
    dom_lo = np.empty((width, n))
    dom_hi = np.empty((width, n))
    for k in range(width - 1, -1, -1):
        cum = np.cumsum(lens, axis=1)
        total = cum[:, -1]
        up_to[k] = bottom + cum[rows, charge_pos[:, k]]
        down_to[k] = bottom + cum[rows, discharge_pos[:, k]]
        dom_lo[k] = bottom
        dom_hi[k] = bottom + total
        if k == 0:
            break
        # Back across slot k: add its two segments, then clip to the bounds after slot k - 1.
        xk = x_kwh[:, k]
        yk = y_kwh[:, k]
        lens[rows, charge_pos[:, k]] = xk
        lens[rows, discharge_pos[:, k]] = yk
        bottom = bottom - xk
        total = total + xk + yk
        cum = np.cumsum(lens, axis=1)
        cut_low = np.maximum(floor_after[:, k - 1] - bottom, 0.0)
        np.subtract(cum, cut_low[:, None], out=cum)
        np.maximum(cum, 0.0, out=cum)  # cumulative lengths after the low cut
        np.minimum(lens, cum, out=lens)
        bottom = bottom + cut_low
        total = np.maximum(total - cut_low, 0.0)
        keep = total - np.maximum(bottom + total - ceiling, 0.0)
        # Keep the first `keep` kWh: each segment keeps min(len, keep - what precedes it).
        np.subtract(cum, lens, out=cum)
        np.subtract(keep[:, None], cum, out=cum)
        np.clip(cum, 0.0, lens, out=lens)
    # Forward: from e0, move toward the optimal interval within the slot's power and V's domain.
    energy = e0.copy()
    power = np.zeros((n, width))
    for k in range(width):
        target = np.where(
            up_to[k] > energy, up_to[k], np.where(down_to[k] < energy, down_to[k], energy)
        )
        low = np.maximum(dom_lo[k], energy - y_kwh[:, k])
        high = np.minimum(dom_hi[k], energy + x_kwh[:, k])
        nxt = np.minimum(np.maximum(target, low), high)
        delta = nxt - energy
        power[:, k] = np.where(delta > 0, delta / gain[:, 0], delta / drain[:, 0])
        energy = nxt
    out = np.zeros((n, slots))
    car_i, slot_i = np.nonzero(inside)  # t repeats slots - 1 past a window: write inside only
    out[car_i, t[car_i, slot_i]] = power[car_i, slot_i]
    return out
