"""Grid events end to end through the services: the program's rules refuse bad events with field
messages; dispatch makes the enrolled cars in scope participants; at its start the fleet plan
meets the kW in every slot while every car still reaches its departure target; owners opt out
within their monthly budget; two beats never start an event twice; the end hands cars back."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from programs import enrollments, events, services
from programs.models import AuditEntry, ChargingPlan, EventParticipation, Feeder, GridEvent
from tests.factories import UserFactory, VehicleFactory
from vehicles import services as vehicle_services
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

# Wednesday 2026-11-25, 15:00 in Chicago; the event runs 17:00-19:00 local; cars leave at 23:00.
NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
START, END = NOW + timedelta(hours=2), NOW + timedelta(hours=4)
# Stored plans are rounded to the watt: a fleet's stored sum may miss the solver's by 0.5 W a car.
ROUNDING_KW = 0.0005
TONIGHT_23 = NOW + timedelta(hours=8)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _car(owner, program, *, soc, zip_code="60601", v2g=False, leave_at=TONIGHT_23):
    owner.service_zip = zip_code
    owner.save()
    vehicle = VehicleFactory(owner=owner, v2g_capable=v2g)
    preference = vehicle.preference
    preference.override_departure_at = leave_at
    preference.override_target_soc_pct = 80 if not v2g else 60
    preference.v2g_consent = v2g
    preference.save()
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=NOW, soc_pct=soc, plugged_in=True, charge_limit_pct=100),
        source="poll",
    )
    enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    return vehicle


def _event(program, *, kind=GridEvent.Kind.IMPORT_CAP, kw=5.0, **extra):
    return events.create_event(
        program=program,
        kind=kind,
        starts_at=START,
        ends_at=END,
        target_kw=kw,
        actor=None,
        **extra,
    )


def _window_kw(plan, start=START, end=END):
    first = int((start - plan.start) / timedelta(minutes=15))
    last = int((end - plan.start) / timedelta(minutes=15))
    return plan.power_kw[first:last]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"starts_at": NOW - timedelta(minutes=5)}, "starts_at", "must start in the future"),
        ({"ends_at": START + timedelta(hours=5)}, "ends_at", "Longer than the program allows"),
        ({"starts_at": NOW + timedelta(minutes=20)}, "starts_at", "must hear of an event 60 min"),
        ({"target_kw": 0}, "target_kw", "positive number of kW"),
        ({"region": "Nowhere"}, "region", "No such region"),
    ],
)
def test_events_that_break_the_rules_are_refused_with_field_messages(
    owner, program, change, field, message
):
    _car(owner, program, soc=40)
    values = {"starts_at": START, "ends_at": END, "target_kw": 5.0, "region": ""} | change
    with pytest.raises(ValidationError) as refused:
        events.create_event(program=program, kind="import_cap", actor=None, **values)
    assert any(message in text for text in refused.value.message_dict[field])
    assert not GridEvent.objects.exists()
    assert not AuditEntry.objects.filter(action="event.create").exists()


def test_more_kw_than_enrolled_and_the_monthly_limit_are_refused(owner, v2g_program):
    _car(owner, v2g_program, soc=80, v2g=True)  # one V2G car of 7.2 kW
    with pytest.raises(ValidationError) as refused:
        _event(v2g_program, kind=GridEvent.Kind.EXPORT_REQUEST, kw=20)
    assert "can export at most 7 kW" in refused.value.message_dict["target_kw"][0]
    v2g_program.max_events_per_month = 1
    v2g_program.save()
    events.schedule_event(
        event=_event(v2g_program, kind=GridEvent.Kind.EXPORT_REQUEST, kw=5), actor=None
    )
    with pytest.raises(ValidationError) as refused:
        _event(v2g_program, kind=GridEvent.Kind.EXPORT_REQUEST, kw=5)
    assert "already has its 1 event(s)" in refused.value.message_dict["starts_at"][0]


def test_dispatch_reaches_the_enrolled_cars_of_the_feeder_only(program):
    inside = _car(UserFactory(), program, soc=40)
    outside = _car(UserFactory(), program, soc=40, zip_code="60614")
    not_enrolled = VehicleFactory()
    event = _event(program, feeder=Feeder.objects.get(code="loop-1"))
    assert event.status == GridEvent.Status.DRAFT
    event = events.schedule_event(event=event, actor=None)
    assert event.status == GridEvent.Status.SCHEDULED
    assert event.notified_at == NOW
    participants = set(event.participations.values_list("vehicle_id", flat=True))
    assert participants == {inside.pk}
    assert outside.pk not in participants
    assert not_enrolled.pk not in participants
    assert AuditEntry.objects.get(action="event.dispatch").data == {"participants": 1}


def test_an_import_cap_is_met_in_every_slot_and_every_departure_is_kept(
    program, published, django_capture_on_commit_callbacks
):
    cars = [_car(UserFactory(), program, soc=soc) for soc in (35, 40, 45)]
    event = events.schedule_event(event=_event(program, kw=5.0), actor=None)
    preview = events.preview_event(event=event, now=NOW)
    assert preview.participants == 3
    assert preview.plugged_in == 3
    assert len(preview.expected_kw) == 8
    assert max(preview.expected_kw) <= 5.0 + 1e-6
    assert preview.at_risk == []
    assert not ChargingPlan.objects.exists()  # the preview stores nothing

    with (
        time_machine.travel(START, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert events.advance_events() == {"activated": 1, "completed": 0}
        assert events.advance_events() == {"activated": 0, "completed": 0}  # claimed once
    event.refresh_from_db()
    assert event.status == GridEvent.Status.ACTIVE
    plans = [ChargingPlan.objects.get(vehicle=car) for car in cars]  # exactly one each
    assert all(plan.trigger == "event" for plan in plans)
    for slot in range(8):
        assert sum(_window_kw(plan)[slot] for plan in plans) <= 5.0 + ROUNDING_KW * len(plans)
    for plan in plans:
        assert plan.soc[plan.departure_slot] >= 0.80 - 1e-6  # departure promise kept
        assert plan.shortfall_kwh == pytest.approx(0, abs=1e-6)
    committed = EventParticipation.objects.values_list("committed_kw", flat=True)
    assert all(len(kw) == 8 for kw in committed)
    assert ("bulk", "programs.execute_vehicle_slots") in {(q, t) for q, t, _ in published}

    with time_machine.travel(END, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert events.advance_events() == {"activated": 0, "completed": 1}
    event.refresh_from_db()
    assert event.status == GridEvent.Status.COMPLETED
    released = [args for queue, task, args in published if task == "programs.replan_vehicles"]
    assert sorted(released[0][0]) == sorted(str(car.pk) for car in cars)


def test_an_export_request_is_met_without_crossing_the_v2g_floor(v2g_program):
    cars = [
        _car(UserFactory(), v2g_program, soc=80, v2g=True, leave_at=NOW + timedelta(hours=16))
        for _ in range(2)
    ]
    event = events.schedule_event(
        event=_event(v2g_program, kind=GridEvent.Kind.EXPORT_REQUEST, kw=10.0), actor=None
    )
    with time_machine.travel(START, tick=False):
        events.advance_events()
    plans = [ChargingPlan.objects.get(vehicle=car) for car in cars]
    for slot in range(8):
        assert -sum(_window_kw(plan, START, END)[slot] for plan in plans) >= (
            10.0 - ROUNDING_KW * len(plans)
        )
    for plan in plans:
        assert min(plan.soc) >= 0.40 - 1e-6  # the V2G floor (factory preference default)
        assert plan.soc[plan.departure_slot] >= 0.60 - 1e-6
    assert event.participations.count() == 2


def test_opt_outs_are_free_within_the_budget_then_cost_the_fee(owner, program, published):
    vehicle = _car(owner, program, soc=40)
    enrollment = vehicle.enrollments.get()
    participations = []
    for hours in (2, 26, 50):
        event = events.create_event(
            program=program,
            kind="import_cap",
            starts_at=NOW + timedelta(hours=hours),
            ends_at=NOW + timedelta(hours=hours + 1),
            target_kw=3,
            actor=None,
        )
        events.schedule_event(event=event, actor=None)
        participations.append(EventParticipation.objects.get(event=event))
    assert events.opt_out_budget(enrollment=enrollment).describe() == (
        "2 of 2 opt-outs left this month; this one is free."
    )
    first = events.opt_out(participation=participations[0], actor=owner)
    second = events.opt_out(participation=participations[1], actor=owner, keep_soc_pct=40)
    assert (first.opt_out_fee_cents, second.opt_out_fee_cents) == (0, 0)
    assert events.opt_out_budget(enrollment=enrollment).describe() == (
        "0 of 2 opt-outs left this month; this one costs $5.00."
    )
    third = events.opt_out(participation=participations[2], actor=owner)
    assert third.opt_out_fee_cents == 500
    again = events.opt_out(participation=participations[2], actor=owner)  # idempotent
    assert again.opt_out_fee_cents == 500
    assert again.opted_out_at == third.opted_out_at
    assert AuditEntry.objects.filter(action="event.opt_out").count() == 2
    assert AuditEntry.objects.get(action="event.partial_opt_out").data["keep_soc_pct"] == 40
    assert not [task for _, task, _ in published if task == "programs.replan_vehicle"]


def test_opting_out_of_a_running_event_replans_the_car_on_the_control_queue(
    owner, program, published, django_capture_on_commit_callbacks
):
    vehicle = _car(owner, program, soc=40)
    _car(UserFactory(), program, soc=40)
    event = events.schedule_event(event=_event(program, kw=2.0), actor=None)
    with time_machine.travel(START, tick=False):
        events.advance_events()
        in_event = ChargingPlan.objects.get(vehicle=vehicle)
        assert max(_window_kw(in_event)) <= 2.0 + 1e-6
        participation = EventParticipation.objects.get(event=event, vehicle=vehicle)
        with django_capture_on_commit_callbacks(execute=True):
            events.opt_out(participation=participation, actor=owner)
        assert ("control", "programs.replan_vehicle", [str(vehicle.pk), "opt_out"]) in published
        # The replan ignores the event now: the car may draw its full 7.2 kW in the window.
        free = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="opt_out", now=START)
        assert free.trigger == "opt_out"
        assert events.active_participation(vehicle.pk, now=START) is None


def test_a_single_car_replan_during_the_event_keeps_its_share(owner, program):
    vehicle = _car(owner, program, soc=40)
    events.schedule_event(event=_event(program, kw=3.0), actor=None)
    with time_machine.travel(START, tick=False):
        events.advance_events()
        share = max(EventParticipation.objects.get(vehicle=vehicle).committed_kw)
        plan = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in", now=START)
    assert max(_window_kw(plan)) <= share + 1e-6 <= 3.0 + 1e-6
    assert plan.soc[plan.departure_slot] >= 0.80 - 1e-6


def test_cancelling_a_running_event_hands_the_cars_back(
    owner, program, published, django_capture_on_commit_callbacks
):
    vehicle = _car(owner, program, soc=40)
    event = events.schedule_event(event=_event(program), actor=None)
    with time_machine.travel(START, tick=False):
        events.advance_events()
        with django_capture_on_commit_callbacks(execute=True):
            events.cancel_event(event=event, actor=None, reason="Grid recovered")
    event.refresh_from_db()
    assert (event.status, event.cancel_reason) == (GridEvent.Status.CANCELLED, "Grid recovered")
    assert ("bulk", "programs.replan_vehicles", [[str(vehicle.pk)], "event_end"]) in published


def test_owners_see_the_event_banner_and_opt_out_from_it(client, owner, program):
    vehicle = _car(owner, program, soc=40)
    event = events.schedule_event(event=_event(program), actor=None)
    participation = EventParticipation.objects.get(event=event)
    client.force_login(owner)
    home = client.get(reverse("home")).content.decode()
    assert "Grid event coming" in home
    assert "Wed 17:00–19:00" in home
    # $2 for taking part + 25 ¢ a kWh on the 7.2 kW × 2 h it could shift.
    assert "Expected earnings about <strong>$5.60</strong>" in home
    url = reverse("programs:participation-opt-out", args=[participation.pk])
    assert url in home
    page = client.get(url).content.decode()
    assert "2 of 2 opt-outs left this month; this one is free." in page
    bad = client.post(url, {"choice": "partial"})
    assert bad.status_code == 400
    assert "Choose the charge level to keep." in bad.content.decode()
    assert client.post(url, {"choice": "partial", "keep_soc_pct": 50}).status_code == 302
    participation.refresh_from_db()
    assert participation.keep_soc_pct == 50
    assert participation.opted_out_at == NOW
    assert "keeping at least 50 %" in client.get(reverse("home")).content.decode()
    intruder = UserFactory()
    client.force_login(intruder)
    assert client.get(url).status_code == 404
    assert "Grid event" not in client.get(reverse("home")).content.decode()
    assert vehicle.participations.count() == 1


def test_event_times_are_shown_in_each_owners_time_zone(client, program):
    chicago = UserFactory(time_zone="America/Chicago")
    travelling = UserFactory(time_zone="America/Los_Angeles")
    _car(chicago, program, soc=40)
    _car(travelling, program, soc=40)
    events.schedule_event(event=_event(program), actor=None)
    client.force_login(chicago)
    assert "Wed 17:00–19:00" in client.get(reverse("home")).content.decode()
    client.force_login(travelling)
    page = client.get(reverse("home")).content.decode()
    assert "Wed 15:00–17:00" in page
    assert "17:00–19:00" not in page


def test_owners_of_unplugged_cars_are_reminded_once_within_the_hour_before(program):
    from accounts.notifications.models import Notification

    plugged = _car(UserFactory(), program, soc=40)
    unplugged = _car(UserFactory(), program, soc=40)
    vehicle_services.record_reading(
        vehicle=unplugged,
        state=VehicleState(recorded_at=NOW + timedelta(minutes=1), soc_pct=40, plugged_in=False),
        source="poll",
    )
    events.schedule_event(event=_event(program), actor=None)
    assert events.remind_unplugged(now=NOW) == 0  # two hours ahead: not yet
    with time_machine.travel(START - timedelta(minutes=45), tick=False):
        events.advance_events()
        events.advance_events()
    reminders = Notification.objects.filter(kind="plug_in_reminder")
    assert [n.owner for n in reminders] == [unplugged.owner]
    assert "Plug in" in reminders.get().title
    assert "before 17:00" in reminders.get().body  # the owner's time zone (Chicago)
    assert not Notification.objects.filter(owner=plugged.owner, kind="plug_in_reminder").exists()
