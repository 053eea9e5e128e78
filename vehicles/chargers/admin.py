"""Operators' view of chargers: provisioning (secrets shown once), presence, recent messages.

Provisioning replaces the admin's add form: the service creates the charger, and the page that
follows shows the authorization key and pairing code once — they are stored only as hashes.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from vehicles.chargers import selectors, services
from vehicles.chargers.models import (
    CHARGE_POINT_ID_RE,
    Charger,
    ChargingProfile,
    ChargingSession,
    Connector,
)


class ProvisionForm(forms.Form):
    charge_point_id = forms.RegexField(regex=CHARGE_POINT_ID_RE, max_length=48)
    name = forms.CharField(max_length=60, required=False)
    max_power_kw = forms.DecimalField(max_digits=6, decimal_places=2, initial=11, min_value=1)
    v2g_capable = forms.BooleanField(required=False, label="V2G capable")


class ConnectorInline(admin.TabularInline):
    model = Connector
    extra = 0
    can_delete = False
    readonly_fields = ["evse_id", "connector_id", "status", "error_code", "status_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ProfileInline(admin.TabularInline):
    model = ChargingProfile
    extra = 0
    can_delete = False
    fields = ["purpose", "profile_id", "evse_id", "stack_level", "valid_to", "state", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Charger)
class ChargerAdmin(admin.ModelAdmin):
    list_display = ["charge_point_id", "name", "owner", "protocol", "presence", "last_seen_at"]
    list_filter = ["protocol", "is_connected", "v2g_capable"]
    search_fields = ["charge_point_id", "name", "owner__email", "serial_number"]
    raw_id_fields = ["owner"]
    fields = [
        "charge_point_id",
        "name",
        "owner",
        "max_power_kw",
        "v2g_capable",
        "presence",
        "protocol",
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
        "last_seen_at",
        "last_boot_at",
        "claimed_at",
        "recent_messages",
    ]
    readonly_fields = [
        "charge_point_id",
        "presence",
        "protocol",
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
        "last_seen_at",
        "last_boot_at",
        "claimed_at",
        "recent_messages",
    ]
    inlines = [ConnectorInline, ProfileInline]
    actions = ["issue_new_authorization_key"]

    @admin.display(description="presence")
    def presence(self, charger: Charger) -> str:
        return "online" if selectors.is_online(charger) else "offline"

    @admin.display(description="recent messages")
    def recent_messages(self, charger: Charger) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (m.created_at.strftime("%Y-%m-%d %H:%M:%S"), m.direction, m.action, m.payload)
                for m in selectors.list_recent_messages(charger=charger, limit=50)
            ),
        )
        return format_html("<table>{}</table>", rows) if rows else "—"

    def get_urls(self):  # type: ignore[no-untyped-def]
        provision = self.admin_site.admin_view(self.provision_view)
        return [
            path("provision/", provision, name="chargers_charger_provision"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):  # type: ignore[no-untyped-def]
        return redirect("admin:chargers_charger_provision")

    def provision_view(self, request: HttpRequest) -> HttpResponse:
        """Create a charger; the key and pairing code appear on the next page, once."""
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = ProvisionForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "title": "Provision a charger"}
        if request.method == "POST" and form.is_valid():
            try:
                provisioned = services.provision_charger(**form.cleaned_data)
            except (services.ChargerError, ValidationError) as error:
                form.add_error("charge_point_id", str(error))
            else:
                context.update(
                    title="Charger provisioned",
                    secrets=[provisioned],
                    change_url=reverse(
                        "admin:chargers_charger_change", args=[provisioned.charger.pk]
                    ),
                )
                return TemplateResponse(request, "chargers/admin_secrets.html", context)
        context["form"] = form
        return TemplateResponse(request, "chargers/admin_provision.html", context)

    @admin.action(description="Issue a new authorization key (the old one stops working)")
    def issue_new_authorization_key(
        self, request: HttpRequest, queryset: QuerySet[Charger]
    ) -> HttpResponse:
        secrets = [
            services.ProvisionedCharger(
                charger, services.rotate_authorization_key(charger=charger), ""
            )
            for charger in queryset
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "New authorization keys",
            "secrets": secrets,
        }
        return TemplateResponse(request, "chargers/admin_secrets.html", context)


@admin.register(ChargingSession)
class ChargingSessionAdmin(admin.ModelAdmin):
    list_display = ["charger", "transaction_id", "state", "started_at", "ended_at", "power_kw"]
    list_filter = ["state"]
    search_fields = ["charger__charge_point_id", "transaction_id"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in ChargingSession._meta.fields]
