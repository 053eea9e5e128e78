"""Signed webhooks to utilities when one of their grid events changes state.

`event_changed` (a post_save hook on GridEvent, programs.api.models) writes one `WebhookDelivery`
per API client of the event's utility that has a webhook URL — in the transaction that changed
the event, so a change and the webhook it owes commit together (I1) — and sends each after
commit. `deliver` POSTs it; failures retry with backoff, re-driven by the beat task
`programs.redrive_webhooks`, until UTILITY_WEBHOOK_MAX_ATTEMPTS.

Signature (Stripe-style, so a replayed body with an old timestamp can be refused):
    X-ChargeScape-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from programs.api.models import ApiClient, WebhookDelivery
from programs.models import GridEvent

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-ChargeScape-Signature"
BACKOFF_CAP = timedelta(hours=1)


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(*, secret: str, body: bytes, header: str, tolerance_seconds: int = 300) -> bool:
    """What a utility runs on its side (also used by our tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret=secret, body=body, timestamp=timestamp).split("v1=")[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def event_payload(event: GridEvent) -> dict:
    return {
        "id": event.pk,
        "program": event.program.code,
        "kind": event.kind,
        "status": event.status,
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat(),
        "target_kw": event.target_kw,
        "region": event.region,
        "feeder": event.feeder.code if event.feeder_id else None,
        "source": event.source,
        "external_id": event.external_id,
        "cancel_reason": event.cancel_reason,
    }


def event_changed(*, event: GridEvent) -> list[WebhookDelivery]:
    """Owe each of the utility's clients a webhook for the event's new state (drafts are the
    manager's work in progress: nobody hears of them)."""
    if event.status == GridEvent.Status.DRAFT:
        return []
    clients = ApiClient.objects.filter(utility_id=event.program.utility_id, is_active=True).exclude(
        webhook_url=""
    )
    now = timezone.now()
    kind = f"event.{event.status}"
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                client=client,
                event=event,
                kind=kind,
                payload={
                    "id": f"whd_{secrets.token_hex(12)}",
                    "type": kind,
                    "created_at": now.isoformat(),
                    "data": {"event": event_payload(event)},
                },
                next_attempt_at=now,
            )
            for client in clients
        ]
    )
    from programs.api.tasks import send_webhook

    for delivery in deliveries:
        send_webhook.delay_on_commit(delivery.pk)
    return deliveries


def _backoff(attempts: int) -> timedelta:
    return min(BACKOFF_CAP, timedelta(seconds=10 * 2 ** max(0, attempts - 1)))


def deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """POST one pending delivery, signed; record the outcome. Claims the row with SKIP LOCKED so
    the on-commit send and the beat never post it twice at once."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("client")
            .filter(pk=delivery_id, state=WebhookDelivery.State.PENDING)
            .first()
        )
        if delivery is None:
            return None
        client = delivery.client
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        delivery.attempts += 1
        try:
            response = requests.post(
                client.webhook_url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "ChargeScape-Webhooks/1",
                    SIGNATURE_HEADER: sign(secret=client.webhook_secret, body=body),
                },
                timeout=settings.UTILITY_WEBHOOK_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
            delivery.last_status = response.status_code
            delivery.last_error = "" if response.ok else response.text[:300]
            ok = 200 <= response.status_code < 300
        except requests.RequestException as exc:
            delivery.last_status = None
            delivery.last_error = str(exc)[:300]
            ok = False
        now = timezone.now()
        if ok:
            delivery.state = WebhookDelivery.State.DELIVERED
            delivery.delivered_at = now
        elif delivery.attempts >= settings.UTILITY_WEBHOOK_MAX_ATTEMPTS:
            delivery.state = WebhookDelivery.State.FAILED
            logger.warning("webhook %s to %s failed for good", delivery.pk, client)
        else:
            delivery.next_attempt_at = now + _backoff(delivery.attempts)
        delivery.save()
        return delivery


def redrive(*, now=None) -> int:  # type: ignore[no-untyped-def]
    """Beat: send every pending delivery whose next attempt is due."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(
        state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now
    ).values_list("pk", flat=True)[:500]
    return sum(deliver(delivery_id=pk) is not None for pk in list(due))
