"""Admin for OpenADR VTN links: health, back-off, the last messages and what each VTN event
became, scoped to the manager's utilities (registered from programs.admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from programs.admin_views import managed_utility_ids
from programs.openadr import ven
from programs.openadr.models import VtnEvent, VtnLink, VtnMessage


def _scoped(request: HttpRequest, queryset: QuerySet, lookup: str) -> QuerySet:
    ids = managed_utility_ids(request)
    return queryset if ids is None else queryset.filter(**{f"{lookup}__in": ids})


class VtnLinkForm(forms.ModelForm):
    client_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stored encrypted. Leave blank to keep the current secret.",
    )

    class Meta:
        model = VtnLink
        fields = [
            "utility",
            "name",
            "base_url",
            "token_url",
            "client_id",
            "client_secret",
            "ven_name",
            "vtn_program_name",
            "program",
            "v2g_program",
            "tariff",
            "enabled",
        ]

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data["client_secret"]
        if not secret and self.instance.pk:
            return self.instance.client_secret
        if not secret:
            raise forms.ValidationError("Give the client secret the VTN issued.")
        return secret


class VtnMessageInline(admin.TabularInline):
    model = VtnMessage
    fields = ["at", "method", "path", "status_code", "summary", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name_plural = "last messages"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        newest = VtnMessage.objects.order_by("-at", "-pk").values("pk")[:30]
        return super().get_queryset(request).filter(pk__in=newest)


class VtnEventInline(admin.TabularInline):
    model = VtnEvent
    fields = [
        "vtn_event_id",
        "interval_id",
        "payload_type",
        "value",
        "starts_at",
        "ends_at",
        "outcome",
        "reason",
        "grid_event",
        "reported_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name_plural = "VTN events"


class VtnLinkAdmin(admin.ModelAdmin):
    form = VtnLinkForm
    list_display = [
        "name",
        "utility",
        "health",
        "last_ok_at",
        "last_polled_at",
        "backoff_until",
        "last_error",
        "enabled",
    ]
    list_filter = ["health", "enabled"]
    readonly_fields = [
        "ven_id",
        "health",
        "last_error",
        "last_ok_at",
        "last_polled_at",
        "backoff_until",
        "consecutive_failures",
    ]
    inlines = [VtnEventInline, VtnMessageInline]
    actions = ["poll_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return _scoped(request, super().get_queryset(request), "utility")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        lookup = "pk" if db_field.name == "utility" else "utility"
        kwargs["queryset"] = _scoped(request, db_field.related_model.objects.all(), lookup)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.action(description="Poll now (and report finished intervals)")
    def poll_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for link in queryset:
            ven.poll_link(link_id=link.pk)
            ven.report_link(link_id=link.pk)
            link.refresh_from_db()
            level = messages.SUCCESS if link.health == VtnLink.Health.OK else messages.WARNING
            self.message_user(request, f"{link}: {link.get_health_display()}", level)
