"""Plans for real cars: replanning on plug-in and preference changes, floor and departure kept,
the plan page with its chart and "why", owner isolation, and the control queue for owner actions."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from programs import services
from programs.models import ChargingPlan
from programs.tasks import (
    PLUGGED_IN_QUEUED,
    pending_key,
    replan_plugged_in,
    request_plugged_in_replan,
)
from tests.factories import UserFactory, VehicleFactory
from vehicles import services as vehicle_services
from vehicles.control.models import Command
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

# Wednesday 2026-11-25 18:00 in Chicago (the factory owner's zone): departure Thursday 07:00.
EVENING = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def _plug_in(vehicle, soc_pct, at=EVENING):
    return vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=at, soc_pct=soc_pct, plugged_in=True, charge_limit_pct=100),
        source="poll",
    )


def test_plan_reaches_the_target_by_departure_in_the_cheapest_hours():
    vehicle = VehicleFactory()  # 60 kWh, 7.2 kW, floor 30 %, weekdays 07:00 → 80 %
    _plug_in(vehicle, 40)
    plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in", now=EVENING)
    assert plan is not None
    assert plan.departure_at == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 07:00 CST
    assert plan.soc[plan.departure_slot] >= 0.80 - 1e-6
    assert plan.shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert min(plan.soc) >= 0.30 - 1e-9
    charged = [i for i, kw in enumerate(plan.power_kw) if kw > 0]
    cheap = settings.DEFAULT_TARIFF["periods"][0]["price"]
    assert all(plan.import_price[i] == cheap for i in charged)  # only overnight, 00:00–07:00
    assert "to reach 80 % by 07:00" in plan.why


def test_below_the_floor_the_car_charges_at_full_power_first():
    vehicle = VehicleFactory()
    _plug_in(vehicle, 10)
    plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in", now=EVENING)
    first_partial = next(i for i, kw in enumerate(plan.power_kw) if kw < 7.2 - 1e-6)
    assert first_partial > 0
    assert plan.soc[first_partial] < 0.30  # every slot below the floor ran at full power
    assert plan.soc[first_partial + 1] >= 0.30 - 1e-6


def test_boost_charges_now_even_at_peak_price():
    vehicle = VehicleFactory()
    _plug_in(vehicle, 40)
    vehicle.preference.boost_until = EVENING + timedelta(hours=12)
    vehicle.preference.boost_to_soc_pct = 80
    vehicle.preference.save()
    plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="preference_changed", now=EVENING)
    assert plan.power_kw[0] == pytest.approx(7.2)
    assert plan.import_price[0] > settings.DEFAULT_TARIFF["default_price"]  # evening peak


def test_unplugged_or_unknown_soc_gives_no_plan():
    vehicle = VehicleFactory()
    assert services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in") is None
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=EVENING, soc_pct=50, plugged_in=False),
        source="poll",
    )
    assert services.replan_vehicle(vehicle_id=vehicle.pk, trigger="unplugged") is None
    assert not ChargingPlan.objects.exists()


def test_versions_increase_and_small_soc_moves_do_not_replan():
    vehicle = VehicleFactory()
    _plug_in(vehicle, 40)
    first = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in")
    second = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="preference_changed")
    assert (first.version, second.version) == (1, 2)
    assert services.replan_vehicle(vehicle_id=vehicle.pk, trigger="soc_changed") is None
    _plug_in(vehicle, 70, at=timezone.now())  # 30 points off the plan: replan
    assert services.replan_vehicle(vehicle_id=vehicle.pk, trigger="soc_changed").version == 3


def test_plug_ins_are_planned_together_without_the_debounce(
    django_capture_on_commit_callbacks, published
):
    """Telemetry's plug-in signals → one batch task queued at once (no countdown), however many
    cars plug in before it runs → each car planned once and its first slot made a command."""
    cars = [VehicleFactory() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        for car in cars:
            _plug_in(car, 40, at=timezone.now())
    # The same readings' SoC news collapses into the plug-in batch (no per-car replan).
    assert published == [("default", "programs.replan_plugged_in", ())]
    assert cache.get(PLUGGED_IN_QUEUED) == 1

    with django_capture_on_commit_callbacks(execute=True):
        assert replan_plugged_in.apply().get() == 3
    assert sorted(ChargingPlan.objects.values_list("vehicle_id", "version", "trigger")) == sorted(
        (car.pk, 1, "plugged_in") for car in cars
    )
    assert Command.objects.filter(vehicle__in=cars).count() == 3
    assert cache.get(PLUGGED_IN_QUEUED) is None
    assert cache.get(pending_key(str(cars[0].pk))) is None  # later SoC news may replan again
    # The set was emptied: a second run (e.g. the next queued batch) plans nothing again.
    assert replan_plugged_in.apply().get() == 0
    assert ChargingPlan.objects.count() == 3


def test_a_plug_in_after_a_batch_finished_queues_the_next_batch(
    django_capture_on_commit_callbacks, published
):
    first, second = VehicleFactory(), VehicleFactory()
    request_plugged_in_replan(str(first.pk))
    request_plugged_in_replan(str(first.pk))  # the same car twice: one entry, one task
    assert len(published) == 1
    # What a batch task does when it finishes with no car waiting (while cars wait, the running
    # batch re-queues itself and a plug-in queues nothing).
    cache.delete(PLUGGED_IN_QUEUED)
    request_plugged_in_replan(str(second.pk))
    assert [name for _, name, _ in published] == ["programs.replan_plugged_in"] * 2


def test_preference_change_replans_on_the_control_queue(
    owner_client, owner, django_capture_on_commit_callbacks, published
):
    """Owner actions never wait behind fleet work: their replan goes to `control` (I4)."""
    vehicle = VehicleFactory(owner=owner)
    url = reverse("vehicles:vehicle-action", args=[vehicle.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.post(url, {"action": "boost"}).status_code == 302
    assert published == [
        ("control", "programs.replan_vehicle", [str(vehicle.pk), "preference_changed"])
    ]


def test_plan_page_shows_chart_why_and_table(owner_client, owner):
    vehicle = VehicleFactory(owner=owner)
    _plug_in(vehicle, 40, at=timezone.now())
    plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in")
    response = owner_client.get(reverse("programs:vehicle-plan", args=[vehicle.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert plan.why in page
    assert 'id="plan-chart-data"' in page
    assert "The plan as a table" in page
    figure = json.loads(
        page.split('id="plan-chart-data" type="application/json">')[1].split("</script>")[0]
    )
    names = {trace.get("name") for trace in figure["data"]}
    assert {"Planned power (kW)", "Charge (%)", "Price ($/kWh)", "Target at departure"} <= names


def test_plan_page_asks_to_plug_in_and_hides_other_owners_plans(owner_client, owner):
    mine = VehicleFactory(owner=owner)
    page = owner_client.get(reverse("programs:vehicle-plan", args=[mine.pk])).content.decode()
    assert "Plug in and we" in page
    theirs = VehicleFactory(owner=UserFactory())
    _plug_in(theirs, 40, at=timezone.now())
    services.replan_vehicle(vehicle_id=theirs.pk, trigger="plugged_in")
    response = owner_client.get(reverse("programs:vehicle-plan", args=[theirs.pk]))
    assert response.status_code == 404


def test_fleet_replan_matches_one_by_one_and_skips_unplugged(django_assert_max_num_queries):
    """The bulk path gives each car the plan the single-car path gives, in a few queries."""
    plugged = [VehicleFactory() for _ in range(3)]
    away = VehicleFactory()
    plugged[1].owner.time_zone = "Europe/Berlin"
    plugged[1].owner.save()
    for soc, vehicle in zip((25, 40, 70), plugged, strict=True):
        _plug_in(vehicle, soc)
    vehicle_services.record_reading(
        vehicle=away,
        state=VehicleState(recorded_at=EVENING, soc_pct=50, plugged_in=False),
        source="poll",
    )
    with django_assert_max_num_queries(12):
        stored = services.replan_fleet(trigger="prices", now=EVENING)
    assert stored == 3
    assert not ChargingPlan.objects.filter(vehicle=away).exists()
    for vehicle in plugged:
        bulk = ChargingPlan.objects.get(vehicle=vehicle)
        single = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="check", now=EVENING)
        assert (bulk.version, single.version) == (1, 2)
        assert bulk.power_kw == single.power_kw
        assert bulk.soc == single.soc
        assert bulk.why == single.why
