"""The exact plan of a feeder's charge-only cars under its import cap, by flow augmentation.

`planner.plan_fleet` calls `plan_capped_charge_only` for a feeder whose cap the independent plans
breach, before falling back to the feeder LP. It answers the same lexicographic LP (floor, then
departure shortfall, then cost) in the cases it accepts, and returns None for the others.

Why it is exact. For charge-only cars the cost of a kW depends on the slot only (import price plus
carbon), not on the car, so the LP is a min-cost flow: cars supply their energy, each car reaches
the slots of its window (at most its free power per slot), slots drain to the grid at their cost
up to the cap. Any path that moves energy from slot a to slot b (car 1 moves from a to a', car 2
from a' to a'', ..., into b) costs cost[b] - cost[a], whatever the cars in between. Starting from
each car's own optimum (the exact cheapest fill, which the cap may breach):
1. while a slot is over its cap, move its excess along such a path to the cheapest slot with spare
   room that any path reaches (a breadth-first search over the T slots); no path means the cap
   cannot hold without a shortfall, and the LP decides;
2. while some slot a that carries energy reaches a spare slot b with cost[b] < cost[a], move it.
When 2 finds nothing, the flow has no negative cycle: it is optimal (the min-cost flow optimality
condition), with every car's energy, so every departure, as in its own plan.

Each move is made in bulk: every car that can take part in a hop takes part in proportion to what
it can move, so one move saturates a whole hop (or the excess, or the spare room). The search uses
a T x T count of the cars linking each pair of slots, kept up to date per move, so a move costs
O(N T) numpy work.

Accepted: charge-only cars, costs >= 0 in every slot (a negative slot would make cars fill beyond
their target, a supply this flow does not model), the floor's forced charging within the cap.
"""

from __future__ import annotations

import itertools

import numpy as np

from programs.scheduling.model import BoolArray, FloatArray, IntArray

FLOW_TOL_KW = 1e-9  # amounts below this (a micro-watt) are rounding, not room to move energy
CAP_SLACK_KW = 1e-7  # the final cap check; outcome.CAP_TOLERANCE_KW (reporting) is 1e-6
MAX_MOVES = 20_000  # a guard: past this many moves, hand the feeder to the LP


def plan_capped_charge_only(
    *,
    power: FloatArray,
    forced: FloatArray,
    max_kw: FloatArray,
    start: IntArray,
    end: IntArray,
    caps: FloatArray,
    cost: FloatArray,
) -> FloatArray | None:
    """(n, T) the least-cost plan with every car's energy as in `power` and the feeder's net
    import within `caps`, or None when the case is outside the method (see the module docstring).

    power: (n, T) each car's own optimal charge-only plan (forced charging included);
    forced: (n, T) the floor's forced charging; max_kw, start, end: (n,) power and plug window;
    caps: (T,) the feeder cap, inf where there is none; cost: (T,) cost per kW per slot.
    """
    slots = power.shape[1]
    if np.any(cost < 0):
        return None
    t = np.arange(slots)
    window = (t[None, :] >= start[:, None]) & (t[None, :] < end[:, None])
    upper = np.maximum(np.where(window, max_kw[:, None], 0.0) - forced, 0.0)
    x = np.clip(power - forced, 0.0, upper)
    limit = np.maximum(caps, 0.0) - forced.sum(axis=0)
    if np.any(limit < -CAP_SLACK_KW):
        return None  # the floors alone breach the cap: the LP curtails them
    # Slot-major (T, n) copies: every step reads and writes whole slots.
    xs = np.ascontiguousarray(x.T)
    up = np.ascontiguousarray(upper.T)
    graph = _SlotGraph(xs, up)
    load = xs.sum(axis=1)
    for _ in range(MAX_MOVES):
        over = load - limit
        spare = np.where(np.isfinite(limit), limit - load, np.inf) > FLOW_TOL_KW
        excess = over > FLOW_TOL_KW
        adjacency = graph.adjacency()
        if excess.any():
            path = _path(adjacency, excess, spare & ~excess, cost)
            if path is None:
                return None  # the cap cannot hold with every departure kept
            amount = over[path[0]]
        else:
            path = _improving_path(adjacency, load, spare, cost)
            if path is None:
                break
            amount = np.inf
        if np.isfinite(limit[path[-1]]):
            amount = min(amount, limit[path[-1]] - load[path[-1]])
        moved = _move(xs, up, path, amount)
        load[path[0]] -= moved  # the slots in between pass the energy on: their load holds
        load[path[-1]] += moved
        graph.update(path)
    else:
        return None
    if np.any(xs.sum(axis=1) > limit + CAP_SLACK_KW):
        return None
    return forced + xs.T


class _SlotGraph:
    """Which slot can pass energy to which: count[a, b] is the number of cars that charge in slot
    a and have free power in slot b. A move changes only the slots on its path, so only their rows
    and columns are recounted. Per slot, the cars are bit sets (64 cars a word), so a recount is
    a popcount of a few hundred words, not a BLAS call (which threads badly on a busy machine)."""

    def __init__(self, xs: FloatArray, up: FloatArray) -> None:
        self.xs, self.up = xs, up
        slots, cars = xs.shape
        self.bytes = -(-cars // 64) * 8  # whole 64-bit words per slot
        self.has = np.zeros((slots, self.bytes // 8), np.uint64)
        self.room = np.zeros_like(self.has)
        every = np.arange(slots)
        self.count = np.zeros((slots, slots), np.int64)
        self.update(list(every))

    def _pack(self, p: IntArray) -> None:
        buf = np.zeros((len(p), self.bytes), np.uint8)
        buf[:, : -(-self.xs.shape[1] // 8)] = np.packbits(self.xs[p] > FLOW_TOL_KW, axis=1)
        self.has[p] = buf.view(np.uint64)
        buf[:, : -(-self.xs.shape[1] // 8)] = np.packbits(
            self.up[p] - self.xs[p] > FLOW_TOL_KW, axis=1
        )
        self.room[p] = buf.view(np.uint64)

    def update(self, path: list[int]) -> None:
        p = np.array(path)
        self._pack(p)
        self.count[p] = np.bitwise_count(self.has[p][:, None, :] & self.room[None, :, :]).sum(-1)
        self.count[:, p] = np.bitwise_count(self.has[:, None, :] & self.room[p][None, :, :]).sum(-1)

    def adjacency(self) -> BoolArray:
        adjacency = self.count > 0
        np.fill_diagonal(adjacency, False)
        return adjacency


def _path(
    adjacency: BoolArray,
    sources: BoolArray,
    targets: BoolArray,
    cost: FloatArray,
) -> list[int] | None:
    """The fewest-hop path from a source slot to the cheapest target slot reachable, as a list of
    slots; None when there is none."""
    levels = [sources]
    reached = sources.copy()
    while True:
        step = adjacency[levels[-1]].any(axis=0)
        step &= ~reached
        if not step.any():
            break
        reached |= step
        levels.append(step)
    candidates = reached & targets & ~sources
    if not candidates.any():
        return None
    idx = np.flatnonzero(candidates)
    node = int(idx[np.argmin(cost[idx])])
    depth = next(k for k, level in enumerate(levels) if level[node])
    path = [node]
    for level in levels[depth - 1 :: -1]:  # back through the levels, any edge into the path
        node = int(np.argmax(level & adjacency[:, node]))
        path.append(node)
    return path[::-1]


def _improving_path(
    adjacency: BoolArray, load: FloatArray, spare: BoolArray, cost: FloatArray
) -> list[int] | None:
    """A path from a loaded slot a to a spare slot b with cost[b] < cost[a] (the pair that saves
    the most per kW), or None: then the flow is optimal."""
    slots = len(load)
    reach = adjacency | np.eye(slots, dtype=bool)
    for _ in range(int(np.ceil(np.log2(max(slots, 2))))):  # transitive closure by squaring
        wider = (reach.astype(np.float32) @ reach.astype(np.float32)) > 0.5
        if np.array_equal(wider, reach):
            break
        reach = wider
    margin = 1e-12 * max(1.0, float(np.abs(cost).max(initial=0.0)))
    saving = cost[:, None] - cost[None, :]
    ok = reach & (load > FLOW_TOL_KW)[:, None] & spare[None, :] & (saving > margin)
    if not ok.any():
        return None
    a, b = np.unravel_index(np.argmax(np.where(ok, saving, -np.inf)), ok.shape)
    source = np.zeros(slots, bool)
    source[a] = True
    target = np.zeros(slots, bool)
    target[b] = True
    return _path(adjacency, source, target, cost)


def _move(xs: FloatArray, up: FloatArray, path: list[int], amount: float) -> float:
    """Move up to `amount` kW along `path`, every car of each hop in proportion to what it can
    move; returns the kW moved. A simple path uses each slot at most once as a hop's origin and
    once as a destination, so each xs[slot, car] goes down by at most what it holds or up by at
    most its free power."""
    shares = []
    for a, b in itertools.pairwise(path):
        can = np.minimum(xs[a], up[b] - xs[b])
        can[can <= FLOW_TOL_KW] = 0.0
        total = float(can.sum())
        can /= total if total > 0 else 1.0
        shares.append(can)
        amount = min(amount, total)
    if amount <= 0:
        raise RuntimeError("a reachable hop carries nothing")  # the graph and the hops disagree
    for (a, b), share in zip(itertools.pairwise(path), shares, strict=True):
        share *= amount
        np.maximum(xs[a] - share, 0.0, out=xs[a])
        np.minimum(xs[b] + share, up[b], out=xs[b])
    return amount
