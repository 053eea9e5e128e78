"""Owner preferences: validation with clear messages, and DST-safe departures."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import VehicleFactory
from vehicles.preferences import next_departure

pytestmark = pytest.mark.django_db

WEEK = [{"weekday": d, "departure": "07:00", "target_soc_pct": 80} for d in range(7)]


def _put(client, vehicle, **changes):
    body = {"weekly_schedule": WEEK, "min_soc_pct": 30, "max_soc_pct": 90} | changes
    return client.put(
        reverse("api:vehicle-preferences", args=[vehicle.pk]),
        body,
        content_type="application/json",
    )


def test_owner_sets_departure_target_and_floor(owner_client, owner):
    vehicle = VehicleFactory(owner=owner)
    response = _put(
        owner_client,
        vehicle,
        weekly_schedule=[{"weekday": 0, "departure": "06:30", "target_soc_pct": 85}],
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["weekly_schedule"] == [{"weekday": 0, "departure": "06:30", "target_soc_pct": 85}]
    assert body["min_soc_pct"] == 30
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.weekly_schedule == {"0": {"departure": "06:30", "target_soc_pct": 85}}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"min_soc_pct": 95}, "min_soc_pct", "can't be above the maximum"),
        (
            {"weekly_schedule": [{"weekday": 2, "departure": "07:00", "target_soc_pct": 20}]},
            "weekly_schedule",
            "Wednesday: the target (20 %) must be at least your minimum",
        ),
        ({"min_soc_pct": 101}, "min_soc_pct", "less than or equal to 100"),
        ({"v2g_consent": True, "v2g_min_soc_pct": 10}, "v2g_min_soc_pct", "at least your minimum"),
        (
            {"weekly_schedule": [{"weekday": 1, "departure": "25:00", "target_soc_pct": 80}]},
            "weekly_schedule",
            "Time has wrong format",
        ),
        ({"override_departure_at": "2030-01-01T06:30:00Z"}, "override_target_soc_pct", "Give both"),
        ({"weekly_schedule": WEEK + WEEK[:1]}, "weekly_schedule", "Ensure this field has no more"),
    ],
)
def test_contradictory_preferences_are_refused_with_a_message(
    owner_client, owner, changes, field, message
):
    vehicle = VehicleFactory(owner=owner)
    before = vehicle.preference.weekly_schedule
    response = _put(owner_client, vehicle, **changes)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert message in str(fields[field]), fields
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.weekly_schedule == before
    assert vehicle.preference.min_soc_pct == 30


def test_preference_form_shows_errors_next_to_the_field(owner_client, owner):
    vehicle = VehicleFactory(owner=owner)
    data = {"min_soc_pct": 50, "max_soc_pct": 90, "v2g_min_soc_pct": 50}
    for day in range(7):
        data[f"departure_{day}"] = "07:00"
        data[f"target_{day}"] = 80
    data["target_3"] = 40
    response = owner_client.post(reverse("vehicles:vehicle-detail", args=[vehicle.pk]), data)
    assert response.status_code == 400
    assert "Thursday: the target (40 %) must be at least your minimum charge (50 %)." in (
        response.content.decode()
    )
    data["target_3"] = 80
    response = owner_client.post(reverse("vehicles:vehicle-detail", args=[vehicle.pk]), data)
    assert response.status_code == 302
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.min_soc_pct == 50


def test_departure_in_the_spring_forward_gap_moves_past_it():
    """07:00 always exists, but 02:30 on the US spring-forward day does not: it becomes 03:30."""
    schedule = {"6": {"departure": "02:30", "target_soc_pct": 80}}
    departure = next_departure(
        schedule=schedule,
        override_at=None,
        override_target_soc_pct=None,
        time_zone="America/New_York",
        now=datetime(2026, 3, 7, 12, 0, tzinfo=UTC),
    )
    assert departure.at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_repeated_fall_back_time_means_the_first_occurrence():
    schedule = {"6": {"departure": "01:30", "target_soc_pct": 80}}
    departure = next_departure(
        schedule=schedule,
        override_at=None,
        override_target_soc_pct=None,
        time_zone="America/New_York",
        now=datetime(2026, 10, 31, 12, 0, tzinfo=UTC),
    )
    assert departure.at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not EST


def test_one_off_override_wins_over_the_weekly_schedule():
    schedule = {str(d): {"departure": "07:00", "target_soc_pct": 80} for d in range(7)}
    departure = next_departure(
        schedule=schedule,
        override_at=datetime(2026, 11, 27, 11, 30, tzinfo=UTC),
        override_target_soc_pct=90,
        time_zone="America/New_York",
        now=datetime(2026, 11, 26, 20, 0, tzinfo=UTC),
    )
    assert (departure.at.hour, departure.target_soc_pct, departure.one_off) == (11, 90, True)


def test_charge_now_and_pause_are_one_tap_each(owner_client, owner):
    """Boost charges to the next target at once; pause turns smart charging off until a day."""
    vehicle = VehicleFactory(owner=owner)
    url = reverse("vehicles:vehicle-action", args=[vehicle.pk])
    assert owner_client.post(url, {"action": "boost"}).status_code == 302
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.boost_to_soc_pct == 80
    assert vehicle.preference.boost_until is not None
    page = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk]))
    assert "Boost on" in page.content.decode()

    owner_client.post(url, {"action": "stop_boost"})
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.boost_until is None

    response = owner_client.post(url, {"action": "pause", "until": "2000-01-01"}, follow=True)
    assert "Choose today or a later day." in response.content.decode()
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.pause_until is None
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    owner_client.post(url, {"action": "pause", "until": tomorrow})
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.pause_until > timezone.now() + timedelta(hours=12)
    assert owner_client.post(url, {"action": "resume"}).status_code == 302
    vehicle.preference.refresh_from_db()
    assert vehicle.preference.pause_until is None
