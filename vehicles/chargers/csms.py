"""The central system's side of each OCPP version, on the `ocpp` library's ChargePoint classes.

One instance per connected charger, created by the consumer, which feeds it frames from a reader
task (`route_message`) and runs outgoing CALLs as tasks (`send_call`). Handlers are thin: parse,
call one service through database_sync_to_async, answer. They never await a charger's reply (the
reply could only arrive through the frame they are blocking), so anything that must talk back to
the charger after a message — re-applying profiles after a boot — is started as a task from an
`@after` hook, which the library runs once the answer has been sent.

Schema validation of incoming CALLs happens in vehicles.chargers.frames (with the right CALLERROR
codes), hence `skip_schema_validation=True` on every route.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ocpp.messages
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from ocpp.charge_point import (
    LOGGER,
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import after, create_route_map, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

from vehicles.chargers import payloads, services

if TYPE_CHECKING:
    from vehicles.chargers.consumers import OcppConsumer

logger = logging.getLogger(__name__)
ACCEPTED = {"status": "Accepted"}
# The library validates every outgoing CALL and its reply in the default thread pool unless told
# otherwise. OCPP payloads are small: the check takes well under a millisecond, while the thread
# hop (and the GIL hand-off) made it the largest cost of a fan-out to many chargers.
ocpp.messages.ASYNC_VALIDATION = False


def heartbeat_interval_s() -> int:
    """What BootNotification tells chargers: 5 minutes keeps 10,000 chargers at ~33 frames/s."""
    return int(getattr(settings, "OCPP_HEARTBEAT_INTERVAL_S", 300))


def _now_iso() -> str:
    return payloads.iso(timezone.now())


def _plain(value: Any) -> Any:
    """JSON-safe (the 1.6 schema check turns numbers into Decimal; msgpack cannot carry them)."""
    return json.loads(json.dumps(value, default=_decimal_to_float))


def _decimal_to_float(value: Any) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.cache
def _class_routes(cls: type) -> dict[str, dict[str, Any]]:
    """The library's route map, built once per class from the (unbound) handler functions."""
    return create_route_map(cls)


class _BoundRoutes(Mapping):
    """`ChargePoint.route_map` for one charger: the per-class table, bound on lookup."""

    __slots__ = ("_owner", "_table")

    def __init__(self, owner: CsmsBase) -> None:
        self._owner = owner
        self._table = _class_routes(type(owner))

    def __getitem__(self, action: str) -> dict[str, Any]:
        return {
            key: value.__get__(self._owner) if callable(value) else value
            for key, value in self._table[action].items()
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


class CsmsBase:
    """Shared by the three versions: the consumer link, DB helper and outgoing calls.

    Memory: one instance per connected charger (10,000 in a process), so it skips
    `ChargePoint.__init__`, which builds a route map of bound methods and an asyncio.Queue for
    replies per instance (~4 KiB together). The routes are a per-class table here, and the reply
    queue is created by the first CALL the CSMS sends (most chargers get a few a day).
    """

    consumer: OcppConsumer
    charger_id: int

    def __init__(self, id: str, connection: Any, response_timeout: int = 30) -> None:
        self.id = id
        self._connection = connection
        self._response_timeout = response_timeout
        self._call_lock = asyncio.Lock()  # no waiter deque until contended
        self._unique_id_generator = uuid.uuid4
        self.logger = LOGGER
        self._replies: asyncio.Queue | None = None

    @property
    def route_map(self) -> Mapping[str, dict[str, Any]]:
        return _BoundRoutes(self)

    @property
    def _response_queue(self) -> asyncio.Queue:
        # The library puts CALLRESULT / CALLERROR frames here and `call` reads them.
        if self._replies is None:
            self._replies = asyncio.Queue()
        return self._replies

    def bind(self, consumer: OcppConsumer, charger_id: int) -> None:
        self.consumer = consumer
        self.charger_id = charger_id

    @property
    def handled_actions(self) -> frozenset[str]:
        return _handled_actions(type(self))

    async def db(self, function: Any, **kwargs: Any) -> Any:
        return await database_sync_to_async(function)(charger_id=self.charger_id, **kwargs)

    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One CALL with a camelCase payload; the CALLRESULT payload comes back camelCase.

        Raises ocpp.exceptions.OCPPError for a CALLERROR (or a payload the schema refuses) and
        NotSupportedError for an action this version does not have.
        """
        from ocpp.exceptions import NotSupportedError

        request_class = getattr(self._call, action, None)  # type: ignore[attr-defined]
        if request_class is None:
            raise NotSupportedError(details={"cause": f"{action} is not in this OCPP version"})
        request = request_class(**camel_to_snake_case(payload))
        response = await self.call(request, suppress=False)  # type: ignore[attr-defined]
        return _plain(snake_to_camel_case(remove_nones(serialize_as_dict(response))))

    def _after_boot(self) -> None:
        # Runs right after the BootNotification answer went out: profiles follow it, never race it.
        self.consumer.spawn(self.consumer.push_desired_profiles())

    async def _record_readings(
        self, evse_id: int, meter_value: list[dict] | None, transaction_id: str | None
    ) -> list[payloads.Reading]:
        readings = payloads.parse_meter_values(meter_value or [])
        if readings:
            await self.db(
                services.record_meter_values,
                evse_id=evse_id,
                readings=readings,
                transaction_id=transaction_id,
            )
        return readings


class Csms16(CsmsBase, ChargePoint16):
    """OCPP 1.6J: Start/StopTransaction, integer transaction ids assigned by the CSMS."""

    @on("BootNotification", skip_schema_validation=True)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **extra: Any
    ) -> Any:
        await self.db(
            services.record_boot,
            vendor=charge_point_vendor,
            model=charge_point_model,
            serial_number=extra.get("charge_point_serial_number", ""),
            firmware_version=extra.get("firmware_version", ""),
            heartbeat_interval_s=heartbeat_interval_s(),
        )
        return result16.BootNotification(
            current_time=_now_iso(), interval=heartbeat_interval_s(), status="Accepted"
        )

    @after("BootNotification")
    def after_boot_notification(self, **_: Any) -> None:
        self._after_boot()

    @on("Heartbeat", skip_schema_validation=True)
    async def on_heartbeat(self) -> Any:
        return result16.Heartbeat(current_time=_now_iso())

    @on("StatusNotification", skip_schema_validation=True)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **extra: Any
    ) -> Any:
        await self.db(
            services.record_status,
            evse_id=connector_id,
            connector_id=1,
            status=status,
            error_code=error_code,
            timestamp=payloads.parse_time(extra.get("timestamp")),
        )
        return result16.StatusNotification()

    @on("Authorize", skip_schema_validation=True)
    async def on_authorize(self, id_tag: str) -> Any:
        # Home chargers run free-vend for their owner; the platform bills no sessions.
        return result16.Authorize(id_tag_info=ACCEPTED)

    @on("StartTransaction", skip_schema_validation=True)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        session = await self.db(
            services.start_session,
            evse_id=connector_id,
            started_at=payloads.parse_time(timestamp),
            id_tag=id_tag,
            meter_start_wh=meter_start,
        )
        return result16.StartTransaction(
            transaction_id=int(session.transaction_id), id_tag_info=ACCEPTED
        )

    @on("StopTransaction", skip_schema_validation=True)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **extra: Any
    ) -> Any:
        await self._record_readings(0, extra.get("transaction_data"), str(transaction_id))
        await self.db(
            services.end_session,
            transaction_id=str(transaction_id),
            ended_at=payloads.parse_time(timestamp),
            meter_stop_wh=meter_stop,
            reason=extra.get("reason", "Local"),
        )
        return result16.StopTransaction(id_tag_info=ACCEPTED if extra.get("id_tag") else None)

    @on("MeterValues", skip_schema_validation=True)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict], transaction_id: int | None = None
    ) -> Any:
        tx = str(transaction_id) if transaction_id is not None else None
        await self._record_readings(connector_id, meter_value, tx)
        return result16.MeterValues()


class Csms2xMixin:
    """OCPP 2.0.1 and 2.1 share these handlers; `_result` is the version's call_result module."""

    _result: Any

    @on("BootNotification", skip_schema_validation=True)
    async def on_boot_notification(self, charging_station: dict, reason: str, **_: Any) -> Any:
        await self.db(  # type: ignore[attr-defined]
            services.record_boot,
            vendor=charging_station.get("vendor_name", ""),
            model=charging_station.get("model", ""),
            serial_number=charging_station.get("serial_number", ""),
            firmware_version=charging_station.get("firmware_version", ""),
            heartbeat_interval_s=heartbeat_interval_s(),
        )
        return self._result.BootNotification(
            current_time=_now_iso(), interval=heartbeat_interval_s(), status="Accepted"
        )

    @after("BootNotification")
    def after_boot_notification(self, **_: Any) -> None:
        self._after_boot()  # type: ignore[attr-defined]

    @on("Heartbeat", skip_schema_validation=True)
    async def on_heartbeat(self, **_: Any) -> Any:
        return self._result.Heartbeat(current_time=_now_iso())

    @on("StatusNotification", skip_schema_validation=True)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any
    ) -> Any:
        await self.db(  # type: ignore[attr-defined]
            services.record_status,
            evse_id=evse_id,
            connector_id=connector_id,
            status=connector_status,
            timestamp=payloads.parse_time(timestamp),
        )
        return self._result.StatusNotification()

    @on("Authorize", skip_schema_validation=True)
    async def on_authorize(self, id_token: dict, **_: Any) -> Any:
        return self._result.Authorize(id_token_info=ACCEPTED)

    @on("TransactionEvent", skip_schema_validation=True)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict,
        **extra: Any,
    ) -> Any:
        tx = transaction_info["transaction_id"]
        evse_id = (extra.get("evse") or {}).get("id", 1)
        id_token = extra.get("id_token") or {}
        session = await self.db(  # type: ignore[attr-defined]
            services.start_session,
            evse_id=evse_id,
            started_at=payloads.parse_time(timestamp),
            transaction_id=tx,
            id_tag=id_token.get("id_token", ""),
        )
        readings = await self._record_readings(  # type: ignore[attr-defined]
            session.evse_id, extra.get("meter_value"), tx
        )
        if event_type == "Ended":
            registers = [r.energy_import_wh for r in readings if r.energy_import_wh is not None]
            await self.db(  # type: ignore[attr-defined]
                services.end_session,
                transaction_id=tx,
                ended_at=payloads.parse_time(timestamp),
                meter_stop_wh=registers[-1] if registers else None,
                reason=transaction_info.get("stopped_reason", trigger_reason),
            )
        return self._result.TransactionEvent(id_token_info=ACCEPTED if id_token else None)

    @on("MeterValues", skip_schema_validation=True)
    async def on_meter_values(self, evse_id: int, meter_value: list[dict], **_: Any) -> Any:
        await self._record_readings(evse_id, meter_value, None)  # type: ignore[attr-defined]
        return self._result.MeterValues()


class Csms201(Csms2xMixin, CsmsBase, ChargePoint201):
    _result = result201


class Csms21(Csms2xMixin, CsmsBase, ChargePoint21):
    _result = result21

    @on("NotifyEVChargingNeeds", skip_schema_validation=True)
    async def on_notify_ev_charging_needs(
        self, evse_id: int, charging_needs: dict, **_: Any
    ) -> Any:
        await self.db(
            services.record_ev_charging_needs,
            evse_id=evse_id,
            needs=snake_to_camel_case(charging_needs),
        )
        return result21.NotifyEVChargingNeeds(status="Accepted")


@functools.cache
def _handled_actions(cls: type) -> frozenset[str]:
    return frozenset(
        action for action, hooks in _class_routes(cls).items() if "_on_action" in hooks
    )


CSMS_BY_SUBPROTOCOL: dict[str, type[CsmsBase]] = {
    "ocpp2.1": Csms21,
    "ocpp2.0.1": Csms201,
    "ocpp1.6": Csms16,
}
VERSION_BY_SUBPROTOCOL = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
