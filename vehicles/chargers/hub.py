"""What the OCPP consumers of one process share: the channel-layer listener and the message log.

One `Hub` per event loop (`hub_for_loop`), created by the first OcppConsumer to connect there.

- **Commands.** While it holds chargers, the hub listens on one channel for the process (the
  consumers have none: a receive task and a queue per charger would be 10,000 of each). The
  consumers add that channel to their charger's group `ocpp.<id>`; the hub hands single commands
  and superseded notices (vehicles.chargers.rpc) to the consumer holding that charger.
- **Bulk commands.** The hub's channel is also in the group `BULK_GROUP`: `rpc.call_chargers`
  sends one group message carrying many (charger, CALL) pairs instead of one channel-layer round
  trip per charger; each hub runs the CALLs for the chargers it holds (the same one-at-a-time,
  deadline-checked path as a single command) and answers in batches on the caller's reply
  channel. Chargers no hub holds get no answer: the caller's timeout reports them.
- **Message log.** Consumers append frames to the hub; it writes them with one INSERT per
  `LOG_FLUSH_S` for the whole process instead of one per frame and charger (each write takes a
  turn on asgiref's single database thread, which the handlers need too). A consumer that
  disconnects flushes before it marks its charger offline, so nothing it saw is lost.
- **Silence.** One sweep closes chargers silent for too long (no timer per charger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from vehicles.chargers import services

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

    from vehicles.chargers.consumers import OcppConsumer
    from vehicles.chargers.models import OcppMessage

logger = logging.getLogger(__name__)

BULK_GROUP = "ocpp-processes"
LOG_FLUSH_S = 0.1  # a log row reaches the database within ~100 ms; one INSERT per tick
LOG_BATCH = 500  # rows per INSERT at most (a fan-out to 1,000 chargers logs 2,000 frames)
REPLY_FLUSH_S = 0.005  # replies to one bulk caller are gathered this long, then sent as one
# channels_redis forgets group members after a day (group_expiry); re-join well before that.
GROUP_REFRESH_S = 3600
# Group operations in flight at once: a reconnect storm (an OCPP process restarting under 10,000
# chargers) would otherwise open more Redis connections than the layer's pool allows, and
# redis-py fails those calls instead of waiting.
REDIS_CONCURRENCY = 32
SWEEP_S = 10  # silence limits are ≥ 60 s (selectors.MIN_SILENCE): a close is at most 10 s late

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub_for_loop(layer: BaseChannelLayer) -> Hub:
    """The running loop's hub (consumers of one process share one channel-layer instance)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(layer)
    return hub


class Hub:
    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.consumers: dict[str, OcppConsumer] = {}
        self.channel: str | None = None
        self._listener: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self._log: list[OcppMessage] = []
        self._log_timer: asyncio.TimerHandle | None = None
        self._log_lock = asyncio.Lock()
        self._replies: dict[str, list[dict[str, Any]]] = {}
        self._reply_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self.redis_gate = asyncio.Semaphore(REDIS_CONCURRENCY)

    # --- which chargers this process holds ------------------------------------------------------

    async def register(self, charge_point_id: str, consumer: OcppConsumer) -> str:
        """Hold `consumer` as this process's connection of the charger; returns the hub's
        channel, which the consumer adds to the charger's group `ocpp.<id>`."""
        previous = self.consumers.get(charge_point_id)
        self.consumers[charge_point_id] = consumer
        if previous is not None and previous is not consumer:
            previous.spawn(previous.close())  # a reconnect to this same process: step aside
        if self.channel is None:
            # The default prefix: channels_redis reads every process-local channel of a layer
            # instance through one Redis list named after that prefix.
            channel = await self.layer.new_channel()
            if self.channel is None:  # still: no other consumer started it meanwhile
                self.channel = channel
                self._listener = asyncio.create_task(self._listen(channel))
                self._sweeper = asyncio.create_task(self._sweep_silent())
        return self.channel

    def unregister(self, charge_point_id: str, consumer: OcppConsumer) -> None:
        if self.consumers.get(charge_point_id) is consumer:
            del self.consumers[charge_point_id]
        if not self.consumers and self._listener is not None:
            self._listener.cancel()  # leaves BULK_GROUP in its finally
            self._listener = None
            self.channel = None
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None

    async def _sweep_silent(self) -> None:
        """Close chargers silent past their limit (2.5 heartbeat intervals): one task for the
        process instead of a timer per charger."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_S)
            now = loop.time()
            for charge_point_id, consumer in list(self.consumers.items()):
                if consumer.silent_for(now) is not None:
                    logger.info("%s: silent too long, closing", charge_point_id)
                    consumer.heard_at = now  # one close per silence limit, not one per sweep
                    self._spawn(consumer.close())

    async def _listen(self, channel: str) -> None:
        refresh = self._spawn(self._stay_in_group(channel))
        try:
            while True:
                message = await self.layer.receive(channel)
                try:
                    self._dispatch(message)
                except Exception:
                    logger.exception("could not handle %s", message.get("type"))
        finally:
            refresh.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.layer.group_discard(BULK_GROUP, channel))

    async def _stay_in_group(self, channel: str) -> None:
        while True:
            try:
                await self.layer.group_add(BULK_GROUP, channel)
            except Exception:
                logger.exception("could not join %s", BULK_GROUP)
                await asyncio.sleep(5)
                continue
            await asyncio.sleep(GROUP_REFRESH_S)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ocpp.bulk":
            self._run_bulk(message)
            return
        # ocpp.command / ocpp.superseded, sent to the group `ocpp.<id>` the hub joined for it.
        consumer = self.consumers.get(message.get("charge_point_id", ""))
        if consumer is None:
            return  # gone meanwhile: a command's caller times out
        if kind == "ocpp.command":
            consumer.ocpp_command(message)
        elif kind == "ocpp.superseded":
            consumer.ocpp_superseded(message)

    # --- bulk commands --------------------------------------------------------------------------

    def _run_bulk(self, message: dict[str, Any]) -> None:
        reply_to, expires_at = message["reply_to"], message["expires_at"]
        for request_id, charge_point_id, action, payload in message["commands"]:
            consumer = self.consumers.get(charge_point_id)
            if consumer is not None:
                consumer.spawn(
                    self._run_one(consumer, reply_to, request_id, action, payload, expires_at)
                )

    async def _run_one(
        self,
        consumer: OcppConsumer,
        reply_to: str,
        request_id: str,
        action: str,
        payload: dict[str, Any],
        expires_at: float,
    ) -> None:
        reply = await consumer.run_command(request_id, action, payload, expires_at)
        if reply is None:
            return  # expired: the caller reports a timeout
        self._replies.setdefault(reply_to, []).append(reply)
        if self._reply_timer is None:
            self._reply_timer = asyncio.get_running_loop().call_later(
                REPLY_FLUSH_S, self._send_replies
            )

    def _send_replies(self) -> None:
        self._reply_timer = None
        replies, self._replies = self._replies, {}
        for reply_to, batch in replies.items():
            self._spawn(self._send_reply_batch(reply_to, batch))

    async def _send_reply_batch(self, reply_to: str, batch: list[dict[str, Any]]) -> None:
        try:
            await self.layer.send(reply_to, {"type": "ocpp.replies", "replies": batch})
        except Exception:
            logger.exception("could not answer a bulk command (%d replies)", len(batch))

    # --- the message log ------------------------------------------------------------------------

    def log(self, entry: OcppMessage) -> None:
        self._log.append(entry)
        if self._log_timer is None:
            self._log_timer = asyncio.get_running_loop().call_later(LOG_FLUSH_S, self._flush_soon)

    def _flush_soon(self) -> None:
        self._log_timer = None
        self._spawn(self.flush_log())

    async def flush_log(self) -> None:
        """Write every row logged so far; returns once they are in (or failed and were logged)."""
        async with self._log_lock:  # a write in progress may hold this caller's rows: wait for it
            while self._log:
                batch, self._log = self._log[:LOG_BATCH], self._log[LOG_BATCH:]
                try:
                    await database_sync_to_async(services.log_messages)(entries=batch)
                except Exception:
                    logger.exception("could not write %d message-log rows", len(batch))
