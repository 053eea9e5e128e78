"""The email channel: one message per notification, plain text and HTML from templates/emails/,
through Django's configured mailer (console in development, SMTP or a provider in production)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string

from accounts.notifications.models import Notification

logger = logging.getLogger(__name__)


def absolute(path: str) -> str:
    return path if path.startswith("http") else f"{settings.SITE_URL.rstrip('/')}{path}"


def compose(notification: Notification) -> EmailMultiAlternatives:
    """The email for one stored notification (rendered from what was stored, so a resend says
    exactly what the centre shows)."""
    data = notification.data or {}
    context = {
        "notification": notification,
        "facts": data.get("facts", []),
        "actions": [(label, absolute(path)) for label, path in data.get("actions", [])],
        "url": absolute(notification.url),
        "preferences_url": absolute("/account/#notifications"),
        "site_url": settings.SITE_URL,
    }
    message = EmailMultiAlternatives(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{notification.title}",
        body=render_to_string("emails/notification.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.owner.email],
        headers={"X-ChargeScape-Kind": notification.kind},
    )
    message.attach_alternative(render_to_string("emails/notification.html", context), "text/html")
    return message


@contextlib.contextmanager
def batch_mailer() -> Iterator[BaseEmailBackend]:
    """One mail connection for a batch of notifications: with SMTP one connection and login for
    the batch, not one per email. A server away at the start is logged; each email then tries
    to connect again on its own (and fails on its own)."""
    mailer = mailers.default
    try:
        mailer.open()
    except Exception as error:  # connection and login errors alike
        logger.warning("mail server unavailable: %s", type(error).__name__)
    try:
        yield mailer
    finally:
        with contextlib.suppress(Exception):
            mailer.close()


def send(notification: Notification, *, mailer: BaseEmailBackend | None = None) -> bool:
    """Send it (through `mailer`, a batch's open connection, or a connection of its own); False
    (logged) when the mail server refused or was away."""
    try:
        message = compose(notification)
        (mailer or mailers.default).send_messages([message])
    except Exception as error:  # SMTP, provider and template errors alike: log, never raise
        logger.warning("notification %s email failed: %s", notification.pk, type(error).__name__)
        if mailer is not None:
            with contextlib.suppress(Exception):
                mailer.close()  # a broken connection: the next email of the batch reconnects
        return False
    return True
