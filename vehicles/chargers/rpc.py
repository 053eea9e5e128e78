"""Send an OCPP CALL to a charger from any process, through the Channels layer (DESIGN.md §2).

    reply = await call_charger("CP-1", "GetCompositeSchedule", {...}, timeout=15)

The message goes to the group `ocpp.<id>`, whose member is the hub of the OCPP process holding
that charger's socket (vehicles.chargers.hub); its consumer runs the CALL as a task — the
charger's reply arrives through the same consumer, so awaiting it inside a handler would
deadlock — and answers on a fresh reply channel. `call_chargers` sends a fleet's commands as one
message per process. No answer
within `timeout` raises CommandTimeout (nobody holds the socket, or the charger stayed silent); a
CALLERROR raises CommandFailed. A command that waited in the consumer past its deadline is dropped
unsent, so a caller that gave up never has its command applied later. Celery tasks and services use
`call_charger_sync`.
"""

import asyncio
import time
import uuid
import weakref
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, channel_layers

from vehicles.chargers.models import group_name

DEFAULT_TIMEOUT_S = 30.0  # OCPP chargers on cellular links may take seconds per round trip
# channels_redis lets one event loop at a time receive on a layer instance; callers may run on a
# loop of their own (async_to_sync in a worker, or beside the OCPP consumers in one process), so
# replies are read through a layer instance per event loop.
_reply_layers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BaseChannelLayer] = (
    weakref.WeakKeyDictionary()
)


def _layer() -> BaseChannelLayer:
    loop = asyncio.get_running_loop()
    layer = _reply_layers.get(loop)
    if layer is None:
        layer = _reply_layers[loop] = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    return layer


class CommandError(Exception):
    """Base of the errors a charger command can end with."""


class CommandTimeout(CommandError):
    """No reply in time: the charger is offline, or it did not answer."""


class CommandFailed(CommandError):
    """The charger answered with a CALLERROR (or the CSMS refused to send the payload)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


async def call_charger(
    charge_point_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Run one OCPP CALL on a connected charger and return the CALLRESULT payload (camelCase)."""
    layer = _layer()
    reply_channel = await layer.new_channel("ocpp-reply.")
    request_id = uuid.uuid4().hex
    await layer.group_send(
        group_name(charge_point_id),
        {
            "type": "ocpp.command",
            # The group reaches the process holding the socket; this picks the socket there.
            "charge_point_id": charge_point_id,
            "request_id": request_id,
            "action": action,
            "payload": payload,
            "reply_to": reply_channel,
            "expires_at": time.time() + timeout,
        },
    )
    try:
        async with asyncio.timeout(timeout):
            while True:
                reply = await layer.receive(reply_channel)
                if reply.get("request_id") == request_id:
                    break
    except TimeoutError:
        raise CommandTimeout(
            f"{charge_point_id} did not answer {action} in {timeout:g} s"
        ) from None
    if reply["ok"]:
        return reply["payload"]
    raise CommandFailed(reply["error_code"], reply.get("error_description", ""))


BULK_CHUNK = 500  # (charger, CALL) pairs per group message: ~200 KB, and OCPP processes start early


async def call_chargers(
    commands: list[tuple[str, str, dict[str, Any]]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[dict[str, Any] | CommandError]:
    """Many (charge point id, action, payload) commands at once, e.g. a profile to a fleet.

    Returns one entry per command, in order: the reply payload, or the CommandError it ended with.
    One group message per `BULK_CHUNK` commands reaches every OCPP process (vehicles.chargers.hub);
    each runs the commands for the chargers it holds, with the same rules as `call_charger` (one
    CALL at a time per charger, nothing sent after `timeout`), and answers in batches. A charger
    held by no process ends with CommandTimeout after `timeout`.
    """
    from vehicles.chargers.hub import BULK_GROUP

    if not commands:
        return []
    layer = _layer()
    reply_channel = await layer.new_channel("ocpp-reply.")
    expires_at = time.time() + timeout
    request_ids = [uuid.uuid4().hex for _ in commands]
    index = {request_id: i for i, request_id in enumerate(request_ids)}
    results: list[dict[str, Any] | CommandError | None] = [None] * len(commands)
    for start in range(0, len(commands), BULK_CHUNK):
        chunk = [
            [request_ids[i], *commands[i]]
            for i in range(start, min(start + BULK_CHUNK, len(commands)))
        ]
        await layer.group_send(
            BULK_GROUP,
            {
                "type": "ocpp.bulk",
                "commands": chunk,
                "reply_to": reply_channel,
                "expires_at": expires_at,
            },
        )
    pending = len(commands)
    try:
        async with asyncio.timeout(timeout):
            while pending:
                message = await layer.receive(reply_channel)
                for reply in message.get("replies", ()):
                    i = index.get(reply["request_id"])
                    if i is None or results[i] is not None:
                        continue
                    pending -= 1
                    results[i] = (
                        reply["payload"]
                        if reply["ok"]
                        else CommandFailed(reply["error_code"], reply.get("error_description", ""))
                    )
    except TimeoutError:
        pass
    return [
        result
        if result is not None
        else CommandTimeout(f"{commands[i][0]} did not answer {commands[i][1]} in {timeout:g} s")
        for i, result in enumerate(results)
    ]


def call_charger_sync(
    charge_point_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """`call_charger` for synchronous callers (services, Celery tasks, management commands)."""
    return async_to_sync(call_charger)(charge_point_id, action, payload, timeout=timeout)
