from django.contrib import admin

from vehicles.models import ChargingPreference, Vehicle, VehicleLink, VehicleReading


@admin.register(Vehicle)
class VehicleAdmin(admin.ModelAdmin):
    list_display = ["display_name", "owner", "provider", "link_state", "v2g_capable", "created_at"]
    list_filter = ["provider", "link_state", "v2g_capable", "make"]
    search_fields = ["owner__email", "make", "model"]
    readonly_fields = ["provider", "provider_vehicle_id", "vin", "link", "next_poll_at"]
    raw_id_fields = ["owner"]


@admin.register(VehicleLink)
class VehicleLinkAdmin(admin.ModelAdmin):
    list_display = ["owner", "provider", "status", "access_expires_at", "refreshed_count"]
    list_filter = ["provider", "status"]
    exclude = ["access_token", "refresh_token"]  # secrets never shown, even to staff
    readonly_fields = ["owner", "provider", "access_expires_at", "refresh_expires_at"]


@admin.register(VehicleReading)
class VehicleReadingAdmin(admin.ModelAdmin):
    list_display = ["vehicle", "recorded_at", "soc_pct", "plugged_in", "charging_state", "source"]
    list_filter = ["source", "charging_state"]
    date_hierarchy = "recorded_at"
    exclude = ["latitude", "longitude"]  # precise positions stay out of the admin


@admin.register(ChargingPreference)
class ChargingPreferenceAdmin(admin.ModelAdmin):
    list_display = ["vehicle", "min_soc_pct", "max_soc_pct", "v2g_consent", "updated_at"]
