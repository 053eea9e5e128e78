"""The in-app channel: a stored notification, pushed to the owner's open pages over their live
websocket group (the consumer is vehicles.consumers.OwnerLiveConsumer, which also replays what a
reconnecting page missed). Best effort: the centre and the replay are the record."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts.notifications.models import Notification

logger = logging.getLogger(__name__)
MESSAGE_TYPE = "notification.new"  # handled by OwnerLiveConsumer.notification_new


def owner_group(owner_id: int) -> str:
    """The owner's live group. Same name as vehicles.services.owner_group (a test holds them
    together): accounts sits below vehicles, so it cannot import it."""
    return f"owner.{owner_id}"


def as_json(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "url": notification.url,
        "urgent": notification.urgent,
        "created_at": notification.created_at.isoformat(),
        "read": notification.read_at is not None,
    }


def publish_many(notifications: list[Notification], *, unread: dict[int, int]) -> None:
    """Send a batch to the owners' open pages in one event loop (one Redis connection), not one
    loop per notification."""
    layer = get_channel_layer()

    async def send_all() -> None:
        for notification in notifications:
            message = {
                "type": MESSAGE_TYPE,
                "notification": as_json(notification),
                "unread": unread.get(notification.owner_id, 0),
            }
            await layer.group_send(owner_group(notification.owner_id), message)

    try:
        async_to_sync(send_all)()
    except Exception as error:  # Redis away: pages catch up by replay on reconnect
        logger.warning("live notifications not sent: %s", type(error).__name__)
