"""Enrollment of owners' vehicles in utility programs: eligibility in plain words, accepting a
version of the terms, manager decisions (approve, suspend, reinstate) and leaving.

Called by the owner's Programs pages (programs.views), the manager's admin (programs.admin) and
deep links. Every status change is kept in `EnrollmentChange` and audited.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.notifications import services as notifications
from programs import audit, settlement
from programs.models import (
    Enrollment,
    EnrollmentChange,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
)
from vehicles.chargers.models import Charger
from vehicles.models import Vehicle

Status = Enrollment.Status


def current_terms(program: Program) -> ProgramTerms | None:
    return (
        ProgramTerms.objects.filter(program=program, published_at__lte=timezone.now())
        .order_by("-version")
        .first()
    )


def in_territory(*, program: Program, service_zip: str) -> bool:
    return (
        bool(service_zip)
        and Feeder.objects.filter(
            utility_id=program.utility_id, zip_codes__contains=[service_zip]
        ).exists()
    )


def ineligibility(*, program: Program, vehicle: Vehicle) -> list[str]:
    """Why this vehicle cannot join this program, in the owner's words; empty when it can."""
    reasons = []
    if program.status != Program.Status.OPEN:
        reasons.append("This program is not taking new enrollments.")
    if not in_territory(program=program, service_zip=vehicle.owner.service_zip):
        reasons.append(f"Your ZIP code is outside {program.utility.name}'s service area.")
    makes = {make.lower() for make in program.eligible_makes}
    if makes and vehicle.make.lower() not in makes:
        reasons.append(f"Open to {', '.join(sorted(program.eligible_makes))} vehicles only.")
    if program.min_model_year and vehicle.year < program.min_model_year:
        reasons.append(f"Open to model year {program.min_model_year} and newer.")
    if program.requires_v2g and not vehicle.v2g_capable:
        reasons.append("Needs a car that can send energy back (V2G).")
    if program.requires_charger and not Charger.objects.filter(usual_vehicle=vehicle).exists():
        reasons.append("Needs a ChargeScape-connected home charger paired with this car.")
    if vehicle.link_state != Vehicle.LinkState.LINKED:
        reasons.append("Link this car again first.")
    return reasons


def _change(
    enrollment: Enrollment, *, to: str, reason: str, actor: Any, previous: str = ""
) -> Enrollment:
    EnrollmentChange.objects.create(
        enrollment=enrollment,
        from_status=previous,
        to_status=to,
        reason=reason,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(
        utility=enrollment.program.utility_id,
        actor=actor,
        action=f"enrollment.{to}",
        target=enrollment,
        reason=reason,
    )
    if to == Status.ACTIVE:  # the joining bonus, once per enrollment (ledger key)
        settlement.credit_enrollment_bonus(enrollment=enrollment)
    return enrollment


@transaction.atomic
def enroll(
    *, vehicle: Vehicle, program: Program, terms_version: int, actor: Any, source: str = "app"
) -> Enrollment:
    """Enroll a vehicle under the terms version its owner was shown and accepted. Idempotent: an
    open enrollment of the same car in the same program is returned unchanged.

    Raises ValidationError when the car is not eligible or the terms changed meanwhile."""
    Vehicle.objects.select_for_update().filter(pk=vehicle.pk).first()  # one enrollment at a time
    existing = Enrollment.objects.filter(program=program, vehicle=vehicle).exclude(
        status=Status.ENDED
    )
    if (found := existing.first()) is not None:
        return found
    reasons = ineligibility(program=program, vehicle=vehicle)
    if reasons:
        raise ValidationError(reasons)
    terms = current_terms(program)
    if terms is None or terms.version != terms_version:
        raise ValidationError(
            "The program's terms have changed since you opened this page. Please read them again."
        )
    status = Status.ACTIVE if program.auto_approve else Status.PENDING
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                program=program,
                vehicle=vehicle,
                terms=terms,
                accepted_at=timezone.now(),
                status=status,
                status_reason="" if program.auto_approve else "Waiting for the utility's review.",
                source=source[:60],
            )
    except IntegrityError:  # a concurrent enroll won the race
        return existing.get()
    return _change(
        enrollment, to=status, reason=f"accepted terms v{terms.version} ({source})", actor=actor
    )


@transaction.atomic
def set_status(*, enrollment: Enrollment, status: str, reason: str, actor: Any) -> Enrollment:
    """A manager's decision: approve (→ active), suspend (with a reason the owner sees) or
    reinstate. Ended enrollments stay ended; an unchanged status does nothing."""
    enrollment = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
    if enrollment.status == status:
        return enrollment
    if enrollment.status == Status.ENDED:
        raise ValidationError("This enrollment has ended; the owner can enroll again.")
    if status == Status.SUSPENDED and not reason.strip():
        raise ValidationError({"reason": "Tell the owner why the enrollment is suspended."})
    previous = enrollment.status
    enrollment.status = status
    enrollment.status_reason = reason.strip()[:200]
    enrollment.save(update_fields=["status", "status_reason", "updated_at"])
    if status != Status.ACTIVE:
        _leave_upcoming_events(enrollment)
    if status in (Status.ACTIVE, Status.SUSPENDED):
        notifications.notify(
            owner=enrollment.vehicle.owner,
            kind="enrollment_approved" if status == Status.ACTIVE else "enrollment_suspended",
            context={
                "program": enrollment.program.name,
                "vehicle": enrollment.vehicle.display_name,
                "reason": enrollment.status_reason,
            },
        )
    return _change(enrollment, to=status, reason=reason, actor=actor, previous=previous)


@transaction.atomic
def unenroll(*, enrollment: Enrollment, actor: Any) -> Enrollment:
    """The owner leaves the program (any time): the enrollment ends and the car leaves upcoming
    events; a running event's opt-out follows its usual rules."""
    enrollment = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
    if enrollment.status == Status.ENDED:
        return enrollment
    previous = enrollment.status
    enrollment.status = Status.ENDED
    enrollment.status_reason = "You left the program."
    enrollment.save(update_fields=["status", "status_reason", "updated_at"])
    _leave_upcoming_events(enrollment)
    return _change(enrollment, to=Status.ENDED, reason="unenrolled", actor=actor, previous=previous)


def _leave_upcoming_events(enrollment: Enrollment) -> None:
    EventParticipation.objects.filter(
        enrollment=enrollment, event__status=GridEvent.Status.SCHEDULED
    ).delete()
