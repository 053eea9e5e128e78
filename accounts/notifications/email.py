"""The email channel: one message per notification, plain text and HTML from templates/emails/,
through Django's configured mailer (console in development, SMTP or a provider in production)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
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


def send(notification: Notification) -> bool:
    """Send it; False (logged) when the mail server refused or was away."""
    try:
        compose(notification).send()
    except Exception as error:  # SMTP, provider and template errors alike: log, never raise
        logger.warning("notification %s email failed: %s", notification.pk, type(error).__name__)
        return False
    return True
