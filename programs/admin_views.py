"""The program manager's event pages and flexibility dashboard, mounted by GridEventAdmin:

    add (a form) → preview (who takes part, expected kW per slot, departures at risk) → dispatch
    (typed confirmation of the program code for large events) → live view (requested, committed
    and delivered kW, refreshed every 15 s; opt-outs; failing devices) → cancel

Thin: every change is a programs.events call; numbers come from programs.events.preview_event
and programs.flexibility. Every event is looked up through the admin's scoped queryset, so
another utility's event is a 404 here too.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from programs import events, flexibility
from programs.models import (
    AuditEntry,
    Enrollment,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Tariff,
    TariffPrice,
    Utility,
)
from programs.services import slot_start
from vehicles.models import Vehicle

if TYPE_CHECKING:
    from programs.admin import GridEventAdmin

BLUE, GREEN, AMBER, GREY, RED = "#2563a6", "#0b6e4f", "#b7791f", "#7b8a84", "#b42318"
LIVE_STATES = (GridEvent.Status.SCHEDULED, GridEvent.Status.ACTIVE)
OPEN_STATES = (GridEvent.Status.DRAFT, *LIVE_STATES)


# --- Scoping (used by every ModelAdmin in programs.admin too) -----------------------------------

# How each scoped model reaches its utility.
UTILITY_LOOKUP: dict[type, str] = {
    Utility: "pk",
    Feeder: "utility",
    Tariff: "utility",
    TariffPrice: "tariff__utility",
    Program: "utility",
    ProgramTerms: "program__utility",
    Enrollment: "program__utility",
    GridEvent: "program__utility",
    AuditEntry: "utility",
}


def managed_utility_ids(request: HttpRequest) -> list[int] | None:
    """The utilities this user manages; None for a superuser (every utility)."""
    if request.user.is_superuser:
        return None
    if not hasattr(request, "_managed_utility_ids"):
        request._managed_utility_ids = list(  # type: ignore[attr-defined]
            Utility.objects.filter(managers=request.user).values_list("pk", flat=True)
        )
    return request._managed_utility_ids  # type: ignore[attr-defined]


def scoped(request: HttpRequest, queryset: QuerySet) -> QuerySet:
    """`queryset` narrowed to the utilities the signed-in user manages."""
    ids = managed_utility_ids(request)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{UTILITY_LOOKUP[queryset.model]}__in": ids})


def csv_response(filename: str, header: list[str], rows: Any) -> HttpResponse:
    """A CSV download. Cells that a spreadsheet would run as a formula are quoted as text."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [
                f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@") else cell
                for cell in row
            ]
        )
    return response


# --- Forms --------------------------------------------------------------------------------------


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


class EventForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.none())
    kind = forms.ChoiceField(choices=GridEvent.Kind.choices)
    starts_at = forms.DateTimeField(label="Starts", widget=LocalDateTimeInput())
    ends_at = forms.DateTimeField(label="Ends", widget=LocalDateTimeInput())
    target_kw = forms.FloatField(
        label="Target (kW)",
        help_text="An import cap: the most the participants may draw together. "
        "An export request: what they should send back together.",
    )
    region = forms.ChoiceField(required=False, help_text="Leave empty for the whole program.")
    feeder = forms.ModelChoiceField(
        queryset=Feeder.objects.none(), required=False, help_text="Or one feeder."
    )

    def __init__(self, *args: Any, programs: Any, feeders: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = programs
        self.fields["feeder"].queryset = feeders
        regions = sorted(set(feeders.values_list("region", flat=True)))
        self.fields["region"].choices = [("", "Whole program"), *((r, r) for r in regions)]


class DispatchForm(forms.Form):
    confirm_code = forms.CharField(required=False, label="Type the program code to confirm")

    def __init__(self, *args: Any, event: GridEvent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event = event
        self.needs_code = event.target_kw >= settings.EVENT_CONFIRM_ABOVE_KW

    def clean_confirm_code(self) -> str:
        code = self.cleaned_data["confirm_code"].strip()
        if self.needs_code and code != self.event.program.code:
            raise ValidationError(
                f"This event asks for {self.event.target_kw:,.0f} kW: type "
                f"{self.event.program.code} exactly to dispatch it."
            )
        return code


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Kept in the audit trail.",
        error_messages={"required": "Give a reason for cancelling the event."},
    )


# --- Views --------------------------------------------------------------------------------------


class EventViews:
    def __init__(self, model_admin: GridEventAdmin) -> None:
        self.admin = model_admin

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin.admin_site.each_context(request),
            "opts": self.admin.opts,
            "time_zone": timezone.get_current_timezone_name(),
            **extra,
        }

    def _event(self, request: HttpRequest, event_id: int, *, change: bool = False) -> GridEvent:
        event = (
            self.admin.get_queryset(request)
            .select_related("program__utility", "feeder")
            .filter(pk=event_id)
            .first()
        )
        if event is None:
            raise Http404("No such event.")
        allowed = (
            self.admin.has_change_permission(request, event)
            if change
            else self.admin.has_view_permission(request, event)
        )
        if not allowed:
            raise PermissionDenied
        return event

    def create(self, request: HttpRequest) -> HttpResponse:
        if not self.admin.has_add_permission(request):
            raise PermissionDenied
        programs = scoped(request, Program.objects.all())
        feeders = scoped(request, Feeder.objects.all())
        start = slot_start(timezone.now() + timedelta(hours=2))
        form = EventForm(
            request.POST or None,
            programs=programs,
            feeders=feeders,
            initial={"starts_at": start, "ends_at": start + timedelta(hours=2)},
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                event = events.create_event(
                    program=data["program"],
                    kind=data["kind"],
                    starts_at=data["starts_at"],
                    ends_at=data["ends_at"],
                    target_kw=data["target_kw"],
                    feeder=data["feeder"],
                    region=data["region"],
                    actor=request.user,
                )
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, "Draft saved. Check the preview, then dispatch.")
                return redirect("admin:programs_gridevent_preview", event.pk)
        if form.errors:
            messages.error(request, "The event was not created: see the messages below.")
        return TemplateResponse(
            request,
            "admin/programs/gridevent/add.html",
            self._context(
                request,
                title="New grid event",
                form=form,
                adminform=helpers.AdminForm(
                    form,
                    [(None, {"fields": list(form.fields)})],
                    prepopulated_fields={},
                    model_admin=self.admin,
                ),
                confirm_above_kw=settings.EVENT_CONFIRM_ABOVE_KW,
            ),
        )

    def preview(self, request: HttpRequest, event_id: int) -> HttpResponse:
        event = self._event(request, event_id)
        if event.status != GridEvent.Status.DRAFT:
            return redirect("admin:programs_gridevent_live", event.pk)
        return self._preview_page(request, event, DispatchForm(event=event), CancelForm())

    def _preview_page(
        self, request: HttpRequest, event: GridEvent, form: DispatchForm, cancel_form: CancelForm
    ) -> HttpResponse:
        refused: list[str] = []
        try:
            allocation = events.preview_event(event=event)
        except ValidationError as error:
            refused = error.messages
            allocation = None
        at_risk = (
            list(Vehicle.objects.filter(pk__in=allocation.at_risk).select_related("owner"))
            if allocation
            else []
        )
        rows = (
            [
                {"start": start, "expected_kw": kw}
                for start, kw in zip(allocation.slot_starts, allocation.expected_kw, strict=True)
            ]
            if allocation
            else []
        )
        return TemplateResponse(
            request,
            "admin/programs/gridevent/preview.html",
            self._context(
                request,
                title=f"Preview: {event_title(event)}",
                event=event,
                allocation=allocation,
                rows=rows,
                at_risk=at_risk,
                refused=refused,
                figure=preview_figure(event, allocation) if allocation else None,
                form=form,
                cancel_form=cancel_form,
                can_change=self.admin.has_change_permission(request, event),
            ),
        )

    def dispatch(self, request: HttpRequest, event_id: int) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:programs_gridevent_preview", event_id)
        event = self._event(request, event_id, change=True)
        form = DispatchForm(request.POST, event=event)
        if not form.is_valid():
            return self._preview_page(request, event, form, CancelForm())
        try:
            event = events.schedule_event(event=event, actor=request.user)
        except ValidationError as error:
            messages.error(request, "Not dispatched: " + " ".join(error.messages))
            return redirect("admin:programs_gridevent_preview", event.pk)
        count = event.participations.count()
        messages.success(request, f"Dispatched: {count} participants' owners are told.")
        return redirect("admin:programs_gridevent_live", event.pk)

    def live(self, request: HttpRequest, event_id: int) -> HttpResponse:
        event = self._event(request, event_id)
        if event.status == GridEvent.Status.DRAFT:
            return redirect("admin:programs_gridevent_preview", event.pk)
        return TemplateResponse(
            request,
            "admin/programs/gridevent/live.html",
            self._context(
                request,
                title=f"Live: {event_title(event)}",
                event=event,
                cancel_form=CancelForm(),
                can_change=self.admin.has_change_permission(request, event),
                **live_numbers(event),
            ),
        )

    def live_fragment(self, request: HttpRequest, event_id: int) -> HttpResponse:
        event = self._event(request, event_id)
        return TemplateResponse(
            request,
            "admin/programs/gridevent/_live.html",
            {
                "event": event,
                "time_zone": timezone.get_current_timezone_name(),
                **live_numbers(event),
            },
        )

    def cancel(self, request: HttpRequest, event_id: int) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:programs_gridevent_change", event_id)
        event = self._event(request, event_id, change=True)
        form = CancelForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not cancelled: " + " ".join(form.errors["reason"]))
        elif event.status not in OPEN_STATES:
            messages.warning(
                request, f"This event is already {event.get_status_display().lower()}."
            )
        else:
            events.cancel_event(event=event, actor=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, "Event cancelled; participating cars go back to their plans.")
        return redirect("admin:programs_gridevent_change", event.pk)

    def delivery_csv(self, request: HttpRequest, event_id: int) -> HttpResponse:
        return delivery_csv_response([self._event(request, event_id)])

    def flexibility(self, request: HttpRequest) -> HttpResponse:
        if not self.admin.has_view_permission(request):
            raise PermissionDenied
        programs = scoped(request, Program.objects.all())
        program = programs.filter(pk=request.GET.get("program") or None).first()
        utility_ids = managed_utility_ids(request)
        if utility_ids is None:
            utility_ids = list(programs.values_list("utility_id", flat=True).distinct())
        flex = flexibility.flexibility_for(utility_ids=utility_ids, program=program)
        return TemplateResponse(
            request,
            "admin/programs/flexibility.html",
            self._context(
                request,
                title="Flexibility",
                flex=flex,
                programs=programs,
                program=program,
                total=flex.total(),
                grouped=flex.grouped(),
                hourly=hourly_rows(flex),
                horizon_figure=horizon_figure(flex),
                region_figure=region_figure(flex),
                feeder_figure=feeder_figure(flex),
            ),
        )


def event_title(event: GridEvent) -> str:
    local = timezone.localtime(event.starts_at)
    return f"{event.get_kind_display()}, {event.program.name}, {local:%a %-d %b %H:%M}"


def _add_errors(form: forms.Form, error: ValidationError) -> None:
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages_ in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages_)


def live_numbers(event: GridEvent) -> dict[str, Any]:
    now = timezone.now()
    delivery = flexibility.event_delivery(event=event, now=now)
    participants = event.participations.count()
    opted_out = flexibility.opted_out(event=event)
    for participation in opted_out:
        participation.fee_dollars = participation.opt_out_fee_cents / 100
    current = slot_start(now)
    index = next((i for i, s in enumerate(delivery.slot_starts) if s == current), None)
    return {
        "participants": participants,
        "opted_out": opted_out,
        "full_opt_outs": sum(1 for p in opted_out if p.keep_soc_pct is None),
        "failing": flexibility.failing_commands(event=event),
        "committed_now": delivery.committed_kw[index] if index is not None else None,
        "delivered_now": delivery.delivered_kw[index] if index is not None else None,
        "delivery": delivery,
        "delivery_rows": list(
            zip(delivery.slot_starts, delivery.committed_kw, delivery.delivered_kw, strict=True)
        ),
        "live_figure": live_figure(event, delivery, now),
        "polling": event.status in LIVE_STATES,
    }


def delivery_csv_response(event_list: list[GridEvent]) -> HttpResponse:
    def rows():  # type: ignore[no-untyped-def]
        for event in event_list:
            measured = flexibility.event_delivery(event=event).measured_kwh
            participations = EventParticipation.objects.filter(event=event).select_related(
                "vehicle__owner"
            )
            for participation in participations.order_by("pk"):
                committed = sum(float(kw) for kw in participation.committed_kw)
                yield (
                    event.pk,
                    event.program.code,
                    event.kind,
                    event.status,
                    str(participation.vehicle_id),
                    participation.vehicle.display_name,
                    participation.vehicle.owner.email,
                    round(committed * flexibility.SLOT_HOURS, 3),
                    round(measured.get(participation.vehicle_id, 0.0), 3),
                    "" if participation.delivered_kwh is None else participation.delivered_kwh,
                    participation.opted_out_at.isoformat() if participation.opted_out_at else "",
                    participation.keep_soc_pct or "",
                    participation.opt_out_fee_cents,
                )

    header = [
        "event_id",
        "program",
        "kind",
        "status",
        "vehicle_id",
        "vehicle",
        "owner_email",
        "committed_kwh",
        "measured_kwh",
        "settled_delivered_kwh",
        "opted_out_at",
        "keep_soc_pct",
        "opt_out_fee_cents",
    ]
    name = f"event-{event_list[0].pk}" if len(event_list) == 1 else "events"
    return csv_response(f"{name}-delivery.csv", header, rows())


# --- Charts (Plotly figures as JSON, drawn by static/js/charts.js) ------------------------------


def _local(moment: datetime) -> str:  # plotly reads offset-less dates as wall-clock time
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _layout(figure: go.Figure, *, height: int = 320, **extra: Any) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 55, "r": 20, "t": 10, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.18},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "yaxis": {"ticksuffix": " kW", "rangemode": "tozero", "fixedrange": True},
        "xaxis": {"fixedrange": True},
    }
    figure.update_layout(**{**layout, **extra})
    return figure.to_plotly_json()


def _labels(event: GridEvent) -> tuple[str, str]:
    if event.kind == GridEvent.Kind.IMPORT_CAP:
        return "Import cap (requested)", "import"
    return "Export requested", "export"


def preview_figure(event: GridEvent, allocation: events.Allocation) -> dict:
    requested, noun = _labels(event)
    x = [_local(start) for start in allocation.slot_starts]
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=x,
            y=allocation.expected_kw,
            name=f"Expected {noun}",
            marker={"color": BLUE},
            hovertemplate="%{y:,.1f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[allocation.requested_kw] * len(x),
            name=requested,
            mode="lines",
            line={"color": AMBER, "width": 3, "shape": "hv", "dash": "dash"},
            hovertemplate="%{y:,.0f} kW<extra></extra>",
        )
    )
    return _layout(figure)


def live_figure(event: GridEvent, delivery: flexibility.Delivery, now: datetime) -> dict:
    requested, noun = _labels(event)
    x = [_local(start) for start in delivery.slot_starts]
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=x,
            y=delivery.delivered_kw,
            name=f"Delivered ({noun} measured)",
            marker={"color": GREEN},
            hovertemplate="%{y:,.1f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=delivery.committed_kw,
            name=f"Committed ({noun} planned)",
            mode="lines",
            line={"color": BLUE, "width": 2.5, "shape": "hv"},
            hovertemplate="%{y:,.1f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[delivery.requested_kw] * len(x),
            name=requested,
            mode="lines",
            line={"color": AMBER, "width": 3, "shape": "hv", "dash": "dash"},
            hovertemplate="%{y:,.0f} kW<extra></extra>",
        )
    )
    if delivery.slot_starts[0] <= now < event.ends_at:
        moment = _local(now)
        figure.add_shape(
            type="line", x0=moment, x1=moment, y0=0, y1=1, yref="paper", line={"color": GREY}
        )
    return _layout(figure)


def horizon_figure(flex: flexibility.Flexibility) -> dict:
    total = flex.total()
    x = [_local(start) for start in flex.slot_starts]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=total.curtail_kw.tolist(),
            name="Curtailable charging (kW)",
            stackgroup="available",
            line={"color": BLUE, "shape": "hv"},
            hovertemplate="%{y:,.0f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=total.export_kw.tolist(),
            name="V2G export (kW)",
            stackgroup="available",
            line={"color": GREEN, "shape": "hv"},
            hovertemplate="%{y:,.0f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[round(total.enrolled_kw, 1)] * len(x),
            name="Enrolled (every car plugged in)",
            mode="lines",
            line={"color": GREY, "dash": "dot"},
            hovertemplate="%{y:,.0f} kW<extra></extra>",
        )
    )
    return _layout(figure)


def region_figure(flex: flexibility.Flexibility) -> dict:
    x = [_local(start) for start in flex.slot_starts]
    figure = go.Figure()
    palette = [BLUE, GREEN, AMBER, "#6b4fa0", RED, "#2f8f9d", GREY]
    for index, region in enumerate(flex.by_region()):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=(region.curtail_kw + region.export_kw).tolist(),
                name=region.region,
                mode="lines",
                line={"color": palette[index % len(palette)], "shape": "hv", "width": 2},
                hovertemplate="%{y:,.0f} kW<extra>" + region.region + "</extra>",
            )
        )
    return _layout(figure, height=280)


def feeder_figure(flex: flexibility.Flexibility) -> dict:
    labels = [row.label for row in flex.feeders]
    figure = go.Figure()
    for name, values, color in (
        ("Enrolled kW", [row.enrolled_kw for row in flex.feeders], GREY),
        ("Curtailable now", [float(row.curtail_kw[0]) for row in flex.feeders], BLUE),
        ("V2G export now", [float(row.export_kw[0]) for row in flex.feeders], GREEN),
    ):
        figure.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                name=name,
                marker={"color": color},
                hovertemplate="%{x:,.0f} kW<extra>" + name + "</extra>",
            )
        )
    return _layout(
        figure,
        height=max(220, 60 + 55 * len(labels)),
        barmode="group",
        hovermode="y unified",
        xaxis={"ticksuffix": " kW", "rangemode": "tozero", "fixedrange": True},
        yaxis={"autorange": "reversed", "fixedrange": True},
    )


def hourly_rows(flex: flexibility.Flexibility) -> list[dict[str, Any]]:
    """The horizon chart as a table: the fleet total at the start of every hour."""
    total = flex.total()
    return [
        {"start": start, "curtail_kw": total.curtail_kw[i], "export_kw": total.export_kw[i]}
        for i, start in enumerate(flex.slot_starts)
        if i == 0 or start.minute == 0
    ]
