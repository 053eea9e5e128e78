"""Hypothesis tests of the planning core against the exact HiGHS LP reference.

Random fleets include below-floor plug-ins, zero-length and beyond-horizon windows, unreachable
targets, zero-power chargers, boosts, negative prices and DST-length days (92 and 100 slots).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from programs.scheduling import (
    Event,
    EventKind,
    Problem,
    derive,
    plan_fleet,
    reference_plan,
    respond_to_events,
)
from programs.scheduling.greedy import fill_cheapest, fill_window
from programs.scheduling.model import charge_cost_per_kw, plan_cost, soc_trajectory
from programs.scheduling.planner import plan_charge_only, plan_v2g
from tests.scheduling.scheduling_cases import assert_floor_rushed, assert_physical, random_problem

# CI runs a fixed, derandomized set of examples (the same every run), so a build never fails on an
# example nobody has seen before; the budget (200 examples per property, thousands of cars in
# all) keeps tests/scheduling near 20 s on two cores. SCHEDULING_EXPLORE=<n> draws n fresh random
# examples per property instead, to hunt for new counterexamples locally; pin what it finds with
# @example and a table-driven test.
EXPLORE = int(os.environ.get("SCHEDULING_EXPLORE", "0"))
BOUNDED = settings(
    max_examples=EXPLORE or 200,
    derandomize=not EXPLORE,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
seeds = st.integers(0, 2**31 - 1)
day_lengths = st.sampled_from([96, 92, 100, 12])


@BOUNDED
@given(seed=seeds, slots=day_lengths)
def test_charge_only_equals_lp_optimum(seed: int, slots: int) -> None:
    """Charge-only plans: no limit or floor violation, the LP's shortfall, and its cost to 1e-6."""
    problem = random_problem(seed, cars=40, slots=slots)
    plan = plan_fleet(problem)
    ref = reference_plan(problem)
    assert_physical(problem, plan)
    assert_floor_rushed(problem, plan)
    np.testing.assert_allclose(plan.shortfall_kwh, ref.shortfall_kwh, atol=1e-5)
    assert np.all(plan.shortfall_kwh[ref.shortfall_kwh == 0] == 0)
    scale = max(1.0, float(np.abs(plan.cost).sum()))
    assert abs(plan.total_cost - ref.total_cost) <= 1e-6 * scale


@BOUNDED
@given(seed=seeds, slots=day_lengths)
def test_v2g_within_half_a_percent_of_lp(seed: int, slots: int) -> None:
    """V2G plans: never below the V2G floor, no shortfall the LP avoids, cost within 0.5 %."""
    problem = random_problem(seed, cars=30, slots=slots, v2g_share=0.6)
    plan = plan_fleet(problem)
    ref = reference_plan(problem)
    assert_physical(problem, plan)
    assert_floor_rushed(problem, plan)
    assert np.all(plan.shortfall_kwh[ref.shortfall_kwh <= 1e-6] <= 1e-5)
    scale = max(1.0, float(np.abs(ref.cost).sum()))
    assert plan.total_cost <= ref.total_cost + 5e-3 * scale  # the bound
    assert abs(plan.total_cost - ref.total_cost) <= 1e-6 * scale  # what the exact DP achieves


@BOUNDED
@given(seed=seeds, slots=day_lengths)
def test_v2g_dynamic_programme_equals_per_car_lp(seed: int, slots: int) -> None:
    """Car by car, the vectorised V2G programme reaches the LP's departure energy at its cost."""
    problem = random_problem(seed, cars=30, slots=slots, v2g_share=1.0)
    fleet = problem.fleet.take(np.flatnonzero(problem.fleet.max_discharge_kw > 0))
    derived = derive(fleet, slots, problem.dt_h)
    args = (fleet, derived, problem.signals, problem.dt_h, slots)
    exact, lp = plan_v2g(*args), plan_v2g(*args, method="lp")
    cost = [plan_cost(p, problem.signals, problem.dt_h, fleet) for p in (exact, lp)]
    np.testing.assert_allclose(cost[0], cost[1], rtol=1e-7, atol=1e-7)
    cars = np.arange(fleet.size)
    kwh = [
        soc_trajectory(p, derived, fleet.capacity_kwh)[cars, derived.end] * fleet.capacity_kwh
        for p in (exact, lp)
    ]
    np.testing.assert_array_less(kwh[1] - 1e-6, kwh[0])


@BOUNDED
@given(seed=seeds, cap=st.floats(0.0, 60.0), share=st.sampled_from([0.0, 0.5]))
@example(seed=0, cap=5.960464477539063e-08, share=0.5)  # a below-floor V2G car discharged
def test_feeder_caps_are_hard(seed: int, cap: float, share: float) -> None:
    """Capped feeders: no cap breached, the LP's total shortfall, cost within 0.1 % of the LP."""
    base = random_problem(seed, cars=24, slots=24, v2g_share=share)
    fleet = base.fleet
    feeder = np.arange(fleet.size) % 2
    fleet = type(fleet)(**{**fleet.__dict__, "feeder": feeder})
    caps = np.full((2, base.slots), cap)
    caps[1, ::3] = np.inf
    problem = Problem.simple(fleet, base.signals, feeder_names=["a", "b"], feeder_caps_kw=caps)
    plan = plan_fleet(problem)
    ref = reference_plan(problem)
    assert_physical(problem, plan)
    assert plan.shortfall_kwh.sum() <= ref.shortfall_kwh.sum() + 1e-4
    scale = max(1.0, float(np.abs(ref.cost).sum()))
    assert plan.total_cost <= ref.total_cost + 1e-3 * scale


@BOUNDED
@given(
    seed=seeds,
    kind=st.sampled_from([EventKind.IMPORT_CAP, EventKind.EXPORT_REQUEST]),
    kw=st.floats(0.0, 80.0),
)
def test_events_never_cost_a_departure(seed: int, kind: EventKind, kw: float) -> None:
    """Both event phases keep the LP's departures and floors; phase two delivers as the LP does."""
    base = random_problem(seed, cars=24, slots=32, v2g_share=0.5)
    problem = Problem.simple(base.fleet, base.signals, events=[Event("e", kind, 8, 16, kw)])
    ref = reference_plan(problem)
    for plan in (respond_to_events(problem), plan_fleet(problem)):
        assert_physical(problem, plan)
        assert_floor_rushed(problem, plan)
        assert np.all(plan.shortfall_kwh[ref.shortfall_kwh <= 1e-6] <= 1e-5)
    optimal = plan_fleet(problem)
    assert optimal.event_shortfall_kw["e"].sum() <= ref.event_shortfall_kw["e"].sum() + 1e-4


@BOUNDED
@given(seed=seeds, slots=day_lengths)
def test_table_fill_equals_the_general_fill(seed: int, slots: int) -> None:
    """The one-tariff fill by rank table gives, slot for slot, the general cheapest fill's plan."""
    problem = random_problem(seed, cars=60, slots=slots)
    fleet, dt_h = problem.fleet, problem.dt_h
    derived = derive(fleet, slots, dt_h)
    cost = charge_cost_per_kw(problem.signals, dt_h)
    args = {
        "gain": derived.charge_gain,
        "need_kwh": np.maximum(derived.target - derived.e0, 0.0),
        "room_kwh": np.maximum(derived.ceiling - derived.e0, 0.0),
    }
    table = fill_window(
        cost=cost, start=derived.start, end=derived.end, max_kw=fleet.max_charge_kw, **args
    )
    general = fill_cheapest(
        cost=cost, group=None, window=(derived.start, derived.end, fleet.max_charge_kw), **args
    )
    np.testing.assert_allclose(table, general, atol=1e-9)


@BOUNDED
@given(seed=seeds, slots=day_lengths)
def test_table_plan_with_floors_equals_the_general_fill(seed: int, slots: int) -> None:
    """Below-floor cars in the table-driven plan (filling after their forced slots, or from the
    last one) get the general fill's cost and departure energy, car by car."""
    problem = random_problem(seed, cars=60, slots=slots)
    fleet, dt_h = problem.fleet, problem.dt_h
    derived = derive(fleet, slots, dt_h)
    cost = charge_cost_per_kw(problem.signals, dt_h)
    table = plan_charge_only(fleet, derived, problem.signals, dt_h, slots)
    general = plan_charge_only(
        fleet, derived, problem.signals, dt_h, slots, cost=cost[None, :], group=None
    )
    # The forced slots are counted without building the (N, T) forced charging; they agree.
    np.testing.assert_array_equal(
        derived.forced_slots, np.count_nonzero(derived.forced_kw > 0, axis=1)
    )
    assert np.all(table >= derived.forced_kw - 1e-9)
    assert np.all(table <= fleet.max_charge_kw[:, None] + 1e-9)
    np.testing.assert_allclose(table @ cost, general @ cost, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        soc_trajectory(table, derived, fleet.capacity_kwh)[:, -1],
        soc_trajectory(general, derived, fleet.capacity_kwh)[:, -1],
        atol=1e-9,
    )
