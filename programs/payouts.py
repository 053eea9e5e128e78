"""Paying owners: a payout moves their balance out through the payout provider.

`request_payout` posts the money to "payouts in transit" and records a `Payout` under the
caller's idempotency key (a double tap pays once); `send_payout` (a task) hands it to the
provider adapter chosen in settings (`PAYOUT_PROVIDER`); the provider's signed webhooks — which
may come twice or out of order — move it forward only: pending → paid → returned, or
pending → returned. Returned money goes back to the owner's balance.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from accounts.models import User
from programs import ledger
from programs.ledger import LedgerError, Line
from programs.models import LedgerTransaction, Payout

logger = logging.getLogger(__name__)
Status = Payout.Status
# Forward-only: a webhook that would move a payout back (a late "paid" after "returned") or
# repeat a state is acknowledged and ignored.
TRANSITIONS = {
    (Status.PENDING, Status.PAID),
    (Status.PENDING, Status.RETURNED),
    (Status.PAID, Status.RETURNED),
}
WEBHOOK_TYPES = {"payout.paid": Status.PAID, "payout.returned": Status.RETURNED}


class PayoutProvider(Protocol):
    def send(self, *, key: str, amount_cents: int, recipient: str) -> str:
        """Start a transfer (idempotent per key); the provider's reference."""


class SimulatedPayoutProvider:
    """The demo's provider: accepts every transfer and, like a real one, reports the result
    later by webhook (programs.tasks.deliver_simulated_payout_webhook)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def send(self, *, key: str, amount_cents: int, recipient: str) -> str:
        from programs.tasks import deliver_simulated_payout_webhook

        reference = "sim_po_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        deliver_simulated_payout_webhook.apply_async(
            args=[{"id": f"evt_{reference}", "type": "payout.paid", "payout": key}],
            countdown=self.config.get("SETTLE_SECONDS", 5),
        )
        return reference


def provider() -> PayoutProvider:
    config = settings.PAYOUT_PROVIDER
    return import_string(config["ADAPTER"])(config)


def sign(body: bytes) -> str:
    secret = settings.PAYOUT_PROVIDER["WEBHOOK_SECRET"].encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@transaction.atomic
def request_payout(*, owner: User, key: str, actor: Any = None) -> Payout:
    """Pay out the owner's whole balance (at least PAYOUT_MINIMUM_CENTS). The same key gives the
    same payout. Raises LedgerError with a message for the owner otherwise."""
    existing = Payout.objects.filter(key=key, owner=owner).first()
    if existing is not None:
        return existing
    payable = ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner)
    amount = ledger.payable_cents(owner)
    minimum = settings.PAYOUT_MINIMUM_CENTS
    if amount < minimum:
        raise LedgerError(f"Payouts start at ${minimum / 100:,.2f}; you have ${amount / 100:,.2f}.")
    posted, _ = ledger.post(
        key=f"payout:{key}",
        kind=LedgerTransaction.Kind.PAYOUT,
        memo="Payout to your bank account",
        lines=[
            Line(payable, amount),
            Line(ledger.account(ledger.Kind.PAYOUTS_IN_TRANSIT), -amount),
        ],
        actor=actor,
    )
    payout = Payout.objects.create(owner=owner, amount_cents=amount, key=key, transaction=posted)
    from programs.tasks import send_payout

    transaction.on_commit(lambda: send_payout.delay(payout.pk))
    return payout


def send_payout(*, payout_id: int) -> Payout:
    """Hand a pending payout to the provider (idempotent there by key) and keep its reference."""
    payout = Payout.objects.select_related("owner").get(pk=payout_id)
    if payout.status != Status.PENDING or payout.provider_reference:
        return payout
    reference = provider().send(
        key=payout.key, amount_cents=payout.amount_cents, recipient=str(payout.owner_id)
    )
    Payout.objects.filter(pk=payout.pk, provider_reference="").update(provider_reference=reference)
    payout.provider_reference = reference
    return payout


@transaction.atomic
def apply_webhook(*, kind: str, payout_key: str, reason: str = "") -> Payout | None:
    """Move a payout forward on the provider's word, posting the matching ledger transaction
    once. Duplicates and out-of-order messages change nothing; unknown payouts are ignored."""
    target = WEBHOOK_TYPES[kind]
    payout = Payout.objects.select_for_update().filter(key=payout_key).first()
    if payout is None:
        logger.warning("payout webhook for an unknown payout")
        return None
    if (payout.status, target) not in TRANSITIONS:
        return payout
    amount = payout.amount_cents
    in_transit = ledger.account(ledger.Kind.PAYOUTS_IN_TRANSIT)
    cash = ledger.account(ledger.Kind.CASH)
    payable = ledger.account(ledger.Kind.OWNER_PAYABLE, owner=payout.owner)
    if target == Status.PAID:
        lines = [Line(in_transit, amount), Line(cash, -amount)]
        kind_posted, memo = LedgerTransaction.Kind.PAYOUT_PAID, "Payout arrived"
    else:
        source = cash if payout.status == Status.PAID else in_transit
        lines = [Line(source, amount), Line(payable, -amount)]
        kind_posted, memo = LedgerTransaction.Kind.PAYOUT_RETURNED, "Payout returned by the bank"
    ledger.post(key=f"payout:{payout.key}:{target}", kind=kind_posted, memo=memo, lines=lines)
    payout.status = target
    payout.failure_reason = reason[:200] if target == Status.RETURNED else ""
    payout.save(update_fields=["status", "failure_reason", "updated_at"])
    return payout


def ingest_webhook(*, body: bytes, signature: str) -> Payout | None:
    """A provider webhook over HTTP: signature checked (ValueError when wrong), then applied."""
    if not hmac.compare_digest(sign(body), signature or ""):
        raise ValueError("bad signature")
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("unknown message")
    if message.get("type") not in WEBHOOK_TYPES or not isinstance(message.get("payout"), str):
        raise ValueError("unknown message")
    return apply_webhook(
        kind=message["type"], payout_key=message["payout"], reason=str(message.get("reason", ""))
    )
