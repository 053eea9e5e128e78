"""Utilities and their tariffs, programs and enrollments, grid events and the audit trail
(DESIGN.md §4)."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from vehicles.models import Vehicle, percent


class Utility(models.Model):
    """An electric utility: its service territory (ZIP codes, grouped into feeders and regions),
    its tariffs, its programs and the program managers who run them in the admin."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    time_zone = models.CharField(max_length=64, default="America/Chicago")
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_utilities"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "utilities"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Feeder(models.Model):
    """A distribution feeder: the unit of grid coupling for the planner (import caps, targeted
    events). Owners map to a feeder by their service ZIP code."""

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="feeders")
    code = models.SlugField(max_length=60)
    region = models.CharField(max_length=60, help_text="The region this feeder belongs to.")
    zip_codes = ArrayField(models.CharField(max_length=10), default=list, blank=True)
    max_import_kw = models.FloatField(
        null=True, blank=True, help_text="Standing import cap for managed EVs on this feeder."
    )

    class Meta:
        ordering = ["utility", "region", "code"]
        constraints = [
            models.UniqueConstraint(fields=["utility", "code"], name="programs_feeder_code")
        ]
        indexes = [GinIndex(fields=["zip_codes"], name="programs_feeder_zips")]

    def __str__(self) -> str:
        return f"{self.region} / {self.code}"


class Tariff(models.Model):
    """What an owner pays: time-of-use periods by season and weekday, or a price feed
    (`TariffPrice` rows, newest wins per slot) falling back to the periods."""

    class Kind(models.TextChoices):
        TIME_OF_USE = "tou", "Time of use"
        PRICE_FEED = "feed", "Price feed"

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="tariffs")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TIME_OF_USE)
    is_default = models.BooleanField(
        default=False, help_text="The tariff of owners in this utility's territory."
    )
    currency = models.CharField(max_length=3, default="USD")
    default_price = models.DecimalField(max_digits=7, decimal_places=4, help_text="per kWh")
    export_price = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    # [{"start": "16:00", "end": "21:00", "price": 0.45, "months": [6, 7, 8], "weekdays": [0..4]}]
    # months 1-12 and weekdays 0 (Monday)-6 are optional (absent: every month / day).
    periods = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["utility", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["utility"],
                condition=Q(is_default=True),
                name="programs_tariff_one_default",
            )
        ]

    def __str__(self) -> str:
        return f"{self.utility} — {self.name}"


class TariffPrice(models.Model):
    """One published price of a price-feed tariff, valid from `start` until the next one."""

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="prices")
    start = models.DateTimeField()
    price = models.DecimalField(max_digits=7, decimal_places=4)
    export_price = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    source = models.CharField(max_length=40, default="manual")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tariff", "start"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "start"], name="programs_tariffprice_start")
        ]

    def __str__(self) -> str:
        return f"{self.price} from {self.start:%Y-%m-%d %H:%M}"


class Program(models.Model):
    """A utility's offer to EV owners, with its rules. What it pays lives in its versioned terms."""

    class Kind(models.TextChoices):
        MANAGED_CHARGING = "managed_charging", "Managed charging"
        DEMAND_RESPONSE = "demand_response", "Demand response"
        V2G = "v2g", "Vehicle-to-grid"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open for enrollment"
        CLOSED = "closed", "Closed to new enrollments"

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="programs")
    code = models.SlugField(
        max_length=40, unique=True, help_text="Used in deep links: /programs/join/<code>/."
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    summary = models.CharField(max_length=300, help_text="What it asks, in plain words.")
    # Rules
    max_events_per_month = models.PositiveSmallIntegerField(default=10)
    max_events_per_season = models.PositiveSmallIntegerField(default=40)
    max_event_minutes = models.PositiveIntegerField(default=240)
    notice_minutes = models.PositiveIntegerField(
        default=60, help_text="Owners hear of an event at least this long before it starts."
    )
    opt_outs_per_month = models.PositiveSmallIntegerField(default=3)
    opt_out_fee_cents = models.PositiveIntegerField(
        default=0, help_text="Charged for each opt-out beyond the monthly allowance."
    )
    auto_approve = models.BooleanField(
        default=True, help_text="Eligible enrollments become active without manual review."
    )

    class Baseline(models.TextChoices):
        PLAN = "plan", "The car's own plan without the event"
        UNMANAGED = "unmanaged", "Charging at full power from plug-in"

    baseline = models.CharField(
        max_length=10,
        choices=Baseline.choices,
        default=Baseline.PLAN,
        help_text="What a car would have done without the event, for measuring delivery.",
    )
    # Eligibility
    eligible_makes = ArrayField(
        models.CharField(max_length=64), default=list, blank=True, help_text="Empty: any make."
    )
    min_model_year = models.PositiveSmallIntegerField(null=True, blank=True)
    requires_charger = models.BooleanField(
        default=False, help_text="Only cars paired with a ChargeScape-managed charger."
    )
    requires_v2g = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["utility", "name"]

    def __str__(self) -> str:
        return self.name


class ProgramTerms(models.Model):
    """One published version of a program's terms. Owners accept a version; a new version never
    changes what an existing enrollment accepted. `incentives` are the rules settlement applies:
    {"per_kwh_cents", "per_event_cents", "enrollment_bonus_cents", "monthly_bonus_cents",
     "monthly_bonus_min_offpeak_pct", "annual_cap_cents"} (absent = 0 / none)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="terms")
    version = models.PositiveIntegerField()
    body = models.TextField()
    incentives = models.JSONField(default=dict, blank=True)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["program", "-version"]
        verbose_name_plural = "program terms"
        constraints = [
            models.UniqueConstraint(fields=["program", "version"], name="programs_terms_version")
        ]

    def __str__(self) -> str:
        return f"{self.program} terms v{self.version}"


class Enrollment(models.Model):
    """A vehicle in a program, under the terms its owner accepted."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        ENDED = "ended", "Ended"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="enrollments")
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="enrollments")
    terms = models.ForeignKey(ProgramTerms, on_delete=models.PROTECT, related_name="+")
    accepted_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(
        max_length=60, blank=True, help_text="How the owner arrived: 'app' or 'link:<code>'."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "vehicle"],
                condition=~Q(status="ended"),
                name="programs_enrollment_one_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.vehicle} in {self.program} ({self.status})"


class EnrollmentChange(models.Model):
    """The status history of an enrollment: who changed it, when, and why."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="changes")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    reason = models.CharField(max_length=200, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["enrollment", "at"]

    def __str__(self) -> str:
        return f"{self.from_status or 'new'} → {self.to_status}"


# --- Grid events ---------------------------------------------------------------------------------


class GridEvent(models.Model):
    """A utility's request on a window: cap the import of managed charging (import_cap) or send
    energy back (export_request), for a whole program, a region or one feeder."""

    class Kind(models.TextChoices):
        IMPORT_CAP = "import_cap", "Import cap (curtail charging)"
        EXPORT_REQUEST = "export_request", "Export request (V2G)"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    target_kw = models.FloatField(help_text="Import cap or export asked, kW over all participants.")
    region = models.CharField(max_length=60, blank=True, help_text="Blank: the whole program.")
    feeder = models.ForeignKey(Feeder, on_delete=models.PROTECT, null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, default="admin")  # admin, api, openadr
    external_id = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    cancel_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="programs_gridevent_window"
            ),
            models.CheckConstraint(condition=Q(target_kw__gt=0), name="programs_gridevent_kw"),
        ]
        indexes = [models.Index(fields=["status", "starts_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.starts_at:%Y-%m-%d %H:%M} ({self.status})"


class EventParticipation(models.Model):
    """One enrolled vehicle in one event: what the plan committed it to, whether its owner opted
    out (fully, or partly: "keep charging to 40 %"), and later what it delivered."""

    event = models.ForeignKey(GridEvent, on_delete=models.CASCADE, related_name="participations")
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="participations")
    enrollment = models.ForeignKey(Enrollment, on_delete=models.PROTECT, related_name="+")
    committed_kw = models.JSONField(
        default=list, blank=True, help_text="kW per event slot this car is planned to give."
    )
    opted_out_at = models.DateTimeField(null=True, blank=True)
    keep_soc_pct = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=percent, help_text="Partial opt-out: charge to this."
    )
    opt_out_fee_cents = models.PositiveIntegerField(default=0)
    baseline_kw = models.JSONField(
        default=list,
        blank=True,
        help_text="kW per event slot the car would have drawn without the event (its plan in "
        "force before the event, or charging at once on plug-in, as the program says).",
    )
    metered_kw = models.JSONField(
        default=list,
        blank=True,
        help_text="Measured kW per event slot; null where data is missing.",
    )
    delivered_kwh = models.FloatField(null=True, blank=True)
    missing_slots = models.PositiveSmallIntegerField(
        default=0, help_text="Event slots without a measurement (flagged, never invented)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event", "vehicle"]
        constraints = [
            models.UniqueConstraint(fields=["event", "vehicle"], name="programs_participation_one")
        ]

    def __str__(self) -> str:
        return f"{self.vehicle_id} in event {self.event_id}"

    @property
    def participating(self) -> bool:
        return self.opted_out_at is None or self.keep_soc_pct is not None


class AuditEntry(models.Model):
    """Who did what to which program object, and when (DESIGN.md I7): dispatches, cancellations,
    opt-outs, enrollment decisions. Append-only by convention; shown in admin, read-only."""

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="audit_entries")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    action = models.CharField(max_length=40)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
