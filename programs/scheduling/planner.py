"""Fleet planning: picks the exact method per car, couples feeders and events, labels every slot.

Called by the Django services (through `plan_fleet` and `respond_to_events`) and by the CLI.
- Charge-only cars on their own: the vectorised cheapest-slot fill (`greedy.fill_cheapest`).
- V2G cars on their own: the exact per-car dynamic programme, vectorised (`v2g.plan_v2g_exact`);
  the LP in HiGHS blocks (`lp.solve_lp`) remains as `plan_v2g(method="lp")`.
- A feeder whose cap the independent plans would breach, or that an event touches and the
  independent plans do not already satisfy: one lexicographic LP for that feeder's cars. An event
  on every feeder is split into per-feeder targets from the phase-one response.
- Events, phase one (`respond_to_events`): a greedy, vectorised response that keeps every departure
  and the floor and meets the kW where the cars can; phase two is `plan_fleet`, the optimal replan.
"""

from __future__ import annotations

import time

import numpy as np

from programs.scheduling.greedy import fill_cheapest, fill_window
from programs.scheduling.lp import (
    Coupling,
    discharge_allowed,
    net_power,
    new_highs,
    solve_lp,
)
from programs.scheduling.model import (
    BoolArray,
    Derived,
    EventKind,
    Fleet,
    FloatArray,
    IntArray,
    Plan,
    Problem,
    Reason,
    Signals,
    charge_cost_per_kw,
    derive,
    discharge_cost_per_kw,
    plan_cost,
    soc_trajectory,
    window_mask,
)
from programs.scheduling.v2g import plan_v2g_exact

# Cars per HiGHS model: enough to amortise the call overhead, few enough for a fast sparse solve.
V2G_BLOCK_CARS = 250
CAP_TOLERANCE_KW = 1e-6
SHORTFALL_REPORT_KWH = 1e-5  # below this (LP rounding, 0.01 Wh) a departure counts as met


def plan_charge_only(
    fleet: Fleet,
    derived: Derived,
    signals: Signals,
    dt_h: float,
    slots: int,
    *,
    cost: FloatArray | None = None,
    group: IntArray | None = None,
) -> FloatArray:
    """(N, T) the exact charge-only plan: the floor's forced charging plus the cheapest fill."""
    forced = derived.forced_kw
    busy = np.flatnonzero(derived.forced_slots > 0)
    if cost is None and len(busy) < fleet.size:
        # One tariff: the cars owing nothing to the floor take the table-driven fill (no (T, N)
        # cumulative sum); the others the general one. Same plans, ~3x faster on a large fleet.
        out = fill_window(  # every row (cheaper than gathering the free ones), busy ones redone
            cost=charge_cost_per_kw(signals, dt_h),
            start=derived.start,
            end=derived.end,
            max_kw=fleet.max_charge_kw,
            gain=derived.charge_gain,
            need_kwh=np.maximum(derived.target - derived.e0, 0.0),
            room_kwh=np.maximum(derived.ceiling - derived.e0, 0.0),
        )
        if len(busy):
            sub = fleet.take(busy)
            out[busy] = plan_charge_only(sub, derive(sub, slots, dt_h), signals, dt_h, slots)
        return out
    forced_kwh = np.zeros(fleet.size)
    forced_kwh[busy] = forced[busy].sum(axis=1) * derived.charge_gain[busy]
    base = derived.e0 + forced_kwh
    extra = fill_cheapest(
        cost=charge_cost_per_kw(signals, dt_h) if cost is None else cost,
        group=group,
        window=(derived.start, derived.end, fleet.max_charge_kw),
        reserved_kw=forced,
        gain=derived.charge_gain,
        need_kwh=np.maximum(derived.target - base, 0.0),
        room_kwh=np.maximum(derived.ceiling - base, 0.0),
    )
    extra[busy] += forced[busy]
    return extra


def plan_v2g(
    fleet: Fleet,
    derived: Derived,
    signals: Signals,
    dt_h: float,
    slots: int,
    *,
    method: str = "exact",
    block: int = V2G_BLOCK_CARS,
) -> FloatArray:
    """(N, T) the optimal plan of each V2G car on its own.

    method "exact": the vectorised dynamic programme of `v2g.plan_v2g_exact` (the default, ~10x
    faster); "lp": the per-car LP, `block` cars per HiGHS model (kept for comparison).
    """
    if method == "exact":
        return plan_v2g_exact(fleet, derived, signals, dt_h, slots)
    power = np.zeros((fleet.size, slots))
    highs = new_highs()
    for lo in range(0, fleet.size, block):
        index = np.arange(lo, min(lo + block, fleet.size))
        sub_fleet = fleet.take(index)
        sub = derive(sub_fleet, slots, dt_h)
        result = solve_lp(
            fleet=sub_fleet,
            derived=sub,
            signals=signals,
            dt_h=dt_h,
            slots=slots,
            departure_fixed=True,
            highs=highs,
        )
        power[index] = net_power(result.charge_kw, result.discharge_kw, sub)
    return power


def plan_independent(problem: Problem, derived: Derived) -> FloatArray:
    """(N, T) every car planned on its own (no feeder caps, no events): exact per car."""
    fleet = problem.fleet
    power = np.zeros((fleet.size, problem.slots))
    charge_only = ~derived.v2g
    if charge_only.any():
        idx = np.flatnonzero(charge_only)
        sub = fleet.take(idx)
        power[idx] = plan_charge_only(
            sub,
            derive(sub, problem.slots, problem.dt_h),
            problem.signals,
            problem.dt_h,
            problem.slots,
        )
    if derived.v2g.any():
        idx = np.flatnonzero(derived.v2g)
        sub = fleet.take(idx)
        power[idx] = plan_v2g(
            sub,
            derive(sub, problem.slots, problem.dt_h),
            problem.signals,
            problem.dt_h,
            problem.slots,
        )
    return power


def _event_members(problem: Problem, feeder: int) -> BoolArray:
    return problem.fleet.feeder == feeder if feeder >= 0 else np.ones(problem.fleet.size, bool)


def _event_limit(kind: EventKind, kw: float) -> float:
    """Every event as a cap on net import: an export request of kw is net import <= -kw."""
    return kw if kind == EventKind.IMPORT_CAP else -kw


def _event_slots(problem: Problem, start: int, end: int) -> IntArray:
    return np.arange(max(start, 0), min(end, problem.slots))


def _net_import(power: FloatArray, members: BoolArray) -> FloatArray:
    return power[members].sum(axis=0)


def _caps_breached(problem: Problem, power: FloatArray) -> BoolArray:
    """(F,) True for feeders whose cap the plan breaches in some slot."""
    out = np.zeros(len(problem.feeder_names), bool)
    for f in range(len(problem.feeder_names)):
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
    if global_unmet:
        groups |= {int(f) for f in np.unique(fleet.feeder)}
        fast = respond_to_events(problem, base=power)
        shares = _split_global_events(problem, global_unmet, fast.power_kw)
    for feeder in sorted(groups):
        members = fleet.feeder == feeder
        if not members.any():
            continue
        power[members] = _plan_group(problem, feeder, members, shares, time_limit_s)
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
) -> FloatArray:
    """The lexicographic LP for one feeder's cars (feeder -1: cars without a feeder)."""
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


def respond_to_events(problem: Problem, *, base: FloatArray | None = None) -> Plan:
    """Phase one of an event: a fast, feasible response.

    Cars an event touches are re-planned by the cheapest fill with the event slots priced out (so
    they charge there only what their departure needs), then V2G cars discharge in the event slots
    what they can give back before departure without touching their floor, scaled per slot to the
    kW asked, and recharge it afterwards in the cheapest free slots. Departures and floors are kept
    by construction. `base` is the plan in force (the independent plan when None); any feeder whose
    cap the response would breach keeps its base plan and waits for phase two.
    """
    began = time.perf_counter()
    fleet = problem.fleet
    slots, dt_h = problem.slots, problem.dt_h
    derived = derive(fleet, slots, dt_h)
    if base is None:
        base = plan_independent(problem, derived)
    power = base.copy()
    event_mask = np.zeros((fleet.size, slots), bool)
    for event in problem.events:
        slot_idx = _event_slots(problem, event.start_slot, event.end_slot)
        members = _event_members(problem, event.feeder)
        event_mask[np.ix_(members, slot_idx)] = True
    touched = event_mask.any(axis=1)
    if touched.any():
        idx = np.flatnonzero(touched)
        power[idx] = _fast_response(problem, fleet.take(idx), event_mask[idx], power, idx)
        breached = _caps_breached(problem, power)
        for f in np.flatnonzero(breached):
            members = fleet.feeder == f
            power[members] = base[members]
    plan = finish_plan(problem, derived, power)
    plan.solve_seconds = time.perf_counter() - began
    return plan


def _fast_response(
    problem: Problem, fleet: Fleet, event_mask: BoolArray, power_all: FloatArray, idx: IntArray
) -> FloatArray:
    slots, dt_h, signals = problem.slots, problem.dt_h, problem.signals
    derived = derive(fleet, slots, dt_h)
    base_cost = charge_cost_per_kw(signals, dt_h)
    penalty = 1e3 * (np.abs(base_cost).max() + 1.0)  # above any price: event slots only if needed
    patterns, group = np.unique(event_mask, axis=0, return_inverse=True)
    cost = base_cost[None, :] + penalty * patterns
    charge = plan_charge_only(fleet, derived, signals, dt_h, slots, cost=cost, group=group.ravel())
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
    power_all = power_all.copy()
    power_all[idx] = charge
    for event in problem.events:
        slot_idx = _event_slots(problem, event.start_slot, event.end_slot)
        members_all = _event_members(problem, event.feeder)
        members = members_all[idx]
        load = _net_import(power_all, members_all)[slot_idx]
        need = load - _event_limit(event.kind, event.kw)
        offer = np.where(eligible[:, slot_idx] & members[:, None], rate[:, None], 0.0)
        offer = np.maximum(offer - discharge[:, slot_idx], 0.0)
        total = offer.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.clip(np.where(total > 0, need / total, 0.0), 0.0, 1.0)
        add = offer * alpha[None, :]
        discharge[:, slot_idx] += add
        power_all[idx[:, None], slot_idx[None, :]] -= add
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


def finish_plan(problem: Problem, derived: Derived, power: FloatArray) -> Plan:
    """SoC, shortfall, cost, reasons and event delivery for a power plan."""
    fleet = problem.fleet
    window = window_mask(derived, problem.slots)
    power = np.where(window, power, 0.0)
    soc = soc_trajectory(power, derived, fleet.capacity_kwh)
    final = soc[np.arange(fleet.size), derived.end] * fleet.capacity_kwh
    shortfall = np.maximum(derived.target - final, 0.0)
    shortfall = np.where(shortfall < SHORTFALL_REPORT_KWH, 0.0, shortfall)
    cost = plan_cost(power, problem.signals, problem.dt_h, fleet)
    delivered: dict[str, FloatArray] = {}
    missing: dict[str, FloatArray] = {}
    event_slot = np.zeros((fleet.size, problem.slots), bool)
    for event in problem.events:
        slots = _event_slots(problem, event.start_slot, event.end_slot)
        members = _event_members(problem, event.feeder)
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
    reasons = label_slots(problem, derived, power, event_slot, feeder_full)
    return Plan(power, soc, shortfall, cost, reasons, delivered, missing)


def label_slots(
    problem: Problem,
    derived: Derived,
    power: FloatArray,
    event_slot: BoolArray,
    feeder_full: BoolArray,
) -> np.ndarray:
    """(N, T) Reason codes: why each slot charges, discharges or rests."""
    window = window_mask(derived, problem.slots)
    signals = problem.signals
    carbon = signals.carbon_weight * signals.carbon_g_per_kwh
    carbon_led = np.ptp(carbon) > np.ptp(signals.import_price)
    reasons = np.full(power.shape, int(Reason.IDLE), np.int8)
    charging = power > 1e-9
    reasons[charging] = int(Reason.CARBON if carbon_led else Reason.CHEAPEST)
    forced = charging & (derived.forced_kw > 0)
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
