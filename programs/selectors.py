"""Reads of programs data with access checks."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from programs.models import (
    ChargingPlan,
    Enrollment,
    EventParticipation,
    GridEvent,
    Program,
    ProgramTerms,
)
from vehicles import selectors as vehicle_selectors
from vehicles.models import Vehicle


def current_plan_for(*, owner: User, vehicle_id: UUID | str) -> tuple[Vehicle, ChargingPlan | None]:
    """The owner's vehicle (404 for anyone else's) and its newest plan while it is plugged in."""
    vehicle = vehicle_selectors.get_owned_vehicle(owner=owner, vehicle_id=vehicle_id)
    if vehicle.latest is None or not vehicle.latest.plugged_in:
        return vehicle, None
    return vehicle, ChargingPlan.objects.filter(vehicle=vehicle).order_by("-version").first()


# --- Programs, enrollments and events for owners -----------------------------------------------


def _dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}".replace(".00", "")


def pays(terms: ProgramTerms | None) -> list[str]:
    """What a program pays, in plain words, from its current terms' incentive rules."""
    rules = terms.incentives if terms else {}
    lines = []
    if cents := rules.get("enrollment_bonus_cents"):
        lines.append(f"{_dollars(cents)} when you join")
    if cents := rules.get("per_event_cents"):
        lines.append(f"{_dollars(cents)} for each event you take part in")
    if cents := rules.get("per_kwh_cents"):
        lines.append(f"{_dollars(cents)} per kWh you shift or send back during events")
    if cents := rules.get("monthly_bonus_cents"):
        share = rules.get("monthly_bonus_min_offpeak_pct")
        condition = f" when at least {share} % of your charging is off-peak" if share else ""
        lines.append(f"{_dollars(cents)} a month{condition}")
    if cents := rules.get("annual_cap_cents"):
        lines.append(f"up to {_dollars(cents)} a year")
    return lines


def asks(program: Program) -> list[str]:
    """What a program asks of an owner, in plain words, from its rules."""
    hours = program.max_event_minutes / 60
    length = f"{hours:g} h" if hours >= 1 else f"{program.max_event_minutes} min"
    notice = (
        f"{program.notice_minutes // 60:g} h"
        if program.notice_minutes >= 60
        else f"{program.notice_minutes} min"
    )
    lines = [
        f"Up to {program.max_events_per_month} events a month, each at most {length}, "
        f"announced at least {notice} ahead."
    ]
    if program.kind == Program.Kind.V2G:
        lines.append(
            "During events your car sends energy back, never below your V2G floor, "
            "and still reaches your departure target."
        )
    else:
        lines.append(
            "During events your car pauses or slows charging, and still reaches your "
            "departure target."
        )
    if program.opt_out_fee_cents:
        lines.append(
            f"Opt out of {program.opt_outs_per_month} events a month for free, "
            f"then {_dollars(program.opt_out_fee_cents)} each."
        )
    else:
        lines.append("Opt out of any event you need to; you only give up that event's reward.")
    return lines


@dataclass
class VehicleStanding:
    vehicle: Vehicle
    enrollment: Enrollment | None
    reasons: list[str]  # why it cannot join; empty when it can (or is enrolled)
    budget: Any = None  # events.OptOutBudget for an active enrollment


@dataclass
class ProgramOffer:
    program: Program
    terms: ProgramTerms | None
    pays: list[str]
    asks: list[str]
    vehicles: list[VehicleStanding] = field(default_factory=list)

    @property
    def enrolled(self) -> bool:
        return any(standing.enrollment for standing in self.vehicles)


def program_offers_for(*, owner: User) -> list[ProgramOffer]:
    """Open programs in the owner's territory, and the programs they are enrolled in, with each
    of their cars' standing (enrolled, can join, or why not)."""
    from programs import enrollments as enrollment_services

    vehicles = list(
        Vehicle.objects.filter(owner=owner).exclude(link_state=Vehicle.LinkState.UNLINKED)
    )
    for vehicle in vehicles:
        vehicle.owner = owner
    open_enrollments = {
        (e.program_id, e.vehicle_id): e
        for e in Enrollment.objects.filter(vehicle__owner=owner)
        .exclude(status=Enrollment.Status.ENDED)
        .select_related("program", "vehicle__owner")
    }
    territory = Q(status=Program.Status.OPEN)
    if owner.service_zip:
        territory &= Q(utility__feeders__zip_codes__contains=[owner.service_zip])
    else:
        territory = Q(pk__in=[])
    enrolled = Q(pk__in=[program_id for program_id, _ in open_enrollments])
    programs = Program.objects.filter(territory | enrolled).select_related("utility").distinct()
    offers = []
    for program in programs.order_by("name"):
        terms = enrollment_services.current_terms(program)
        offer = ProgramOffer(program, terms, pays(terms), asks(program))
        offer.vehicles = [
            _standing(program, vehicle, open_enrollments.get((program.pk, vehicle.pk)))
            for vehicle in vehicles
        ]
        offers.append(offer)
    return offers


def _standing(program: Program, vehicle: Vehicle, enrollment: Enrollment | None) -> VehicleStanding:
    from programs import enrollments as enrollment_services
    from programs import events as event_services

    if enrollment is None:
        reasons = enrollment_services.ineligibility(program=program, vehicle=vehicle)
        return VehicleStanding(vehicle, None, reasons)
    budget = None
    if enrollment.status == Enrollment.Status.ACTIVE:
        budget = event_services.opt_out_budget(enrollment=enrollment)
    return VehicleStanding(vehicle, enrollment, [], budget)


def standings_for(*, owner: User, program: Program) -> list[VehicleStanding]:
    """Each of the owner's linked cars against one program: enrolled, can join, or why not."""
    vehicles = Vehicle.objects.filter(owner=owner).exclude(link_state=Vehicle.LinkState.UNLINKED)
    enrolled = {
        e.vehicle_id: e
        for e in Enrollment.objects.filter(program=program, vehicle__owner=owner)
        .exclude(status=Enrollment.Status.ENDED)
        .select_related("program", "vehicle__owner")
    }
    standings = []
    for vehicle in vehicles:
        vehicle.owner = owner
        standings.append(_standing(program, vehicle, enrolled.get(vehicle.pk)))
    return standings


def get_program_by_code(*, code: str) -> Program:
    """A program by its deep-link code; drafts are not shown to owners (404)."""
    program = (
        Program.objects.select_related("utility")
        .exclude(status=Program.Status.DRAFT)
        .filter(code=code)
        .first()
    )
    if program is None:
        raise Http404("No such program.")
    return program


def get_owned_enrollment(*, owner: User, enrollment_id: int) -> Enrollment:
    enrollment = (
        Enrollment.objects.select_related("program__utility", "vehicle__owner")
        .filter(pk=enrollment_id, vehicle__owner=owner)
        .first()
    )
    if enrollment is None:
        raise Http404("No such enrollment.")
    return enrollment


def get_owned_participation(*, owner: User, participation_id: int) -> EventParticipation:
    participation = (
        EventParticipation.objects.select_related(
            "event__program__utility", "enrollment__program", "vehicle__owner"
        )
        .filter(pk=participation_id, vehicle__owner=owner)
        .first()
    )
    if participation is None:
        raise Http404("No such event.")
    return participation


def event_notices_for(*, owner: User, now: datetime | None = None) -> list[EventParticipation]:
    """The owner's cars' upcoming and running events (the banner), soonest first."""
    now = now or timezone.now()
    # Every owner page asks, and most owners have no event most of the time: find the ids with a
    # three-table query first. The seven-table join (planning alone ~2 ms in PostgreSQL) only
    # runs for the few that have one.
    current = list(
        EventParticipation.objects.filter(
            vehicle__owner=owner,
            event__status__in=[GridEvent.Status.SCHEDULED, GridEvent.Status.ACTIVE],
            event__ends_at__gt=now,
        )
        .order_by("event__starts_at")
        .values_list("pk", flat=True)[:5]
    )
    if not current:
        return []
    return list(
        EventParticipation.objects.filter(pk__in=current)
        .select_related("event__program__utility", "vehicle", "enrollment__terms")
        .order_by("event__starts_at")
    )


def expected_earnings_cents(participation: EventParticipation) -> int:
    """What taking part is expected to earn: the per-event reward plus the per-kWh reward on
    the car's committed energy (or, before the plan exists, its full power over the window)."""
    rules = participation.enrollment.terms.incentives
    event = participation.event
    hours = (event.ends_at - event.starts_at).total_seconds() / 3600
    if participation.committed_kw:
        slot_h = hours / max(1, len(participation.committed_kw))
        if event.kind == GridEvent.Kind.EXPORT_REQUEST:
            kwh = sum(max(0.0, kw) for kw in participation.committed_kw) * slot_h
        else:  # curtailment: energy shifted out of the window
            full = float(participation.vehicle.max_ac_kw)
            kwh = sum(max(0.0, full - kw) for kw in participation.committed_kw) * slot_h
    else:
        kwh = float(participation.vehicle.max_ac_kw) * hours
    return round(rules.get("per_event_cents", 0) + rules.get("per_kwh_cents", 0) * kwh)
