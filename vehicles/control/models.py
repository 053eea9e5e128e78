"""Device commands, their transactional outbox and their audit trail (DESIGN.md I1, I2, I7, I8).

A `Command` is one instruction to one device (a car's cloud, or a charger). It is written in the
same transaction as its `OutboxEntry`; the relay publishes unpublished entries, so a crash
between commit and publish loses nothing. `CommandEvent` rows record every transition with its
actor and time. Writes go through `vehicles.control.services`.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

TERMINAL_STATES = ("confirmed", "sent", "refused", "failed", "superseded", "expired")


class Command(models.Model):
    class Action(models.TextChoices):
        START_CHARGE = "start_charge", "Start charging"
        STOP_CHARGE = "stop_charge", "Stop charging"
        SET_CHARGE_LIMIT = "set_charge_limit", "Set charge limit"
        SET_POWER = "set_power", "Set power (kW; negative discharges)"
        CLEAR = "clear", "Clear dispatch (back to the day plan)"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        SENT = "sent", "Accepted by the device"
        CONFIRMED = "confirmed", "Confirmed by the device's state"
        REFUSED = "refused", "Refused by the safety gateway"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded by a newer command"
        EXPIRED = "expired", "Lease ended before it could be sent"

    class Source(models.TextChoices):
        PLAN = "plan", "Charging plan"
        EVENT = "event", "Grid event"
        OWNER = "owner", "Owner (boost, opt-out)"
        OPERATOR = "operator", "Operator"

    vehicle = models.ForeignKey(
        "vehicles.Vehicle", on_delete=models.CASCADE, related_name="commands"
    )
    # Set when the command goes through a managed charger; otherwise the car's cloud is used.
    charger = models.ForeignKey(
        "chargers.Charger",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="commands",
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    power_kw = models.FloatField(null=True, blank=True, help_text="set_power: negative discharges.")
    limit_pct = models.FloatField(null=True, blank=True, help_text="set_charge_limit only.")
    lease_end = models.DateTimeField(
        null=True, blank=True, help_text="Curtailment and discharge end here unless renewed (I8)."
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PLAN)
    plan_version = models.PositiveIntegerField(null=True, blank=True)
    slot_start = models.DateTimeField(null=True, blank=True)
    # plan version + slot + device for plan steps: a second beat finds the row and adds nothing.
    idempotency_key = models.CharField(max_length=200, unique=True)
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The last attempt may have reached the device (timeout, 5xx, worker lost mid-send): read the
    # device's state before sending again (I2).
    verify_before_send = models.BooleanField(default=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    provider_reference = models.CharField(max_length=120, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["vehicle", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(action="set_power") | Q(power_kw__isnull=False),
                name="control_command_set_power_has_power",
            ),
            models.CheckConstraint(
                condition=~Q(action="set_charge_limit")
                | (Q(limit_pct__gte=0) & Q(limit_pct__lte=100)),
                name="control_command_limit_is_a_percentage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} → {self.vehicle_id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def curtails_or_discharges(self) -> bool:
        """Commands that hold charging back or send energy out: they need a lease (I8)."""
        if self.action == self.Action.STOP_CHARGE:
            return True
        if self.action == self.Action.SET_POWER:
            return self.power_kw is not None and self.power_kw < self.max_power_kw
        return False

    @property
    def discharges(self) -> bool:
        return self.action == self.Action.SET_POWER and (self.power_kw or 0) < 0

    @property
    def max_power_kw(self) -> float:
        """What the car could draw here: the car's AC limit, capped by the charger's."""
        limit = float(self.vehicle.max_ac_kw)
        if self.charger is not None:
            limit = min(limit, float(self.charger.max_power_kw))
        return limit


class OutboxEntry(models.Model):
    """A command waiting to be published to the broker (written in the command's transaction)."""

    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="outbox")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=Q(published_at__isnull=True),
                name="control_outbox_unpublished",
            )
        ]

    def __str__(self) -> str:
        return f"outbox #{self.pk} → command {self.command_id}"


class CommandEvent(models.Model):
    """Audit (I7): what happened to a command, when, and who or what did it."""

    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20)  # created, published, sending, sent, refused, …
    actor = models.CharField(max_length=64, help_text="Service or task that acted.")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    detail = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]  # the order things happened in, even within one clock tick
        indexes = [models.Index(fields=["command", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} ({self.actor})"


class OwnerAlert(models.Model):
    """Something an owner should hear about a car, recorded when we notice it (DESIGN.md §5,
    the departure promise). One row per cause (`key`), updated while it lasts and resolved when
    it no longer holds. Written by vehicles.control.confirm; shown on the vehicle page and the
    home card. Push and email notifications (a later issue) will read these rows."""

    class Kind(models.TextChoices):
        DEPARTURE_AT_RISK = "departure_at_risk", "Departure target out of reach"

    vehicle = models.ForeignKey("vehicles.Vehicle", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # What the alert is about, e.g. "departure:2026-01-06T13:00Z": one alert per departure.
    key = models.CharField(max_length=120)
    message = models.CharField(max_length=300, help_text="Plain words, as the owner sees them.")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["vehicle", "kind", "key"], name="control_owneralert_one_per_cause"
            )
        ]
        indexes = [
            models.Index(
                fields=["vehicle", "kind"],
                condition=Q(resolved_at__isnull=True),
                name="control_owneralert_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.vehicle_id}: {self.message}"
