"""Admin for utility API clients: create one (its client id and secret shown once), its scopes,
webhook URL and recent webhook deliveries; scoped to the manager's utilities (registered from
programs.admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from programs.admin_views import managed_utility_ids
from programs.api import services, webhooks
from programs.api.models import SCOPES, ApiClient, WebhookDelivery


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiClient
        fields = ["utility", "name", "scopes", "is_active", "webhook_url"]


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["created_at", "kind", "state", "attempts", "last_status", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "utility", "client_id", "scopes", "is_active", "webhook_url"]
    readonly_fields = ["client_id"]
    inlines = [WebhookDeliveryInline]

    @admin.display(description="client id")
    def client_id(self, client: ApiClient) -> str:
        return client.application.client_id if client.pk else "(issued on save)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request).select_related("application", "utility")
        ids = managed_utility_ids(request)
        return queryset if ids is None else queryset.filter(utility_id__in=ids)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        ids = managed_utility_ids(request)
        if db_field.name == "utility" and ids is not None:
            kwargs["queryset"] = db_field.related_model.objects.filter(pk__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if change:
            if obj.webhook_url and not obj.webhook_secret:
                obj.webhook_secret = webhooks.new_secret()
            obj.save()
            return
        client, secret = services.create_api_client(
            utility=obj.utility,
            name=obj.name,
            scopes=obj.scopes,
            webhook_url=obj.webhook_url,
        )
        obj.pk = client.pk
        obj.application = client.application
        note = f" Webhook signing secret: {client.webhook_secret}" if client.webhook_secret else ""
        self.message_user(
            request,
            f"Client id: {client.application.client_id} — client secret (shown only now): "
            f"{secret}.{note}",
            messages.WARNING,
        )
