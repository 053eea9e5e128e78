"""Live updates for the owner's open pages: vehicle state and notifications.

A signed-in owner's socket joins only their own group (`owner.<id>`); anonymous sockets are
refused. The Origin header is checked by the web ASGI app (AllowedHostsOriginValidator).
Notifications are stored before they are sent, so a page that (re)connects sends the id of the
newest one it has seen (`{"notifications_after": id}`) and gets what it missed
(accounts.notifications).
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.notifications import selectors as notification_selectors
from chargescape import parsers
from vehicles.services import owner_group

# Close code for "sign in first" (application range 4000–4999).
CLOSE_UNAUTHENTICATED = 4401
# Notification ids are PostgreSQL bigints: a larger "newest seen" id is nonsense, not a query.
MAX_NOTIFICATION_ID = 2**63 - 1


class OwnerLiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.owner_id = user.pk
        self.group = owner_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data):  # type: ignore[no-untyped-def]
        return parsers.loads(text_data)  # no NaN, no nesting deeper than parsers.MAX_DEPTH

    async def receive(self, text_data=None, bytes_data=None, **kwargs):  # type: ignore[no-untyped-def]
        """Frames that are not a JSON text (binary, malformed, too deep) are ignored like any
        other message we do not expect, instead of failing the consumer. Oversized frames never
        get here: the server closes them (runstack's --ws-max-size)."""
        if text_data is None:
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):  # type: ignore[no-untyped-def]
        """The one thing clients send: the newest notification id they have seen. Anything
        else is ignored."""
        after = content.get("notifications_after") if isinstance(content, dict) else None
        if isinstance(after, bool) or not isinstance(after, int):
            return
        if not 0 <= after <= MAX_NOTIFICATION_ID:
            return
        missed = await database_sync_to_async(notification_selectors.replay_after)(
            owner_id=self.owner_id, after_id=after
        )
        for message in missed:
            await self.send_json(message)

    async def vehicle_update(self, event: dict) -> None:
        await self.send_json({key: value for key, value in event.items() if key != "type"})

    async def notification_new(self, event: dict) -> None:
        await self.send_json({key: value for key, value in event.items() if key != "type"})
