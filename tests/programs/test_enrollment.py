"""Owners find the programs open to their ZIP and car, read what they pay and ask, enroll under
the terms version they saw (deep links attribute to the right program), and leave any time."""

import pytest
from django.urls import reverse

from programs.models import AuditEntry, Enrollment, EnrollmentChange, Program, ProgramTerms
from tests.factories import UserFactory, VehicleFactory
from tests.programs.conftest import make_program

pytestmark = pytest.mark.django_db


def _join(client, program, vehicle, *, version=1, accept=True, source="app"):
    data = {"vehicle": vehicle.pk, "terms_version": version, "source": source}
    if accept:
        data["accept"] = "on"
    return client.post(reverse("programs:program-detail", args=[program.code]), data)


def test_programs_tab_shows_what_each_program_pays_and_asks(owner_client, owner, program):
    VehicleFactory(owner=owner)
    page = owner_client.get(reverse("programs:program-list")).content.decode()
    assert "Peak Saver" in page
    assert "Lakeshore Electric" in page
    assert "$50 when you join" in page
    assert "$2 for each event you take part in" in page
    assert "Opt out of 2 events a month for free, then $5 each." in page
    assert ">Join<" in page


def test_owners_outside_the_territory_see_the_empty_state(client, program):
    elsewhere = UserFactory(service_zip="94110")
    VehicleFactory(owner=elsewhere)
    client.force_login(elsewhere)
    page = client.get(reverse("programs:program-list")).content.decode()
    assert "Peak Saver" not in page
    assert "No programs to join yet" in page


def test_enrolling_records_the_terms_version_history_and_audit(owner_client, owner, program):
    vehicle = VehicleFactory(owner=owner)
    response = _join(owner_client, program, vehicle)
    assert response.status_code == 302
    enrollment = Enrollment.objects.get()
    assert (enrollment.vehicle, enrollment.program, enrollment.status) == (
        vehicle,
        program,
        Enrollment.Status.ACTIVE,
    )
    assert enrollment.terms.version == 1
    assert enrollment.source == "app"
    assert EnrollmentChange.objects.get().to_status == "active"
    audit = AuditEntry.objects.get(action="enrollment.active")
    assert audit.actor == owner
    assert audit.utility == program.utility
    listing = owner_client.get(reverse("programs:program-list")).content.decode()
    assert "Enrolled" in listing
    assert "2 of 2 opt-outs left this month" in listing
    assert _join(owner_client, program, vehicle).status_code == 302  # idempotent: same one
    assert Enrollment.objects.count() == 1


def test_a_deep_link_enrolls_into_the_program_it_names(owner_client, owner, utility, program):
    other = make_program(utility, code="night-owl")
    vehicle = VehicleFactory(owner=owner)
    response = owner_client.get(reverse("programs:program-join", args=["night-owl"]))
    assert response.url == "/programs/night-owl/?source=link:night-owl"
    page = owner_client.get(response.url).content.decode()
    assert 'value="link:night-owl"' in page
    _join(owner_client, other, vehicle, source="link:night-owl")
    enrollment = Enrollment.objects.get()
    assert enrollment.program == other
    assert enrollment.source == "link:night-owl"
    assert not Enrollment.objects.filter(program=program).exists()


def test_deep_link_asks_anonymous_visitors_to_sign_in_first(client, program):
    response = client.get(reverse("programs:program-join", args=[program.code]))
    assert response.status_code == 302
    assert "/accounts/login/" in response.url
    assert "next=/programs/join/peak-saver/" in response.url


def test_terms_that_changed_since_the_page_was_shown_are_not_accepted(owner_client, owner, program):
    vehicle = VehicleFactory(owner=owner)
    ProgramTerms.objects.create(program=program, version=2, body="New terms.")
    response = _join(owner_client, program, vehicle, version=1)
    assert response.status_code == 400
    assert "terms have changed" in response.content.decode()
    assert not Enrollment.objects.exists()


def test_terms_must_be_accepted(owner_client, owner, program):
    vehicle = VehicleFactory(owner=owner)
    response = _join(owner_client, program, vehicle, accept=False)
    assert response.status_code == 400
    assert "Please accept the terms to join." in response.content.decode()
    assert not Enrollment.objects.exists()


def test_ineligible_cars_are_told_why_and_cannot_join(owner_client, owner, v2g_program):
    vehicle = VehicleFactory(owner=owner, v2g_capable=False)
    page = owner_client.get(reverse("programs:program-detail", args=[v2g_program.code]))
    assert "Needs a car that can send energy back (V2G)." in page.content.decode()
    response = _join(owner_client, v2g_program, vehicle)
    assert response.status_code == 400
    assert not Enrollment.objects.exists()


def test_review_programs_leave_the_enrollment_pending(owner_client, owner, utility):
    program = make_program(utility, code="reviewed", auto_approve=False)
    vehicle = VehicleFactory(owner=owner)
    _join(owner_client, program, vehicle)
    assert Enrollment.objects.get().status == Enrollment.Status.PENDING
    assert "Pending approval" in owner_client.get(reverse("programs:program-list")).content.decode()


def test_leaving_ends_the_enrollment_and_joining_again_is_possible(owner_client, owner, program):
    vehicle = VehicleFactory(owner=owner)
    _join(owner_client, program, vehicle)
    enrollment = Enrollment.objects.get()
    url = reverse("programs:enrollment-leave", args=[enrollment.pk])
    assert owner_client.get(url).status_code == 405
    assert owner_client.post(url).status_code == 302
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ENDED
    _join(owner_client, program, vehicle)
    assert Enrollment.objects.filter(status=Enrollment.Status.ACTIVE).count() == 1


def test_another_owner_cannot_leave_for_you_and_drafts_are_hidden(client, owner, program):
    vehicle = VehicleFactory(owner=owner)
    from programs import enrollments

    enrollment = enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    intruder = UserFactory()
    client.force_login(intruder)
    leave = reverse("programs:enrollment-leave", args=[enrollment.pk])
    assert client.post(leave).status_code == 404
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE
    program.status = Program.Status.DRAFT
    program.save()
    assert client.get(reverse("programs:program-detail", args=[program.code])).status_code == 404
