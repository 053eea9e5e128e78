"""Stored notifications (the outbox and the notification centre), push subscriptions, the owner's
notification preferences, and the server's VAPID key pair. Registered through accounts.models."""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.notifications.kinds import SPECS, Kind
from chargescape.crypto import EncryptedTextField


class Delivery(models.TextChoices):
    """Where one channel of one notification stands. Every notification leaves `pending` (I1):
    a relay re-drives any the on-commit fast path missed."""

    PENDING = "pending", "Pending"
    HELD = "held", "Held (quiet hours or digest)"
    SENT = "sent", "Sent"
    DIGESTED = "digested", "Sent in a digest"
    SKIPPED = "skipped", "Not sent (turned off, or nowhere to send)"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=140)
    body = models.CharField(max_length=600)
    url = models.CharField(max_length=300, help_text="The page a tap opens (a path of this site).")
    data = models.JSONField(default=dict, blank=True, help_text="Context, facts and actions.")
    urgent = models.BooleanField(default=False)
    # One notification per cause and owner ("alert:42"), so a re-run never tells twice.
    dedupe_key = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # A delivery task took it (a lease: a vanished worker's claim lapses, see services.CLAIM_LEASE).
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set when the delivery task handled it (live, push decision, email); the relay looks for
    # rows without it.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    push_status = models.CharField(max_length=12, choices=Delivery.choices, default="pending")
    push_after = models.DateTimeField(null=True, blank=True, help_text="Held until (quiet hours).")
    email_status = models.CharField(max_length=12, choices=Delivery.choices, default="pending")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="accounts_notification_one_per_cause",
            )
        ]
        indexes = [
            models.Index(
                fields=["owner", "id"], condition=Q(read_at=None), name="accounts_notif_unread"
            ),
            models.Index(
                fields=["created_at"], condition=Q(dispatched_at=None), name="accounts_notif_undone"
            ),
            models.Index(fields=["owner", "push_status", "created_at"], name="accounts_notif_push"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.owner_id}: {self.title}"


class PushSubscription(models.Model):
    """One browser or phone that accepted web push (the PushSubscription JSON it gave us)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"push for {self.owner_id} via {self.endpoint[:40]}"

    def info(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def default_channels() -> dict[str, dict[str, bool]]:
    return {kind: {"push": spec.push, "email": spec.email} for kind, spec in SPECS.items()}


class NotificationPreference(models.Model):
    """Per kind and channel switches and quiet hours (in the owner's own time zone). The
    notification centre always keeps everything; these decide what reaches the phone and inbox."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    channels = models.JSONField(default=default_channels, blank=True)
    quiet_hours = models.BooleanField(
        default=True, help_text="No push at night, except when your departure charge is at risk."
    )
    quiet_start = models.TimeField(default=time(22, 0))
    quiet_end = models.TimeField(default=time(7, 0))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notification preferences of {self.owner_id}"

    def wants(self, kind: str, channel: str) -> bool:
        spec = SPECS.get(kind)
        default = getattr(spec, channel, True) if spec else True
        return bool(self.channels.get(kind, {}).get(channel, default))


class VapidKeyPair(models.Model):
    """The server's VAPID key, generated on first use when CHARGESCAPE_VAPID_PRIVATE_KEY is unset
    (development), encrypted at rest. One row: every web and worker process signs with it."""

    private_key = EncryptedTextField(help_text="base64url raw P-256 private key")
    public_key = models.CharField(max_length=100, help_text="base64url uncompressed point")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"VAPID key {self.public_key[:12]}…"
