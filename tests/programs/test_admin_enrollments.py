# ruff: noqa: F811 — pytest fixtures imported from admin_fixtures are used as arguments
"""The enrollment approval queue and programs' terms in the manager's admin: bulk approve,
suspend with a reason (asked on an intermediate page), reinstate — each recorded in the
enrollment's history and the audit trail — and the CSV export."""

import csv
import io

import pytest
from django.urls import reverse

from programs.models import AuditEntry, Enrollment, ProgramTerms
from tests.programs.admin_fixtures import manager, ours, theirs  # noqa: F401 — fixtures
from tests.programs.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:programs_enrollment_changelist"


def _act(client, action, enrollments, **extra):
    data = {"action": action, "_selected_action": [e.pk for e in enrollments], "index": 0}
    return client.post(reverse(CHANGELIST), {**data, **extra}, follow=True)


def test_queue_filters_by_status(client, manager, ours):
    page = client.get(reverse(CHANGELIST), {"status__exact": "pending"}).content.decode()
    assert "EV6" in page  # the pending Kia
    assert "Leaf" not in page  # the active Nissan


def test_bulk_approve_records_history_and_audit(client, manager, ours):
    second = EnrollmentFactory(program=ours.program, status=Enrollment.Status.PENDING)
    response = _act(client, "approve_enrollments", [ours.pending, second, ours.active])
    page = response.content.decode()
    assert "Approved 2 enrollments." in page
    assert "Left 1 unchanged: only pending approval enrollments can be approved." in page
    for enrollment in (ours.pending, second):
        enrollment.refresh_from_db()
        assert enrollment.status == Enrollment.Status.ACTIVE
        change = enrollment.changes.get()
        assert (change.from_status, change.to_status, change.actor) == (
            "pending",
            "active",
            manager,
        )
        entry = AuditEntry.objects.get(object_id=str(enrollment.pk))
        assert (entry.action, entry.actor, entry.utility) == (
            "enrollment.active",
            manager,
            ours.utility,
        )
    assert not ours.active.changes.exists()


def test_suspend_asks_for_a_reason_first(client, manager, ours):
    """The action opens a page asking the reason; nothing changes until it is given."""
    response = _act(client, "suspend_enrollments", [ours.active, ours.pending])
    page = response.content.decode()
    assert "each owner sees your reason" in page
    assert ours.owner.email in page
    ours.active.refresh_from_db()
    assert ours.active.status == Enrollment.Status.ACTIVE

    empty = _act(client, "suspend_enrollments", [ours.active], apply="1", reason="  ")
    assert "Tell the owners why their enrollment is suspended." in empty.content.decode()
    ours.active.refresh_from_db()
    assert ours.active.status == Enrollment.Status.ACTIVE
    assert not ours.active.changes.exists()


def test_suspend_with_reason_then_reinstate(client, manager, ours):
    reason = "Your charger has not reported for 30 days."
    response = _act(
        client, "suspend_enrollments", [ours.active, ours.pending], apply="1", reason=reason
    )
    assert "Suspended 2 enrollments." in response.content.decode()
    ours.active.refresh_from_db()
    assert (ours.active.status, ours.active.status_reason) == ("suspended", reason)
    assert ours.active.changes.get().reason == reason
    assert AuditEntry.objects.filter(action="enrollment.suspended", actor=manager).count() == 2

    response = _act(client, "reinstate_enrollments", [ours.active])
    assert "Reinstated 1 enrollment." in response.content.decode()
    ours.active.refresh_from_db()
    assert ours.active.status == Enrollment.Status.ACTIVE
    assert [c.to_status for c in ours.active.changes.order_by("at")] == ["suspended", "active"]


def test_an_ended_enrollment_is_not_reinstated(client, manager, ours):
    ended = EnrollmentFactory(program=ours.program, status=Enrollment.Status.ENDED)
    response = _act(client, "reinstate_enrollments", [ended])
    assert "only suspended enrollments can be reinstated" in response.content.decode()
    ended.refresh_from_db()
    assert ended.status == Enrollment.Status.ENDED


def test_change_page_shows_history_read_only(client, manager, ours):
    _act(client, "approve_enrollments", [ours.pending])
    page = client.get(reverse("admin:programs_enrollment_change", args=[ours.pending.pk]))
    body = page.content.decode()
    assert "Status history" in body
    assert "Approved by the utility." in body
    assert 'name="status"' not in body  # status changes only through the actions
    assert client.get(reverse("admin:programs_enrollment_add")).status_code == 403


def test_enrollments_csv_export(client, manager, ours):
    response = _act(client, "export_enrollments_csv", [ours.active, ours.pending])
    assert response["Content-Disposition"].startswith('attachment; filename="enrollments-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["enrollment_id"], r["status"]) for r in rows] == [
        (str(ours.active.pk), "active"),
        (str(ours.pending.pk), "pending"),
    ]
    assert rows[0]["owner_email"] == ours.owner.email
    assert rows[0]["program"] == ours.program.code
    assert rows[0]["terms_version"] == "1"


def test_csv_cells_never_run_as_formulas(client, manager, ours):
    ours.pending.status_reason = '=HYPERLINK("http://evil")'
    ours.pending.save()
    response = _act(client, "export_enrollments_csv", [ours.pending])
    row = next(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["status_reason"].startswith("'=")


def test_publishing_new_terms_adds_a_version(client, manager, ours):
    """Published terms are never edited; a new version is added with the next number."""
    url = reverse("admin:programs_program_change", args=[ours.program.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name != "eligible_makes"
    }
    data.update(
        {
            "utility": ours.utility.pk,
            "eligible_makes": "",
            "terms-TOTAL_FORMS": "1",
            "terms-INITIAL_FORMS": "0",
            "terms-0-body": "New: we pay more per kWh.",
            "terms-0-incentives": '{"per_kwh_cents": 40}',
            "terms-0-published_at_0": "2026-01-02",
            "terms-0-published_at_1": "00:00:00",
            "terms-2-TOTAL_FORMS": "1",
            "terms-2-INITIAL_FORMS": "1",
            "terms-2-0-id": ours.program.terms.get().pk,
            "terms-2-0-program": ours.program.pk,
        }
    )
    response = client.post(url, data, follow=True)
    assert "Published terms v2" in response.content.decode(), response.content.decode()[-4000:]
    versions = list(ProgramTerms.objects.filter(program=ours.program).order_by("version"))
    assert [(t.version, t.incentives) for t in versions] == [
        (1, {"per_event_cents": 200, "per_kwh_cents": 25}),
        (2, {"per_kwh_cents": 40}),
    ]
    assert AuditEntry.objects.filter(action="program.publish_terms", actor=manager).count() == 1
