"""The money ledger (DESIGN.md I5): double-entry, integer cents, append-only.

Every change of money is one `LedgerTransaction` whose `LedgerEntry` amounts sum to zero (a
deferred constraint trigger checks it at commit), posted once per idempotency key (a unique
constraint). Entries and transactions are never updated or deleted (PostgreSQL triggers refuse
it); a correction is a reversing transaction. Written only by programs.ledger.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from programs.models.programs import GridEvent, Program, Utility


class LedgerAccount(models.Model):
    """Where money sits. An owner's `payable` is what ChargeScape owes them; a utility's
    `receivable` is what it owes ChargeScape for its programs' incentives; `fees` collects
    opt-out fees; `payouts` holds money on its way to an owner's bank; `cash` is the platform's
    bank account that paid payouts leave from."""

    class Kind(models.TextChoices):
        OWNER_PAYABLE = "owner_payable", "Owner payable"
        UTILITY_RECEIVABLE = "utility_receivable", "Utility receivable"
        FEES = "fees", "Opt-out fees"
        PAYOUTS_IN_TRANSIT = "payouts", "Payouts in transit"
        CASH = "cash", "Platform bank account"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "owner", "utility", "currency"],
                nulls_distinct=False,
                name="programs_ledgeraccount_one",
            ),
            models.CheckConstraint(
                condition=~Q(kind="owner_payable") | Q(owner__isnull=False),
                name="programs_ledgeraccount_owner",
            ),
        ]

    def __str__(self) -> str:
        who = self.owner_id or self.utility_id or "platform"
        return f"{self.get_kind_display()} ({who})"


class LedgerTransaction(models.Model):
    """One balanced posting. `key` makes a posting happen once however often it is asked for."""

    class Kind(models.TextChoices):
        ENROLLMENT_BONUS = "enrollment_bonus", "Enrollment bonus"
        EVENT_SETTLEMENT = "event_settlement", "Event settlement"
        MONTHLY_BONUS = "monthly_bonus", "Monthly smart-charging bonus"
        PAYOUT = "payout", "Payout"
        PAYOUT_PAID = "payout_paid", "Payout paid"
        PAYOUT_RETURNED = "payout_returned", "Payout returned"
        REVERSAL = "reversal", "Correction"

    key = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    memo = models.CharField(max_length=200)
    program = models.ForeignKey(Program, on_delete=models.PROTECT, null=True, blank=True)
    event = models.ForeignKey(GridEvent, on_delete=models.PROTECT, null=True, blank=True)
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.memo}"


class LedgerEntry(models.Model):
    """One side of a transaction: positive cents debit the account, negative cents credit it.
    An owner's payable balance is minus the sum of its entries (credits are money owed to them)."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount_cents = models.BigIntegerField()
    # For owner reports: which participation or month the line is for (not part of the balance).
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount_cents=0), name="programs_ledgerentry_nonzero"
            )
        ]
        indexes = [models.Index(fields=["account", "transaction"])]

    def __str__(self) -> str:
        return f"{self.amount_cents:+d}¢ {self.account}"


class Payout(models.Model):
    """Money sent to an owner through the payout provider. The provider's webhooks (which may
    arrive twice or out of order) move it forward only: pending → paid, or pending → returned."""

    class Status(models.TextChoices):
        PENDING = "pending", "On its way"
        PAID = "paid", "Paid"
        RETURNED = "returned", "Returned"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    amount_cents = models.PositiveBigIntegerField()
    key = models.CharField(max_length=120, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_reference = models.CharField(max_length=120, blank=True)
    failure_reason = models.CharField(max_length=200, blank=True)
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, related_name="payout"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Payout {self.amount_cents}¢ to {self.owner_id} ({self.status})"


class Statement(models.Model):
    """An owner's monthly statement: opening balance, what was earned, forfeited and paid out,
    closing balance — all read from the ledger when the month closed."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="statements"
    )
    month = models.DateField(help_text="First day of the month.")
    opening_cents = models.BigIntegerField()
    earned_cents = models.BigIntegerField()
    fees_cents = models.BigIntegerField()
    paid_out_cents = models.BigIntegerField()
    closing_cents = models.BigIntegerField()
    lines = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["owner", "-month"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "month"], name="programs_statement_month")
        ]

    def __str__(self) -> str:
        return f"Statement {self.month:%Y-%m} of {self.owner_id}"
