"""Planning-core benchmarks B1–B4 of issue 5, each reported as a ratio to a baseline run here.

Run `python bench/scheduling.py` (full sizes, a few minutes) or `--quick` (1/10 sizes, under a
minute). Each line prints PASS or FAIL against the issue's target for the size it ran.
Baselines: the per-car LP loop (the lexicographic per-car LP of `lp.solve_lp`, model built for
each car, one HiGHS instance reused) timed on a random sample of cars and extrapolated linearly to
the fleet, and the exact single-model LP reference for costs. Where a run times only part of a
problem (`b3` with timed < feeders), the output says what was timed and how it was scaled.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from programs.scheduling import Event, EventKind, Fleet, Problem, Signals, derive
from programs.scheduling.lp import SolveError
from programs.scheduling.model import plan_cost
from programs.scheduling.outcome import finish_plan
from programs.scheduling.planner import (
    plan_charge_only,
    plan_fleet,
    plan_independent,
    plan_v2g,
    respond_to_events,
)
from programs.scheduling.reference import per_car_lp_plan, reference_plan

T = 96
DT = 0.25


def signals(rng: np.random.Generator) -> Signals:
    hours = np.arange(T) / 4
    price = 0.25 + 0.12 * np.cos((hours - 18) / 24 * 2 * np.pi) + rng.uniform(0, 0.02, T)
    return Signals(price, price * 0.7, 250 + 120 * np.cos((hours - 19) / 24 * 2 * np.pi), 1e-4)


def fleet(rng: np.random.Generator, n: int, *, v2g: float = 0.0, feeders: int = 0) -> Fleet:
    plug = rng.integers(0, 48, n)
    departure = np.minimum(plug + rng.integers(12, 72, n), T)
    return Fleet.build(
        n,
        capacity_kwh=rng.choice([40.0, 60.0, 80.0], n),
        soc=rng.uniform(0.05, 0.7, n),
        min_soc=0.15,
        max_soc=rng.choice([0.9, 1.0], n),
        target_soc=rng.uniform(0.5, 0.9, n),
        plug_slot=plug,
        departure_slot=departure,
        max_charge_kw=rng.choice([3.7, 7.4, 11.0], n),
        max_discharge_kw=np.where(rng.random(n) < v2g, rng.choice([7.4, 11.0], n), 0.0),
        charge_efficiency=0.92,
        discharge_efficiency=0.92,
        v2g_min_soc=0.3,
        degradation_cost_per_kwh=0.04,
        feeder=rng.integers(0, feeders, n) if feeders else -1,
    )


def best_of(repeats: int, fn):  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return min(times), result


def report(name: str, ok: bool, text: str) -> bool:
    print(f"{name}: {'PASS' if ok else 'FAIL'}  {text}", flush=True)
    return ok


def b1(n: int, sample: int) -> bool:
    rng = np.random.default_rng(1)
    sig, fl = signals(rng), fleet(rng, n)
    problem = Problem.simple(fl, sig)
    seconds, power = best_of(3, lambda: plan_charge_only(fl, derive(fl, T, DT), sig, DT, T))
    cars = rng.choice(n, sample, replace=False)
    lp_power, lp_seconds = per_car_lp_plan(problem, cars)
    per_car = lp_seconds / sample
    ratio = per_car * n / seconds
    ref = plan_cost(lp_power, sig, DT, fl.take(cars)).sum()
    gap = abs(plan_cost(power[cars], sig, DT, fl.take(cars)).sum() - ref) / abs(ref)
    return report(
        "B1 charge-only",
        seconds <= 0.5 * n / 100_000 and ratio >= 1000 and gap <= 1e-6,
        f"{n} cars x {T} slots in {seconds:.3f} s (best of 3); per-car LP loop "
        f"{per_car * 1e3:.2f} ms/car timed on {sample} cars, extrapolated {per_car * n:.0f} s "
        f"-> {ratio:,.0f}x faster (target 1,000x); relative cost gap on the sample {gap:.1e}",
    )


def b2(n: int, sample: int) -> bool:
    rng = np.random.default_rng(2)
    sig, fl = signals(rng), fleet(rng, n, v2g=1.0)
    problem = Problem.simple(fl, sig)
    seconds, power = best_of(1, lambda: plan_v2g(fl, derive(fl, T, DT), sig, DT, T))
    cars = rng.choice(n, sample, replace=False)
    lp_power, lp_seconds = per_car_lp_plan(problem, cars)
    ours = plan_cost(power[cars], sig, DT, fl.take(cars)).sum()
    ref = plan_cost(lp_power, sig, DT, fl.take(cars)).sum()
    gap = (ours - ref) / max(abs(ref), 1e-9)
    ratio = lp_seconds / sample * n / seconds
    return report(
        "B2 V2G",
        seconds <= 5.0 * n / 10_000 and gap <= 0.005,
        f"{n} cars in {seconds:.2f} s; per-car LP loop extrapolated from {sample} cars "
        f"{lp_seconds / sample * n:.1f} s ({ratio:.1f}x); cost vs per-car LP on the sample "
        f"{gap * 100:+.4f} %",
    )


def capped_problem(rng: np.random.Generator, n: int, feeders: int) -> Problem:
    sig, fl = signals(rng), fleet(rng, n, v2g=0.0, feeders=feeders)
    per_car_kw = 1.6  # below the cheap-hour rush of the uncapped plan: the caps bind
    counts = np.bincount(fl.feeder, minlength=feeders)
    caps = np.repeat((counts * per_car_kw)[:, None], T, axis=1)
    return Problem.simple(
        fl, sig, feeder_names=[f"f{i}" for i in range(feeders)], feeder_caps_kw=caps
    )


def b3(n: int, feeders: int, timed: int, check: int) -> bool:
    """Feeders are planned independently (one LP each), so when `timed` < `feeders` only the cars
    of the first `timed` feeders are planned and the time is scaled by feeders / timed."""
    rng = np.random.default_rng(3)
    full = capped_problem(rng, n, feeders)
    keep = np.flatnonzero(full.fleet.feeder < timed)
    problem = Problem.simple(
        full.fleet.take(keep),
        full.signals,
        feeder_names=full.feeder_names[:timed],
        feeder_caps_kw=full.feeder_caps_kw[:timed],
    )
    measured, plan = best_of(1, lambda: plan_fleet(problem))
    seconds = measured * feeders / timed
    worst = max(
        float(
            (plan.power_kw[problem.fleet.feeder == f].sum(axis=0) - problem.feeder_caps_kw[f]).max()
        )
        for f in range(timed)
    )
    gaps = []
    ref_seconds = 0.0
    for f in range(min(check, timed)):
        members = problem.fleet.feeder == f
        sub = Problem.simple(
            problem.fleet.take(np.flatnonzero(members)),
            problem.signals,
            feeder_names=["f"],
            feeder_caps_kw=problem.feeder_caps_kw[f : f + 1],
        )
        sub = Problem(
            **{
                **sub.__dict__,
                "fleet": type(sub.fleet)(
                    **{**sub.fleet.__dict__, "feeder": np.zeros(sub.fleet.size, np.int64)}
                ),
            }
        )
        began = time.perf_counter()
        ref = reference_plan(sub)
        ref_seconds += time.perf_counter() - began
        gaps.append((plan.cost[members].sum() - ref.total_cost) / abs(ref.total_cost))
    gap = max(gaps)
    return report(
        "B3 feeder caps",
        seconds <= 10.0 * n / 100_000 and worst <= 1e-6 and gap <= 0.001,
        (
            f"{n} cars on {feeders} feeders in {seconds:.2f} s"
            if timed == feeders
            else f"{n} cars on {feeders} feeders: {timed} feeders ({len(keep)} cars) in "
            f"{measured:.2f} s, x{feeders / timed:.0f} = {seconds:.1f} s extrapolated"
        )
        + f"; worst cap excess {worst:+.2e} kW; "
        f"cost vs the single-model LP on {len(gaps)} feeders {gap * 100:+.5f} % "
        f"(reference {ref_seconds / len(gaps):.2f} s per feeder)",
    )


def b4(n: int, time_limit_s: float) -> bool:
    rng = np.random.default_rng(4)
    sig, fl = signals(rng), fleet(rng, n, v2g=0.2)
    base_problem = Problem.simple(fl, sig)
    base = plan_independent(base_problem, derive(fl, T, DT))
    evening = (68, 76)  # 17:00-19:00 UTC
    load = base[:, evening[0] : evening[1]].sum(axis=0)
    kw = float(0.1 * n)  # 0.1 kW per car of net export at the evening peak
    problem = Problem.simple(
        fl, sig, events=[Event("peak", EventKind.EXPORT_REQUEST, *evening, kw)]
    )
    # The plan in force, finished (SoC, cost) as the services store it: phase one starts from it.
    in_force = finish_plan(base_problem, derive(fl, T, DT), base)
    # Judged on the first call (fresh memory, as a service answering an event would see it);
    # the best of three more is printed beside it.
    fast_s, fast = best_of(1, lambda: respond_to_events(problem, base_plan=in_force))
    warm_s, _ = best_of(3, lambda: respond_to_events(problem, base_plan=in_force))
    met = float(fast.event_shortfall_kw["peak"].max())
    missed_fast = int((fast.shortfall_kwh > 1e-5).sum())
    base_missed = int((in_force.shortfall_kwh > 1e-5).sum())
    # No departure missed: no car falls further short than on its own plan (the plan in force).
    kept = bool(np.all(fast.shortfall_kwh <= in_force.shortfall_kwh + 1e-5))
    try:
        opt_s, opt = best_of(1, lambda: plan_fleet(problem, time_limit_s=time_limit_s))
    except SolveError as error:  # HiGHS time limit: report it, never a number it did not reach
        return report(
            "B4 event",
            False,
            f"{n} cars, export {kw:.0f} kW 17:00-19:00; phase 1 {fast_s:.3f} s (from the "
            f"finished plan in force; best of 3 more {warm_s:.3f} s), worst slot "
            f"shortfall {met:.2e} kW, cars short at departure {missed_fast} (on their own plans "
            f"{base_missed}; none shorter than there: {kept}); phase 2 did not "
            f"finish within the {time_limit_s:.0f} s limit of its LP ({error})",
        )
    missed_opt = int((opt.shortfall_kwh > 1e-5).sum())
    ok = fast_s <= 1.0 * max(n / 100_000, 0.2) and met <= 1e-6 and kept
    ok = (
        ok
        and opt_s <= 10.0 * max(n / 100_000, 0.2)
        and float(opt.event_shortfall_kw["peak"].max()) <= 1e-4
        and bool(np.all(opt.shortfall_kwh <= in_force.shortfall_kwh + 1e-5))
    )
    return report(
        "B4 event",
        ok,
        f"{n} cars, export {kw:.0f} kW 17:00-19:00 (uncontrolled load there {load.max():.0f} kW);"
        f" phase 1 {fast_s:.3f} s (from the finished plan in force; best of 3 more "
        f"{warm_s:.3f} s), worst slot shortfall "
        f"{met:.2e} kW, cars short at departure "
        f"{missed_fast} (on their own plans {base_missed}; none shorter than there: {kept}); "
        f"phase 2 {opt_s:.2f} s, "
        f"worst slot shortfall {float(opt.event_shortfall_kw['peak'].max()):.2e} kW, "
        f"cars short {missed_opt}; cost {fast.total_cost:.0f} -> {opt.total_cost:.0f}",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1/10 sizes, under a minute")
    parser.add_argument("--only", default="1234", help="which of B1-B4 to run, e.g. 13")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    results = []
    if "1" in args.only:
        results.append(b1(100_000 // scale, 200 // scale * 2))
    if "2" in args.only:
        results.append(b2(10_000 // scale, 100 // scale * 2))
    if "3" in args.only:
        # Every feeder is timed; the single-model LP reference (~10 s per 2,000-car feeder here)
        # checks the cost on the first one (two in the quick run).
        results.append(b3(10_000, 10, 10, 2) if args.quick else b3(100_000, 50, 50, 1))
    if "4" in args.only:
        results.append(b4(100_000 // scale, 30.0 if args.quick else 120.0))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
