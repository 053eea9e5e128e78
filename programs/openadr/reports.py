"""Reports to the VTN: after each interval we turned into a grid event, what our participants
drew in it — USAGE (kWh, summed) and DEMAND (kW, the mean) — as one OpenADR 3.0.1 report with an
aggregated resource. Measured as the utility API's reports measure (programs.api.selectors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.oadr301.models.event.event_payload import (
    EventPayloadDescriptor,
    EventPayloadType,
)
from openadr3_client.oadr301.models.report.report import NewReport, ReportResource
from openadr3_client.oadr301.models.report.report_payload import ReportPayload, ReportPayloadType
from openadr3_client.oadr301.models.unit import Unit

from programs.api.selectors import report_slots
from programs.models import GridEvent
from programs.openadr.models import VtnEvent, VtnLink

RESOURCE = "chargescape-fleet"
SLOT_HOURS = 0.25


def usage(row: VtnEvent, *, now: datetime) -> tuple[float, float]:
    """(kWh drawn, mean kW) by the grid event's participants over the interval's slots with a
    measurement (export counts negative); (0, 0) without any."""
    slots = [s for s in report_slots(event=row.grid_event, now=now) if s["measured_kw"] is not None]
    if not slots:
        return 0.0, 0.0
    energy = sum(s["measured_kw"] * SLOT_HOURS for s in slots)
    return round(energy, 3), round(sum(s["measured_kw"] for s in slots) / len(slots), 3)


def new_report(row: VtnEvent, link: VtnLink, *, now: datetime) -> NewReport:
    energy_kwh, demand_kw = usage(row, now=now)
    return NewReport(
        program_id=row.vtn_program_id,
        event_id=row.vtn_event_id,
        client_name=link.ven_name,
        report_name=f"chargescape event {row.grid_event_id} interval {row.interval_id}",
        payload_descriptors=(
            EventPayloadDescriptor(payload_type=EventPayloadType("USAGE"), units=Unit.KWH),
            EventPayloadDescriptor(payload_type=EventPayloadType("DEMAND"), units=Unit.KW),
        ),
        resources=(
            ReportResource(
                resource_name=RESOURCE,
                interval_period=IntervalPeriod(
                    start=row.starts_at, duration=row.ends_at - row.starts_at
                ),
                intervals=(
                    Interval(
                        id=row.interval_id,
                        payloads=(
                            ReportPayload(type=ReportPayloadType.USAGE, values=(energy_kwh,)),
                            ReportPayload(type=ReportPayloadType.DEMAND, values=(demand_kw,)),
                        ),
                    ),
                ),
            ),
        ),
    )


def send_due(link: VtnLink, client: Any, now: datetime) -> int:
    due = VtnEvent.objects.filter(
        link=link,
        outcome=VtnEvent.Outcome.GRID_EVENT,
        reported_at=None,
        ends_at__lte=now,
        grid_event__status__in=[GridEvent.Status.ACTIVE, GridEvent.Status.COMPLETED],
    ).select_related("grid_event")
    sent = 0
    for row in due:
        created = client.reports.create_report(new_report(row, link, now=now))
        row.report_id = created.id
        row.reported_at = now
        row.save(update_fields=["report_id", "reported_at"])
        sent += 1
    return sent
