"""Plain data for the planning core: the problem (fleet, signals, feeders, events) and the plan.

Everything is a dataclass of numpy arrays, one entry per vehicle (axis 0) and per 15-minute slot
(axis 1), so the solvers work on whole fleets at once. The Django layer builds a `Problem` from the
ORM and stores the `Plan`; `programs.scheduling.jsonio` does the same from and to JSON.
`derive` turns the owner-facing fractions into the kWh bounds every solver shares, so the greedy
fill, the V2G LP and the LP reference agree on what "the floor" or "the target" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


class Reason(IntEnum):
    """Why a slot of a plan does what it does; feeds the owner's one-line "why"."""

    UNPLUGGED = 0
    IDLE = 1
    FLOOR = 2
    BOOST = 3
    CHEAPEST = 4
    CARBON = 5
    EVENT = 6
    EXPORT = 7
    FEEDER = 8


REASON_NAMES: dict[Reason, str] = {
    Reason.UNPLUGGED: "unplugged",
    Reason.IDLE: "idle",
    Reason.FLOOR: "floor",
    Reason.BOOST: "boost",
    Reason.CHEAPEST: "cheapest",
    Reason.CARBON: "carbon",
    Reason.EVENT: "event",
    Reason.EXPORT: "export",
    Reason.FEEDER: "feeder",
}


class EventKind(IntEnum):
    IMPORT_CAP = 0
    EXPORT_REQUEST = 1


@dataclass(frozen=True)
class Fleet:
    """Per-vehicle parameters, each an array of length N. SoC values are fractions 0–1."""

    capacity_kwh: FloatArray
    soc: FloatArray
    min_soc: FloatArray
    max_soc: FloatArray
    target_soc: FloatArray
    plug_slot: IntArray
    departure_slot: IntArray
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    v2g_min_soc: FloatArray
    degradation_cost_per_kwh: FloatArray
    feeder: IntArray  # index into Problem.feeder_names, -1 for none
    boost: BoolArray  # owner pressed boost: the target becomes the floor, full power until reached

    @property
    def size(self) -> int:
        return int(self.capacity_kwh.shape[0])

    def take(self, index: IntArray | BoolArray) -> Fleet:
        """The sub-fleet at `index`, e.g. the cars of one feeder."""
        return Fleet(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    @staticmethod
    def build(
        n: int,
        *,
        capacity_kwh: float | FloatArray = 60.0,
        soc: float | FloatArray = 0.3,
        min_soc: float | FloatArray = 0.2,
        max_soc: float | FloatArray = 1.0,
        target_soc: float | FloatArray = 0.8,
        plug_slot: int | IntArray = 0,
        departure_slot: int | IntArray = 96,
        max_charge_kw: float | FloatArray = 7.4,
        max_discharge_kw: float | FloatArray = 0.0,
        charge_efficiency: float | FloatArray = 0.92,
        discharge_efficiency: float | FloatArray = 0.92,
        v2g_min_soc: float | FloatArray = 0.0,
        degradation_cost_per_kwh: float | FloatArray = 0.0,
        feeder: int | IntArray = -1,
        boost: bool | BoolArray = False,
    ) -> Fleet:
        """A fleet of `n` cars from scalars or arrays (scalars broadcast), for tests and benches."""

        def f(value: float | FloatArray) -> FloatArray:
            return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()

        def i(value: int | IntArray) -> IntArray:
            return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy()

        return Fleet(
            capacity_kwh=f(capacity_kwh),
            soc=f(soc),
            min_soc=f(min_soc),
            max_soc=f(max_soc),
            target_soc=f(target_soc),
            plug_slot=i(plug_slot),
            departure_slot=i(departure_slot),
            max_charge_kw=f(max_charge_kw),
            max_discharge_kw=f(max_discharge_kw),
            charge_efficiency=f(charge_efficiency),
            discharge_efficiency=f(discharge_efficiency),
            v2g_min_soc=f(v2g_min_soc),
            degradation_cost_per_kwh=f(degradation_cost_per_kwh),
            feeder=i(feeder),
            boost=np.broadcast_to(np.asarray(boost, dtype=np.bool_), (n,)).copy(),
        )


@dataclass(frozen=True)
class Signals:
    """Per-slot prices (currency per kWh) and carbon intensity (g per kWh), each of length T."""

    import_price: FloatArray
    export_price: FloatArray
    carbon_g_per_kwh: FloatArray
    carbon_weight: float = 0.0  # currency per gram

    @staticmethod
    def flat(slots: int, price: float = 0.2) -> Signals:
        zeros = np.zeros(slots)
        return Signals(np.full(slots, price), zeros.copy(), zeros.copy(), 0.0)


@dataclass(frozen=True)
class Event:
    """A grid event: an import cap or an export request of `kw` in slots [start_slot, end_slot)."""

    id: str
    kind: EventKind
    start_slot: int
    end_slot: int
    kw: float
    feeder: int = -1  # -1: every car in the problem


@dataclass(frozen=True)
class Problem:
    start: datetime
    slots: int
    signals: Signals
    fleet: Fleet
    vehicle_ids: list[str]
    slot_minutes: int = 15
    feeder_names: list[str] = field(default_factory=list)
    feeder_caps_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (F, T), inf=none
    events: list[Event] = field(default_factory=list)

    @property
    def dt_h(self) -> float:
        return self.slot_minutes / 60.0

    @staticmethod
    def simple(fleet: Fleet, signals: Signals, **kwargs: object) -> Problem:
        """A problem starting at a fixed UTC midnight with generated vehicle ids."""
        slots = int(signals.import_price.shape[0])
        return Problem(
            start=datetime(2025, 1, 1, tzinfo=UTC),
            slots=slots,
            signals=signals,
            fleet=fleet,
            vehicle_ids=[f"v{n}" for n in range(fleet.size)],
            **kwargs,  # type: ignore[arg-type]
        )


@dataclass
class Plan:
    """The answer: per-car power (kW, positive charges) and SoC (fraction, T+1 points)."""

    power_kw: FloatArray  # (N, T)
    soc: FloatArray  # (N, T+1)
    shortfall_kwh: FloatArray  # (N,)
    cost: FloatArray  # (N,)
    reasons: NDArray[np.int8]  # (N, T) Reason codes
    event_delivered_kw: dict[str, FloatArray] = field(default_factory=dict)
    event_shortfall_kw: dict[str, FloatArray] = field(default_factory=dict)
    solve_seconds: float = 0.0

    @property
    def total_cost(self) -> float:
        return float(self.cost.sum())


@dataclass(frozen=True)
class Derived:
    """The kWh bounds every solver shares, computed once per fleet (N cars, T slots)."""

    start: IntArray  # first plugged slot, clipped to [0, T]
    end: IntArray  # departure slot, clipped to [start, T]
    e0: FloatArray  # stored energy now, kWh
    floor: FloatArray  # kWh; the V2G floor for V2G cars, the target for boosted cars
    ceiling: FloatArray  # kWh; max(max_soc, soc) * capacity
    target: FloatArray  # kWh (may exceed the ceiling: then the shortfall is unavoidable)
    charge_gain: FloatArray  # kWh stored per kW charged for one slot: eta_c * dt
    discharge_drain: FloatArray  # kWh drained per kW discharged for one slot: dt / eta_d
    v2g: BoolArray
    reachable: FloatArray  # the most energy the car can hold at departure on its own
    owed_kwh: FloatArray  # what the floor makes the car charge at full power from plug-in
    max_charge_kw: FloatArray
    forced_slots: IntArray  # number of slots, from start, that carry forced charging
    slots: int  # T

    def take(self, index: IntArray | BoolArray) -> Derived:
        """The bounds of the sub-fleet at `index` (what `derive` gives for `Fleet.take(index)`)."""
        sub = Derived(
            **{
                name: value if name == "slots" else value[index]
                for name in self.__dataclass_fields__
                for value in [getattr(self, name)]
            }
        )
        if "forced_kw" in self.__dict__:  # already built: slice it rather than build it again
            sub.__dict__["forced_kw"] = self.__dict__["forced_kw"][index]
        return sub

    def forced_at(self, cars: IntArray, offset: IntArray) -> FloatArray:
        """The floor's forced charging (kW) of `cars` in the slot `offset` after plug-in (arrays
        that broadcast): full power until the floor is reached, the remainder in the last slot."""
        left = self.owed_kwh[cars] - offset * (self.max_charge_kw * self.charge_gain)[cars]
        kw = np.clip(left / self.charge_gain[cars], 0.0, self.max_charge_kw[cars])
        inside = (offset >= 0) & (offset < (self.end - self.start)[cars])
        return np.where(inside, kw, 0.0)

    @cached_property
    def forced_kw(self) -> FloatArray:
        """(N, T) the floor's forced charging. Built on first use: most callers (the table fill
        of a large fleet above all) need only `forced_slots` and `forced_at`."""
        forced = np.zeros((len(self.start), self.slots))
        low = np.flatnonzero(self.forced_slots > 0)
        offset = np.arange(self.slots)[None, :] - self.start[low, None]
        forced[low] = self.forced_at(low[:, None], offset)
        return forced


def _forced_slot_count(owed: FloatArray, full: FloatArray, length: IntArray) -> IntArray:
    """How many slots from plug-in carry forced charging: those k < length with k * full < owed
    (the test `forced_at` applies, in the same floating-point arithmetic)."""
    count = np.zeros(len(owed), np.int64)
    ok = (owed > 0) & (full > 0) & (length > 0)
    o, f = owed[ok], full[ok]
    k = np.ceil(o / f).astype(np.int64)
    for _ in range(2):  # the division may round either way: settle on the exact boundary
        k = np.where(k * f < o, k + 1, k)
        k = np.where((k > 0) & ((k - 1) * f >= o), k - 1, k)
    count[ok] = np.minimum(k, length[ok])
    return count


def derive(fleet: Fleet, slots: int, dt_h: float) -> Derived:
    """Resolve fractions to kWh, the plug window to slots and the floor's forced charging."""
    cap = fleet.capacity_kwh
    start = np.clip(fleet.plug_slot, 0, slots)
    end = np.clip(fleet.departure_slot, start, slots)
    e0 = fleet.soc * cap
    ceiling = np.maximum(fleet.max_soc * cap, e0)
    v2g = fleet.max_discharge_kw > 0
    floor_frac = np.where(v2g, np.maximum(fleet.min_soc, fleet.v2g_min_soc), fleet.min_soc)
    floor_frac = np.where(fleet.boost, np.maximum(floor_frac, fleet.target_soc), floor_frac)
    floor = np.minimum(floor_frac * cap, ceiling)
    charge_gain = fleet.charge_efficiency * dt_h
    discharge_drain = dt_h / fleet.discharge_efficiency
    length = end - start
    full = fleet.max_charge_kw * charge_gain  # kWh per slot at full power
    reachable = np.maximum(e0, np.minimum(ceiling, e0 + full * length))
    owed = np.maximum(floor - e0, 0.0)  # kWh the floor makes the car charge at full power
    return Derived(
        start=start,
        end=end,
        e0=e0,
        floor=floor,
        ceiling=ceiling,
        target=fleet.target_soc * cap,
        charge_gain=charge_gain,
        discharge_drain=discharge_drain,
        v2g=v2g,
        reachable=reachable,
        owed_kwh=owed,
        max_charge_kw=fleet.max_charge_kw,
        forced_slots=_forced_slot_count(owed, full, length),
        slots=slots,
    )


def window_mask(derived: Derived, slots: int) -> BoolArray:
    """(N, T) True where the car is plugged in."""
    t = np.arange(slots)[None, :]
    return (t >= derived.start[:, None]) & (t < derived.end[:, None])


def charge_cost_per_kw(signals: Signals, dt_h: float) -> FloatArray:
    """(T,) cost of charging 1 kW for one slot: dt * (import price + carbon weight * carbon)."""
    return dt_h * (signals.import_price + signals.carbon_weight * signals.carbon_g_per_kwh)


def discharge_cost_per_kw(signals: Signals, dt_h: float, degradation: FloatArray) -> FloatArray:
    """(N, T) cost of discharging 1 kW for one slot: dt * (-export - carbon + degradation)."""
    base = -(signals.export_price + signals.carbon_weight * signals.carbon_g_per_kwh)
    return dt_h * (base[None, :] + degradation[:, None])


def soc_trajectory(power_kw: FloatArray, derived: Derived, capacity_kwh: FloatArray) -> FloatArray:
    """(N, T+1) SoC fractions implied by a power plan, following the documented semantics."""
    n_cars, slots = power_kw.shape
    soc = np.empty((n_cars, slots + 1))
    soc0 = derived.e0 / capacity_kwh
    soc[:, 0] = soc0
    # SoC gained per kW in each slot, charging or discharging; few passes over the (N, T) arrays
    # (a fleet's are large: memory traffic costs more than the arithmetic).
    step = np.where(
        power_kw > 0,
        (derived.charge_gain / capacity_kwh)[:, None],
        (derived.discharge_drain / capacity_kwh)[:, None],
    )
    step *= power_kw
    np.cumsum(step, axis=1, out=soc[:, 1:])
    soc[:, 1:] += soc0[:, None]
    return soc


def plan_cost(power_kw: FloatArray, signals: Signals, dt_h: float, fleet: Fleet) -> FloatArray:
    """(N,) cost of each car's plan, following the documented cost formula.

    With c = max(p, 0) and d = c - p, the discharge term dt * (base + degradation) . d needs no
    (N, T) cost array: it is (c - p) . dt * base plus dt * degradation * sum(c - p)."""
    charge = np.maximum(power_kw, 0.0)
    c_cost = charge_cost_per_kw(signals, dt_h)
    d_base = discharge_cost_per_kw(signals, dt_h, np.zeros(1))[0]
    drained_kw = charge.sum(axis=1) - power_kw.sum(axis=1)  # sum of d over the slots
    return (
        charge @ (c_cost + d_base)
        - power_kw @ d_base
        + dt_h * fleet.degradation_cost_per_kwh * drained_kw
    )
