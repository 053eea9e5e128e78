"""Live updates for the owner's open pages (vehicle state now; plans and notices later).

A signed-in owner's socket joins only their own group (`owner.<id>`); anonymous sockets are
refused. The Origin header is checked by the web ASGI app (AllowedHostsOriginValidator).
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from vehicles.services import owner_group

# Close code for "sign in first" (application range 4000–4999).
CLOSE_UNAUTHENTICATED = 4401


class OwnerLiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = owner_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):  # type: ignore[no-untyped-def]
        """Clients only listen; anything they send is ignored."""

    async def vehicle_update(self, event: dict) -> None:
        await self.send_json({key: value for key, value in event.items() if key != "type"})
