"""A utility's OpenADR 3 VTN as we see it: the link (where, credentials, health), what we
exchanged with it lately, and each VTN event interval with the grid event or prices it became."""

from django.db import models

from chargescape.crypto import EncryptedTextField
from programs.models.programs import GridEvent, Program, Tariff, Utility


class VtnLink(models.Model):
    """One VTN we are a VEN of. Events of the VTN's programs become grid events of `program`
    (import caps) and `v2g_program` (export requests); PRICE events become prices of `tariff`."""

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Not polled yet"
        OK = "ok", "OK"
        RATE_LIMITED = "rate_limited", "Rate limited (backing off)"
        AUTH_FAILED = "auth_failed", "Credentials refused"
        UNREACHABLE = "unreachable", "Unreachable"
        ERROR = "error", "Error"

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="vtn_links")
    name = models.CharField(max_length=120)
    base_url = models.URLField(help_text="The VTN's OpenADR 3.0.1 API, e.g. https://vtn/openadr3")
    token_url = models.URLField(help_text="OAuth 2 token endpoint (client credentials).")
    client_id = models.CharField(max_length=200)
    client_secret = EncryptedTextField()
    ven_name = models.CharField(max_length=128, default="chargescape")
    vtn_program_name = models.CharField(
        max_length=128, blank=True, help_text="Only this VTN program (blank: every program)."
    )
    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Capacity limits and setpoints become events of this program.",
    )
    v2g_program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Export limits and negative setpoints become export requests here.",
    )
    tariff = models.ForeignKey(
        Tariff,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="PRICE events become prices of this (price feed) tariff.",
    )
    enabled = models.BooleanField(default=True)
    ven_id = models.CharField(max_length=128, blank=True, help_text="Our VEN's id at the VTN.")
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    last_error = models.CharField(max_length=300, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    backoff_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["utility", "name"]
        verbose_name = "OpenADR VTN link"

    def __str__(self) -> str:
        return self.name


class VtnMessage(models.Model):
    """One HTTP exchange with a VTN, for the admin's "last messages" (kept: the newest 200)."""

    link = models.ForeignKey(VtnLink, on_delete=models.CASCADE, related_name="messages")
    at = models.DateTimeField(db_index=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True, help_text="The answer (or what we sent), cut short.")

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status_code}"


class VtnEvent(models.Model):
    """One interval of one VTN event and what it became here: a grid event (limits, setpoints),
    prices, or nothing (refused, with the reason); and our report on it once it ended."""

    class Outcome(models.TextChoices):
        GRID_EVENT = "grid_event", "Grid event"
        PRICE = "price", "Tariff prices"
        REFUSED = "refused", "Refused"
        IGNORED = "ignored", "Not a payload we act on"
        CANCELLED = "cancelled", "Withdrawn by the VTN"

    link = models.ForeignKey(VtnLink, on_delete=models.CASCADE, related_name="events")
    vtn_event_id = models.CharField(max_length=128)
    interval_id = models.IntegerField()
    vtn_program_id = models.CharField(max_length=128)
    payload_type = models.CharField(max_length=64)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    value = models.FloatField(null=True)
    modified_at = models.DateTimeField(help_text="The VTN's modificationDateTime we acted on.")
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reason = models.CharField(max_length=300, blank=True)
    grid_event = models.ForeignKey(
        GridEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    report_id = models.CharField(max_length=128, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["link", "vtn_event_id", "interval_id"], name="programs_vtnevent_one"
            )
        ]

    def __str__(self) -> str:
        return f"{self.payload_type} {self.vtn_event_id}#{self.interval_id} ({self.outcome})"
