"""Operators' view of commands: every command with its audit trail, read-only (I7).

Commands change only through vehicles.control.services; the admin shows what happened and why
(a refusal's reason, the last error, each attempt, the closed loop's diagnosis). Owner alerts
(departure warnings) are listed read-only too: vehicles.control.confirm writes them.
"""

from django.contrib import admin
from django.http import HttpRequest

from vehicles.control.models import Command, CommandEvent, OwnerAlert


class CommandEventInline(admin.TabularInline):
    model = CommandEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "actor", "actor_user", "detail", "data"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "vehicle",
        "charger",
        "action",
        "power_kw",
        "state",
        "attempts",
        "lease_end",
        "created_at",
    ]
    list_filter = ["state", "action", "source"]
    search_fields = ["idempotency_key", "vehicle__vin", "charger__charge_point_id"]
    date_hierarchy = "created_at"
    inlines = [CommandEventInline]
    list_select_related = ["vehicle", "charger"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [field.name for field in Command._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(OwnerAlert)
class OwnerAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "vehicle", "kind", "message", "updated_at", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["vehicle__vin", "key"]
    date_hierarchy = "created_at"
    list_select_related = ["vehicle"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [field.name for field in OwnerAlert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
