"""The program manager's admin: utilities, feeders, tariffs, programs and their terms, the
enrollment approval queue, grid events and the audit trail — each scoped to the utilities the
signed-in manager manages (DESIGN.md I6); superusers see every utility.

Scoping is in one place, `UtilityScoped`: every queryset (lists, change pages, actions, exports
run on the admin's queryset), every foreign-key choice and every list filter. Another utility's
object by URL is "doesn't exist". Writes go through the services: enrollment decisions through
programs.enrollments.set_status, events through programs.events (pages in programs.admin_views).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from programs import admin_views, audit, earnings_views
from programs.admin_views import UTILITY_LOOKUP, csv_response, scoped
from programs.enrollments import set_status
from programs.models import (
    AuditEntry,
    Enrollment,
    EnrollmentChange,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Tariff,
    TariffPrice,
    Utility,
)


class UtilityScoped:
    """Mixin for ModelAdmins and inlines: only the manager's utilities, everywhere."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scoped(request, super().get_queryset(request))  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model in UTILITY_LOOKUP:
            kwargs["queryset"] = scoped(request, db_field.related_model._default_manager.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields or [])

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Utilities, feeders, tariffs --------------------------------------------------------------


@admin.register(Utility)
class UtilityAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = ["name", "slug", "time_zone", "feeder_count"]
    search_fields = ["name", "slug"]
    filter_horizontal = ["managers"]

    @admin.display(description="feeders")
    def feeder_count(self, utility: Utility) -> int:
        return utility.feeders.count()

    # A utility and who manages it are decided by ChargeScape operators, not by its managers.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Feeder)
class FeederAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = ["code", "region", "utility", "zip_list", "max_import_kw"]
    list_filter = [("utility", admin.RelatedOnlyFieldListFilter), "region"]
    search_fields = ["code", "region", "zip_codes"]

    @admin.display(description="ZIP codes")
    def zip_list(self, feeder: Feeder) -> str:
        return ", ".join(feeder.zip_codes)


class TariffPriceInline(UtilityScoped, admin.TabularInline):
    model = TariffPrice
    extra = 0
    fields = ["start", "price", "export_price", "source"]


@admin.register(Tariff)
class TariffAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = ["name", "utility", "kind", "is_default", "default_price", "export_price"]
    list_filter = [("utility", admin.RelatedOnlyFieldListFilter), "kind"]
    inlines = [TariffPriceInline]


# --- Programs and terms -----------------------------------------------------------------------


class PublishedTermsInline(UtilityScoped, ReadOnlyInline):
    """Published versions never change: owners accepted them as they are."""

    model = ProgramTerms
    fields = ["version", "published_at", "body", "incentives"]
    verbose_name = "published terms"
    verbose_name_plural = "published terms (never edited: publish a new version instead)"


class NewTermsInline(UtilityScoped, admin.StackedInline):
    """A form for the next version; existing enrollments keep the version they accepted."""

    model = ProgramTerms
    extra = 1
    max_num = 1
    can_delete = False
    fields = ["body", "incentives", "published_at"]
    verbose_name = "new terms version"
    verbose_name_plural = "publish a new terms version (leave empty to keep the current one)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).none()


@admin.register(Program)
class ProgramAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = ["name", "code", "utility", "kind", "status", "current_version", "join_link"]
    list_filter = [("utility", admin.RelatedOnlyFieldListFilter), "kind", "status"]
    search_fields = ["name", "code"]
    readonly_fields = ["join_link"]
    inlines = [NewTermsInline, PublishedTermsInline]
    fieldsets = [
        (None, {"fields": ["utility", "name", "code", "join_link", "kind", "status", "summary"]}),
        (
            "Rules",
            {
                "fields": [
                    "max_events_per_month",
                    "max_events_per_season",
                    "max_event_minutes",
                    "notice_minutes",
                    "opt_outs_per_month",
                    "opt_out_fee_cents",
                    "auto_approve",
                ]
            },
        ),
        (
            "Eligibility",
            {"fields": ["eligible_makes", "min_model_year", "requires_charger", "requires_v2g"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(latest_version=Max("terms__version"))

    @admin.display(description="terms", ordering="latest_version")
    def current_version(self, program: Program) -> str:
        version = getattr(program, "latest_version", None)
        return f"v{version}" if version else "none yet"

    @admin.display(description="deep link")
    def join_link(self, program: Program) -> str:
        if not program.pk:
            return "—"
        return reverse("programs:program-join", args=[program.code])

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not ProgramTerms:
            return super().save_formset(request, form, formset, change)
        program = form.instance
        with transaction.atomic():
            # Lock the program so two managers publishing at once get consecutive versions.
            Program.objects.select_for_update().filter(pk=program.pk).first()
            for terms in formset.save(commit=False):
                latest = program.terms.aggregate(latest=Max("version"))["latest"] or 0
                terms.program = program
                terms.version = latest + 1
                terms.save()
                audit.record(
                    utility=program.utility_id,
                    actor=request.user,
                    action="program.publish_terms",
                    target=terms,
                    version=terms.version,
                )
                messages.success(request, f"Published terms v{terms.version} of {program}.")


# --- Enrollments: the approval queue ----------------------------------------------------------


class EnrollmentChangeInline(ReadOnlyInline):
    model = EnrollmentChange
    fields = ["at", "from_status", "to_status", "reason", "actor"]
    verbose_name = "status change"
    verbose_name_plural = "status history"


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="The owner sees this reason on their Programs page.",
        error_messages={"required": "Tell the owners why their enrollment is suspended."},
    )


@admin.register(Enrollment)
class EnrollmentAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = [
        "vehicle_name",
        "owner_email",
        "program",
        "status",
        "status_reason",
        "terms_version",
        "accepted_at",
    ]
    list_filter = ["status", ("program", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["vehicle__owner", "program", "terms"]
    search_fields = ["vehicle__owner__email", "vehicle__make", "vehicle__model", "program__code"]
    date_hierarchy = "created_at"
    fields = [
        "program",
        "vehicle_name",
        "owner_email",
        "terms",
        "accepted_at",
        "status",
        "status_reason",
        "source",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [EnrollmentChangeInline]
    actions = [
        "approve_enrollments",
        "suspend_enrollments",
        "reinstate_enrollments",
        "export_enrollments_csv",
    ]

    @admin.display(description="vehicle", ordering="vehicle__make")
    def vehicle_name(self, enrollment: Enrollment) -> str:
        vehicle = enrollment.vehicle
        return f"{vehicle.display_name} {vehicle.masked_vin}".strip()

    @admin.display(description="owner", ordering="vehicle__owner__email")
    def owner_email(self, enrollment: Enrollment) -> str:
        return enrollment.vehicle.owner.email

    @admin.display(description="terms")
    def terms_version(self, enrollment: Enrollment) -> str:
        return f"v{enrollment.terms.version}"

    # Owners enroll themselves; status changes only through the actions (history and audit).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[Enrollment],
        *,
        status: str,
        from_states: tuple[str, ...],
        reason: str,
        verb: str,
    ) -> None:
        done, skipped, refused = 0, 0, []
        for enrollment in queryset.select_related("vehicle", "program"):
            if enrollment.status not in from_states:
                skipped += 1
                continue
            try:
                set_status(enrollment=enrollment, status=status, reason=reason, actor=request.user)
            except ValidationError as error:
                refused.append(f"{enrollment.vehicle.display_name}: {' '.join(error.messages)}")
            else:
                done += 1
        if done:
            messages.success(request, f"{verb} {done} enrollment{'s' if done != 1 else ''}.")
        if skipped:
            states = " or ".join(Enrollment.Status(state).label.lower() for state in from_states)
            messages.warning(
                request,
                f"Left {skipped} unchanged: only {states} enrollments can be {verb.lower()}.",
            )
        for line in refused:
            messages.error(request, line)

    @admin.action(description="Approve selected pending enrollments", permissions=["change"])
    def approve_enrollments(self, request: HttpRequest, queryset: QuerySet[Enrollment]) -> None:
        self._decide(
            request,
            queryset,
            status=Enrollment.Status.ACTIVE,
            from_states=(Enrollment.Status.PENDING,),
            reason="Approved by the utility.",
            verb="Approved",
        )

    @admin.action(
        description="Suspend selected enrollments (asks for a reason)…", permissions=["change"]
    )
    def suspend_enrollments(
        self, request: HttpRequest, queryset: QuerySet[Enrollment]
    ) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._decide(
                request,
                queryset,
                status=Enrollment.Status.SUSPENDED,
                from_states=(Enrollment.Status.PENDING, Enrollment.Status.ACTIVE),
                reason=form.cleaned_data["reason"],
                verb="Suspended",
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Suspend enrollments",
            "opts": self.model._meta,
            "form": form,
            "enrollments": queryset.select_related("vehicle__owner", "program"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/programs/enrollment/suspend.html", context)

    @admin.action(description="Reinstate selected suspended enrollments", permissions=["change"])
    def reinstate_enrollments(self, request: HttpRequest, queryset: QuerySet[Enrollment]) -> None:
        self._decide(
            request,
            queryset,
            status=Enrollment.Status.ACTIVE,
            from_states=(Enrollment.Status.SUSPENDED,),
            reason="Reinstated by the utility.",
            verb="Reinstated",
        )

    @admin.action(description="Export selected enrollments as CSV", permissions=["view"])
    def export_enrollments_csv(
        self, request: HttpRequest, queryset: QuerySet[Enrollment]
    ) -> HttpResponse:
        rows = (
            (
                enrollment.pk,
                enrollment.program.code,
                enrollment.status,
                enrollment.status_reason,
                enrollment.vehicle.owner.email,
                enrollment.vehicle.owner.service_zip,
                enrollment.vehicle.make,
                enrollment.vehicle.model,
                enrollment.vehicle.year,
                enrollment.vehicle.v2g_capable,
                enrollment.terms.version,
                enrollment.accepted_at.isoformat(),
                enrollment.source,
            )
            for enrollment in queryset.select_related(
                "program", "terms", "vehicle__owner"
            ).order_by("pk")
        )
        header = [
            "enrollment_id",
            "program",
            "status",
            "status_reason",
            "owner_email",
            "service_zip",
            "make",
            "model",
            "year",
            "v2g_capable",
            "terms_version",
            "accepted_at",
            "source",
        ]
        return csv_response(f"enrollments-{timezone.now():%Y%m%d-%H%M}.csv", header, rows)


# --- Grid events --------------------------------------------------------------------------------


@admin.register(GridEvent)
class GridEventAdmin(UtilityScoped, admin.ModelAdmin):
    """Events are created, dispatched and cancelled only through programs.events; the pages of
    that flow (add → preview → dispatch → live → cancel) are in programs.admin_views."""

    list_display = ["__str__", "program", "kind", "status", "starts_at", "target_kw", "scope"]
    list_display += ["settlement_link"]
    list_filter = ["status", "kind", ("program", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["program", "feeder"]
    date_hierarchy = "starts_at"
    actions = ["export_delivery_csv"]

    @admin.display(description="scope")
    def scope(self, event: GridEvent) -> str:
        if event.feeder_id:
            return f"feeder {event.feeder}"
        return f"region {event.region}" if event.region else "whole program"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="settlement")
    def settlement_link(self, event: GridEvent) -> str:
        return earnings_views.settlement_link(event)

    def get_urls(self):  # type: ignore[no-untyped-def]
        view = self.admin_site.admin_view
        views = admin_views.EventViews(self)
        return [
            path("flexibility/", view(views.flexibility), name="programs_flexibility"),
            path("<int:event_id>/preview/", view(views.preview), name="programs_gridevent_preview"),
            path(
                "<int:event_id>/dispatch/", view(views.dispatch), name="programs_gridevent_dispatch"
            ),
            path("<int:event_id>/live/", view(views.live), name="programs_gridevent_live"),
            path(
                "<int:event_id>/live/fragment/",
                view(views.live_fragment),
                name="programs_gridevent_live_fragment",
            ),
            path("<int:event_id>/cancel/", view(views.cancel), name="programs_gridevent_cancel"),
            path(
                "<int:event_id>/delivery.csv",
                view(views.delivery_csv),
                name="programs_gridevent_delivery",
            ),
            *earnings_views.settlement_urls(self),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None):  # type: ignore[no-untyped-def]
        return admin_views.EventViews(self).create(request)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ):  # type: ignore[no-untyped-def]
        """An event's page is its preview while a draft, its live view after dispatch."""
        event = self.get_object(request, object_id)
        if event is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        name = "preview" if event.status == GridEvent.Status.DRAFT else "live"
        return redirect(f"admin:programs_gridevent_{name}", event.pk)

    @admin.action(description="Export delivery of selected events as CSV", permissions=["view"])
    def export_delivery_csv(
        self, request: HttpRequest, queryset: QuerySet[GridEvent]
    ) -> HttpResponse:
        return admin_views.delivery_csv_response(list(queryset.select_related("program")))


# --- Audit ------------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(UtilityScoped, admin.ModelAdmin):
    list_display = ["at", "action", "actor", "object_type", "object_id", "utility"]
    list_filter = ["action", ("utility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["action", "object_id", "actor__email"]
    date_hierarchy = "at"
    list_select_related = ["actor", "utility"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Utility API clients and OpenADR VTN links (their ModelAdmins live beside their code) --------
from programs.api.admin import ApiClientAdmin  # noqa: E402
from programs.api.models import ApiClient  # noqa: E402
from programs.openadr.admin import VtnLinkAdmin  # noqa: E402
from programs.openadr.models import VtnLink  # noqa: E402

admin.site.register(ApiClient, ApiClientAdmin)
admin.site.register(VtnLink, VtnLinkAdmin)
