"""The activity log: every command of the owner's car, newest first and paginated, with who asked,
the safety check's reason in the owner's words, delivery, confirmation and failure, at times in
the owner's time zone; an empty state; and no one else's car (DESIGN.md I6, I7)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory, VehicleFactory
from tests.vehicles.control.conftest import car  # noqa: F401 — a car linked to the simulated cloud
from vehicles.control import services
from vehicles.control.models import Command
from vehicles.views import ACTIVITY_PAGE_SIZE

pytestmark = pytest.mark.django_db

# 13:05 UTC is 07:05 in Chicago (the factory owner's zone).
T0 = datetime(2026, 1, 6, 13, 5, tzinfo=UTC)


def _command(vehicle, key, action=Command.Action.START_CHARGE, **fields):
    command, _ = services.create_command(
        vehicle=vehicle, action=action, idempotency_key=key, actor="test", **fields
    )
    return command


def _url(vehicle, page=None):
    url = reverse("vehicles:vehicle-activity", args=[vehicle.pk])
    return f"{url}?page={page}" if page else url


def _titles(html):
    return re.findall(r"<h3>([^<]+)</h3>", html)


def test_the_log_tells_each_commands_story_in_plain_words(owner_client, owner):
    """A refusal shows the gateway's reason (addressed to the owner), a confirmed command its
    confirmation, a failed one the car's reason; newest first; local times."""
    vehicle = VehicleFactory(owner=owner)
    with time_machine.travel(T0, tick=False):
        refused = _command(
            vehicle,
            "stop",
            Command.Action.STOP_CHARGE,
            lease_end=T0 + timedelta(minutes=10),
        )
        # No SoC known: curtailing is refused before anything is sent.
        services.send_command(command_id=refused.pk)
    with time_machine.travel(T0 + timedelta(minutes=20), tick=False):
        limit = _command(vehicle, "limit", Command.Action.SET_CHARGE_LIMIT, limit_pct=10)
        services.send_command(command_id=limit.pk)

    page = owner_client.get(_url(vehicle))
    assert page.status_code == 200
    html = page.text
    assert _titles(html) == ["Set the charge limit to 10 %", "Hold charging"]
    assert "Not sent, for safety: A 10 % limit is below your 30 % minimum." in html
    assert "Not sent, for safety: The car&#x27;s state of charge is unknown." in html
    assert "Asked by your charging plan." in html
    assert ">07:05<" in html  # Chicago time, not 13:05 UTC
    assert ">07:25<" in html
    assert "Tuesday 6 January" in html
    assert html.count('class="badge warn">Not sent<') == 2


def test_failures_and_confirmations_read_plainly(owner_client, car, cloud):  # noqa: F811
    """Through the simulated cloud: an unplugged car refuses a start (failed, in plain words),
    and a stop the car says it already holds is confirmed without a second send."""
    cloud.set_state(car.vin, plugged=False)
    start = _command(car.vehicle, "start")
    assert services.send_command(command_id=start.pk).state == Command.State.FAILED
    cloud.set_state(car.vin, plugged=True, charging=False)
    car.report(soc_pct=50)
    stop = _command(
        car.vehicle,
        "stop",
        Command.Action.STOP_CHARGE,
        lease_end=timezone.now() + timedelta(minutes=10),
    )
    assert services.send_command(command_id=stop.pk).state == Command.State.CONFIRMED

    html = owner_client.get(_url(car.vehicle)).text
    assert _titles(html) == ["Hold charging", "Start charging"]
    assert "Failed: The car is not plugged in." in html
    assert "Confirmed: the car is not charging." in html
    assert 'class="badge error">Failed<' in html
    assert 'class="badge ok">Confirmed<' in html


def test_the_log_is_paginated_newest_first(owner_client, owner):
    vehicle = VehicleFactory(owner=owner)
    for number in range(ACTIVITY_PAGE_SIZE + 3):
        with time_machine.travel(T0 + timedelta(minutes=number), tick=False):
            _command(vehicle, f"k{number}", Command.Action.SET_CHARGE_LIMIT, limit_pct=number)
    first = owner_client.get(_url(vehicle)).text
    titles = _titles(first)
    assert len(titles) == ACTIVITY_PAGE_SIZE
    assert titles[0] == f"Set the charge limit to {ACTIVITY_PAGE_SIZE + 2} %"
    assert "Page 1 of 2" in first
    assert 'rel="next"' in first
    second = owner_client.get(_url(vehicle, page=2)).text
    assert _titles(second) == [f"Set the charge limit to {n} %" for n in (2, 1, 0)]
    assert 'rel="prev"' in second


def test_an_empty_log_says_what_will_appear(owner_client, owner):
    vehicle = VehicleFactory(owner=owner)
    html = owner_client.get(_url(vehicle)).text
    assert "Nothing here yet" in html
    assert "each step shows up here" in html
    detail = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk])).text
    assert _url(vehicle) in detail  # linked from the vehicle page


def test_another_owners_activity_is_not_found(owner_client, owner):
    """Owner B asking for owner A's car gets a 404 and sees none of its commands."""
    theirs = VehicleFactory(owner=UserFactory())
    _command(theirs, "theirs")
    response = owner_client.get(_url(theirs))
    assert response.status_code == 404
    assert "Start charging" not in response.text


def test_signed_out_visitors_are_sent_to_sign_in(client, owner):
    vehicle = VehicleFactory(owner=owner)
    response = client.get(_url(vehicle))
    assert response.status_code == 302
    assert "/accounts/login/" in response.url
