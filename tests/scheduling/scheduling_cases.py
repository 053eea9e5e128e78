"""Shared builders for the planning-core tests: random fleets and the invariants plans obey."""

from __future__ import annotations

import numpy as np

from programs.scheduling import Fleet, Plan, Problem, Signals, derive
from programs.scheduling.model import window_mask


def random_problem(seed: int, *, cars: int, slots: int = 96, v2g_share: float = 0.0) -> Problem:
    """Below-floor plug-ins, zero-length windows, unreachable targets, negative prices."""
    rng = np.random.default_rng(seed)
    plug = rng.integers(-4, slots, cars)
    departure = plug + rng.integers(0, slots + 8, cars)  # zero-length and beyond-horizon windows
    price = rng.uniform(-0.1, 0.5, slots)
    signals = Signals(
        import_price=price,
        export_price=price * rng.uniform(0.3, 1.0),
        carbon_g_per_kwh=rng.uniform(50, 500, slots),
        carbon_weight=float(rng.choice([0.0, 1e-4])),
    )
    fleet = Fleet.build(
        cars,
        capacity_kwh=rng.choice([30.0, 60.0, 100.0], cars),
        soc=rng.uniform(0.0, 1.0, cars),
        min_soc=rng.uniform(0.0, 0.4, cars),
        max_soc=rng.uniform(0.6, 1.0, cars),
        target_soc=rng.uniform(0.3, 1.0, cars),
        plug_slot=plug,
        departure_slot=departure,
        max_charge_kw=rng.choice([0.0, 3.7, 7.4, 11.0, 50.0], cars),
        max_discharge_kw=np.where(rng.random(cars) < v2g_share, rng.choice([3.7, 11.0], cars), 0.0),
        charge_efficiency=rng.uniform(0.85, 1.0, cars),
        discharge_efficiency=rng.uniform(0.85, 1.0, cars),
        v2g_min_soc=rng.uniform(0.0, 0.5, cars),
        degradation_cost_per_kwh=rng.uniform(0.0, 0.1, cars),
        boost=rng.random(cars) < 0.05,
    )
    return Problem.simple(fleet, signals)


def assert_physical(problem: Problem, plan: Plan, *, feeder_tolerance_kw: float = 1e-5) -> None:
    """No power, ceiling, floor or feeder-cap violation; idle while unplugged."""
    fleet = problem.fleet
    d = derive(fleet, problem.slots, problem.dt_h)
    tol = 1e-6
    window = window_mask(d, problem.slots)
    power = plan.power_kw
    assert np.all(power[~window] == 0)
    assert np.all(power <= fleet.max_charge_kw[:, None] + tol)
    assert np.all(-power <= fleet.max_discharge_kw[:, None] + tol)
    energy = plan.soc * fleet.capacity_kwh[:, None]
    assert np.all(energy <= d.ceiling[:, None] + 1e-5)
    # The floor: never discharge below it; below it, never discharge at all.
    drops = power < -1e-9
    before = energy[:, :-1]
    after = energy[:, 1:]
    assert np.all(after[drops] >= d.floor[np.nonzero(drops)[0]] - 1e-5)
    assert not np.any(drops & (before < d.floor[:, None] - 1e-6))
    for f in range(len(problem.feeder_names)):
        load = power[fleet.feeder == f].sum(axis=0)
        assert np.all(load <= np.maximum(problem.feeder_caps_kw[f], 0) + feeder_tolerance_kw)


def assert_floor_rushed(problem: Problem, plan: Plan) -> None:
    """A car below its floor charges at full power from plug-in until the floor is reached."""
    d = derive(problem.fleet, problem.slots, problem.dt_h)
    owed = d.forced_kw > 0
    assert np.all(plan.power_kw[owed] >= d.forced_kw[owed] - 1e-6)
