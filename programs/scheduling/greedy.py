"""The exact cheapest-slot fill for charge-only cars, vectorised across the whole fleet.

For a car that can only charge, the LP (minimise the departure shortfall, then the linear cost) has
a closed-form optimum: owe the floor first (full power from plug-in), then fill the cheapest plugged
slots until the target is met, and keep filling slots whose cost is negative until the ceiling.
Because every car on a tariff sees the same price order, one argsort per cost row serves the whole
fleet; the rest is a cumulative sum along the sorted slots. The planner and the event phase-one
response call `fill_cheapest`; `tests/scheduling` checks it against the HiGHS LP reference.
"""

from __future__ import annotations

import numpy as np

from programs.scheduling.model import FloatArray, IntArray


def fill_cheapest(
    *,
    cost: FloatArray,
    group: IntArray | None,
    gain: FloatArray,
    need_kwh: FloatArray,
    room_kwh: FloatArray,
    available_kw: FloatArray | None = None,
    window: tuple[IntArray, IntArray, FloatArray] | None = None,
    reserved_kw: FloatArray | None = None,
) -> FloatArray:
    """Extra charging (kW, shape (N, T)) on top of whatever is already planned.

    cost: (G, T) cost per kW per slot for each cost row, or (T,) for one row shared by all.
    group: (N,) the cost row of each car (None when `cost` is one row).
    The headroom per slot is either `available_kw` (N, T), or `window` = (start, end, max_kw): full
    power in [start, end), less `reserved_kw` (N, T) where given (the floor's forced charging).
    gain: (N,) kWh stored per kW for one slot.
    need_kwh: (N,) energy still missing for the target; room_kwh: (N,) energy left to the ceiling.
    Fills cheapest-first until `need_kwh` (never beyond `room_kwh`), and keeps filling slots of
    negative cost until `room_kwh`; equal to the LP optimum because costs are linear and the fill
    is a fractional knapsack in price order.
    """
    rows = np.atleast_2d(cost)
    order = np.argsort(rows, axis=1, kind="stable")
    sorted_cost = np.take_along_axis(rows, order, axis=1)
    negative_slots = (sorted_cost < 0).sum(axis=1)
    single = rows.shape[0] == 1
    if not single and group is None:
        raise ValueError("group is required with several cost rows")
    n_cars = len(gain)
    # Slot-major (T, N) layout: the k-th cheapest slot of every car is one contiguous row, so the
    # cumulative sum runs over rows and putting slots back in time order moves whole rows.
    if window is not None:
        start, end, max_kw = window
        small = np.int16 if rows.shape[1] < 2**15 else np.int64
        slot_of = order[0].astype(small)[:, None] if single else order[group].T.astype(small)
        inside = (slot_of >= start.astype(small)[None, :]) & (slot_of < end.astype(small)[None, :])
        avail = inside * max_kw[None, :]
        if reserved_kw is not None:
            busy = np.flatnonzero(reserved_kw.any(axis=1))
            if len(busy):
                held = (
                    reserved_kw[busy][:, order[0]]
                    if single
                    else np.take_along_axis(reserved_kw[busy], order[group[busy]], axis=1)
                )
                avail[:, busy] -= held.T
    elif available_kw is not None:
        avail = np.ascontiguousarray(
            available_kw[:, order[0]].T
            if single
            else np.take_along_axis(available_kw, order[group], axis=1).T
        )
    else:
        raise ValueError("either available_kw or window is required")
    n_negative = np.full(n_cars, negative_slots[0]) if single else negative_slots[group]
    # Work in kW-slots: cumulative headroom along the price order.
    cumulative = np.cumsum(avail, axis=0)
    idx = np.clip(n_negative - 1, 0, None)
    neg_kw = np.where(n_negative > 0, cumulative[idx, np.arange(n_cars)], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        need_kw = np.where(gain > 0, need_kwh / gain, 0.0)
        room_kw = np.where(gain > 0, room_kwh / gain, 0.0)
    goal = np.maximum(np.minimum(np.maximum(need_kw, neg_kw), room_kw), 0.0)
    # take = clip(goal - (cumulative - avail), 0, avail), computed in place.
    take = cumulative
    np.subtract(goal[None, :], take, out=take)
    take += avail
    np.clip(take, 0.0, avail, out=take)
    if single:
        out = np.empty_like(take)
        out[order[0]] = take
        return out.T  # (N, T) view of the slot-major array; no copy
    back = np.empty((n_cars, take.shape[0]))
    np.put_along_axis(back, order[group], take.T, axis=1)
    return back


def fill_window(
    *,
    cost: FloatArray,
    start: IntArray,
    end: IntArray,
    max_kw: FloatArray,
    gain: FloatArray,
    need_kwh: FloatArray,
    room_kwh: FloatArray,
) -> FloatArray:
    """`fill_cheapest` for one shared cost row and full power in each car's window [start, end),
    with nothing reserved: the same plan (the same tie order), without a cumulative sum over the
    fleet. Each car charges at full power in its k cheapest plugged slots and takes the remainder
    in the next one; the k-th cheapest plugged slot comes from a table counting, for every price
    rank r and slot t, the slots before t cheaper than rank r, by bisection over r."""
    slots = len(cost)
    order = np.argsort(cost, kind="stable")
    rank = np.empty(slots, np.int64)
    rank[order] = np.arange(slots)
    # below[r, t]: slots before t whose price rank is < r.
    below = np.zeros((slots + 1, slots + 1), np.int64)
    np.cumsum(rank[None, :] < np.arange(slots + 1)[:, None], axis=1, out=below[:, 1:])

    def cheaper_in_window(r: IntArray) -> IntArray:
        return below[r, end] - below[r, start]

    length = end - start
    n_negative = int((cost < 0).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        need_kw = np.where(gain > 0, need_kwh / gain, 0.0)
        room_kw = np.where(gain > 0, room_kwh / gain, 0.0)
    negative_kw = max_kw * cheaper_in_window(np.full(len(start), n_negative))
    goal = np.maximum(np.minimum(np.maximum(need_kw, negative_kw), room_kw), 0.0)
    goal = np.minimum(goal, max_kw * length)
    with np.errstate(divide="ignore", invalid="ignore"):
        full = np.where(max_kw > 0, np.floor(goal / max_kw), 0.0).astype(np.int64)
    full = np.minimum(full, length)
    rest = np.where(full < length, goal - full * max_kw, 0.0)
    # Smallest r with full + 1 plugged slots of rank < r: rank r - 1 is the partial slot.
    lo = np.zeros(len(start), np.int64)
    hi = np.full(len(start), slots)
    for _ in range(int(np.ceil(np.log2(slots + 1))) + 1):
        mid = (lo + hi) // 2
        enough = cheaper_in_window(mid) >= full + 1
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid + 1)
    threshold = np.where(full < length, hi - 1, slots)  # full power below this rank
    t = np.arange(slots, dtype=np.int16 if slots < 2**15 else np.int64)
    on = np.less(rank.astype(t.dtype)[None, :], threshold.astype(t.dtype)[:, None])
    on &= t[None, :] >= start.astype(t.dtype)[:, None]
    on &= t[None, :] < end.astype(t.dtype)[:, None]
    power = on * max_kw[:, None]
    partial = np.flatnonzero(rest > 0)
    power[partial, order[threshold[partial]]] = rest[partial]
    return power
