"""Home chargers (EVSEs) as the OCPP central system knows them.

A `Charger` is provisioned by an operator (admin action or `manage.py provision_charger`) with a
hashed authorization key and a hashed pairing code, then claimed by its owner. The OCPP consumer
records what the charger reports (boot data, connector status, sessions, meter values, the message
log); `ChargingProfile` rows are what the platform wants the charger to hold, re-sent after every
BootNotification. Writes go through `vehicles.chargers.services`.
"""

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

# OCPP identities are CiString48 in every version; we also use them in the Channels group name
# `ocpp.<id>`, whose alphabet is ASCII letters, digits, '-', '_' and '.'.
CHARGE_POINT_ID_RE = r"^[A-Za-z0-9._-]{1,48}$"
# I8: a curtailment or discharge profile always ends within 15 minutes unless renewed.
MAX_LEASE = timedelta(minutes=15)


class OcppVersion(models.TextChoices):
    V16 = "1.6", "OCPP 1.6J"
    V201 = "2.0.1", "OCPP 2.0.1"
    V21 = "2.1", "OCPP 2.1"


class Charger(models.Model):
    charge_point_id = models.CharField(
        "charge point id",
        max_length=48,
        unique=True,
        validators=[RegexValidator(CHARGE_POINT_ID_RE, "Letters, digits, '.', '_' and '-' only.")],
        help_text="The identity in ws(s)://…/ocpp/<id> and the HTTP Basic user name.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chargers",
    )
    # SHA-256 of a 160-bit random key (security.py explains why no slow hash is needed).
    authorization_key_hash = models.CharField(max_length=128, editable=False)
    # Django password hash: the code is short (typed from a label), so it gets a slow hash.
    pairing_code_hash = models.CharField(max_length=128, editable=False)
    name = models.CharField(max_length=60, blank=True, help_text="What the owner calls it.")
    # The car that usually plugs in here: its plan is carried out through this charger.
    usual_vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="home_chargers",
    )
    protocol = models.CharField(max_length=8, choices=OcppVersion.choices, blank=True)
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    serial_number = models.CharField(max_length=50, blank=True)
    firmware_version = models.CharField(max_length=50, blank=True)
    max_power_kw = models.DecimalField(max_digits=6, decimal_places=2, default=11)
    v2g_capable = models.BooleanField("V2G capable", default=False)
    # Presence: the socket decides `is_connected`; `last_seen_at` (frames, heartbeats) lets a
    # selector call a silent or orphaned (process crashed) connection offline.
    is_connected = models.BooleanField(default=False)
    connection_channel = models.CharField(max_length=120, blank=True, editable=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    heartbeat_interval_s = models.PositiveIntegerField(default=300)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point_id"]
        indexes = [models.Index(fields=["owner", "charge_point_id"])]

    def __str__(self) -> str:
        return self.name or self.charge_point_id

    @property
    def group_name(self) -> str:
        """Channels group of the consumer holding this charger's socket (DESIGN.md §2)."""
        return group_name(self.charge_point_id)


def group_name(charge_point_id: str) -> str:
    return f"ocpp.{charge_point_id}"


class ConnectorStatus(models.TextChoices):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    OCCUPIED = "Occupied"  # 2.x: plugged in, the charging state comes with TransactionEvent
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    UNKNOWN = "Unknown"


class Connector(models.Model):
    """One outlet. 1.6 connectorId n is stored as evse_id n, connector_id 1; 2.x uses both ids."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="connectors")
    evse_id = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    connector_id = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN
    )
    error_code = models.CharField(max_length=50, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["evse_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "evse_id", "connector_id"], name="chargers_connector_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger} #{self.evse_id}/{self.connector_id}"


class SessionState(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"


class ChargingSession(models.Model):
    """A transaction: 1.6 Start/StopTransaction (we assign the id) or 2.x TransactionEvent."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="sessions")
    evse_id = models.PositiveSmallIntegerField(default=1)
    transaction_id = models.CharField(max_length=36)
    id_tag = models.CharField(max_length=36, blank=True)
    state = models.CharField(max_length=8, choices=SessionState.choices, default="active")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    meter_start_wh = models.BigIntegerField(default=0)
    meter_stop_wh = models.BigIntegerField(null=True, blank=True)
    # Latest readings, so the Vehicles tab needs no time-series query.
    energy_import_wh = models.BigIntegerField(default=0, help_text="Register now − at start.")
    energy_export_wh = models.BigIntegerField(default=0, help_text="V2G: energy sent back.")
    power_kw = models.DecimalField(
        max_digits=8, decimal_places=3, null=True, blank=True, help_text="Negative: discharging."
    )
    soc_pct = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    reading_at = models.DateTimeField(null=True, blank=True)
    # 2.1 NotifyEVChargingNeeds as sent (departure time, energy amount, V2X limits).
    ev_charging_needs = models.JSONField(null=True, blank=True)
    departure_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "transaction_id"], name="chargers_session_transaction_unique"
            )
        ]
        indexes = [models.Index(fields=["charger", "state"])]

    def __str__(self) -> str:
        return f"{self.charger} tx {self.transaction_id}"

    @property
    def energy_kwh(self) -> float:
        return self.energy_import_wh / 1000


class MeterValue(models.Model):
    """One sampled reading (time series). Power is signed: import positive, export negative."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="meter_values")
    session = models.ForeignKey(
        ChargingSession,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="meter_values",
    )
    evse_id = models.PositiveSmallIntegerField(default=0)
    sampled_at = models.DateTimeField()
    energy_import_wh = models.BigIntegerField(null=True, blank=True)
    energy_export_wh = models.BigIntegerField(null=True, blank=True)
    power_kw = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True)
    soc_pct = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    context = models.CharField(max_length=24, blank=True)

    class Meta:
        ordering = ["-sampled_at"]
        indexes = [models.Index(fields=["charger", "-sampled_at"])]

    def __str__(self) -> str:
        return f"{self.charger} @ {self.sampled_at:%Y-%m-%d %H:%M:%S}"


class Direction(models.TextChoices):
    IN = "in", "Charger → CSMS"
    OUT = "out", "CSMS → charger"


class OcppMessage(models.Model):
    """The frame log operators read in the admin (heartbeats are not logged: pure noise)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField(help_text="2 CALL, 3 CALLRESULT, 4 CALLERROR")
    unique_id = models.CharField(max_length=64)
    action = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["charger", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.direction} {self.action or self.message_type} {self.unique_id}"


class ProfilePurpose(models.TextChoices):
    CHARGER_MAX = "ChargePointMaxProfile", "Charger maximum"
    TX_DEFAULT = "TxDefaultProfile", "Day plan (TxDefaultProfile)"
    TX = "TxProfile", "Dispatch lease (TxProfile)"


class ProfileState(models.TextChoices):
    PENDING = "pending", "Waiting for the charger"
    ACCEPTED = "accepted", "Accepted by the charger"
    REJECTED = "rejected", "Rejected by the charger"
    CLEARED = "cleared", "Cleared"


class ChargingProfile(models.Model):
    """A profile the charger should hold. `periods` are [{"start_s", "limit_w", "setpoint_w"?}].

    Stored version-neutral in watts; vehicles.chargers.profiles renders the OCPP payload for the
    charger's protocol. A TxProfile is a lease: valid_to − valid_from ≤ 15 minutes (I8).
    """

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="profiles")
    profile_id = models.PositiveIntegerField(help_text="chargingProfileId / id on the wire.")
    evse_id = models.PositiveSmallIntegerField(default=0, help_text="0: the whole charger.")
    purpose = models.CharField(max_length=24, choices=ProfilePurpose.choices)
    stack_level = models.PositiveSmallIntegerField(validators=[MaxValueValidator(100)])
    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, null=True, blank=True, related_name="profiles"
    )
    start_schedule = models.DateTimeField()
    duration_s = models.PositiveIntegerField(null=True, blank=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_to = models.DateTimeField(null=True, blank=True)
    periods = models.JSONField()
    state = models.CharField(max_length=10, choices=ProfileState.choices, default="pending")
    source = models.CharField(max_length=40, blank=True, help_text="plan, dispatch, admin…")
    last_error = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charger", "purpose", "stack_level"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "profile_id"], name="chargers_chargingprofile_id_unique"
            ),
            models.CheckConstraint(
                condition=~Q(purpose="TxProfile")
                | (
                    Q(valid_from__isnull=False)
                    & Q(valid_to__isnull=False)
                    & Q(valid_to__lte=F("valid_from") + MAX_LEASE)
                ),
                name="chargers_chargingprofile_tx_lease_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charger} {self.purpose} #{self.profile_id} (stack {self.stack_level})"
