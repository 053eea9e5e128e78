"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291), through
`pywebpush`. Called by the delivery services; never by request handlers.

Claims: a fresh dict per send. pywebpush writes `aud` and `exp` into the dict it is given, so a
shared dict would carry the first endpoint's audience and an expiry that runs out to every later
send (push services answer 403).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from accounts.notifications import conf
from accounts.notifications.kinds import PUSH_TTL
from accounts.notifications.models import PushSubscription, VapidKeyPair

logger = logging.getLogger(__name__)
# A VAPID token may live up to 24 h (RFC 8292 §2); 12 h leaves room for clock skew.
CLAIMS_LIFETIME_SECONDS = 12 * 3600
GONE = (404, 410)  # the subscription no longer exists: forget it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_of(vapid: Vapid) -> str:
    return _b64(
        vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


@cache
def _vapid_from(private_key: str) -> Vapid:
    return Vapid.from_string(private_key=private_key)


def vapid() -> Vapid:
    """The server's signing key: from the environment, else the stored one, else a new one
    generated and stored now (first run). Concurrent first runs agree on the first row."""
    configured = conf.vapid_private_key()
    if configured:
        return _vapid_from(configured)
    if _generated:  # read once per process: a stored key never changes
        return _vapid_from(_generated[0])
    stored = VapidKeyPair.objects.order_by("pk").first()
    if stored is None:
        fresh = Vapid()
        fresh.generate_keys()
        raw = fresh.private_key.private_numbers().private_value.to_bytes(32, "big")
        VapidKeyPair.objects.create(private_key=_b64(raw), public_key=_public_of(fresh))
        stored = VapidKeyPair.objects.order_by("pk").first()  # two first runs: both use the first
    _generated[:] = [stored.private_key]
    return _vapid_from(stored.private_key)


_generated: list[str] = []


def application_server_key() -> str:
    """The public key browsers need to subscribe (PushManager.subscribe applicationServerKey)."""
    return _public_of(vapid())


def claims_for(endpoint: str) -> dict[str, Any]:
    """A new claims dict for one send: audience of this push service, expiry from now."""
    parts = urlsplit(endpoint)
    return {
        "sub": conf.vapid_subject(),
        "aud": f"{parts.scheme}://{parts.netloc}",
        "exp": int(time.time()) + CLAIMS_LIFETIME_SECONDS,
    }


@dataclass(frozen=True)
class PushResult:
    ok: bool
    status: int | None = None
    gone: bool = False  # the subscription was removed
    error: str = ""


def send(
    subscription: PushSubscription,
    payload: dict[str, Any],
    *,
    urgent: bool = False,
    session: requests.Session | None = None,
) -> PushResult:
    """Encrypt and send one payload to one subscription. Never raises: a gone subscription is
    deleted, other failures are counted on it and reported in the result."""
    headers = {"Urgency": "high" if urgent else "normal"}
    if payload.get("tag"):
        headers["Topic"] = str(payload["tag"])[:32]
    try:
        webpush(
            subscription_info=subscription.info(),
            data=json.dumps(payload, separators=(",", ":")),
            vapid_private_key=vapid(),
            vapid_claims=claims_for(subscription.endpoint),
            content_encoding="aes128gcm",
            ttl=int(PUSH_TTL.total_seconds()),
            timeout=conf.push_timeout_seconds(),
            headers=headers,
            requests_session=session,
        )
    except WebPushException as error:
        status = error.status_code
        if status in GONE:
            PushSubscription.objects.filter(pk=subscription.pk).delete()
            logger.info("push subscription %s gone (%s): removed", subscription.pk, status)
            return PushResult(ok=False, status=status, gone=True, error="gone")
        PushSubscription.objects.filter(pk=subscription.pk).update(
            failures=subscription.failures + 1
        )
        logger.warning("push to subscription %s failed: %s", subscription.pk, status)
        return PushResult(ok=False, status=status, error=f"status {status}")
    except (requests.RequestException, ValueError) as error:
        PushSubscription.objects.filter(pk=subscription.pk).update(
            failures=subscription.failures + 1
        )
        logger.warning("push to subscription %s failed: %s", subscription.pk, type(error).__name__)
        return PushResult(ok=False, error=type(error).__name__)
    return PushResult(ok=True, status=201)
