"""The Account tab and the profile API: time zone and service ZIP, validated, owner-only."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_profile_form_saves_zip_and_time_zone(owner_client, owner):
    response = owner_client.post(
        reverse("accounts:account"), {"time_zone": "America/Denver", "service_zip": "80202"}
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert (owner.time_zone, owner.service_zip) == ("America/Denver", "80202")


def test_profile_form_rejects_a_bad_zip_with_a_message(owner_client, owner):
    response = owner_client.post(
        reverse("accounts:account"), {"time_zone": "America/Denver", "service_zip": "8020"}
    )
    assert response.status_code == 400
    assert "Enter a US ZIP code like 94107." in response.content.decode()
    owner.refresh_from_db()
    assert owner.service_zip == "60601"


def test_profile_api_reads_and_updates_only_the_callers_profile(owner_client, owner):
    response = owner_client.get(reverse("api:profile"))
    assert response.status_code == 200
    assert response.json() == {
        "email": owner.email,
        "time_zone": "America/Chicago",
        "service_zip": "60601",
    }
    response = owner_client.put(
        reverse("api:profile"),
        {"time_zone": "Europe/Berlin", "service_zip": "", "email": "hijack@example.com"},
        content_type="application/json",
    )
    assert response.status_code == 200
    owner.refresh_from_db()
    assert owner.time_zone == "Europe/Berlin"
    assert owner.email != "hijack@example.com"  # read-only field ignored


def test_profile_api_answers_400_with_field_errors(owner_client, owner):
    response = owner_client.put(
        reverse("api:profile"),
        {"time_zone": "Mars/Olympus", "service_zip": "abc"},
        content_type="application/json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"time_zone", "service_zip"}
    assert error["fields"]["service_zip"] == ["Enter a US ZIP code like 94107."]
    owner.refresh_from_db()
    assert owner.time_zone == "America/Chicago"


def test_profile_api_requires_sign_in(client):
    response = client.get(reverse("api:profile"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_authenticated"


def test_profile_api_enforces_csrf_for_session_clients(owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.put(
        reverse("api:profile"),
        {"time_zone": "Europe/Berlin", "service_zip": ""},
        content_type="application/json",
    )
    assert response.status_code == 403
    owner.refresh_from_db()
    assert owner.time_zone == "America/Chicago"
