"""B9: full-fleet replan with the database read and the bulk write (issue 5).

    python bench/fleet_replan.py [--cars 100000] [--quick]

Creates a throw-away database (Django's test-database machinery, so nothing touches real data),
fills it with N owners, linked cars, preferences and a plugged-in reading each, then times
`programs.services.replan_fleet` for all of them — read, plan, why sentences, bulk insert — and
its peak memory. Baseline measured in the same run: the single-car path
(`replan_vehicle`, one query round and one insert per car) on a sample, extrapolated to N.
Target (issue 5): 100,000 cars in ≤ 30 s and ≤ 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

TARGET_SECONDS = 30.0
TARGET_MIB = 2048
ZONES = ["America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York"]
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # evening in the US: cars plugged in at home


def populate(cars: int, seed: int = 9) -> None:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from vehicles.models import ChargingPreference, Vehicle, VehicleReading
    from vehicles.preferences import default_schedule

    rng = random.Random(seed)
    unusable = make_password(None)
    batch = 5000
    for first in range(0, cars, batch):
        count = min(batch, cars - first)
        users = User.objects.bulk_create(
            [
                User(
                    email=f"bench{first + i}@example.com",
                    time_zone=rng.choice(ZONES),
                    password=unusable,
                )
                for i in range(count)
            ]
        )
        vehicles = Vehicle.objects.bulk_create(
            [
                Vehicle(
                    owner=user,
                    provider="smartcar",
                    provider_vehicle_id=f"b{user.pk}",
                    make="Nissan",
                    model="Leaf",
                    year=2024,
                    battery_kwh=rng.choice([40, 60, 75, 100]),
                    max_ac_kw=rng.choice([7.2, 11.0]),
                    v2g_capable=rng.random() < 0.1,
                )
                for user in users
            ]
        )
        schedule = default_schedule()
        ChargingPreference.objects.bulk_create(
            [
                ChargingPreference(
                    vehicle=vehicle,
                    weekly_schedule=schedule,
                    min_soc_pct=rng.choice([10, 20, 30]),
                    v2g_consent=vehicle.v2g_capable,
                )
                for vehicle in vehicles
            ]
        )
        VehicleReading.objects.bulk_create(
            [
                VehicleReading(
                    vehicle=vehicle,
                    recorded_at=NOW - timedelta(minutes=5),
                    source="poll",
                    soc_pct=rng.uniform(5, 90),
                    plugged_in=True,
                    charge_limit_pct=100,
                )
                for vehicle in vehicles
            ]
        )


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 cars, target scaled")
    parser.add_argument("--sample", type=int, default=200, help="cars for the baseline loop")
    args = parser.parse_args()
    cars = 10_000 if args.quick else args.cars
    target_s = TARGET_SECONDS * cars / 100_000

    from programs import services
    from programs.models import ChargingPlan
    from vehicles.models import Vehicle

    old_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = "chargescape_bench_b9"  # apart from pytest's
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        began = time.perf_counter()
        populate(cars)
        print(f"populated {cars:,} cars in {time.perf_counter() - began:.1f} s")

        sample = list(Vehicle.objects.values_list("pk", flat=True)[: args.sample])
        began = time.perf_counter()
        for vehicle_id in sample:
            services.replan_vehicle(vehicle_id=vehicle_id, trigger="bench", now=NOW)
        per_car = (time.perf_counter() - began) / len(sample)
        ChargingPlan.objects.all().delete()

        memory_before = peak_mib()
        began = time.perf_counter()
        stored = services.replan_fleet(trigger="bench", now=NOW)
        seconds = time.perf_counter() - began
        memory = peak_mib()
        assert stored == cars, stored
        assert ChargingPlan.objects.count() == cars
        baseline = per_car * cars
        ok = seconds <= target_s and memory <= TARGET_MIB
        print(
            f"B9 fleet replan, {cars:,} cars: {seconds:.2f} s (target ≤ {target_s:.0f} s), "
            f"peak RSS {memory:.0f} MiB (before {memory_before:.0f}; target ≤ {TARGET_MIB}); "
            f"baseline one car at a time {per_car * 1000:.1f} ms/car × {cars:,} = "
            f"{baseline:.0f} s (measured on {len(sample)} cars) → {baseline / seconds:.1f}× "
            f"{'PASS' if ok else 'FAIL'}"
        )
        return 0 if ok else 1
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
