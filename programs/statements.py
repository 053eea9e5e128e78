"""Monthly statements: each owner's month read from the ledger when it closes (opening balance,
earned, fees, paid out, closing balance, and every line), so a statement never changes and
always reconciles with the ledger. Called by the monthly beat task and the Earnings pages.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction

from accounts.models import User
from accounts.notifications import services as notifications
from programs import ledger
from programs.models import LedgerAccount, LedgerTransaction, Statement

PAYOUT_KINDS = {LedgerTransaction.Kind.PAYOUT, LedgerTransaction.Kind.PAYOUT_RETURNED}


def month_bounds(owner: User, month: date) -> tuple[datetime, datetime]:
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    since = datetime(month.year, month.month, 1, tzinfo=zone)
    return since, (since + timedelta(days=32)).replace(day=1)


def build(*, owner: User, month: date) -> Statement:
    """The statement of `month` (first day) as the ledger has it now; not saved."""
    since, until = month_bounds(owner, month)
    account = LedgerAccount.objects.filter(kind=ledger.Kind.OWNER_PAYABLE, owner=owner).first()
    opening = -ledger.balance_cents(account, until=since)
    earned = fees = paid_out = 0
    lines = []
    entries = (
        ledger.owner_entries(owner)
        .filter(transaction__created_at__gte=since, transaction__created_at__lt=until)
        .order_by("transaction__created_at", "pk")
    )
    for entry in entries:
        credit = -entry.amount_cents  # positive: money the owner gains
        kind = entry.transaction.kind
        if kind in PAYOUT_KINDS:
            paid_out -= credit
        elif entry.detail.get("line") == "opt_out_fee":
            fees -= credit
        else:
            earned += credit
        lines.append(
            {
                "at": entry.transaction.created_at.isoformat(),
                "memo": entry.transaction.memo,
                "kind": kind,
                "line": entry.detail.get("line", kind),
                "cents": credit,
            }
        )
    return Statement(
        owner=owner,
        month=month,
        opening_cents=opening,
        earned_cents=earned,
        fees_cents=fees,
        paid_out_cents=paid_out,
        closing_cents=opening + earned - fees - paid_out,
        lines=lines,
    )


def close_month(*, owner: User, month: date) -> Statement:
    """Save the month's statement once (a second call returns the first)."""
    existing = Statement.objects.filter(owner=owner, month=month).first()
    if existing is not None:
        return existing
    statement = build(owner=owner, month=month)
    try:
        with transaction.atomic():
            statement.save()
    except IntegrityError:
        return Statement.objects.get(owner=owner, month=month)
    notifications.notify(
        owner=owner,
        kind="statement_ready",
        key=f"statement:{statement.pk}",
        context={
            "month": month,
            "closing_cents": statement.closing_cents,
            "earned_cents": statement.earned_cents,
        },
    )
    return statement


def close_previous_month(*, today: date) -> int:
    """Beat (daily; only the first run of a month does anything): statements of last month for
    every owner who had money move."""
    month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    owners = User.objects.filter(
        pk__in=LedgerAccount.objects.filter(kind=ledger.Kind.OWNER_PAYABLE).values("owner_id")
    ).exclude(statements__month=month)
    return sum(1 for owner in owners if close_month(owner=owner, month=month).pk)
