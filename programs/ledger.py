"""The one way money moves (DESIGN.md I5): balanced postings in integer cents, once per key.

`post` is the only writer of ledger rows; settlement (programs.settlement), payouts
(programs.payouts) and corrections (`reverse`) call it. PostgreSQL enforces the rest: entries
are append-only and every transaction balances (migration 0004's triggers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from accounts.models import User
from programs.models import LedgerAccount, LedgerEntry, LedgerTransaction, Utility

Kind = LedgerAccount.Kind


class LedgerError(ValueError):
    """A posting that cannot be made (unbalanced, would overdraw an owner)."""


def account(
    kind: str, *, owner: User | None = None, utility: Utility | None = None
) -> LedgerAccount:
    """The account of this kind for this owner or utility (the platform's when neither),
    created on first use; safe under concurrency (unique constraint, then re-read)."""
    lookup = {"kind": kind, "owner": owner, "utility": utility, "currency": "USD"}
    found = LedgerAccount.objects.filter(**lookup).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(**lookup)
    except IntegrityError:
        return LedgerAccount.objects.get(**lookup)


@dataclass
class Line:
    account: LedgerAccount
    amount_cents: int  # positive debits, negative credits
    detail: dict[str, Any] = field(default_factory=dict)


@transaction.atomic
def post(
    *,
    key: str,
    kind: str,
    memo: str,
    lines: list[Line],
    actor: Any = None,
    **refs: Any,
) -> tuple[LedgerTransaction | None, bool]:
    """Post one balanced transaction under `key`; (transaction, created). A key already posted
    returns that transaction unchanged, however the lines differ. Zero lines are dropped; when
    nothing is left there is nothing to post: (None, False).

    Raises LedgerError when the lines do not balance or would leave an owner's payable negative.
    """
    existing = LedgerTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing, False
    lines = [line for line in lines if line.amount_cents != 0]
    if sum(line.amount_cents for line in lines) != 0:
        raise LedgerError(f"{key}: lines do not balance")
    if not lines:
        return None, False
    try:
        with transaction.atomic():
            posted = LedgerTransaction.objects.create(
                key=key,
                kind=kind,
                memo=memo[:200],
                actor=actor if getattr(actor, "is_authenticated", False) else None,
                **refs,
            )
    except IntegrityError:  # another worker posted this key a moment ago
        return LedgerTransaction.objects.get(key=key), False
    _refuse_overdraft(lines)
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                transaction=posted,
                account=line.account,
                amount_cents=line.amount_cents,
                detail=line.detail,
            )
            for line in lines
        ],
        batch_size=5000,
    )
    return posted, True


def _refuse_overdraft(lines: list[Line]) -> None:
    """No owner's payable goes below zero: debits to it (fees, payouts) need the balance.
    The accounts are locked so two postings cannot both spend the same cents."""
    debits: dict[int, int] = {}
    for line in lines:
        if line.account.kind == Kind.OWNER_PAYABLE:
            debits[line.account.pk] = debits.get(line.account.pk, 0) + line.amount_cents
    spending = [pk for pk, amount in debits.items() if amount > 0]
    if not spending:
        return
    list(LedgerAccount.objects.select_for_update().filter(pk__in=spending).order_by("pk"))
    balances = dict(
        LedgerEntry.objects.filter(account_id__in=spending)
        .values_list("account_id")
        .annotate(total=Sum("amount_cents"))
    )
    for pk in spending:
        available = -balances.get(pk, 0)
        if debits[pk] > available:
            raise LedgerError(
                f"owner account {pk} holds {available} cents, cannot take {debits[pk]}"
            )


@transaction.atomic
def reverse(*, original: LedgerTransaction, memo: str, actor: Any = None) -> LedgerTransaction:
    """Correct a posting with its mirror image (the original stays, as the ledger is
    append-only). Reversing twice returns the first reversal."""
    lines = [
        Line(entry.account, -entry.amount_cents, {**entry.detail, "reverses": original.pk})
        for entry in original.entries.select_related("account")
    ]
    posted, _ = post(
        key=f"reverse:{original.pk}",
        kind=LedgerTransaction.Kind.REVERSAL,
        memo=memo,
        lines=lines,
        actor=actor,
        reverses=original,
        program=original.program,
        event=original.event,
    )
    if posted is None:
        raise LedgerError(f"transaction {original.pk} has no entries to reverse")
    return posted


def balance_cents(acct: LedgerAccount | None, *, until: datetime | None = None) -> int:
    """Sum of the account's entries (debits positive), optionally of those posted before
    `until`."""
    if acct is None:
        return 0
    entries = LedgerEntry.objects.filter(account=acct)
    if until is not None:
        entries = entries.filter(transaction__created_at__lt=until)
    return entries.aggregate(total=Sum("amount_cents"))["total"] or 0


def payable_cents(owner: User) -> int:
    """What ChargeScape owes the owner now (credits to their payable account)."""
    acct = LedgerAccount.objects.filter(kind=Kind.OWNER_PAYABLE, owner=owner).first()
    return -balance_cents(acct)


def owner_entries(owner: User, *, since: date | None = None, until: date | None = None):
    """The owner's payable entries with their transactions, newest first (statements, CSV)."""
    entries = LedgerEntry.objects.filter(
        account__kind=Kind.OWNER_PAYABLE, account__owner=owner
    ).select_related("transaction__program", "transaction__event")
    if since is not None:
        entries = entries.filter(transaction__created_at__date__gte=since)
    if until is not None:
        entries = entries.filter(transaction__created_at__date__lt=until)
    return entries.order_by("-transaction__created_at", "-pk")


def unbalanced_transactions() -> list[int]:
    """Ids of transactions whose entries do not sum to zero (always empty; for audits)."""
    return list(
        LedgerTransaction.objects.annotate(total=Sum("entries__amount_cents"))
        .filter(~Q(total=0))
        .values_list("pk", flat=True)
    )
