"""Reads of the utility API, each limited to the caller's utility: another utility's program,
feeder or event is simply not found (404, no existence oracle; DESIGN.md I6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum
from rest_framework.exceptions import NotFound

from programs import flexibility, ledger, settlement
from programs.models import (
    Enrollment,
    EventParticipation,
    Feeder,
    GridEvent,
    LedgerEntry,
    Program,
    Utility,
)
from vehicles.models import VehicleReading


def list_programs(*, utility: Utility) -> QuerySet[Program]:
    """The utility's programs (drafts included: the utility wrote them) with enrollment counts."""
    counts = {
        f"{status}_count": Count("enrollments", filter=Q(enrollments__status=status))
        for status in Enrollment.Status.values
    }
    return Program.objects.filter(utility=utility).annotate(**counts).order_by("code")


def get_program(*, utility: Utility, code: str) -> Program:
    program = list_programs(utility=utility).filter(code=code).first()
    if program is None:
        raise NotFound("No such program.")
    return program


def list_feeders(*, utility: Utility) -> QuerySet[Feeder]:
    return Feeder.objects.filter(utility=utility).order_by("region", "code")


def get_feeder(*, utility: Utility, code: str) -> Feeder:
    feeder = list_feeders(utility=utility).filter(code=code).first()
    if feeder is None:
        raise NotFound("No such feeder.")
    return feeder


def _with_counts(events: QuerySet[GridEvent]) -> QuerySet[GridEvent]:
    return events.select_related("program", "feeder").annotate(
        participant_count=Count("participations", distinct=True),
        opted_out_count=Count(
            "participations",
            filter=Q(participations__opted_out_at__isnull=False, participations__keep_soc_pct=None),
            distinct=True,
        ),
    )


def list_events(
    *,
    utility: Utility,
    status: str | None = None,
    program: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[GridEvent]:
    events = GridEvent.objects.filter(program__utility=utility)
    if status:
        events = events.filter(status=status)
    if program:
        events = events.filter(program__code=program)
    if since:
        events = events.filter(ends_at__gt=since)
    if until:
        events = events.filter(starts_at__lt=until)
    return _with_counts(events).order_by("-starts_at", "-pk")


def get_event(*, utility: Utility, event_id: int) -> GridEvent:
    event = _with_counts(GridEvent.objects.filter(program__utility=utility, pk=event_id)).first()
    if event is None:
        raise NotFound("No such event.")
    return event


def event_totals(*, event: GridEvent) -> dict[str, Any]:
    """Measured delivery and settlement of one event: kWh delivered over all participants,
    slots without data, incentives the utility owes and opt-out fees collected (cents)."""
    measured = EventParticipation.objects.filter(event=event).aggregate(
        delivered_kwh=Sum("delivered_kwh"), missing_slots=Sum("missing_slots")
    )
    entries = LedgerEntry.objects.filter(
        transaction__event=event, transaction__kind="event_settlement"
    )
    incentives = entries.filter(
        account__kind=ledger.Kind.UTILITY_RECEIVABLE, amount_cents__gt=0
    ).aggregate(total=Sum("amount_cents"))["total"]
    fees = entries.filter(account__kind=ledger.Kind.FEES).aggregate(total=Sum("amount_cents"))[
        "total"
    ]
    return {
        "delivered_kwh": round(measured["delivered_kwh"] or 0.0, 3),
        "missing_slots": measured["missing_slots"] or 0,
        "settled": event.settled_at is not None,
        "settled_at": event.settled_at,
        "incentives_cents": incentives or 0,
        "opt_out_fees_cents": -(fees or 0),
    }


def report_slots(*, event: GridEvent, now: datetime) -> list[dict[str, Any]]:
    """Per event slot: the participants' baseline, their measured power and the delivery
    (baseline − measured per car, never negative, summed over cars with a measurement) — the
    formula settlement pays on (programs.settlement), live while the event runs."""
    slots = settlement.event_slots(event)
    rows = list(flexibility.participating(event).values_list("vehicle_id", "baseline_kw"))
    position = {vehicle_id: index for index, (vehicle_id, _) in enumerate(rows)}
    sums = np.zeros((len(rows), len(slots)))
    counts = np.zeros((len(rows), len(slots)))
    readings = VehicleReading.objects.filter(
        vehicle_id__in=list(position),
        recorded_at__gte=event.starts_at,
        recorded_at__lt=min(event.ends_at, now),
        power_kw__isnull=False,
    ).values_list("vehicle_id", "recorded_at", "power_kw")
    for vehicle_id, recorded_at, power_kw in readings.iterator(chunk_size=5000):
        slot = int((recorded_at - event.starts_at) / settlement.SLOT)
        if slot < len(slots):
            sums[position[vehicle_id], slot] += power_kw
            counts[position[vehicle_id], slot] += 1
    answer = []
    for index, start in enumerate(slots):
        baseline = sum(float(line[index]) for _, line in rows if line and index < len(line))
        measured_rows = [row for row in range(len(rows)) if counts[row, index]]
        if start > now or not measured_rows:
            answer.append(
                {
                    "start": start,
                    "baseline_kw": round(baseline, 2),
                    "measured_kw": None,
                    "delivered_kw": None,
                }
            )
            continue
        measured = delivered = 0.0
        for row in measured_rows:
            kw = sums[row, index] / counts[row, index]
            line = rows[row][1] or []
            measured += kw
            delivered += max(0.0, (float(line[index]) if index < len(line) else 0.0) - kw)
        answer.append(
            {
                "start": start,
                "baseline_kw": round(baseline, 2),
                "measured_kw": round(measured, 2),
                "delivered_kw": round(delivered, 2),
            }
        )
    return answer
