"""Schemathesis against the owner API's OpenAPI document (/api/schema/), signed in as an owner:
no 5xx, no answer outside its documented schema (see test_schemathesis_utility.py)."""

import pytest
from django.test import Client
from django.utils.crypto import get_random_string
from schemathesis.openapi import from_wsgi

from tests.factories import UserFactory, VehicleFactory
from tests.programs.test_schemathesis_utility import fuzz, in_test_transaction, limits

pytestmark = pytest.mark.django_db
__all__ = ["limits"]  # the autouse fixture, shared


def test_owner_api_schema_holds():
    """The same for the owner API, signed in (session and CSRF token as the app sends them)."""
    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner)
    client = Client()
    client.force_login(owner)
    csrf = get_random_string(32)
    headers = {
        "Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}",
        "X-CSRFToken": csrf,
    }
    with in_test_transaction() as app:
        schema = from_wsgi("/api/schema/?format=json", app)
        sent = fuzz(schema, headers=headers)
        sent += fuzz(schema, headers=headers, path_parameters={"vehicle_id": str(vehicle.pk)})
    assert sent > 50
