"""Rows of the utility API: who may call it (a client per utility system, on a
django-oauth-toolkit application), the POSTs it already answered (idempotency keys) and the
webhooks it owes (an outbox: a row per delivery, written with the change it announces)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.signals import post_save
from oauth2_provider.settings import oauth2_settings

from chargescape.crypto import EncryptedTextField
from programs.models.programs import GridEvent, Utility

SCOPES = ("read", "dispatch")


def default_scopes() -> list[str]:
    return ["read"]


class ApiClient(models.Model):
    """A utility system allowed to call the API: its OAuth application (client credentials), the
    scopes it was granted and where its event webhooks go. Every answer is limited to `utility`."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="utility_client",
    )
    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="api_clients")
    name = models.CharField(max_length=120)
    scopes = ArrayField(
        models.CharField(max_length=20, choices=[(s, s) for s in SCOPES]),
        default=default_scopes,
        help_text="read: programs, flexibility, events, reports. dispatch: create, cancel.",
    )
    is_active = models.BooleanField(default=True)
    webhook_url = models.URLField(
        blank=True, help_text="Event state changes are POSTed here, signed. Blank: none."
    )
    webhook_secret = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["utility", "name"]
        verbose_name = "utility API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.utility})"


class IdempotencyKey(models.Model):
    """The answer a POST with an `Idempotency-Key` header got, replayed to a retry with the same
    key; the same key with a different request is refused."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body")
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="programs_idempotencykey_one")
        ]

    def __str__(self) -> str:
        return self.key


class WebhookDelivery(models.Model):
    """One signed POST owed to a client's webhook URL (an outbox row: committed with the event
    change it announces, sent after commit, re-driven by the beat until delivered or given up)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(GridEvent, on_delete=models.CASCADE, null=True, related_name="+")
    kind = models.CharField(max_length=40)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind} → {self.client} ({self.state})"


def _event_saved(sender, instance, created, update_fields=None, **kwargs):  # type: ignore[no-untyped-def]
    """Every grid event state change (programs.events saves `status` with it) owes the
    utility's API clients a webhook. Connected here, lazily by model name, because the lifecycle
    lives in programs.events and this app must hear about it without changing it."""
    if created or update_fields is None or "status" in update_fields:
        from programs.api import webhooks

        webhooks.event_changed(event=instance)


post_save.connect(_event_saved, sender="programs.GridEvent", dispatch_uid="utility-api-webhooks")
