"""Reads of the notification system: the centre, the bell, the replay after a reconnect."""

from __future__ import annotations

from typing import Any

from accounts.notifications import live
from accounts.notifications.models import Notification, NotificationPreference

REPLAY_LIMIT = 50  # a page offline for days gets the newest fifty; the centre has the rest


def bell_state(*, owner: Any) -> tuple[int, int]:
    """(unread count, newest id or 0) for the bell on every page. Two queries on purpose: each
    is answered by its own index (the unread partial index, the owner's newest id), so the cost
    stays flat however long the owner's history; one aggregate over both would read it all."""
    unread = Notification.objects.filter(owner=owner, read_at=None).count()
    newest = (
        Notification.objects.filter(owner=owner)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return unread, newest or 0


def list_for_owner(*, owner: Any, limit: int = 100) -> list[Notification]:
    return list(Notification.objects.filter(owner=owner).order_by("-created_at", "-pk")[:limit])


def replay_after(*, owner_id: int, after_id: int) -> list[dict[str, Any]]:
    """What a reconnecting page missed: the owner's notifications newer than the last one it
    saw, oldest first, as the live messages carried them (with the unread count)."""
    missed = list(
        Notification.objects.filter(owner_id=owner_id, pk__gt=after_id).order_by("-pk")[
            :REPLAY_LIMIT
        ]
    )
    unread = Notification.objects.filter(owner_id=owner_id, read_at=None).count()
    return [
        {"notification": live.as_json(n), "unread": unread, "replay": True}
        for n in reversed(missed)
    ]


def preference_for(*, owner: Any) -> NotificationPreference:
    """The owner's preferences, or the defaults (unsaved) when they never changed them."""
    found = NotificationPreference.objects.filter(owner=owner).first()
    return found or NotificationPreference(owner=owner)
