"""The Earnings tab (balance, earnings by month and program, grid events, savings, cash-out,
payouts, CSV, monthly statements) and the program manager's settlement reports in the admin
(mounted by GridEventAdmin.get_urls like programs.admin_views).

Thin: numbers come from programs.earnings; the one write, a cash-out, is
programs.payouts.request_payout under the idempotency key the page rendered.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from programs import carbon, earnings, payouts
from programs.admin_views import csv_response, scoped
from programs.ledger import LedgerError
from programs.models import GridEvent, Program
from programs.services import schedule_for_owner

if TYPE_CHECKING:
    from programs.admin import GridEventAdmin

# The key the page renders into the cash-out form: a double tap or a resubmit sends it twice.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9-]{8,64}$")


@login_required
def earnings_page(request: HttpRequest) -> HttpResponse:
    owner = request.user
    now = timezone.now()
    lines = earnings.owner_lines(owner)
    months = earnings.by_month(lines)
    savings_months, savings_total = earnings.recent_savings(
        owner, now=now, schedule=schedule_for_owner(owner)
    )
    return render(
        request,
        "programs/earnings.html",
        {
            "tab": "earnings",
            "summary": earnings.summary(owner, lines, now=now),
            "months": months[::-1],
            "figure": earnings.monthly_figure(months) if months else None,
            "events": earnings.event_rows(owner, lines),
            "bonuses": earnings.bonus_lines(lines)[::-1],
            "savings_months": savings_months,
            "savings": savings_total,
            "carbon_label": carbon.LABEL,
            "payouts": earnings.payouts_of(owner),
            "statement_months": earnings.statement_months(owner, lines, now=now),
            "cash_out_key": uuid.uuid4().hex,
            "payout_minimum_cents": settings.PAYOUT_MINIMUM_CENTS,
        },
    )


@login_required
@require_POST
def cash_out(request: HttpRequest) -> HttpResponse:
    """Pay the whole balance out. The form's key makes a double tap one payout."""
    key = request.POST.get("key", "")
    if not KEY_PATTERN.match(key):
        messages.error(request, "Something went wrong with that tap; please try again.")
        return redirect("programs:earnings")
    try:
        payout = payouts.request_payout(
            owner=request.user, key=f"cash-out:{request.user.pk}:{key}", actor=request.user
        )
    except LedgerError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            f"${payout.amount_cents / 100:,.2f} is on its way to your bank account. "
            "It usually arrives in 1–2 business days.",
        )
    return redirect("programs:earnings")


@login_required
def ledger_csv(request: HttpRequest) -> HttpResponse:
    """Every line of the owner's balance, oldest first, with the running balance."""
    owner = request.user

    def rows():  # type: ignore[no-untyped-def]
        balance = 0
        for line in earnings.owner_lines(owner):
            balance += line.cents
            yield (
                timezone.localtime(line.at).isoformat(timespec="seconds"),
                line.kind,
                line.line,
                line.memo,
                line.program,
                line.event_id or "",
                line.cents,
                f"{line.cents / 100:.2f}",
                balance,
            )

    header = [
        "posted_at",
        "type",
        "line",
        "description",
        "program",
        "event_id",
        "amount_cents",
        "amount",
        "balance_cents",
    ]
    return csv_response(f"chargescape-earnings-{timezone.now():%Y%m%d}.csv", header, rows())


@login_required
def statement_page(request: HttpRequest, month: str) -> HttpResponse:
    view = earnings.statement_for(request.user, earnings.parse_month(month), now=timezone.now())
    return render(request, "programs/statement.html", {"tab": "earnings", "view": view})


# --- The program manager's settlement reports (admin) -------------------------------------------


class SettlementReportViews:
    """Per-event and per-program-per-month settlement, as pages and CSV; every event and program
    through the admin's scoped querysets (another utility's event is a 404)."""

    def __init__(self, model_admin: GridEventAdmin) -> None:
        self.admin = model_admin

    def _allowed(self, request: HttpRequest) -> None:
        if not (
            self.admin.has_view_permission(request)
            and request.user.has_perm("programs.view_ledgerentry")
        ):
            raise PermissionDenied

    def _event(self, request: HttpRequest, event_id: int) -> GridEvent:
        self._allowed(request)
        event = (
            self.admin.get_queryset(request)
            .select_related("program__utility")
            .filter(pk=event_id)
            .first()
        )
        if event is None:
            raise Http404("No such event.")
        return event

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin.admin_site.each_context(request),
            "opts": self.admin.opts,
            "time_zone": timezone.get_current_timezone_name(),
            **extra,
        }

    def event(self, request: HttpRequest, event_id: int) -> HttpResponse:
        event = self._event(request, event_id)
        starts = timezone.localtime(event.starts_at)
        return TemplateResponse(
            request,
            "admin/programs/settlement_event.html",
            self._context(
                request,
                title=f"Settlement: {event.program.name}, {starts:%a %-d %b %Y %H:%M}",
                report=earnings.event_settlement(event),
            ),
        )

    def event_csv(self, request: HttpRequest, event_id: int) -> HttpResponse:
        report = earnings.event_settlement(self._event(request, event_id))
        event = report.event
        rows = [
            (
                event.pk,
                event.program.code,
                event.status,
                event.settled_at.isoformat() if event.settled_at else "",
                row.participation.pk,
                str(row.participation.vehicle_id),
                row.participation.vehicle.owner.email,
                row.status_label,
                "" if row.participation.delivered_kwh is None else row.participation.delivered_kwh,
                row.participation.missing_slots,
                row.incentive_cents,
                row.fee_cents,
                row.net_cents,
            )
            for row in report.rows
        ]
        rows.append(
            (
                event.pk,
                event.program.code,
                "total",
                "",
                "",
                "",
                "",
                f"{report.took_part} of {len(report.rows)} took part",
                round(report.delivered_kwh, 3),
                report.missing_slots,
                report.incentive_cents,
                report.fee_cents,
                report.net_cents,
            )
        )
        header = [
            "event_id",
            "program",
            "status",
            "settled_at",
            "participation_id",
            "vehicle_id",
            "owner_email",
            "participation",
            "delivered_kwh",
            "missing_slots",
            "incentive_cents",
            "opt_out_fee_cents",
            "net_to_owner_cents",
        ]
        return csv_response(f"event-{event.pk}-settlement.csv", header, rows)

    def _months(self, request: HttpRequest) -> tuple[list[earnings.ProgramMonth], Any, Any]:
        self._allowed(request)
        programs = scoped(request, Program.objects.all())
        program = programs.filter(pk=request.GET.get("program") or None).first()
        chosen = programs.filter(pk=program.pk) if program else programs
        rows = earnings.program_months(chosen, time_zone=timezone.get_current_timezone_name())
        return rows, programs, program

    def monthly(self, request: HttpRequest) -> HttpResponse:
        rows, programs, program = self._months(request)
        total = earnings.ProgramMonth(program=program, month=None)  # type: ignore[arg-type]
        for row in rows:
            total.events += row.events
            total.participations += row.participations
            total.delivered_kwh += row.delivered_kwh
            total.incentive_cents += row.incentive_cents
            total.bonus_cents += row.bonus_cents
            total.fee_cents += row.fee_cents
        settled = (
            scoped(request, GridEvent.objects.all())
            .filter(program__in=programs, settled_at__isnull=False)
            .select_related("program")
            .order_by("-starts_at")[:20]
        )
        return TemplateResponse(
            request,
            "admin/programs/settlement_monthly.html",
            self._context(
                request,
                title="Settlement by program and month",
                rows=rows,
                total=total,
                programs=programs,
                program=program,
                settled=settled,
            ),
        )

    def monthly_csv(self, request: HttpRequest) -> HttpResponse:
        rows, _, _ = self._months(request)
        header = [
            "program",
            "program_name",
            "month",
            "events_settled",
            "participations",
            "delivered_kwh",
            "event_incentives_cents",
            "bonuses_cents",
            "opt_out_fees_cents",
            "net_to_owners_cents",
        ]
        return csv_response(
            f"settlement-by-month-{timezone.now():%Y%m%d}.csv",
            header,
            (
                (
                    row.program.code,
                    row.program.name,
                    f"{row.month:%Y-%m}",
                    row.events,
                    row.participations,
                    round(row.delivered_kwh, 3),
                    row.incentive_cents,
                    row.bonus_cents,
                    row.fee_cents,
                    row.net_cents,
                )
                for row in rows
            ),
        )


def settlement_urls(model_admin: GridEventAdmin) -> list[URLPattern]:
    """The report pages, mounted under the grid events' admin URLs (programs.admin)."""
    view = model_admin.admin_site.admin_view
    reports = SettlementReportViews(model_admin)
    return [
        path("settlement/", view(reports.monthly), name="programs_settlement_monthly"),
        path("settlement.csv", view(reports.monthly_csv), name="programs_settlement_monthly_csv"),
        path(
            "<int:event_id>/settlement/",
            view(reports.event),
            name="programs_gridevent_settlement",
        ),
        path(
            "<int:event_id>/settlement.csv",
            view(reports.event_csv),
            name="programs_gridevent_settlement_csv",
        ),
    ]


def settlement_link(event: GridEvent) -> str:
    """The change list's link to an event's settlement report, once it is settled."""
    if event.settled_at is None:
        return "—"
    url = reverse("admin:programs_gridevent_settlement", args=[event.pk])
    return format_html('<a href="{}">Report</a>', url)
