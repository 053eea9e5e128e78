"""Notification settings, each with its reason. Read through `settings` so a deployment (or a
test) can override any of them; the VAPID key and subject come from the environment in
production (see docs/notifications.md)."""

import os
from email.utils import parseaddr
from typing import Any

from django.conf import settings


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def batch_size() -> int:
    """Owners per delivery task of a fan-out (an event announced to a whole program): big enough
    that task overhead vanishes, small enough that a batch ends in well under a minute."""
    return int(_get("NOTIFICATIONS_BATCH", 500))


def digest_threshold() -> int:
    """More than this many pushes within the digest window become one "N updates" push."""
    return int(_get("NOTIFICATIONS_DIGEST_THRESHOLD", 3))


def digest_window_seconds() -> int:
    return int(_get("NOTIFICATIONS_DIGEST_WINDOW_SECONDS", 10 * 60))


def digest_hold_seconds() -> int:
    """In a flood, pushes that arrive one by one are held this long and sent as one digest."""
    return int(_get("NOTIFICATIONS_DIGEST_HOLD_SECONDS", 5 * 60))


def relay_after_seconds() -> int:
    """A notification still undelivered this long after it was stored lost its task (I1)."""
    return int(_get("NOTIFICATIONS_RELAY_AFTER_SECONDS", 60))


def push_timeout_seconds() -> float:
    """A slow push service must not hold a bulk worker for long."""
    return float(_get("NOTIFICATIONS_PUSH_TIMEOUT_SECONDS", 10.0))


def vapid_private_key() -> str:
    """base64url raw (or DER) P-256 key; empty: generate one and keep it in the database."""
    return _get("WEBPUSH_VAPID_PRIVATE_KEY", os.environ.get("CHARGESCAPE_VAPID_PRIVATE_KEY", ""))


def vapid_subject() -> str:
    """Who push services contact about our traffic (RFC 8292 `sub`): a mailto: or https: URL."""
    default = f"mailto:{parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or 'ops@chargescape.test'}"
    return _get("WEBPUSH_VAPID_SUBJECT", os.environ.get("CHARGESCAPE_VAPID_SUBJECT", default))
