"""Notifications: stored first, delivered per channel; the centre and the bell; per-kind and
per-channel preferences; quiet hours in the owner's zone; fan-outs in batches on `bulk`; and the
callers in programs and vehicles that tell owners what happened."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.db import transaction
from django.urls import reverse

from accounts.models import User
from accounts.notifications import kinds, live, quiet, selectors, services
from accounts.notifications.models import Delivery, Notification, NotificationPreference
from programs import enrollments, events, statements
from programs.models import Enrollment, Feeder, Program, ProgramTerms, Utility
from tests.factories import UserFactory, VehicleFactory
from vehicles import services as vehicle_services
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db

# Wednesday 2026-11-25, 15:00 in Chicago (the factory owner's zone).
NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def _deliver_all() -> None:
    ids = list(Notification.objects.filter(dispatched_at=None).values_list("pk", flat=True))
    services.deliver_notifications(notification_ids=ids)


def test_the_live_group_is_the_one_the_owners_socket_joins():
    """accounts cannot import vehicles: the two names are held together here."""
    assert live.owner_group(42) == vehicle_services.owner_group(42)


def test_notify_stores_first_and_a_repeat_with_the_same_key_tells_nobody_twice(owner):
    first = services.notify(
        owner=owner,
        kind="statement_ready",
        key="statement:1",
        context={"month": "2026-10-01", "closing_cents": 1234},
    )
    again = services.notify(
        owner=owner,
        kind="statement_ready",
        key="statement:1",
        context={"month": "2026-10-01", "closing_cents": 1234},
    )
    assert first is not None
    assert again is None
    stored = Notification.objects.get(owner=owner)
    assert stored.title == "Your October 2026 statement is ready"
    assert "$12.34" in stored.body
    assert stored.dispatched_at is None  # delivery is the task's job, after commit


def test_a_broken_notification_never_breaks_the_callers_transaction(owner):
    """An unknown kind is logged and dropped; what the caller wrote in its transaction stays."""
    with transaction.atomic():
        owner.first_name = "Robin"
        owner.save()
        assert services.notify(owner=owner, kind="no_such_kind", context={}) is None
        assert services.notify_many(kind="no_such_kind", recipients=[(owner.pk, {})]) == 0
    owner.refresh_from_db()
    assert owner.first_name == "Robin"
    assert not Notification.objects.exists()


def test_delivery_enqueues_after_commit_only(owner, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Leaf"})
        assert published == []  # nothing leaves before the caller commits
    assert len(callbacks) == 1
    assert [(queue, name) for queue, name, _ in published] == [
        ("default", "accounts.deliver_notifications")
    ]


def test_a_fan_out_is_stored_at_once_and_delivered_in_batches_on_bulk(
    published, django_capture_on_commit_callbacks, settings
):
    """1,201 owners, batches of 500: three delivery tasks of 500, 500 and 201 on `bulk`."""
    settings.NOTIFICATIONS_BATCH = 500
    User.objects.bulk_create(  # no password hashing: 1,201 owners in milliseconds
        [User(email=f"fan{i}@example.com", password="!") for i in range(1201)]
    )
    owner_ids = list(User.objects.filter(email__startswith="fan").values_list("pk", flat=True))
    shared = {"program": "Peak Saver", "starts_at": NOW, "ends_at": NOW + timedelta(hours=2)}
    with django_capture_on_commit_callbacks(execute=True):
        stored = services.notify_many(
            kind="event_announced",
            key="event:9:announced",
            shared=shared,
            recipients=[(pk, {"participation": pk, "earnings_cents": 250}) for pk in owner_ids],
        )
    assert stored == 1201
    batches = [args[0] for queue, name, args in published if queue == "bulk"]
    assert [len(batch) for batch in batches] == [500, 500, 201]
    assert sorted(pk for batch in batches for pk in batch) == sorted(
        Notification.objects.values_list("pk", flat=True)
    )
    # A re-run (a retried dispatch) stores nothing twice.
    assert (
        services.notify_many(
            kind="event_announced",
            key="event:9:announced",
            shared=shared,
            recipients=[(pk, {"participation": pk, "earnings_cents": 250}) for pk in owner_ids],
        )
        == 0
    )


def test_the_centre_lists_the_owners_notifications_and_marks_them_read(owner_client, owner):
    mine = services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Leaf"})
    other = services.notify(
        owner=UserFactory(), kind="charging_complete", context={"vehicle": "Secret car"}
    )
    page = owner_client.get(reverse("accounts:notification-list")).content.decode()
    assert "Leaf is charged" in page
    assert "Secret car" not in page
    home = owner_client.get(reverse("accounts:account")).content.decode()
    assert "data-unread>1</span>" in home  # the bell in the top bar

    # Another owner's notification can be neither read nor opened (I6).
    owner_client.post(reverse("accounts:notification-read", args=[other.pk]))
    other.refresh_from_db()
    assert other.read_at is None
    assert (
        owner_client.get(reverse("accounts:notification-open", args=[other.pk])).status_code == 404
    )

    response = owner_client.get(reverse("accounts:notification-open", args=[mine.pk]))
    assert response.status_code == 302
    assert response["Location"] == mine.url
    assert selectors.bell_state(owner=owner)[0] == 0


def test_the_bell_counts_only_the_owners_unread_and_carries_their_newest_id(owner_client, owner):
    other = UserFactory()
    assert selectors.bell_state(owner=owner) == (0, 0)
    first = services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Leaf"})
    newest = services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Ioniq"})
    services.notify(owner=other, kind="charging_complete", context={"vehicle": "Bolt"})
    owner_client.post(reverse("accounts:notification-read", args=[first.pk]))

    assert selectors.bell_state(owner=owner) == (1, newest.pk)
    page = owner_client.get(reverse("home")).content.decode()
    assert f'data-last-id="{newest.pk}"' in page
    assert 'aria-label="Notifications, 1 unread"' in page


def test_mark_read_by_htmx_returns_the_item_and_mark_all_read_clears_the_bell(owner_client, owner):
    first = services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Leaf"})
    services.notify(owner=owner, kind="charging_complete", context={"vehicle": "Ioniq"})
    response = owner_client.post(
        reverse("accounts:notification-read", args=[first.pk]), HTTP_HX_REQUEST="true"
    )
    assert f'id="notification-{first.pk}"' in response.content.decode()
    assert "Mark read" not in response.content.decode()
    assert selectors.bell_state(owner=owner)[0] == 1
    owner_client.post(reverse("accounts:notification-read-all"))
    assert selectors.bell_state(owner=owner)[0] == 0


def test_account_page_saves_per_kind_and_channel_preferences_and_quiet_hours(owner_client, owner):
    page = owner_client.get(reverse("accounts:account")).content.decode()
    assert "Add to Home Screen" in page  # the iOS hint
    assert "data-vapid-key=" in page
    form = {"quiet_hours": "on", "quiet_start": "21:30", "quiet_end": "06:45"}
    for kind in kinds.SPECS:
        form[f"{kind}__push"] = "on"
    form["event_announced__email"] = "on"
    owner_client.post(reverse("accounts:notification-preferences"), form)
    preference = NotificationPreference.objects.get(owner=owner)
    assert preference.quiet_start == time(21, 30)
    assert preference.quiet_end == time(6, 45)
    assert preference.wants("event_announced", "email")
    assert not preference.wants("statement_ready", "email")  # was on by default, now off
    assert preference.wants("charging_complete", "push")  # was off by default, now on


def test_email_goes_only_where_the_owner_wants_it(owner, mailoutbox):
    NotificationPreference.objects.create(
        owner=owner,
        channels={"statement_ready": {"push": False, "email": False}},
    )
    services.notify(owner=owner, kind="statement_ready", context={"month": "2026-10-01"})
    services.notify(
        owner=owner, kind="enrollment_approved", context={"program": "Peak Saver"}
    )  # email on by default
    _deliver_all()
    assert [m.subject for m in mailoutbox] == ["[ChargeScape] You're in: Peak Saver"]
    statuses = dict(Notification.objects.values_list("kind", "email_status"))
    assert statuses == {"statement_ready": Delivery.SKIPPED, "enrollment_approved": Delivery.SENT}


@pytest.mark.parametrize(
    ("local", "until"),
    [
        # 22:00–07:00 in Chicago, read in local time
        (datetime(2026, 11, 25, 21, 59), None),
        (datetime(2026, 11, 25, 22, 0), datetime(2026, 11, 26, 7, 0)),
        (datetime(2026, 11, 26, 3, 0), datetime(2026, 11, 26, 7, 0)),
        (datetime(2026, 11, 26, 7, 0), None),
        # The night clocks go back (1 Nov 2026): quiet still ends at 07:00 local (CST).
        (datetime(2026, 10, 31, 23, 30), datetime(2026, 11, 1, 7, 0)),
    ],
)
def test_quiet_hours_follow_the_owners_local_clock(local, until):
    import zoneinfo

    zone = zoneinfo.ZoneInfo("America/Chicago")
    ends = quiet.quiet_until(
        enabled=True,
        start=time(22, 0),
        end=time(7, 0),
        time_zone="America/Chicago",
        now=local.replace(tzinfo=zone).astimezone(UTC),
    )
    if until is None:
        assert ends is None
    else:
        assert ends.astimezone(zone).replace(tzinfo=None) == until
        assert ends.utcoffset() == timedelta(hours=-6)  # CST after the change


def test_quiet_hours_off_or_empty_never_hold():
    for enabled, start, end in [(False, time(22), time(7)), (True, time(7), time(7))]:
        assert (
            quiet.quiet_until(enabled=enabled, start=start, end=end, time_zone="UTC", now=NOW)
            is None
        )


# --- Callers: programs and vehicles tell owners --------------------------------------------------


@pytest.fixture
def program(db):
    utility = Utility.objects.create(name="Lakeshore Electric", slug="lakeshore")
    Feeder.objects.create(utility=utility, code="loop-1", region="Loop", zip_codes=["60601"])
    program = Program.objects.create(
        utility=utility,
        code="peak-saver",
        name="Peak Saver",
        kind=Program.Kind.DEMAND_RESPONSE,
        status=Program.Status.OPEN,
        summary="Let us shift your charging when the grid is busy.",
    )
    ProgramTerms.objects.create(
        program=program,
        version=1,
        body="You agree that we may shift your charging during grid events.",
        incentives={"per_event_cents": 200, "per_kwh_cents": 25},
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return program


def enrolled_car(owner, program):
    vehicle = VehicleFactory(owner=owner)
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=NOW, soc_pct=50, plugged_in=True, charge_limit_pct=100),
        source="poll",
    )
    enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    return vehicle


def test_dispatching_an_event_tells_every_participant_with_window_earnings_and_opt_out(
    owner, program
):
    with time_machine.travel(NOW, tick=False):
        enrolled_car(owner, program)
        neighbour = UserFactory()
        enrolled_car(neighbour, program)
        event = events.create_event(
            program=program,
            kind="import_cap",
            starts_at=NOW + timedelta(hours=2),
            ends_at=NOW + timedelta(hours=4),
            target_kw=5.0,
            actor=None,
        )
        events.schedule_event(event=event, actor=None)
        events.schedule_event(event=event, actor=None)  # a second dispatch tells nobody again
    notices = Notification.objects.filter(kind="event_announced")
    assert sorted(notices.values_list("owner_id", flat=True)) == sorted([owner.pk, neighbour.pk])
    notice = notices.get(owner=owner)
    participation = event.participations.get(vehicle__owner=owner)
    assert notice.url == reverse("programs:participation-opt-out", args=[participation.pk])
    # 17:00–19:00 Chicago; 2 h notice; $2 + 25¢ × 7.2 kW × 2 h = $5.60
    assert notice.title == "Grid event Wed 17:00: earn about $5.60"
    facts = dict(notice.data["facts"])
    assert facts["When"] == "Wed Nov 25, 17:00–19:00 CST"
    assert facts["Notice"] == "2 hours ahead"
    assert facts["Expected earnings"] == "about $5.60"


def test_a_suspended_enrollment_tells_the_owner_why(owner, program):
    vehicle = enrolled_car(owner, program)
    enrollment = Enrollment.objects.get(vehicle=vehicle)
    enrollments.set_status(
        enrollment=enrollment, status="suspended", reason="Your charger went offline.", actor=None
    )
    notice = Notification.objects.get(owner=owner, kind="enrollment_suspended")
    assert "Your charger went offline." in notice.body
    enrollments.set_status(enrollment=enrollment, status="active", reason="back", actor=None)
    assert Notification.objects.filter(owner=owner, kind="enrollment_approved").exists()


def test_a_closed_month_tells_the_owner_their_statement_is_ready_once(owner):
    statements.close_month(owner=owner, month=date(2026, 10, 1))
    statements.close_month(owner=owner, month=date(2026, 10, 1))
    notice = Notification.objects.get(owner=owner, kind="statement_ready")
    assert notice.title == "Your October 2026 statement is ready"


def test_a_settled_event_tells_each_paid_owner_what_they_delivered_and_earned(owner, program):
    """$2 + 25 ¢ × 7.2 kWh (7.2 kW shifted for an hour) = $3.80, told once."""
    from programs import settlement
    from programs.models import EventParticipation, GridEvent
    from vehicles.models import VehicleReading

    vehicle = enrolled_car(owner, program)
    event = GridEvent.objects.create(
        program=program,
        kind="import_cap",
        status=GridEvent.Status.COMPLETED,
        starts_at=NOW,
        ends_at=NOW + timedelta(hours=1),
        target_kw=10,
    )
    EventParticipation.objects.create(
        event=event,
        vehicle=vehicle,
        enrollment=Enrollment.objects.get(vehicle=vehicle),
        baseline_kw=[7.2] * 4,
    )
    for slot in range(4):
        VehicleReading.objects.create(
            vehicle=vehicle,
            recorded_at=NOW + timedelta(minutes=15 * slot + 5),
            source="poll",
            soc_pct=50,
            power_kw=0,
        )
    settlement.settle_event(event_id=event.pk)
    settlement.settle_event(event_id=event.pk)
    notice = Notification.objects.get(owner=owner, kind="event_ended")
    assert notice.title == "You earned $3.80"
    assert "delivered 7.2 kWh" in notice.body
    assert notice.url == reverse("programs:earnings")


def test_a_departure_at_risk_tells_the_owner_once_with_boost_and_urgently(owner):
    """The beat runs every minute; the owner hears once per departure at risk."""
    from tests.vehicles.test_departure_promise import NOW as EARLY
    from tests.vehicles.test_departure_promise import _plan, _report
    from vehicles.control.confirm import record_departure_warnings

    with time_machine.travel(EARLY, tick=False):
        vehicle = VehicleFactory(owner=owner, battery_kwh=60, nickname="Leafy")
        _report(vehicle, plugged_in=True)
        _plan(vehicle, reaches_pct=62)
        record_departure_warnings()
        record_departure_warnings()
    notice = Notification.objects.get(owner=owner, kind="target_at_risk")
    assert notice.urgent
    assert notice.title == "Leafy may not be ready"
    assert notice.body == (
        "You'll leave with about 62 % instead of 80 % at 07:00. Tap Boost to charge at full "
        "power now."
    )
    assert notice.url == reverse("vehicles:vehicle-detail", args=[vehicle.pk])
    assert dict(notice.data["facts"])["Expected at departure"] == "62 %"
