"""The OCPP websocket consumer: one instance per connected charger, in the OCPP process.

Handshake: the charger's subprotocol must be ocpp2.1, ocpp2.0.1 or ocpp1.6 (its first supported
choice wins), and HTTP Basic must carry user = charge point id and its authorization key. Anything
else is refused with an HTTP answer (400 / 401) before the websocket is accepted, so an
unauthenticated client never gets a socket (security profiles 1 and 2; TLS ends at the proxy).

Why the indirection. Channels hands a consumer one event at a time, so a handler that awaited a
charger's reply would block the very `websocket.receive` carrying that reply: a deadlock that only
the call timeout ends. So `receive` only queues the frame; a reader task routes frames through
the `ocpp` library (vehicles.chargers.csms); commands from other processes (group `ocpp.<id>`,
see vehicles.chargers.rpc, or a bulk message through vehicles.chargers.hub) and the profile push
after a boot run as tasks, one CALL at a time per charger (`_call_lock`). A frame that fails any
check gets its CALLERROR and the socket lives on.

Memory (10,000 chargers a process): the reader task exists only while frames wait, the silence
check and the message log are the hub's (one per process), and the `ocpp` ChargePoint is slimmed
(vehicles.chargers.csms.CsmsBase).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.utils import timezone
from ocpp.exceptions import OCPPError

from vehicles.chargers import frames, payloads, security, selectors, services
from vehicles.chargers.csms import CSMS_BY_SUBPROTOCOL, VERSION_BY_SUBPROTOCOL, CsmsBase
from vehicles.chargers.hub import Hub, hub_for_loop
from vehicles.chargers.models import Charger, Direction, OcppMessage, group_name

logger = logging.getLogger(__name__)

# A charger waits for each answer before its next CALL (OCPP-J §4.1.1), so a backlog this deep
# means a misbehaving peer: it is disconnected rather than allowed to grow our memory.
INBOX_LIMIT = 64
# How often last_seen_at is written and the group membership refreshed (channels_redis forgets
# group members after a day); writing on every frame would cost a write per heartbeat per charger.
TOUCH_EVERY = timedelta(seconds=60)
POLICY_VIOLATION = 1008


class _Connection:
    """What the `ocpp` library sends through: frames go out on the consumer, and are logged."""

    def __init__(self, consumer: OcppConsumer) -> None:
        self.consumer = consumer

    async def send(self, message: str) -> None:
        await self.consumer.send_frame(message)

    async def recv(self) -> str:  # the consumer's reader task feeds frames; start() is unused
        raise RuntimeError("OcppConsumer routes frames itself")


class OcppConsumer(AsyncWebsocketConsumer):
    # No channel of its own (that is a receive task and a queue per charger): commands and the
    # superseded notice reach it through the process hub, which joins the group `ocpp.<id>`.
    channel_layer_alias = "ocpp-consumers-listen-through-the-hub"

    charge_point_id: str
    charger: Charger
    csms: CsmsBase
    version: str

    async def connect(self) -> None:
        self.charge_point_id = self.scope["url_route"]["kwargs"]["charge_point_id"]
        self._tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        self._unlogged: set[str] = set()
        self._accepted = False
        subprotocol = next(
            (p for p in self.scope.get("subprotocols", []) if p in CSMS_BY_SUBPROTOCOL), None
        )
        if subprotocol is None:
            await self._refuse(400, "Offer one of the subprotocols ocpp2.1, ocpp2.0.1, ocpp1.6.")
            return
        charger = await self._authenticate()
        if charger is None:
            await self._refuse(401, "Unknown charge point or wrong authorization key.")
            return
        self.charger, self.version = charger, VERSION_BY_SUBPROTOCOL[subprotocol]
        self.csms = CSMS_BY_SUBPROTOCOL[subprotocol](self.charge_point_id, _Connection(self))
        self.csms.bind(self, charger.pk)
        self._handled = self.csms.handled_actions
        self._call_lock = asyncio.Lock()  # one outstanding CSMS → charger CALL per charger
        # A list, not an asyncio.Queue: one small object instead of four deques and an Event
        # (~3 KiB per charger); it rarely holds more than one frame (OCPP-J §4.1.1).
        self._inbox: list[str | bytes | None] = []
        self.heard_at = asyncio.get_running_loop().time()
        self._touched_at = timezone.now()
        self.channel_layer = get_channel_layer()
        self._hub: Hub = hub_for_loop(self.channel_layer)
        await self.accept(subprotocol=subprotocol)
        self._accepted = True
        # This connection's identity (presence, superseded notices): the hub's channel + a nonce.
        self._hub_channel = await self._hub.register(self.charge_point_id, self)
        self.channel_name = f"{self._hub_channel}#{uuid.uuid4().hex[:12]}"
        # A reconnect can overtake the old socket's close: the older consumer steps aside, so a
        # command never runs twice.
        group = group_name(self.charge_point_id)
        try:
            async with self._hub.redis_gate:
                await self.channel_layer.group_send(
                    group,
                    {
                        "type": "ocpp.superseded",
                        "charge_point_id": self.charge_point_id,
                        "channel": self.channel_name,
                    },
                )
                await self.channel_layer.group_add(group, self._hub_channel)
        except Exception:  # unreachable for commands: better that the charger reconnects
            logger.warning("%s: could not join its group", self.charge_point_id, exc_info=True)
            await self.close()
            return
        await database_sync_to_async(services.mark_charger_connected)(
            charger_id=charger.pk, protocol=self.version, channel_name=self.channel_name
        )

    async def _authenticate(self) -> Charger | None:
        credentials = security.parse_basic_auth(self.scope.get("headers", []))
        if credentials is None or credentials[0] != self.charge_point_id:
            return None
        charger = await database_sync_to_async(selectors.get_charger_for_connect)(
            charge_point_id=self.charge_point_id
        )
        stored = charger.authorization_key_hash if charger else None
        return charger if security.check_authorization_key(credentials[1], stored) else None

    async def _refuse(self, status: int, reason: str) -> None:
        """An HTTP answer instead of the upgrade (ASGI websocket denial response extension)."""
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            await self.close()  # servers without the extension answer 403
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if status == 401:
            headers.append((b"www-authenticate", b'Basic realm="OCPP", charset="UTF-8"'))
        await self.base_send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self.base_send({"type": "websocket.http.response.body", "body": reason.encode()})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch minus its `close_old_connections` hop before every event: that runs
        on asgiref's database thread (one hop per frame and per command, a quarter of a fan-out's
        time), and every database call here goes through database_sync_to_async, which already
        closes stale connections before and after it runs."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- frames in --------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.heard_at = asyncio.get_running_loop().time()
        if len(self._inbox) >= INBOX_LIMIT:
            logger.warning("%s: more than %d frames queued", self.charge_point_id, INBOX_LIMIT)
            await self.close(code=POLICY_VIOLATION)
            return
        self._inbox.append(text_data if text_data is not None else bytes_data)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_frames())

    async def _read_frames(self) -> None:
        """The reader task: one frame at a time, in order, whatever happens to any of them.

        It lives only while frames wait (no idle task per charger); `receive` starts it again.
        """
        while self._inbox:
            raw = self._inbox.pop(0)
            try:
                await self._handle_frame(raw)
            except Exception:
                logger.exception("%s: frame handling failed", self.charge_point_id)
        self._reader = None  # no await since the emptiness check: no frame can slip past

    def silent_for(self, now: float) -> float | None:
        """Seconds past the silence limit (hub sweep; loop time), or None while within it."""
        limit = selectors.silence_limit(self.charger).total_seconds()
        over = now - self.heard_at - limit
        return over if over > 0 else None

    async def _handle_frame(self, raw: str | bytes | None) -> None:
        check = frames.check_frame(raw, self.version, self._handled)
        self._log_frame(Direction.IN, raw, check)
        await self._touch()
        if check.error is not None:
            await self.send_frame(check.error)
        elif not check.ignore:
            # CALLs run their handler; CALLRESULT / CALLERROR wake the waiting send_call.
            await self.csms.route_message(raw)

    async def _touch(self) -> None:
        now = timezone.now()
        if now - self._touched_at < TOUCH_EVERY:
            return
        self._touched_at = now
        await database_sync_to_async(services.touch_charger)(
            charger_id=self.charger.pk, seen_at=now
        )
        try:
            async with self._hub.redis_gate:
                await self.channel_layer.group_add(
                    group_name(self.charge_point_id), self._hub_channel
                )
        except Exception:  # the membership is still good for a day: try again next time
            logger.warning("%s: could not refresh its group", self.charge_point_id, exc_info=True)

    # --- frames out -------------------------------------------------------------------------------

    async def send_frame(self, message: str) -> None:
        self._log_frame(Direction.OUT, message, None)
        await self.send(text_data=message)

    def _log_frame(self, direction: str, raw: Any, check: frames.FrameCheck | None) -> None:
        try:
            message = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            message = None
        if not isinstance(message, list) or len(message) < 2:
            kind, unique_id, action, body = 0, "-1", "", {"raw": str(raw)[:500]}
        else:
            kind, unique_id = message[0], str(message[1])[:64]
            action = message[2] if kind == 2 and len(message) > 2 else ""
            body = message[3] if kind == 2 and len(message) > 3 else message[2:]
        if action == "Heartbeat":  # pure noise in an operator's log; presence records it
            self._unlogged.add(unique_id)
            return
        if direction == Direction.OUT and kind == 3 and unique_id in self._unlogged:
            self._unlogged.discard(unique_id)
            return
        self._hub.log(
            OcppMessage(
                charger_id=self.charger.pk,
                direction=direction,
                message_type=kind if isinstance(kind, int) and 0 <= kind < 100 else 0,
                unique_id=unique_id,
                action=str(action)[:64],
                payload=body,
                created_at=timezone.now(),
            )
        )

    # --- calls out (tasks, never awaited inside a consumer handler) -------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def ocpp_command(self, event: dict[str, Any]) -> None:
        """A command from any process (vehicles.chargers.rpc, relayed by the hub): run it as a
        task, answer later."""
        self.spawn(self._run_command(event))

    async def _run_command(self, event: dict[str, Any]) -> None:
        reply = await self.run_command(
            event["request_id"], event["action"], event["payload"], event["expires_at"]
        )
        if reply is not None:
            await self.channel_layer.send(event["reply_to"], reply)

    async def run_command(
        self, request_id: str, action: str, payload: dict[str, Any], expires_at: float
    ) -> dict[str, Any] | None:
        """One CALL, after any CALL in progress; the reply message for the caller, or None when
        the deadline (a UNIX time) passed first: a command is never applied after its caller gave
        up, and the caller's own timeout reports it."""
        reply: dict[str, Any] = {"type": "ocpp.reply", "request_id": request_id}
        try:
            async with self._call_lock:
                remaining = expires_at - time.time()
                if remaining <= 0:
                    return None
                async with asyncio.timeout(remaining):
                    result = await self.csms.send_call(action, payload)
            reply.update(ok=True, payload=result)
        except TimeoutError:
            return None
        except OCPPError as error:
            reply.update(ok=False, error_code=error.code, error_description=error.description)
        except (TypeError, ValueError) as error:  # a payload the request dataclass refuses
            reply.update(ok=False, error_code="FormatViolation", error_description=str(error))
        return reply

    async def push_desired_profiles(self) -> None:
        """After a BootNotification: clear what was cleared offline, re-send what should be held."""
        now = timezone.now()
        await database_sync_to_async(services.expire_lapsed_leases)(
            charger_id=self.charger.pk, now=now
        )
        pushes = await database_sync_to_async(selectors.profiles_to_push)(
            charger_id=self.charger.pk, now=now
        )
        async with self._call_lock:
            for push in pushes:
                try:
                    async with asyncio.timeout(30):
                        await self._push_one(push)
                except (OCPPError, TimeoutError) as error:
                    logger.warning("%s: profile %s: %r", self.charge_point_id, push.pk, error)
                    await database_sync_to_async(services.record_profile_result)(
                        profile_id=push.pk, status="Error", error=repr(error)
                    )

    async def _push_one(self, push: selectors.ProfilePush) -> None:
        if push.clear:
            action, payload = payloads.clear_charging_profile(push.spec.profile_id, self.version)
            reply = await self.csms.send_call(action, payload)
            if reply.get("status") in {"Accepted", "Unknown"}:
                await database_sync_to_async(services.forget_cleared_profile)(profile_id=push.pk)
            return
        action, payload = payloads.set_charging_profile(push.spec, self.version)
        reply = await self.csms.send_call(action, payload)
        await database_sync_to_async(services.record_profile_result)(
            profile_id=push.pk, status=reply.get("status", "")
        )

    # --- lifecycle --------------------------------------------------------------------------------

    def ocpp_superseded(self, event: dict[str, Any]) -> None:
        """A newer connection of this charger (any process) announced itself: step aside."""
        if event["channel"] != self.channel_name:
            self.spawn(self.close())

    async def disconnect(self, code: int) -> None:
        if not getattr(self, "_accepted", False):
            return
        tasks = [task for task in (self._reader, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._hub.unregister(self.charge_point_id, self)
        # The log first: once the charger shows offline, everything it exchanged is readable.
        await self._hub.flush_log()
        await database_sync_to_async(services.mark_charger_disconnected)(
            charger_id=self.charger.pk, channel_name=self.channel_name
        )
        if self.charge_point_id in self._hub.consumers:
            return  # a newer connection in this process took over: the hub stays in the group
        try:  # after the presence write: a Redis hiccup must not leave the charger "online"
            async with self._hub.redis_gate:
                await self.channel_layer.group_discard(
                    group_name(self.charge_point_id), self._hub_channel
                )
        except Exception:  # the membership expires with channels_redis's group_expiry
            logger.warning("%s: could not leave its group", self.charge_point_id, exc_info=True)
