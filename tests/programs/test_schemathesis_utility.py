"""Schemathesis against the utility API's OpenAPI document (/api/utility/schema/); the owner
API's is in test_schemathesis_owner.py. Per operation, a bounded number of generated requests,
valid and invalid (fuzzed), authenticated as a real caller, once with random ids and once with
the ids of real rows. No answer may be a 5xx or break its documented schema."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_wsgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from programs.models import GridEvent
from tests.programs.factories import GridEventFactory, UtilityFactory
from tests.programs.test_utility_api import Caller, territory

pytestmark = pytest.mark.django_db
# Per operation, per generation mode, per id set: enough to cross every documented status while
# keeping the whole file to well under a minute on two cores.
EXAMPLES = 6
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(autouse=True)
def limits(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.UTILITY_API_RATE_LIMITS = {"read": 10_000, "dispatch": 10_000, "token": 10_000}
    # The fuzzers send far more than an owner would: limits must not cut their runs short.
    settings.OWNER_API_RATE_LIMITS = {"read": 10_000, "write": 10_000}


@contextmanager
def in_test_transaction():
    """Django's WSGI handler, called in the test's thread and transaction. Like Django's test
    client, its requests must not close the test's database connection (Django's test client
    reconnects the hook after each of its own requests, so this wraps the fuzzing only)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def fuzz(schema, *, headers, path_parameters=None):
    """Every operation of `schema`: positive and negative cases; returns how many were sent."""
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        known = {k: v for k, v in (path_parameters or {}).items() if k in names}
        if path_parameters and not known:
            continue  # the real-ids pass only revisits operations with ids
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=known or None)

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                nonlocal sent
                response = case.call(headers=headers)
                sent += 1
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # No invalid request exists for this operation (every input optional and
                # loosely typed): nothing to fuzz in this mode.
                assert mode is GenerationMode.NEGATIVE
    return sent


def test_utility_api_schema_holds():
    """Generated requests to every utility API operation, as a client with both scopes: no 5xx,
    every answer as documented."""
    utility = UtilityFactory(slug="lakeshore")
    program = territory(utility)
    event = GridEventFactory(program=program, status=GridEvent.Status.SCHEDULED)
    caller = Caller(utility)
    headers = {"Authorization": f"Bearer {caller.token['access_token']}"}
    with in_test_transaction() as app:
        schema = from_wsgi("/api/utility/schema/?format=json", app)
        sent = fuzz(schema, headers=headers)
        real = {"event_id": event.pk, "code": program.code}
        sent += fuzz(schema, headers=headers, path_parameters=real)
    assert sent > 100
