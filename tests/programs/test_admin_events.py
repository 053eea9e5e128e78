# ruff: noqa: F811 — pytest fixtures imported from admin_fixtures are used as arguments
"""A manager's grid event in the admin: create (input errors refused, nothing created or
enqueued) → preview (participants, plugged-in cars, expected kW per slot, departures at risk;
stores nothing) → dispatch (typed program code above the size threshold) → live view
(requested vs committed vs delivered, opt-outs, failing devices; a polled fragment) → cancel."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from programs.models import AuditEntry, EventParticipation, GridEvent
from programs.services import slot_start
from tests.factories import VehicleFactory
from tests.programs.admin_fixtures import manager, ours, theirs  # noqa: F401 — fixtures
from tests.programs.factories import (
    EnrollmentFactory,
    EventParticipationFactory,
    GridEventFactory,
    VehicleReadingFactory,
)
from vehicles.control.models import Command

pytestmark = pytest.mark.django_db
ADD = "admin:programs_gridevent_add"


def _local(moment):
    """The value of a datetime-local input, in the manager's own time zone."""
    return timezone.localtime(moment, timezone.get_default_timezone()).strftime("%Y-%m-%dT%H:%M")


def _form(program, *, start, minutes=60, kind="import_cap", kw=5, **extra):
    return {
        "program": program.pk,
        "kind": kind,
        "starts_at": _local(start),
        "ends_at": _local(start + timedelta(minutes=minutes)),
        "target_kw": kw,
        "region": "",
        "feeder": "",
        **extra,
    }


@pytest.fixture
def utc_manager(manager):
    """Form times are read in the manager's profile time zone: UTC keeps the arithmetic plain."""
    manager.time_zone = "UTC"
    manager.save(update_fields=["time_zone"])
    return manager


def _later(hours=2):
    return slot_start(timezone.now() + timedelta(hours=hours))


@pytest.mark.parametrize(
    ("case", "field", "message"),
    [
        ("past", "starts_at", "The event must start in the future."),
        ("short_notice", "starts_at", "Owners must hear of an event 60 min ahead"),
        (
            "too_long",
            "ends_at",
            "Longer than the program allows (240 min); this one lasts 300 min.",
        ),
        ("over_month", "starts_at", "This month already has its 1 event(s)."),
        ("more_than_enrolled", "target_kw", "More than enrolled: the V2G cars in scope can export"),
        ("nothing_in_scope", "target_kw", "No enrolled car in scope can respond to this event."),
    ],
)
def test_input_errors_are_refused_and_nothing_is_created(
    client, utc_manager, ours, case, field, message, django_capture_on_commit_callbacks
):
    program, kind, kw = ours.program, "import_cap", 5
    start, minutes = _later(), 60
    if case == "past":
        start = slot_start(timezone.now()) - timedelta(hours=1)
    elif case == "short_notice":
        start = timezone.now() + timedelta(minutes=30)
    elif case == "too_long":
        minutes = 300
    elif case == "over_month":
        program.max_events_per_month = 1
        program.save()
        GridEventFactory(program=program, status=GridEvent.Status.SCHEDULED, starts_at=start)
        start += timedelta(hours=1)
        if start.month != (start - timedelta(hours=1)).month:
            pytest.skip("the hour crosses a month boundary")
    elif case == "more_than_enrolled":
        program, kind, kw = ours.v2g_program, "export_request", 100
        car = VehicleFactory(owner=ours.owner, v2g_capable=True, preference__v2g_consent=True)
        EnrollmentFactory(program=program, vehicle=car)
    elif case == "nothing_in_scope":
        program, kind, kw = ours.v2g_program, "export_request", 5
    events_before = GridEvent.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse(ADD), _form(program, start=start, minutes=minutes, kind=kind, kw=kw)
        )
    assert response.status_code == 200
    assert "The event was not created" in response.content.decode()
    errors = response.context["form"].errors
    assert any(message in error for error in errors[field]), errors
    assert GridEvent.objects.count() == events_before
    assert not AuditEntry.objects.filter(action="event.create").exists()
    assert callbacks == []


def test_a_valid_event_becomes_a_draft_and_opens_its_preview(client, utc_manager, ours):
    start = _later()
    response = client.post(
        reverse(ADD), _form(ours.program, start=start, kw=6, feeder=ours.loop.pk)
    )
    event = GridEvent.objects.exclude(pk=ours.event.pk).get()
    assert response["Location"] == reverse("admin:programs_gridevent_preview", args=[event.pk])
    assert (event.status, event.starts_at, event.target_kw) == ("draft", start, 6)
    assert event.feeder == ours.loop
    assert event.created_by == utc_manager
    assert AuditEntry.objects.get(action="event.create").actor == utc_manager


def _plugged_fleet(side, *, count, soc=50.0):
    cars = []
    for _ in range(count):
        car = VehicleFactory(owner=side.owner)
        EnrollmentFactory(program=side.program, vehicle=car)
        VehicleReadingFactory(vehicle=car, soc_pct=soc, plugged_in=True)
        cars.append(car)
    return cars


def test_preview_shows_participants_expected_kw_and_departures_at_risk(client, manager, ours):
    """The preview plans the cars in scope; a car that cannot reach its target is listed."""
    _plugged_fleet(ours, count=3)
    late = VehicleFactory(
        owner=ours.owner,
        nickname="Short Trip",
        preference__override_departure_at=timezone.now() + timedelta(hours=3),
        preference__override_target_soc_pct=100,
    )
    EnrollmentFactory(program=ours.program, vehicle=late)
    VehicleReadingFactory(vehicle=late, soc_pct=10, plugged_in=True)
    north_owner = VehicleFactory(owner__service_zip="60614")
    EnrollmentFactory(program=ours.program, vehicle=north_owner)  # outside the feeder's scope
    start = _later()
    event = GridEventFactory(
        program=ours.program,
        feeder=ours.loop,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        target_kw=10,
    )
    response = client.get(reverse("admin:programs_gridevent_preview", args=[event.pk]))
    allocation = response.context["allocation"]
    # Loop: the fixture's active Leaf (no reading), three plugged-in cars and the late car.
    assert (allocation.participants, allocation.plugged_in) == (5, 4)
    assert len(allocation.expected_kw) == 8  # two hours of 15-minute slots
    assert max(allocation.expected_kw) <= 10 + 1e-6  # the plan keeps the import under the cap
    assert allocation.at_risk == [str(late.pk)]
    page = response.content.decode()
    assert "Short Trip" in page
    assert "departures at risk" in page
    assert 'data-figure="preview-figure"' in page
    # The preview stored nothing and told no one.
    event.refresh_from_db()
    assert event.status == GridEvent.Status.DRAFT
    assert not EventParticipation.objects.filter(event=event).exists()
    assert not AuditEntry.objects.filter(action="event.dispatch").exists()


def test_dispatch_a_small_event(client, manager, ours):
    _plugged_fleet(ours, count=2)
    page = client.get(reverse("admin:programs_gridevent_preview", args=[ours.event.pk]))
    assert "Type <code>" not in page.content.decode()
    response = client.post(reverse("admin:programs_gridevent_dispatch", args=[ours.event.pk]))
    assert response["Location"] == reverse("admin:programs_gridevent_live", args=[ours.event.pk])
    ours.event.refresh_from_db()
    assert ours.event.status == GridEvent.Status.SCHEDULED
    assert ours.event.notified_at is not None
    assert ours.event.participations.count() == 3  # the Leaf and the two new cars
    entry = AuditEntry.objects.get(action="event.dispatch")
    assert (entry.actor, entry.data["participants"]) == (manager, 3)


def test_a_large_event_needs_the_program_code_typed(client, manager, ours, settings):
    settings.EVENT_CONFIRM_ABOVE_KW = 10
    ours.event.target_kw = 10
    ours.event.save()
    url = reverse("admin:programs_gridevent_dispatch", args=[ours.event.pk])
    page = client.get(reverse("admin:programs_gridevent_preview", args=[ours.event.pk]))
    assert f"Type <code>{ours.program.code}</code> to confirm" in page.content.decode()

    for typed in ("", "peak", ours.program.code.upper()):
        response = client.post(url, {"confirm_code": typed})
        assert response.status_code == 200
        assert f"type {ours.program.code} exactly to dispatch it" in response.content.decode()
        ours.event.refresh_from_db()
        assert ours.event.status == GridEvent.Status.DRAFT

    response = client.post(url, {"confirm_code": ours.program.code})
    assert response.status_code == 302
    ours.event.refresh_from_db()
    assert ours.event.status == GridEvent.Status.SCHEDULED


def test_dispatch_is_refused_when_the_rules_no_longer_hold(client, manager, ours):
    """A draft left open until its notice period ran out cannot be dispatched."""
    GridEvent.objects.filter(pk=ours.event.pk).update(
        starts_at=timezone.now() + timedelta(minutes=20),
        ends_at=timezone.now() + timedelta(minutes=80),
    )
    preview = client.get(reverse("admin:programs_gridevent_preview", args=[ours.event.pk]))
    assert "This draft cannot be dispatched now" in preview.content.decode()
    response = client.post(
        reverse("admin:programs_gridevent_dispatch", args=[ours.event.pk]), follow=True
    )
    assert "Not dispatched: Owners must hear of an event 60 min ahead" in response.content.decode()
    ours.event.refresh_from_db()
    assert ours.event.status == GridEvent.Status.DRAFT
    assert not ours.event.participations.exists()


@pytest.fixture
def running_event(ours):
    """An active import cap that started 30 minutes ago (six slots), two cars committed to
    3 kW together, one car opted out, and readings from the first three slots."""
    now = slot_start(timezone.now()) + timedelta(minutes=7)
    start = slot_start(now) - timedelta(minutes=30)
    event = GridEventFactory(
        program=ours.program,
        status=GridEvent.Status.ACTIVE,
        starts_at=start,
        ends_at=start + timedelta(minutes=90),
        target_kw=8,
        notified_at=start - timedelta(hours=2),
    )
    a, b, c = (
        EventParticipationFactory(event=event, committed_kw=[kw] * 6) for kw in (2.0, 1.0, 3.0)
    )
    c.opted_out_at = start + timedelta(minutes=3)
    c.opt_out_fee_cents = 500
    c.save()
    for minutes, car, kw in ((5, a, 2.0), (10, a, 4.0), (20, a, 3.0), (20, b, 1.0), (21, c, 7.0)):
        VehicleReadingFactory(
            vehicle=car.vehicle, recorded_at=start + timedelta(minutes=minutes), power_kw=kw
        )
    with time_machine.travel(now, tick=False):
        Command.objects.create(
            vehicle=a.vehicle,
            action=Command.Action.STOP_CHARGE,
            state=Command.State.FAILED,
            idempotency_key="event-test-a",
            last_error="The car did not answer.",
            source=Command.Source.EVENT,
        )
    return event, now, (a, b, c)


def test_live_view_shows_requested_committed_and_delivered(client, manager, running_event):
    event, now, (_, _, c) = running_event
    with time_machine.travel(now, tick=False):
        page = client.get(reverse("admin:programs_gridevent_live", args=[event.pk]))
        fragment = client.get(reverse("admin:programs_gridevent_live_fragment", args=[event.pk]))
    delivery = fragment.context["delivery"]
    assert delivery.committed_kw == [3.0] * 6  # the opted-out car's 3 kW no longer counts
    # Mean power per car and slot, summed: slot 0 car A (2+4)/2, slot 1 A 3 + B 1, slot 2 (now)
    # nothing yet, later slots not started.
    assert delivery.delivered_kw == [3.0, 4.0, 0.0, None, None, None]
    assert (fragment.context["committed_now"], fragment.context["delivered_now"]) == (3.0, 0.0)
    body = fragment.content.decode()
    assert 'hx-trigger="every 15s"' in body
    assert c.vehicle.display_name in body  # in the opt-outs
    assert "$5.00" in body
    assert "The car did not answer." in body  # a failing device
    assert "<script" not in body.replace('<script id="live-figure" type="application/json">', "")
    live = page.content.decode()
    assert "Cancel event" in live
    assert 'id="cs-live"' in live


def test_a_finished_event_stops_polling(client, manager, running_event):
    event, now, _ = running_event
    GridEvent.objects.filter(pk=event.pk).update(status=GridEvent.Status.COMPLETED)
    with time_machine.travel(now, tick=False):
        fragment = client.get(reverse("admin:programs_gridevent_live_fragment", args=[event.pk]))
    assert "hx-trigger" not in fragment.content.decode()


def test_delivery_csv_per_participant(client, manager, running_event):
    event, now, (a, b, c) = running_event
    with time_machine.travel(now, tick=False):
        response = client.get(reverse("admin:programs_gridevent_delivery", args=[event.pk]))
    rows = {
        row["vehicle_id"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))
    }
    assert set(rows) == {str(p.vehicle_id) for p in (a, b, c)}
    assert rows[str(a.vehicle_id)]["committed_kwh"] == "3.0"  # 2 kW for 1.5 h
    assert rows[str(a.vehicle_id)]["measured_kwh"] == "1.5"  # 3 kW for two 15-minute slots
    assert rows[str(b.vehicle_id)]["measured_kwh"] == "0.25"
    assert rows[str(c.vehicle_id)]["opted_out_at"] != ""
    assert rows[str(c.vehicle_id)]["opt_out_fee_cents"] == "500"
    assert rows[str(a.vehicle_id)]["opted_out_at"] == ""


def test_cancel_needs_a_reason_and_is_audited(
    client, manager, running_event, django_capture_on_commit_callbacks
):
    event, _, _ = running_event
    url = reverse("admin:programs_gridevent_cancel", args=[event.pk])
    response = client.post(url, {"reason": ""}, follow=True)
    assert "Not cancelled: Give a reason for cancelling the event." in response.content.decode()
    event.refresh_from_db()
    assert event.status == GridEvent.Status.ACTIVE

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"reason": "Peak passed early."}, follow=True)
    assert "Event cancelled" in response.content.decode()
    event.refresh_from_db()
    assert (event.status, event.cancel_reason) == ("cancelled", "Peak passed early.")
    assert AuditEntry.objects.get(action="event.cancel").actor == manager
    assert len(callbacks) == 1  # the participants go back to their own plans (one batch)


def test_an_events_page_follows_its_status(client, manager, ours):
    change = reverse("admin:programs_gridevent_change", args=[ours.event.pk])
    assert client.get(change)["Location"] == reverse(
        "admin:programs_gridevent_preview", args=[ours.event.pk]
    )
    client.post(reverse("admin:programs_gridevent_dispatch", args=[ours.event.pk]))
    assert client.get(change)["Location"] == reverse(
        "admin:programs_gridevent_live", args=[ours.event.pk]
    )
