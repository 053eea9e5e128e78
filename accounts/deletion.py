"""Deleting an owner's account (issue 11, privacy): who they were goes, what the books need stays.

`delete_account` is the one function that does it; the Account page's "Delete my account" form
calls it after the owner retyped their email address or password. It runs in two steps:

1. `account_deleting` is sent so the apps above accounts release what they hold for this person
   (imports point one way — programs → vehicles → accounts — so accounts cannot call them):
   programs.account_deletion revokes every vehicle link at the automaker, unpairs chargers, ends
   enrollments and cancels payouts the provider has not been handed yet. Each receiver is
   idempotent and commits on its own, so a failure half-way leaves nothing the next attempt
   cannot finish.
2. The user row itself is pseudonymised in one transaction: `deleted-<id>@invalid`, no name, no
   ZIP, an unusable password, inactive; allauth email addresses, MFA authenticators, sessions,
   push subscriptions, notification preferences and in-app notifications are deleted. The row is
   kept — ledger transactions, statements and audit entries point at it — and an admin log entry
   records the deletion.

Calling it again for a deleted account changes nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from accounts.models import NotificationPreference, User

# Sent before the user row is pseudonymised; kwargs: user, actor. Receivers must be idempotent.
account_deleting = Signal()

PSEUDONYM_DOMAIN = "invalid"  # RFC 2606: can never be a real mailbox


def pseudonym_email(user_id: int) -> str:
    return f"deleted-{user_id}@{PSEUDONYM_DOMAIN}"


def is_deleted(user: User) -> bool:
    return user.email == pseudonym_email(user.pk)


def delete_account(*, user: User, actor: Any = None) -> User:
    """Delete `user`'s account (see the module docstring). `actor` is who asked (the owner
    themself from the Account page, or an operator); None means the owner."""
    account_deleting.send(sender=User, user=user, actor=actor or user)
    return _pseudonymise(user_id=user.pk, actor=actor)


@transaction.atomic
def _pseudonymise(*, user_id: int, actor: Any) -> User:
    user = User.objects.select_for_update().get(pk=user_id)
    first_time = not is_deleted(user)
    user.email = pseudonym_email(user.pk)
    user.first_name = ""
    user.last_name = ""
    user.service_zip = ""
    user.set_unusable_password()
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    EmailAddress.objects.filter(user=user).delete()
    Authenticator.objects.filter(user=user).delete()
    user.push_subscriptions.all().delete()
    user.notifications.all().delete()
    NotificationPreference.objects.filter(owner=user).delete()
    _end_sessions(user)
    if first_time:
        LogEntry.objects.create(
            user=actor if getattr(actor, "is_authenticated", False) else user,
            content_type=ContentType.objects.get_for_model(User),
            object_id=str(user.pk),
            object_repr=user.email,
            action_flag=DELETION,
            change_message="Account deleted at the owner's request; personal data pseudonymised.",
        )
    return user


def _end_sessions(user: User) -> None:
    """Delete every session signed in as `user` (database rows and their cache entries).

    Sessions do not index their user, so the live ones are decoded; the unusable password already
    voids them (Django checks the session's password hash), this removes the rows too."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    live = Session.objects.filter(expire_date__gt=timezone.now())
    for session in live.iterator(chunk_size=2000):
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            store(session_key=session.session_key).delete()
