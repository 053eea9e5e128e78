# ruff: noqa: F811 — pytest fixtures imported from admin_fixtures are used as arguments
"""The program manager's settlement reports (DESIGN.md I6): per event and per program and month,
as pages and CSV, only ever for the manager's own utility."""

import csv
import importlib
import io
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from programs import settlement
from programs.models import EventParticipation, GridEvent
from tests.programs.admin_fixtures import manager, ours, theirs  # noqa: F401 — fixtures
from vehicles.models import VehicleReading

pytestmark = pytest.mark.django_db


def _settled_event(side, *, metered):
    """A completed one-hour event of this side's program with its active car taking part:
    baseline 7.2 kW per slot against `metered` kW (None: no reading)."""
    starts = timezone.now() - timedelta(days=1)
    starts = starts.replace(minute=0, second=0, microsecond=0)
    event = GridEvent.objects.create(
        program=side.program,
        kind=GridEvent.Kind.IMPORT_CAP,
        status=GridEvent.Status.COMPLETED,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        target_kw=10,
    )
    vehicle = side.active.vehicle
    EventParticipation.objects.create(
        event=event, vehicle=vehicle, enrollment=side.active, baseline_kw=[7.2] * 4
    )
    for slot, kw in enumerate(metered):
        if kw is not None:
            VehicleReading.objects.create(
                vehicle=vehicle,
                recorded_at=starts + timedelta(minutes=15 * slot + 5),
                source="poll",
                power_kw=kw,
            )
    settlement.settle_event(event_id=event.pk)
    event.refresh_from_db()
    return event


@pytest.fixture
def reports_granted(db):
    """What migration 0005 gives the Program managers group (re-run: a flushed database)."""
    migration = importlib.import_module("programs.migrations.0005_settlement_report_permissions")
    migration.grant(django_apps, None)


@pytest.fixture
def settled(ours, theirs, reports_granted):
    return (
        _settled_event(ours, metered=[0, 0, 0, None]),
        _settled_event(theirs, metered=[3.6] * 4),
    )


def test_event_report_shows_participants_money_and_totals(client, manager, ours, settled):
    event, _ = settled
    page = client.get(reverse("admin:programs_gridevent_settlement", args=[event.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert ours.owner.email in text
    assert "5.40" in text  # delivered kWh: three slots × 7.2 kW × ¼ h, the fourth missing
    assert "$3.35" in text  # $2 + 25 ¢ × 5.4 kWh (factory terms)
    assert "event:" in text  # the ledger transaction's key


def test_event_report_csv_has_a_row_per_participant_and_a_total(client, manager, ours, settled):
    event, _ = settled
    response = client.get(reverse("admin:programs_gridevent_settlement_csv", args=[event.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["owner_email"] for row in rows] == [ours.owner.email, ""]
    assert rows[0]["incentive_cents"] == "335"
    assert rows[0]["missing_slots"] == "1"
    assert rows[-1]["status"] == "total"
    assert rows[-1]["net_to_owner_cents"] == "335"


def test_another_utilitys_event_report_and_csv_are_404(client, manager, settled):
    _, other = settled
    for name in ("admin:programs_gridevent_settlement", "admin:programs_gridevent_settlement_csv"):
        assert client.get(reverse(name, args=[other.pk])).status_code == 404


def test_monthly_totals_show_only_our_programs(client, manager, ours, theirs, settled):
    page = client.get(reverse("admin:programs_settlement_monthly")).content.decode()
    assert ours.program.name in page
    assert theirs.program.name not in page
    assert theirs.utility.name not in page
    # Asking for their program by id shows nothing of theirs either.
    page = client.get(
        reverse("admin:programs_settlement_monthly"), {"program": theirs.program.pk}
    ).content.decode()
    assert theirs.program.name not in page


def test_monthly_csv_is_scoped_and_adds_up(client, manager, ours, settled):
    response = client.get(reverse("admin:programs_settlement_monthly_csv"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["program"] for row in rows} == {ours.program.code}
    (row,) = rows
    assert row["events_settled"] == "1"
    assert row["participations"] == "1"
    assert float(row["delivered_kwh"]) == pytest.approx(5.4)
    assert row["event_incentives_cents"] == "335"
    assert int(row["net_to_owners_cents"]) == (
        int(row["event_incentives_cents"])
        + int(row["bonuses_cents"])
        - int(row["opt_out_fees_cents"])
    )


def test_the_event_list_links_settled_events_to_their_report(client, manager, settled):
    event, other = settled
    page = client.get(reverse("admin:programs_gridevent_changelist")).content.decode()
    assert reverse("admin:programs_gridevent_settlement", args=[event.pk]) in page
    assert reverse("admin:programs_gridevent_settlement", args=[other.pk]) not in page


def test_reports_need_the_ledger_view_permission(client, manager, settled):
    event, _ = settled
    group = Group.objects.get(name="Program managers")
    group.permissions.remove(Permission.objects.get(codename="view_ledgerentry"))
    response = client.get(reverse("admin:programs_gridevent_settlement", args=[event.pk]))
    assert response.status_code == 403
