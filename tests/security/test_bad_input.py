"""Bad input (issue #11): oversized bodies, deep JSON, invalid UTF-8, NaN, mass assignment and
values out of range, against the owner API, the utility API and the owner's form pages.

Every answer is a 4xx with a message, never a 5xx, and nothing is half-written: each test
snapshots the rows a request could touch and compares them afterwards.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from accounts.models import User
from chargescape.parsers import MAX_DEPTH
from programs.models import GridEvent
from tests.factories import UserFactory, VehicleFactory
from tests.programs.factories import UtilityFactory
from tests.programs.test_utility_api import Caller, territory
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import Charger
from vehicles.models import ChargingPreference, Vehicle

pytestmark = pytest.mark.django_db

WEEK = [{"weekday": 0, "departure": "07:00", "target_soc_pct": 80}]
VALID_PREFERENCE = {"weekly_schedule": WEEK, "min_soc_pct": 30, "max_soc_pct": 90}
LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.fixture(autouse=True)
def fast_secret_hashing(settings):
    """API client secrets are hashed with PBKDF2 in production; random 320-bit strings need
    no key stretching in tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def vehicle(owner) -> Vehicle:
    return VehicleFactory(owner=owner)


@pytest.fixture
def caller():
    utility = UtilityFactory(name="Lakeshore Electric", slug="lakeshore")
    program = territory(utility)
    return Caller(utility), program


def preference_row(vehicle: Vehicle) -> dict[str, Any]:
    return model_to_dict(ChargingPreference.objects.get(vehicle=vehicle))


def user_row(user: User) -> dict[str, Any]:
    row = model_to_dict(User.objects.get(pk=user.pk))
    row.pop("last_login", None)
    return row


def put_preferences(client: Client, vehicle: Vehicle, body: bytes | str, **extra: Any):
    return client.put(
        f"/api/v1/vehicles/{vehicle.pk}/preferences",
        body,
        content_type=extra.pop("content_type", "application/json"),
        **extra,
    )


def event_body(program, **fields: Any) -> dict[str, Any]:
    """A valid utility API event for `program` (an import cap in two hours), plus `fields`."""
    start = timezone.now() + timedelta(hours=2)
    return {
        "program": program.code,
        "kind": "import_cap",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "target_kw": 5,
    } | fields


def error_message(response) -> str:
    body = response.json()["error"]
    return body["message"] + json.dumps(body.get("fields", {}))


# --- Oversized bodies ---------------------------------------------------------------------------


def test_oversized_json_to_the_owner_api_is_413_and_changes_nothing(owner_client, vehicle):
    """A JSON body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413 and a message; DRF's own
    parser would have read and parsed all of it."""
    before = preference_row(vehicle)
    body = json.dumps(VALID_PREFERENCE | {"min_soc_pct": 10, "padding": "x" * (LIMIT + 10)})
    response = put_preferences(owner_client, vehicle, body)
    assert response.status_code == 413, response.content[:300]
    assert "larger than" in response.json()["error"]["message"]
    assert preference_row(vehicle) == before


def test_oversized_json_to_the_utility_api_is_413_and_creates_no_event(caller):
    client, program = caller
    body = event_body(program, external_id="x" * (LIMIT + 10))
    response = client.post("/events", body)
    assert response.status_code == 413, response.content[:300]
    assert response.json()["error"]["message"]
    assert not GridEvent.objects.exists()


def test_oversized_form_post_is_400_and_changes_nothing(owner_client, owner, vehicle):
    """Form pages: Django refuses a body over the limit (RequestDataTooBig → 400) before the
    view runs; the preference and the profile stay as they were."""
    before_pref, before_user = preference_row(vehicle), user_row(owner)
    padding = "x" * (LIMIT + 10)
    response = owner_client.post(
        f"/vehicles/{vehicle.pk}/",
        {"min_soc_pct": "10", "max_soc_pct": "90", "v2g_min_soc_pct": "40", "pad": padding},
    )
    assert response.status_code == 400
    assert b"Bad Request" in response.content
    response = owner_client.post(
        "/account/", {"time_zone": "Europe/Paris", "service_zip": "", "pad": padding}
    )
    assert response.status_code == 400
    assert preference_row(vehicle) == before_pref
    assert user_row(owner) == before_user


def test_a_body_just_under_the_limit_is_still_parsed(owner_client, vehicle):
    """The bound is the limit, not less: a large but allowed body gets field validation."""
    body = json.dumps(VALID_PREFERENCE | {"padding": "x" * (LIMIT - 1000)})
    response = put_preferences(owner_client, vehicle, body)
    assert response.status_code == 200, response.content[:300]


# --- Deep JSON, invalid UTF-8, NaN ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_deep_json_is_400_with_a_message(owner_client, vehicle, caller, depth):
    """100,000 nested arrays made DRF's JSONParser raise RecursionError (a 500); a few dozen
    levels past anything we accept are refused the same way, with a message."""
    before = preference_row(vehicle)
    deep = "[" * depth + "]" * depth
    response = put_preferences(owner_client, vehicle, deep)
    assert response.status_code == 400, response.content[:300]
    assert "nested" in response.json()["error"]["message"]
    nested_in_a_field = json.dumps(VALID_PREFERENCE)[:-1] + ', "extra": ' + deep + "}"
    response = put_preferences(owner_client, vehicle, nested_in_a_field)
    assert response.status_code == 400
    assert preference_row(vehicle) == before

    client, _ = caller
    response = client.http.post(
        "/api/utility/v1/events", deep, content_type="application/json", **client.headers
    )
    assert response.status_code == 400
    assert "nested" in response.json()["error"]["message"]
    assert not GridEvent.objects.exists()


def test_invalid_utf8_json_is_400(owner_client, vehicle):
    before = preference_row(vehicle)
    body = json.dumps(VALID_PREFERENCE).encode().replace(b'"07:00"', b'"07:\xff\xfe"')
    response = put_preferences(owner_client, vehicle, body)
    assert response.status_code == 400
    assert "utf-8" in response.json()["error"]["message"].lower()
    # A charset that is not a text encoding is refused too (DRF's get_encoding).
    response = put_preferences(
        owner_client,
        vehicle,
        json.dumps(VALID_PREFERENCE),
        content_type="application/json; charset=bz2_codec",
    )
    assert response.status_code == 400
    assert preference_row(vehicle) == before


def test_invalid_utf8_in_form_bodies_is_a_form_error_not_a_5xx(owner_client, owner, vehicle):
    before_pref, before_user = preference_row(vehicle), user_row(owner)
    response = owner_client.generic(
        "POST",
        f"/vehicles/{vehicle.pk}/",
        b"min_soc_pct=\xff\xfe&max_soc_pct=90&v2g_min_soc_pct=40",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "min_soc_pct" in response.context["form"].errors
    response = owner_client.generic(
        "POST",
        "/account/",
        b"time_zone=Europe%2FParis&service_zip=\xc3\x28\xa0\xa1",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "service_zip" in response.context["form"].errors
    assert preference_row(vehicle) == before_pref
    assert user_row(owner) == before_user


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(owner_client, vehicle, caller, constant):
    before = preference_row(vehicle)
    body = json.dumps(VALID_PREFERENCE).replace('"min_soc_pct": 30', f'"min_soc_pct": {constant}')
    response = put_preferences(owner_client, vehicle, body)
    assert response.status_code == 400
    assert "not JSON compliant" in response.json()["error"]["message"]
    assert preference_row(vehicle) == before

    client, program = caller
    event = event_body(program, target_kw=1)
    raw = json.dumps(event).replace('"target_kw": 1', f'"target_kw": {constant}')
    response = client.http.post(
        "/api/utility/v1/events", raw, content_type="application/json", **client.headers
    )
    assert response.status_code == 400
    # As a string, "nan" reaches the field, which refuses it.
    response = client.post("/events", event | {"target_kw": constant.lower()})
    assert response.status_code == 400
    assert "target_kw" in response.json()["error"]["fields"]
    assert not GridEvent.objects.exists()


# --- Mass assignment ----------------------------------------------------------------------------


def test_preferences_ignore_read_only_fields(owner_client, owner, vehicle):
    """ids, the vehicle, timestamps sent with a preference update are not stored."""
    other = VehicleFactory(owner=UserFactory())
    before, before_other = preference_row(vehicle), preference_row(other)
    body = VALID_PREFERENCE | {
        "id": 999_999,
        "vehicle": str(other.pk),
        "vehicle_id": str(other.pk),
        "updated_at": "2001-01-01T00:00:00Z",
        "next_departure": {"at": "2001-01-01T00:00:00Z", "target_soc_pct": 1},
    }
    response = put_preferences(owner_client, vehicle, json.dumps(body))
    assert response.status_code == 200, response.content
    after = ChargingPreference.objects.get(vehicle=vehicle)
    assert after.pk == before["id"]
    assert after.vehicle_id == vehicle.pk
    assert after.updated_at.year > 2001
    assert after.min_soc_pct == 30
    assert not ChargingPreference.objects.filter(pk=999_999).exists()
    assert preference_row(other) == before_other


def test_vehicles_are_read_only_through_the_api(owner_client, vehicle):
    """PUT/PATCH/POST on a vehicle answer 405: vin, owner, state cannot be written at all."""
    before = model_to_dict(Vehicle.objects.get(pk=vehicle.pk))
    body = json.dumps({"vin": "EVIL0000000000000", "owner": 1, "link_state": "unlinked"})
    for method in ("put", "patch", "post"):
        response = getattr(owner_client, method)(
            f"/api/v1/vehicles/{vehicle.pk}", body, content_type="application/json"
        )
        assert response.status_code == 405
    assert model_to_dict(Vehicle.objects.get(pk=vehicle.pk)) == before


def test_profile_ignores_email_staff_and_password(owner_client, owner):
    before = user_row(owner)
    body = {
        "time_zone": "Europe/Paris",
        "service_zip": "94107",
        "email": "attacker@example.com",
        "is_staff": True,
        "is_superuser": True,
        "password": "x",
        "id": 1,
        "date_joined": "2001-01-01T00:00:00Z",
    }
    response = owner_client.put("/api/v1/me", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    after = user_row(owner)
    assert (after["time_zone"], after["service_zip"]) == ("Europe/Paris", "94107")
    for name in ("email", "is_staff", "is_superuser", "password", "id", "date_joined"):
        assert after[name] == before[name], name
    # The profile form page keeps to its two fields as well.
    response = owner_client.post("/account/", body | {"time_zone": "Asia/Tokyo"})
    after = user_row(owner)
    assert after["time_zone"] == "Asia/Tokyo"
    for name in ("email", "is_staff", "is_superuser", "password", "id", "date_joined"):
        assert after[name] == before[name], name


def test_preference_form_ignores_vehicle_fields(owner_client, vehicle):
    before = model_to_dict(Vehicle.objects.get(pk=vehicle.pk))
    response = owner_client.post(
        f"/vehicles/{vehicle.pk}/",
        {
            "min_soc_pct": "25",
            "max_soc_pct": "90",
            "v2g_min_soc_pct": "40",
            "departure_0": "07:00",
            "target_0": "80",
            "vin": "EVIL0000000000000",
            "owner": "1",
            "link_state": "unlinked",
            "battery_kwh": "9999",
        },
    )
    assert response.status_code == 302
    assert ChargingPreference.objects.get(vehicle=vehicle).min_soc_pct == 25
    assert model_to_dict(Vehicle.objects.get(pk=vehicle.pk)) == before


def test_charger_claim_ignores_owner_and_device_fields(owner_client, owner):
    provisioned = charger_services.provision_charger(
        charge_point_id="MASS-0001", v2g_capable=False, max_power_kw=11
    )
    someone = UserFactory()
    response = owner_client.post(
        "/api/v1/chargers/claim",
        json.dumps(
            {
                "charge_point_id": "MASS-0001",
                "pairing_code": provisioned.pairing_code,
                "owner": someone.pk,
                "id": 424_242,
                "max_power_kw": 350,
                "v2g_capable": True,
                "name": "mine now",
                "authorization_key_hash": "forged",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    charger = Charger.objects.get(charge_point_id="MASS-0001")
    assert charger.owner_id == owner.pk
    assert charger.pk == provisioned.charger.pk
    assert float(charger.max_power_kw) == 11
    assert charger.v2g_capable is False
    assert charger.authorization_key_hash == provisioned.charger.authorization_key_hash


def test_utility_event_ignores_status_and_bookkeeping_fields(caller):
    client, program = caller
    response = client.post(
        "/events",
        {
            **event_body(program),
            "dispatch": False,
            "id": 777_777,
            "status": "completed",
            "source": "admin",
            "created_at": "2001-01-01T00:00:00Z",
            "notified_at": "2001-01-01T00:00:00Z",
            "utility": 999,
            "cancel_reason": "forged",
        },
    )
    assert response.status_code == 201, response.content
    event = GridEvent.objects.get()
    assert event.pk != 777_777
    assert event.status == GridEvent.Status.DRAFT
    assert event.program == program
    assert event.created_at.year > 2001
    assert event.notified_at is None
    assert event.cancel_reason == ""
    assert event.source != "admin"


# --- Values out of range -------------------------------------------------------------------------

FAR_PAST = "1970-01-01T06:30:00Z"
HUGE = 10**30


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_soc_pct": -1}, "min_soc_pct"),
        ({"max_soc_pct": 101}, "max_soc_pct"),
        ({"min_soc_pct": HUGE}, "min_soc_pct"),
        ({"min_soc_pct": 2**63}, "min_soc_pct"),
        ({"min_soc_pct": 95, "max_soc_pct": 50}, "min_soc_pct"),
        ({"min_soc_pct": "thirty"}, "min_soc_pct"),
        ({"min_soc_pct": [30]}, "min_soc_pct"),
        ({"min_soc_pct": {"$gt": 0}}, "min_soc_pct"),
        ({"min_soc_pct": None}, "min_soc_pct"),
        ({"weekly_schedule": [{"weekday": 0, "departure": "07:00", "target_soc_pct": 150}]}, None),
        ({"weekly_schedule": [{"weekday": 9, "departure": "07:00", "target_soc_pct": 80}]}, None),
        ({"weekly_schedule": [{"weekday": 0, "departure": "7" * 500, "target_soc_pct": 80}]}, None),
        ({"weekly_schedule": "every day"}, "weekly_schedule"),
        ({"weekly_schedule": [WEEK[0]] * 10_000}, "weekly_schedule"),
        ({"override_departure_at": FAR_PAST, "override_target_soc_pct": 80}, None),
        (
            {"override_departure_at": "9999-12-31T23:59:59-05:00", "override_target_soc_pct": 80},
            "override_departure_at",
        ),
        ({"override_departure_at": "2030-01-01T06:30:00Z", "override_target_soc_pct": 5}, None),
        ({"boost_until": "9999-01-01T00:00:00Z", "boost_to_soc_pct": 80}, "boost_until"),
        ({"pause_until": "2200-01-01T00:00:00Z"}, "pause_until"),
        ({"v2g_consent": True, "v2g_min_soc_pct": 10}, "v2g_min_soc_pct"),
        ({"v2g_consent": "perhaps"}, "v2g_consent"),
        ({"override_departure_at": "\x00", "override_target_soc_pct": 80}, None),
        ({"min_soc_pct": "3\udcff0"}, "min_soc_pct"),
    ],
)
def test_preference_values_out_of_range_are_400_with_field_errors(
    owner_client, vehicle, changes, field
):
    """Each answer names the field; the stored preference is untouched (no half-write)."""
    before = preference_row(vehicle)
    response = put_preferences(owner_client, vehicle, json.dumps(VALID_PREFERENCE | changes))
    assert response.status_code == 400, response.content[:300]
    fields = response.json()["error"]["fields"]
    assert fields, response.json()
    if field is not None:
        assert field in fields, fields
    assert all(isinstance(messages, list | dict) for messages in fields.values())
    assert preference_row(vehicle) == before


def test_a_departure_in_the_far_past_is_refused_by_the_api_as_by_the_form(owner_client, vehicle):
    """Before #11 the API stored a one-off departure in 1970 (the form refused it)."""
    response = put_preferences(
        owner_client,
        vehicle,
        json.dumps(
            VALID_PREFERENCE | {"override_departure_at": FAR_PAST, "override_target_soc_pct": 80}
        ),
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["override_departure_at"] == [
        "Choose a time in the future."
    ]
    assert ChargingPreference.objects.get(vehicle=vehicle).override_departure_at is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target_kw": -5}, "target_kw"),
        ({"target_kw": 0}, "target_kw"),
        ({"target_kw": HUGE}, "target_kw"),
        ({"target_kw": "1" * 5000}, "target_kw"),
        ({"starts_at": FAR_PAST}, "starts_at"),
        ({"ends_at": "9999-12-31T23:59:59Z"}, "ends_at"),
        ({"kind": "blackout"}, "kind"),
        ({"program": "x" * 10_000}, "program"),
        ({"external_id": "x" * 121}, "external_id"),
        ({"region": ["Loop"]}, "region"),
        ({"dispatch": "sometimes"}, "dispatch"),
        ({"feeder": "no-such-feeder"}, "feeder"),
        ({"program": "no-such-program"}, "program"),
    ],
)
def test_utility_event_values_out_of_range_are_400_and_create_nothing(caller, changes, field):
    client, program = caller
    body = event_body(program, dispatch=False) | changes
    response = client.post("/events", body)
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["error"]["fields"]
    assert not GridEvent.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/me", {"time_zone": "Mars/Olympus", "service_zip": ""}, "time_zone"),
        ("/api/v1/me", {"time_zone": "UTC", "service_zip": "9" * 5000}, "service_zip"),
        ("/api/v1/me", {"time_zone": "UTC", "service_zip": [94107]}, "service_zip"),
        ("/api/v1/chargers/claim", {"charge_point_id": "A" * 49, "pairing_code": "x"}, None),
        ("/api/v1/chargers/claim", {"charge_point_id": "OK-1", "pairing_code": "x" * 21}, None),
        ("/api/v1/chargers/claim", {"charge_point_id": "../../etc", "pairing_code": "x"}, None),
        ("/api/v1/vehicles/link", {"provider": "smartcar", "brand": "b" * 41}, "brand"),
        ("/api/v1/vehicles/link", {"provider": {"x": 1}}, "provider"),
    ],
)
def test_other_owner_inputs_out_of_range_are_400(owner_client, owner, path, body, field):
    before = user_row(owner)
    method = owner_client.put if path == "/api/v1/me" else owner_client.post
    response = method(path, json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    fields = response.json()["error"]["fields"]
    assert field is None or field in fields, fields
    assert user_row(owner) == before
    assert not Charger.objects.exists()


@pytest.mark.parametrize("hours", ["0", "-1", "99999999999999999999999", "nan", "1e400", "\x00"])
def test_reading_filter_out_of_range_is_400(owner_client, vehicle, hours):
    response = owner_client.get(f"/api/v1/vehicles/{vehicle.pk}/readings", {"hours": hours})
    assert response.status_code == 400
    assert "hours" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    "form",
    [
        {"min_soc_pct": "-5", "max_soc_pct": "90", "v2g_min_soc_pct": "40"},
        {"min_soc_pct": "10", "max_soc_pct": "900", "v2g_min_soc_pct": "40"},
        {"min_soc_pct": "9" * 400, "max_soc_pct": "90", "v2g_min_soc_pct": "40"},
        {"min_soc_pct": "95", "max_soc_pct": "50", "v2g_min_soc_pct": "40"},
        {"min_soc_pct": "nan", "max_soc_pct": "90", "v2g_min_soc_pct": "40"},
        {
            "min_soc_pct": "30",
            "max_soc_pct": "90",
            "v2g_min_soc_pct": "40",
            "override_departure_at": "1970-01-01T06:30",
            "override_target_soc_pct": "80",
        },
        {
            "min_soc_pct": "30",
            "max_soc_pct": "90",
            "v2g_min_soc_pct": "40",
            "departure_0": "07:00",
            "target_0": "150",
        },
        {"min_soc_pct": "3\x000", "max_soc_pct": "90", "v2g_min_soc_pct": "40"},
    ],
)
def test_preference_form_out_of_range_shows_errors_and_saves_nothing(owner_client, vehicle, form):
    before = preference_row(vehicle)
    response = owner_client.post(f"/vehicles/{vehicle.pk}/", form)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert preference_row(vehicle) == before


@pytest.mark.parametrize("until", ["1970-01-01", "9999-12-31", "2026-02-30", "x" * 1000, "\x00"])
def test_pause_with_a_bad_day_is_refused_with_a_message(owner_client, vehicle, until):
    before = preference_row(vehicle)
    response = owner_client.post(
        f"/vehicles/{vehicle.pk}/action/", {"action": "pause", "until": until}, follow=True
    )
    assert response.status_code == 200
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    assert preference_row(vehicle) == before


def test_an_empty_weekly_schedule_is_a_400_not_a_500(owner_client, vehicle):
    """Bug found by #11: a schedule with no day passed the form and the serializer, then the
    model's full_clean refused it inside the service (a 500 on both the page and the API)."""
    before = preference_row(vehicle)
    response = put_preferences(
        owner_client, vehicle, json.dumps(VALID_PREFERENCE | {"weekly_schedule": []})
    )
    assert response.status_code == 400
    assert "weekly_schedule" in response.json()["error"]["fields"]
    response = owner_client.post(
        f"/vehicles/{vehicle.pk}/",
        {"min_soc_pct": "30", "max_soc_pct": "90", "v2g_min_soc_pct": "40"},
    )
    assert response.status_code == 400
    assert "at least one day" in str(response.context["form"].non_field_errors())
    assert preference_row(vehicle) == before


def test_a_put_without_the_one_off_clears_it_instead_of_leaving_it_above_the_ceiling(
    owner_client, vehicle
):
    """Bug found by the Hypothesis test: PUT validated only what was sent, so an older one-off
    target (80 %) stayed stored next to a new ceiling of 50 %. PUT now replaces the whole
    preference; what is left out is cleared."""
    one_off = (timezone.now() + timedelta(days=1)).isoformat()
    response = put_preferences(
        owner_client,
        vehicle,
        json.dumps(
            VALID_PREFERENCE
            | {
                "override_departure_at": one_off,
                "override_target_soc_pct": 80,
                "boost_until": (timezone.now() + timedelta(hours=1)).isoformat(),
                "boost_to_soc_pct": 85,
            }
        ),
    )
    assert response.status_code == 200, response.content
    lowered = VALID_PREFERENCE | {
        "weekly_schedule": [{"weekday": 0, "departure": "07:00", "target_soc_pct": 40}],
        "max_soc_pct": 50,
    }
    response = put_preferences(owner_client, vehicle, json.dumps(lowered))
    assert response.status_code == 200, response.content
    stored = ChargingPreference.objects.get(vehicle=vehicle)
    assert stored.max_soc_pct == 50
    assert stored.override_departure_at is None
    assert stored.override_target_soc_pct is None
    assert stored.boost_until is None
    assert stored.boost_to_soc_pct is None


def test_lowering_the_ceiling_on_the_page_keeps_a_running_boost_within_it(owner_client, vehicle):
    """Bug found by the Hypothesis test: the page's form does not show the boost target, so
    lowering the maximum to 50 % left a boost to 80 % stored. The boost now follows the ceiling."""
    preference = ChargingPreference.objects.get(vehicle=vehicle)
    preference.boost_until = timezone.now() + timedelta(hours=2)
    preference.boost_to_soc_pct = 80
    preference.save()
    response = owner_client.post(
        f"/vehicles/{vehicle.pk}/",
        {
            "min_soc_pct": "20",
            "max_soc_pct": "50",
            "v2g_min_soc_pct": "40",
            "departure_0": "07:00",
            "target_0": "45",
        },
    )
    assert response.status_code == 302
    stored = ChargingPreference.objects.get(vehicle=vehicle)
    assert (stored.max_soc_pct, stored.boost_to_soc_pct) == (50, 50)
    assert stored.boost_until is not None
