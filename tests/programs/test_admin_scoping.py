# ruff: noqa: F811 — pytest fixtures imported from admin_fixtures are used as arguments
"""A program manager sees and changes only their own utility's objects (DESIGN.md I6): in
every list, change page, foreign-key choice, list filter, action, event page and CSV export."""

import pytest
from django.urls import reverse

from programs.models import AuditEntry, Enrollment, GridEvent, Program
from tests.programs.admin_fixtures import manager, ours, theirs  # noqa: F401 — fixtures

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    ("utility", lambda side: side.utility.name),
    ("feeder", lambda side: side.loop.code),
    ("tariff", lambda side: f"{side.utility.name} EV TOU"),
    ("program", lambda side: side.program.code),
    ("enrollment", lambda side: side.owner.email),
    ("gridevent", lambda side: side.program.name),
]


@pytest.mark.parametrize(("model", "marker"), CHANGELISTS, ids=[m for m, _ in CHANGELISTS])
def test_lists_show_only_our_utility(client, manager, ours, theirs, model, marker):
    """Each list of the admin shows our utility's rows and none of another utility's."""
    page = client.get(reverse(f"admin:programs_{model}_changelist")).content.decode()
    assert marker(ours) in page
    assert marker(theirs) not in page
    assert theirs.utility.name not in page  # not even in a list filter


def test_audit_list_shows_only_our_entries(client, manager, ours, theirs):
    from programs import audit

    audit.record(utility=ours.utility, actor=None, action="event.create", target=ours.event)
    audit.record(utility=theirs.utility, actor=None, action="event.cancel", target=theirs.event)
    page = client.get(reverse("admin:programs_auditentry_changelist")).content.decode()
    assert "event.create" in page
    assert "event.cancel" not in page
    other = AuditEntry.objects.get(utility=theirs.utility)
    response = client.get(reverse("admin:programs_auditentry_change", args=[other.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def _objects(side):
    return {
        "utility": side.utility,
        "feeder": side.loop,
        "program": side.program,
        "enrollment": side.pending,
        "gridevent": side.event,
    }


@pytest.mark.parametrize("model", ["utility", "feeder", "program", "enrollment", "gridevent"])
def test_another_utilitys_object_by_url_does_not_exist(client, manager, ours, theirs, model):
    """Another utility's change page redirects with the admin's "doesn't exist" message."""
    url = reverse(f"admin:programs_{model}_change", args=[_objects(theirs)[model].pk])
    response = client.get(url, follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert "doesn’t exist" in response.content.decode()
    history = client.get(
        reverse(f"admin:programs_{model}_history", args=[_objects(theirs)[model].pk])
    )
    assert history.status_code == 302


def test_another_utilitys_program_cannot_be_changed_by_post(client, manager, theirs):
    url = reverse("admin:programs_program_change", args=[theirs.program.pk])
    client.post(url, {"name": "Hijacked", "code": theirs.program.code})
    theirs.program.refresh_from_db()
    assert theirs.program.name == "Hudson Power Peak Saver"


def test_own_utility_is_read_only_for_a_manager(client, manager, ours):
    """Managers see their utility but who manages it is decided by operators."""
    url = reverse("admin:programs_utility_change", args=[ours.utility.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="name"' not in page.content.decode()  # shown, not editable
    client.post(url, {"name": "Renamed", "slug": "renamed", "time_zone": "UTC"})
    ours.utility.refresh_from_db()
    assert ours.utility.name == "Lakeshore Electric"


def _choices(page, name):
    """The option labels of a <select name=…> in rendered HTML."""
    import re

    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select, f"no select {name}"
    return re.findall(r"<option[^>]*>([^<]*)</option>", select.group(1))


def test_foreign_key_choices_are_scoped(client, manager, ours, theirs):
    """Add forms offer only our utility, our programs and our feeders."""
    feeder_page = client.get(reverse("admin:programs_feeder_add")).content.decode()
    assert _choices(feeder_page, "utility")[1:] == ["Lakeshore Electric"]
    program_page = client.get(reverse("admin:programs_program_add")).content.decode()
    assert _choices(program_page, "utility")[1:] == ["Lakeshore Electric"]
    event_page = client.get(reverse("admin:programs_gridevent_add")).content.decode()
    assert set(_choices(event_page, "program")[1:]) == {
        "Lakeshore Electric Peak Saver",
        "Lakeshore Electric Grid Return",
    }
    assert _choices(event_page, "feeder")[1:] == [
        "Loop / lakeshore-electric-loop",
        "North / lakeshore-electric-north",
    ]
    assert _choices(event_page, "region") == ["Whole program", "Loop", "North"]


def test_a_feeder_cannot_be_added_to_another_utility(client, manager, ours, theirs):
    response = client.post(
        reverse("admin:programs_feeder_add"),
        {"utility": theirs.utility.pk, "code": "sneaky", "region": "Loop", "zip_codes": "10001"},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not theirs.utility.feeders.filter(code="sneaky").exists()


def test_an_event_cannot_be_created_in_another_utilitys_program(client, manager, ours, theirs):
    count = GridEvent.objects.count()
    response = client.post(
        reverse("admin:programs_gridevent_add"),
        {
            "program": theirs.program.pk,
            "kind": "import_cap",
            "starts_at": "2030-01-01T18:00",
            "ends_at": "2030-01-01T19:00",
            "target_kw": "5",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert GridEvent.objects.count() == count


def test_actions_ignore_another_utilitys_enrollments(client, manager, ours, theirs):
    """A forged action POST with another utility's ids changes nothing there."""
    response = client.post(
        reverse("admin:programs_enrollment_changelist"),
        {
            "action": "approve_enrollments",
            "_selected_action": [ours.pending.pk, theirs.pending.pk],
            "index": 0,
        },
    )
    assert response.status_code == 302
    ours.pending.refresh_from_db()
    theirs.pending.refresh_from_db()
    assert ours.pending.status == Enrollment.Status.ACTIVE
    assert theirs.pending.status == Enrollment.Status.PENDING
    assert not theirs.pending.changes.exists()


def test_enrollment_export_never_includes_another_utility(client, manager, ours, theirs):
    response = client.post(
        reverse("admin:programs_enrollment_changelist"),
        {
            "action": "export_enrollments_csv",
            "_selected_action": [ours.active.pk, theirs.active.pk, theirs.pending.pk],
            "index": 0,
        },
    )
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/csv")
    assert ours.owner.email in body
    assert theirs.owner.email not in body
    assert len(body.strip().splitlines()) == 2  # header + our one selected enrollment


def test_event_export_never_includes_another_utility(client, manager, ours, theirs):
    from tests.programs.factories import EventParticipationFactory

    EventParticipationFactory(event=ours.event, enrollment=ours.active)
    EventParticipationFactory(event=theirs.event, enrollment=theirs.active)
    response = client.post(
        reverse("admin:programs_gridevent_changelist"),
        {
            "action": "export_delivery_csv",
            "_selected_action": [ours.event.pk, theirs.event.pk],
            "index": 0,
        },
    )
    body = response.content.decode()
    assert ours.owner.email in body
    assert theirs.owner.email not in body
    assert (
        client.get(reverse("admin:programs_gridevent_delivery", args=[theirs.event.pk])).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("programs_gridevent_preview", "get"),
        ("programs_gridevent_live", "get"),
        ("programs_gridevent_live_fragment", "get"),
        ("programs_gridevent_dispatch", "post"),
        ("programs_gridevent_cancel", "post"),
    ],
)
def test_event_pages_of_another_utility_are_not_found(client, manager, theirs, name, method):
    data = {"reason": "mine now", "confirm_code": theirs.program.code}
    response = getattr(client, method)(reverse(f"admin:{name}", args=[theirs.event.pk]), data)
    assert response.status_code == 404
    theirs.event.refresh_from_db()
    assert theirs.event.status == GridEvent.Status.DRAFT
    assert not AuditEntry.objects.filter(utility=theirs.utility).exists()


def test_a_manager_of_no_utility_sees_nothing(client, ours, theirs):
    from tests.programs.admin_fixtures import sign_in_manager
    from tests.programs.factories import UtilityFactory

    sign_in_manager(client, UtilityFactory(name="Empty Co-op"), email="lonely@example.com")
    for model in ("program", "enrollment", "gridevent"):
        page = client.get(reverse(f"admin:programs_{model}_changelist")).content.decode()
        assert "0 " in page
        assert ours.program.name not in page
        assert theirs.program.name not in page
    assert Program.objects.count() == 4
