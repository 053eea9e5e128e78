# ruff: noqa: F811 — pytest fixtures imported from admin_fixtures are used as arguments
"""The flexibility dashboard: available kW now and for 48 h by region and feeder, charge-only
vs V2G, enrolled vs plugged in — computed in a few queries, for our utility only."""

import math
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from programs.flexibility import HORIZON_SLOTS, flexibility_for
from programs.services import SLOT, slot_start
from tests.factories import VehicleFactory
from tests.programs.admin_fixtures import manager, ours, theirs  # noqa: F401 — fixtures
from tests.programs.factories import EnrollmentFactory, VehicleReadingFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 26, 18, 7, tzinfo=UTC)


def _car(
    side,
    *,
    zip_code="60601",
    reading_age=timedelta(minutes=2),
    plugged=True,
    soc=60.0,
    programs=None,
    departure_in=None,
    **vehicle,
):
    owner = side.owner if zip_code == side.owner.service_zip else None
    extra = {"owner": owner} if owner else {"owner__service_zip": zip_code}
    if departure_in is not None:
        extra["preference__override_departure_at"] = NOW + departure_in
        extra["preference__override_target_soc_pct"] = 80
    car = VehicleFactory(**extra, **vehicle)
    for program in programs or [side.program]:
        EnrollmentFactory(program=program, vehicle=car)
    if reading_age is not None:
        VehicleReadingFactory(
            vehicle=car, recorded_at=NOW - reading_age, plugged_in=plugged, soc_pct=soc
        )
    return car


@pytest.fixture
def fleet(ours, theirs):
    with time_machine.travel(NOW, tick=False):
        cars = {
            # Loop, charge-only, leaves in 2 h.
            "a": _car(ours, departure_in=timedelta(hours=2), max_ac_kw=7.2),
            # North, V2G with consent, 70 % over a 40 % floor, leaves in 5 h; in two programs.
            "b": _car(
                ours,
                zip_code="60614",
                departure_in=timedelta(hours=5),
                max_ac_kw=11,
                v2g_capable=True,
                preference__v2g_consent=True,
                soc=70,
                programs=[ours.program, ours.v2g_program],
            ),
            # Loop, V2G with consent but its SoC is 1 h old: curtailable, no export (I3).
            "c": _car(
                ours,
                departure_in=timedelta(hours=5),
                max_ac_kw=10,
                v2g_capable=True,
                preference__v2g_consent=True,
                reading_age=timedelta(hours=1),
            ),
            # Loop, V2G with consent, below its V2G floor: curtailable only.
            "d": _car(
                ours,
                departure_in=timedelta(hours=5),
                max_ac_kw=6,
                v2g_capable=True,
                preference__v2g_consent=True,
                soc=30,
            ),
            # Loop, silent for 7 h: not counted as plugged in.
            "e": _car(ours, reading_age=timedelta(hours=7)),
            # Loop, away from home.
            "f": _car(ours, plugged=False),
            # Another utility's plugged-in car.
            "g": _car(theirs, zip_code="10001", max_ac_kw=50),
        }
    return cars


def _slots_until(hours):
    return math.ceil((NOW + timedelta(hours=hours) - slot_start(NOW)) / SLOT)


def test_available_kw_by_feeder_until_each_departure(ours, fleet):
    flex = flexibility_for(utility_ids=[ours.utility.pk], now=NOW)
    rows = {row.label: row for row in flex.feeders}
    assert set(rows) == {"Loop / lakeshore-electric-loop", "North / lakeshore-electric-north"}
    loop, north = rows["Loop / lakeshore-electric-loop"], rows["North / lakeshore-electric-north"]
    # Loop: the fixture's Leaf (no reading), a, c, d, e, f enrolled; a, c, d plugged in.
    assert (loop.enrolled_cars, loop.plugged_in_cars, loop.v2g_cars) == (6, 3, 2)
    assert loop.enrolled_kw == pytest.approx(7.2 + 7.2 + 10 + 6 + 7.2 + 7.2)
    assert loop.curtail_kw[0] == pytest.approx(7.2 + 10 + 6)
    assert loop.export_kw[0] == 0  # c is stale, d is below its floor
    two_hours, five_hours = _slots_until(2), _slots_until(5)
    assert loop.curtail_kw[two_hours - 1] == pytest.approx(23.2)
    assert loop.curtail_kw[two_hours] == pytest.approx(16)  # a has left
    assert loop.curtail_kw[five_hours] == 0
    # North: b counts once although it is in two programs; it can also export.
    assert (north.enrolled_cars, north.plugged_in_cars, north.v2g_cars) == (1, 1, 1)
    assert north.export_kw[0] == pytest.approx(11)
    assert north.export_kw[five_hours - 1] == pytest.approx(11)
    assert north.export_kw[five_hours] == 0
    assert len(flex.slot_starts) == HORIZON_SLOTS == 192
    total = flex.total()
    assert total.curtail_kw[0] == pytest.approx(34.2)
    assert [region.region for region in flex.by_region()] == ["Loop", "North"]


def test_one_program_only(ours, fleet):
    flex = flexibility_for(utility_ids=[ours.utility.pk], program=ours.v2g_program, now=NOW)
    total = flex.total()
    assert (total.enrolled_cars, total.plugged_in_cars) == (1, 1)
    assert total.export_kw[0] == pytest.approx(11)


def test_a_few_queries_whatever_the_fleet_size(ours):
    """Doubling the fleet adds no query: the dashboard reads in bulk."""

    def queries():
        with CaptureQueriesContext(connection) as captured:
            flexibility_for(utility_ids=[ours.utility.pk], now=NOW)
        return len(captured)

    with time_machine.travel(NOW, tick=False):
        for _ in range(3):
            _car(ours, departure_in=timedelta(hours=3))
        small = queries()
        for _ in range(6):
            _car(ours, departure_in=timedelta(hours=3), zip_code="60614")
        assert queries() == small <= 4


def test_dashboard_page_for_a_manager(client, manager, ours, fleet):
    response = client.get(reverse("admin:programs_flexibility"))
    assert response.status_code == 200
    page = response.content.decode()
    for figure in ("horizon-figure", "region-figure", "feeder-figure"):
        assert f'data-figure="{figure}"' in page
        assert f'<script id="{figure}" type="application/json">' in page
    assert "lakeshore-electric-loop" in page
    assert "hudson-power" not in page
    assert response.context["total"].enrolled_cars == 7  # a–f and the fixture's Leaf
    assert "<script>" not in page  # strict CSP: no inline script


def test_dashboard_program_filter_is_scoped(client, manager, ours, theirs, fleet):
    """Another utility's program id in the filter shows our totals, never theirs."""
    response = client.get(reverse("admin:programs_flexibility"), {"program": theirs.program.pk})
    assert response.context["program"] is None
    assert "hudson-power" not in response.content.decode()
    options = response.context["programs"]
    assert {program.utility_id for program in options} == {ours.utility.pk}
