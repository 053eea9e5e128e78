"""Owners' vehicles, their links to automakers' clouds, telemetry, and charging preferences."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chargescape.crypto import EncryptedTextField

# SoC older than this is "stale": no discharge, and the owner sees the data age (DESIGN.md I3).
SOC_STALE_AFTER = timedelta(minutes=15)

percent = [MinValueValidator(0), MaxValueValidator(100)]


class VehicleLink(models.Model):
    """One owner's authorization at one vehicle cloud (an OAuth grant covering 1+ cars)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Linked"
        NEEDS_REAUTH = "needs_reauth", "Needs sign-in again"
        REVOKED = "revoked", "Unlinked"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vehicle_links"
    )
    provider = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    refreshed_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "provider"])]

    def __str__(self) -> str:
        return f"{self.provider} link of {self.owner_id} ({self.status})"


class Vehicle(models.Model):
    class LinkState(models.TextChoices):
        LINKED = "linked", "Linked"
        NEEDS_REAUTH = "needs_reauth", "Needs sign-in again"
        UNLINKED = "unlinked", "Unlinked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vehicles"
    )
    link = models.ForeignKey(
        VehicleLink, on_delete=models.SET_NULL, null=True, blank=True, related_name="vehicles"
    )
    provider = models.CharField(max_length=32)
    provider_vehicle_id = models.CharField(max_length=128)
    make = models.CharField(max_length=64)
    model = models.CharField(max_length=64)
    year = models.PositiveSmallIntegerField()
    vin = models.CharField("VIN", max_length=17, blank=True)
    nickname = models.CharField(max_length=40, blank=True)
    battery_kwh = models.DecimalField(max_digits=6, decimal_places=1)
    max_ac_kw = models.DecimalField("max AC charging kW", max_digits=5, decimal_places=1)
    max_dc_kw = models.DecimalField(
        "max DC charging kW", max_digits=6, decimal_places=1, null=True, blank=True
    )
    v2g_capable = models.BooleanField("V2G capable", default=False)
    link_state = models.CharField(
        max_length=16, choices=LinkState.choices, default=LinkState.LINKED
    )
    # Home geofence centre, rounded to ~100 m; set by the owner from the car's position.
    home_latitude = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    home_longitude = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    next_poll_at = models.DateTimeField(default=timezone.now, db_index=True)
    poll_backoff_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_vehicle_id"],
                condition=~Q(link_state="unlinked"),
                name="vehicles_vehicle_one_active_link_per_car",
            ),
            models.CheckConstraint(
                condition=Q(battery_kwh__gt=0) & Q(max_ac_kw__gt=0),
                name="vehicles_vehicle_positive_capacity",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.nickname or f"{self.year} {self.make} {self.model}"

    @property
    def masked_vin(self) -> str:
        """VINs identify a person's car: show only the last four characters."""
        return f"••••{self.vin[-4:]}" if self.vin else ""


class VehicleReading(models.Model):
    """One observation of a car (webhook or poll). Time series; newest last."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        POLL = "poll", "Poll"
        CHARGER = "charger", "Charger"

    class ChargingState(models.TextChoices):
        CHARGING = "CHARGING", "Charging"
        NOT_CHARGING = "NOT_CHARGING", "Not charging"
        FULLY_CHARGED = "FULLY_CHARGED", "Fully charged"
        DISCHARGING = "DISCHARGING", "Discharging"

    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="readings")
    recorded_at = models.DateTimeField(help_text="When the car measured it (data age).")
    received_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices)
    soc_pct = models.FloatField(null=True, blank=True, validators=percent)
    range_km = models.FloatField(null=True, blank=True)
    plugged_in = models.BooleanField(null=True)
    charging_state = models.CharField(max_length=16, choices=ChargingState.choices, blank=True)
    power_kw = models.FloatField(null=True, blank=True, help_text="Positive charges.")
    charge_limit_pct = models.FloatField(null=True, blank=True, validators=percent)
    odometer_km = models.FloatField(null=True, blank=True)
    # Precise position is kept 30 days at most (purge_precise_locations), then only at_home stays.
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    at_home = models.BooleanField(null=True)

    class Meta:
        ordering = ["recorded_at"]
        indexes = [models.Index(fields=["vehicle", "-recorded_at"])]

    def __str__(self) -> str:
        return f"{self.vehicle_id} at {self.recorded_at:%Y-%m-%d %H:%M}: {self.soc_pct}%"

    def is_stale(self, now=None) -> bool:  # type: ignore[no-untyped-def]
        return (now or timezone.now()) - self.recorded_at > SOC_STALE_AFTER


class WebhookDelivery(models.Model):
    """Deliveries already processed, so a replayed webhook changes nothing."""

    provider = models.CharField(max_length=32)
    delivery_id = models.CharField(max_length=128)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "delivery_id"], name="vehicles_webhookdelivery_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.delivery_id}"


class ChargingPreference(models.Model):
    """When the owner leaves and how much charge they need; limits the planner must respect."""

    vehicle = models.OneToOneField(Vehicle, on_delete=models.CASCADE, related_name="preference")
    # {"0": {"departure": "07:00", "target_soc_pct": 80}, …, "6": {…}} — Monday is "0";
    # departure is local wall-clock time in the owner's time zone.
    weekly_schedule = models.JSONField(default=dict)
    override_departure_at = models.DateTimeField(null=True, blank=True)
    override_target_soc_pct = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=percent
    )
    min_soc_pct = models.PositiveSmallIntegerField(default=20, validators=percent)
    max_soc_pct = models.PositiveSmallIntegerField(default=100, validators=percent)
    pause_until = models.DateTimeField(null=True, blank=True)
    boost_until = models.DateTimeField(null=True, blank=True)
    boost_to_soc_pct = models.PositiveSmallIntegerField(null=True, blank=True, validators=percent)
    v2g_consent = models.BooleanField(default=False)
    v2g_min_soc_pct = models.PositiveSmallIntegerField(default=40, validators=percent)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(min_soc_pct__lte=models.F("max_soc_pct")),
                name="vehicles_chargingpreference_floor_below_ceiling",
            ),
            models.CheckConstraint(
                condition=Q(max_soc_pct__lte=100) & Q(v2g_min_soc_pct__lte=100),
                name="vehicles_chargingpreference_percentages",
            ),
        ]

    def __str__(self) -> str:
        return f"Preferences of {self.vehicle_id}"
