"""ChargeScape as a VEN: each VTN link is polled for its programs' events, which become grid
events (capacity limits, setpoints) or tariff prices (PRICE); after each interval of an event we
acted on, a USAGE/DEMAND report goes back to the VTN.

Called by the beat tasks `programs.openadr_poll` and `programs.openadr_report`, and by the admin's
"poll now". Mapping (each VTN interval on its own):
- IMPORT_CAPACITY_LIMIT v kW → an import cap of v kW on the link's program.
- EXPORT_CAPACITY_LIMIT v kW → an export request on the V2G program: the cars export up to the
  limit, never more than the enrolled V2G kW.
- DISPATCH_SETPOINT v kW → v ≥ 0: an import cap of v; v < 0: an export request of −v.
- PRICE (and EXPORT_PRICE in the same interval) → a price of the link's tariff from its start.
Targets: SERVICE_AREA → a region, GROUP → a feeder code. Every grid event goes through
programs.events (the program's rules; refused ones are recorded with the reason), is dispatched
at once (source "openadr", external_id the VTN event id), and is cancelled if the VTN withdraws or
changes the event before it ends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from openadr3_client.oadr301._vtn.interfaces.filters import PaginationFilter
from openadr3_client.oadr301.models.event.event import ExistingEvent
from openadr3_client.oadr301.models.ven.ven import NewVen
from pydantic import ValidationError as PydanticError

from programs import events, tariffs
from programs.models import Feeder, GridEvent
from programs.openadr import reports
from programs.openadr.client import AuthFailed, RateLimited, Recorder, VtnError, ven_client
from programs.openadr.models import VtnEvent, VtnLink, VtnMessage

logger = logging.getLogger(__name__)
PAGE = 50
MESSAGES_KEPT = 200
GRID_KINDS = {"IMPORT_CAPACITY_LIMIT", "EXPORT_CAPACITY_LIMIT", "DISPATCH_SETPOINT"}
Outcome = VtnEvent.Outcome


def client_for(link: VtnLink, recorder: Recorder):  # type: ignore[no-untyped-def]
    return ven_client(
        base_url=link.base_url,
        token_url=link.token_url,
        client_id=link.client_id,
        client_secret=link.client_secret,
        recorder=recorder,
    )


def _all(fetch: Any) -> list:
    """Every page of a VTN list (skip/limit, OpenADR 3.0.1 §8)."""
    items: list = []
    while True:
        page = fetch(PaginationFilter(skip=len(items), limit=PAGE))
        items.extend(page)
        if len(page) < PAGE:
            return items


def with_link(work: Any, *, link_id: int, now: datetime | None = None) -> Any:
    """Run `work(link, client, now)` against the VTN; record health and the exchanges."""
    now = now or timezone.now()
    link = VtnLink.objects.filter(pk=link_id, enabled=True).first()
    if link is None or (link.backoff_until and link.backoff_until > now):
        return None
    recorder = Recorder()
    result = None
    link.last_polled_at = now
    try:
        result = work(link, client_for(link, recorder), now)
    except RateLimited as limited:
        _failed(link, VtnLink.Health.RATE_LIMITED, str(limited))
        link.backoff_until = now + timedelta(seconds=limited.retry_after_seconds)
    except AuthFailed as refused:
        _failed(link, VtnLink.Health.AUTH_FAILED, str(refused))
    except requests.ConnectionError as exc:
        _failed(link, VtnLink.Health.UNREACHABLE, str(exc))
    except (VtnError, requests.RequestException, PydanticError) as exc:
        _failed(link, VtnLink.Health.ERROR, str(exc))
    else:
        link.health = VtnLink.Health.OK
        link.last_ok_at = now
        link.last_error = ""
        link.consecutive_failures = 0
        link.backoff_until = None
    link.save()
    VtnMessage.objects.bulk_create(
        [VtnMessage(link=link, **vars(exchange)) for exchange in recorder.exchanges]
    )
    stale = VtnMessage.objects.filter(link=link).order_by("-at", "-pk")[MESSAGES_KEPT:]
    VtnMessage.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
    return result


def _failed(link: VtnLink, health: str, error: str) -> None:
    logger.warning("VTN link %s: %s", link.pk, error)
    link.health = health
    link.last_error = error[:300]
    link.consecutive_failures += 1
    if health != VtnLink.Health.RATE_LIMITED:
        # Back off 30 s, 60 s, … up to 15 min while the VTN keeps failing.
        link.backoff_until = timezone.now() + timedelta(
            seconds=min(900, 30 * 2 ** min(link.consecutive_failures - 1, 5))
        )


def poll_link(*, link_id: int, now: datetime | None = None) -> dict[str, int] | None:
    """Register if needed, read every event of the link's VTN programs, act on what changed."""
    return with_link(_poll, link_id=link_id, now=now)


def _poll(link: VtnLink, client: Any, now: datetime) -> dict[str, int]:
    if not link.ven_id:
        found = client.vens.get_vens(ven_name=link.ven_name, target=None, pagination=None)
        ven = found[0] if found else client.vens.create_ven(NewVen(ven_name=link.ven_name))
        link.ven_id = ven.id
    programs = _all(lambda page: client.programs.get_programs(target=None, pagination=page))
    if link.vtn_program_name:
        programs = [p for p in programs if p.program_name == link.vtn_program_name]
    counts = {"events": 0, "changed": 0}
    seen: set[str] = set()
    for program in programs:
        listed = _all(
            lambda page, pid=program.id: client.events.get_events(
                target=None, pagination=page, program_id=pid
            )
        )
        for event in listed:
            seen.add(event.id)
            counts["events"] += 1
            counts["changed"] += apply_event(link=link, event=event, now=now)
    program_ids = [p.id for p in programs]
    gone = VtnEvent.objects.filter(link=link, vtn_program_id__in=program_ids).exclude(
        vtn_event_id__in=seen
    )
    for row in gone.exclude(outcome=Outcome.CANCELLED):
        withdraw(row, reason="Withdrawn by the utility's VTN")
        counts["changed"] += 1
    return counts


def _interval_windows(event: ExistingEvent) -> list[tuple[Any, datetime, datetime]]:
    """(interval, start, end) of each interval; an interval without its own period follows the
    event's, the n-th one starting n durations after its start (OpenADR 3.0.1 §9)."""
    windows = []
    for position, interval in enumerate(event.intervals):
        period = interval.interval_period
        if period is None and event.interval_period is not None:
            base = event.interval_period
            start = base.start + position * base.duration
            windows.append((interval, start, start + base.duration))
        elif period is not None:
            windows.append((interval, period.start, period.start + period.duration))
        else:
            windows.append((interval, None, None))
    return windows


def _units_factor(event: ExistingEvent, payload_type: str) -> float:
    for descriptor in event.payload_descriptors or ():
        if str(descriptor.payload_type) == payload_type and descriptor.units is not None:
            return {"W": 0.001, "MW": 1000.0}.get(str(descriptor.units), 1.0)
    return 1.0


def _scope(link: VtnLink, event: ExistingEvent) -> tuple[Feeder | None, str, str]:
    """(feeder, region, refusal) from the event's targets."""
    feeder, region = None, ""
    for target in event.targets or ():
        values = [str(value) for value in target.values]
        if target.type == "GROUP" and values:
            feeder = Feeder.objects.filter(utility_id=link.utility_id, code=values[0]).first()
            if feeder is None:
                return None, "", f"Unknown feeder {values[0]!r} in GROUP target."
        elif target.type == "SERVICE_AREA" and values:
            region = values[0]
    return feeder, region, ""


def apply_event(*, link: VtnLink, event: ExistingEvent, now: datetime) -> int:
    """Act on each interval of a VTN event that is new or changed; returns how many changed."""
    changed = 0
    feeder, region, refusal = _scope(link, event)
    for interval, start, end in _interval_windows(event):
        row = VtnEvent.objects.filter(
            link=link, vtn_event_id=event.id, interval_id=interval.id
        ).first()
        if row is not None and row.modified_at == event.modification_date_time:
            continue
        if row is not None:
            withdraw(row, reason="Changed by the utility's VTN")
        payloads = {str(p.type): p.values for p in interval.payloads}
        kind = next((k for k in payloads if k in GRID_KINDS), None) or (
            "PRICE" if "PRICE" in payloads else next(iter(payloads))
        )
        value = payloads[kind][0] if payloads[kind] else None
        value = float(value) if isinstance(value, int | float) else None
        fields = {
            "vtn_program_id": event.program_id,
            "payload_type": kind,
            "starts_at": start or now,
            "ends_at": end or now,
            "value": value,
            "modified_at": event.modification_date_time,
            "grid_event": None,
            "report_id": "",
            "reported_at": None,
        }
        if start is None or end is None or end <= start:
            fields |= {
                "outcome": Outcome.REFUSED,
                "reason": "Open-ended intervals are not supported.",
            }
        elif value is None:
            fields |= {"outcome": Outcome.REFUSED, "reason": "The payload has no numeric value."}
        elif kind == "PRICE":
            fields |= _prices(link, start, value, payloads.get("EXPORT_PRICE"))
        elif kind in GRID_KINDS and refusal:
            fields |= {"outcome": Outcome.REFUSED, "reason": refusal}
        elif kind in GRID_KINDS:
            kw = value * _units_factor(event, kind)
            fields |= _grid_event(link, event, kind, kw, start, end, feeder, region)
        else:
            fields |= {"outcome": Outcome.IGNORED, "reason": f"{kind} is not acted on."}
        VtnEvent.objects.update_or_create(
            link=link, vtn_event_id=event.id, interval_id=interval.id, defaults=fields
        )
        changed += 1
    return changed


def _prices(link: VtnLink, start: datetime, price: float, export: Any) -> dict[str, Any]:
    if link.tariff is None:
        return {"outcome": Outcome.REFUSED, "reason": "The link has no tariff for prices."}
    tariffs.publish_prices(  # stored, and the cars that pay the tariff are replanned
        tariff=link.tariff,
        prices=[
            (
                start,
                Decimal(str(round(price, 4))),
                Decimal(str(round(float(export[0]), 4))) if export else None,
            )
        ],
        source="openadr",
    )
    return {"outcome": Outcome.PRICE, "reason": ""}


def _grid_event(
    link: VtnLink,
    event: ExistingEvent,
    kind: str,
    kw: float,
    start: datetime,
    end: datetime,
    feeder: Feeder | None,
    region: str,
) -> dict[str, Any]:
    export = kind == "EXPORT_CAPACITY_LIMIT" or (kind == "DISPATCH_SETPOINT" and kw < 0)
    program = link.v2g_program if export else link.program
    if program is None:
        return {"outcome": Outcome.REFUSED, "reason": "The link has no V2G program for export."}
    grid_kind = GridEvent.Kind.EXPORT_REQUEST if export else GridEvent.Kind.IMPORT_CAP
    target = abs(kw)
    if kind == "EXPORT_CAPACITY_LIMIT":
        scope = events.enrollments_in_scope(program=program, feeder=feeder, region=region)
        target = min(target, events.flexible_kw(scope, kind=grid_kind))
    try:
        with transaction.atomic():
            grid_event = events.create_event(
                program=program,
                kind=grid_kind,
                starts_at=start,
                ends_at=end,
                target_kw=target,
                actor=None,
                feeder=feeder,
                region=region,
                source="openadr",
                external_id=event.id[:120],
            )
            grid_event = events.schedule_event(event=grid_event, actor=None)
    except ValidationError as error:
        return {"outcome": Outcome.REFUSED, "reason": "; ".join(error.messages)[:300]}
    return {"outcome": Outcome.GRID_EVENT, "reason": "", "grid_event": grid_event}


def withdraw(row: VtnEvent, *, reason: str) -> None:
    """The VTN took an event back (or changed it): its grid event is called off unless over."""
    if row.grid_event is not None and row.grid_event.status not in (
        GridEvent.Status.COMPLETED,
        GridEvent.Status.CANCELLED,
    ):
        events.cancel_event(event=row.grid_event, actor=None, reason=reason)
    row.outcome = Outcome.CANCELLED
    row.reason = reason
    row.save(update_fields=["outcome", "reason"])


def report_link(*, link_id: int, now: datetime | None = None) -> int | None:
    """Report USAGE and DEMAND of every finished interval we acted on and have not reported."""
    return with_link(reports.send_due, link_id=link_id, now=now)
