"""Simulated home chargers: real `ocpp` charge points over real websockets, with a car attached.

Used by `manage.py simulate_chargers` (the demo, `make run`), by the tests and by bench/ocpp.py.
A SimulatedCharger connects with HTTP Basic (charge point id + authorization key) and the
version's subprotocol, boots, heartbeats, plugs in a car with a battery model, sends meter values
and obeys its charging profiles through the composite schedule (vehicles.sim.ocpp_schedule):

- power follows the composite limit, capped by the charger and the car;
- OCPP 2.1 CentralSetpoint periods with a negative setpoint discharge (V2G), bounded by the
  dischargeLimit (≤ 0), the car's discharge power and its minimum state of charge;
- profiles keep working with the link down — which is why every lease carries a validTo: a
  TxProfile that lapses offline hands back to the day plan and discharging stops (fails closed).

Time is a `clock` callable, so tests move it by hand (`ManualClock`) instead of sleeping; energy
is integrated exactly between the instants where the schedule changes (`advance`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from ocpp.v16 import call as call16
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from vehicles.sim.ocpp_handlers import CHARGE_POINT_CLASSES, iso
from vehicles.sim.ocpp_schedule import (
    TX,
    Composite,
    Profile,
    Transaction,
    composite_schedule,
    effective_at,
    next_change,
)

logger = logging.getLogger(__name__)
CALLS = {"1.6": call16, "2.0.1": call201, "2.1": call21}
MAX_STEP = timedelta(seconds=60)  # battery limits are checked at least once a minute


def utc_now() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = (start or utc_now()).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class Battery:
    """The car: capacity, state of charge, power limits, its own floor for V2G."""

    capacity_kwh: float = 60.0
    soc_pct: float = 40.0
    max_charge_w: float = 11_000.0
    max_discharge_w: float = 11_000.0
    min_soc_pct: float = 20.0  # the car refuses to discharge below this
    efficiency: float = 0.92  # grid ↔ battery, each way

    def power_w(self, requested_w: float) -> float:
        if requested_w > 0:
            return 0.0 if self.soc_pct >= 100.0 else min(requested_w, self.max_charge_w)
        if requested_w < 0:
            if self.soc_pct <= self.min_soc_pct:
                return 0.0
            return max(requested_w, -self.max_discharge_w)
        return 0.0

    def apply(self, grid_w: float, seconds: float) -> None:
        grid_wh = grid_w * seconds / 3600
        stored_wh = grid_wh * self.efficiency if grid_wh > 0 else grid_wh / self.efficiency
        self.soc_pct += 100 * stored_wh / (self.capacity_kwh * 1000)
        self.soc_pct = min(100.0, max(0.0, self.soc_pct))


@dataclass
class SimulatedCharger:
    charge_point_id: str
    authorization_key: str
    version: str  # "1.6" | "2.0.1" | "2.1"
    url: str  # ws://host:port/ocpp (the id is appended)
    clock: Callable[[], datetime] = utc_now
    battery: Battery = field(default_factory=Battery)
    max_power_w: float = 11_000.0
    v2g: bool = False
    response_timeout: float = 10.0
    profiles: dict[int, Profile] = field(default_factory=dict)
    # Every SetChargingProfile answered, in order, as (purpose, status): a test counts re-sends.
    profile_log: list[tuple[str, str]] = field(default_factory=list)
    configuration: dict[str, str] = field(default_factory=dict)
    transaction: Transaction | None = None
    energy_import_wh: float = 0.0
    energy_export_wh: float = 0.0
    power_w: float = 0.0
    heartbeat_interval_s: int = 300
    simulated_until: datetime | None = None

    def __post_init__(self) -> None:
        self.cp: Any = None
        self._socket: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._seq = itertools.count()
        self.simulated_until = self.simulated_until or self.clock()

    # --- link -------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._socket is not None

    async def connect(self, *, password: str | None = None) -> None:
        """Open the websocket (raises websockets.InvalidStatus when the CSMS refuses)."""
        credentials = f"{self.charge_point_id}:{password or self.authorization_key}"
        token = base64.b64encode(credentials.encode()).decode()
        self._socket = await websockets.connect(
            f"{self.url.rstrip('/')}/{self.charge_point_id}",
            subprotocols=[f"ocpp{self.version}"],
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=10,
        )
        self.cp = CHARGE_POINT_CLASSES[self.version](
            self.charge_point_id, self._socket, response_timeout=self.response_timeout
        )
        self.cp.sim = self
        self.spawn(self._serve())

    async def _serve(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.cp.start()

    async def disconnect(self) -> None:
        """Drop the link (the car stays plugged in, profiles stay installed, time goes on)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def call(self, name: str, **payload: Any) -> Any:
        return await self.cp.call(getattr(CALLS[self.version], name)(**payload), suppress=False)

    # --- messages to the CSMS ---------------------------------------------------------------------

    async def boot(self) -> Any:
        if self.version == "1.6":
            reply = await self.call(
                "BootNotification",
                charge_point_vendor="ChargeScape",
                charge_point_model="SimBox",
                charge_point_serial_number=self.charge_point_id,
                firmware_version="sim-1",
            )
        else:
            reply = await self.call(
                "BootNotification",
                charging_station={
                    "vendor_name": "ChargeScape",
                    "model": "SimBox",
                    "serial_number": self.charge_point_id,
                    "firmware_version": "sim-1",
                },
                reason="PowerUp",
            )
        self.heartbeat_interval_s = reply.interval
        await self.status("Available")
        return reply

    async def heartbeat(self) -> Any:
        return await self.call("Heartbeat")

    async def status(self, status: str, evse_id: int = 1) -> None:
        now = iso(self.clock())
        if self.version == "1.6":
            await self.call(
                "StatusNotification",
                connector_id=evse_id,
                error_code="NoError",
                status=status,
                timestamp=now,
            )
        else:
            status = {"Preparing": "Occupied", "Charging": "Occupied"}.get(status, status)
            await self.call(
                "StatusNotification",
                timestamp=now,
                connector_status=status,
                evse_id=evse_id,
                connector_id=1,
            )

    async def plug_in(
        self, *, id_tag: str = "SIMTAG", evse_id: int = 1, departure: datetime | None = None
    ) -> Transaction:
        """Plug the car in and start a transaction (2.1: also tell the CSMS the car's needs)."""
        self.advance()
        now = self.clock()
        await self.status("Preparing", evse_id)
        if self.version == "1.6":
            reply = await self.call(
                "StartTransaction",
                connector_id=evse_id,
                id_tag=id_tag,
                meter_start=round(self.energy_import_wh),
                timestamp=iso(now),
            )
            self.transaction = Transaction(str(reply.transaction_id), evse_id, now)
        else:
            tx = Transaction(f"{self.charge_point_id}-{next(self._seq)}", evse_id, now)
            self.transaction = tx
            await self.call(
                "TransactionEvent",
                event_type="Started",
                timestamp=iso(now),
                trigger_reason="CablePluggedIn",
                seq_no=next(self._seq),
                transaction_info={"transaction_id": tx.transaction_id},
                evse={"id": evse_id, "connector_id": 1},
                id_token={"id_token": id_tag, "type": "ISO14443"},
                meter_value=[self._meter_value(now, "Transaction.Begin")],
            )
            if self.version == "2.1":
                await self._notify_needs(evse_id, departure or now + timedelta(hours=8))
        await self.status("Charging", evse_id)
        return self.transaction

    async def _notify_needs(self, evse_id: int, departure: datetime) -> None:
        needed_wh = (100 - self.battery.soc_pct) / 100 * self.battery.capacity_kwh * 1000
        needs: dict[str, Any] = {
            "requested_energy_transfer": "AC_BPT" if self.v2g else "AC_three_phase",
            "departure_time": iso(departure),
            "ac_charging_parameters": {
                "energy_amount": round(needed_wh),
                "ev_min_current": 6,
                "ev_max_current": 16,
                "ev_max_voltage": 400,
            },
        }
        if self.v2g:
            needs["v2x_charging_parameters"] = {
                "max_charge_power": self.battery.max_charge_w,
                "max_discharge_power": self.battery.max_discharge_w,
            }
        await self.call("NotifyEVChargingNeeds", evse_id=evse_id, charging_needs=needs)

    async def send_meter_values(self) -> None:
        """Advance the physics to now and report energy, signed power and SoC."""
        self.advance()
        now = self.clock()
        tx = self.transaction
        if self.version == "1.6":
            await self.call(
                "MeterValues",
                connector_id=tx.evse_id if tx else 1,
                transaction_id=int(tx.transaction_id) if tx else None,
                meter_value=[self._meter_value(now, "Sample.Periodic")],
            )
        elif tx is not None:
            await self.call(
                "TransactionEvent",
                event_type="Updated",
                timestamp=iso(now),
                trigger_reason="MeterValuePeriodic",
                seq_no=next(self._seq),
                transaction_info={"transaction_id": tx.transaction_id},
                meter_value=[self._meter_value(now, "Sample.Periodic")],
            )
        else:
            await self.call(
                "MeterValues", evse_id=1, meter_value=[self._meter_value(now, "Sample.Periodic")]
            )

    async def unplug(self, *, reason: str = "EVDisconnected") -> None:
        self.advance()
        tx, now = self.transaction, self.clock()
        if tx is None:
            return
        self.transaction = None
        self.power_w = 0.0
        # A TxProfile belongs to its transaction (1.6 §3.13.3): it goes with it.
        self.profiles = {k: p for k, p in self.profiles.items() if p.purpose != TX}
        if self.version == "1.6":
            await self.call(
                "StopTransaction",
                meter_stop=round(self.energy_import_wh),
                timestamp=iso(now),
                transaction_id=int(tx.transaction_id),
                reason=reason,
            )
        else:
            await self.call(
                "TransactionEvent",
                event_type="Ended",
                timestamp=iso(now),
                trigger_reason="EVDeparted",
                seq_no=next(self._seq),
                transaction_info={"transaction_id": tx.transaction_id, "stopped_reason": reason},
                meter_value=[self._meter_value(now, "Transaction.End")],
            )
        await self.status("Available", tx.evse_id)

    def _meter_value(self, now: datetime, context: str) -> dict[str, Any]:
        imported, exported = round(self.energy_import_wh), round(self.energy_export_wh)
        power_in, power_out = max(self.power_w, 0.0), max(-self.power_w, 0.0)
        samples: list[tuple[str, float, str, str | None]] = [
            ("Energy.Active.Import.Register", imported, "Wh", None),
            ("Power.Active.Import", round(power_in, 1), "W", None),
            ("SoC", round(self.battery.soc_pct, 1), "Percent", "EV"),
        ]
        if self.version == "2.1" or exported:
            samples.insert(1, ("Energy.Active.Export.Register", exported, "Wh", None))
            samples.insert(3, ("Power.Active.Export", round(power_out, 1), "W", None))
        sampled = []
        for measurand, value, unit, location in samples:
            if self.version == "1.6":
                item: dict[str, Any] = {"value": str(value), "unit": unit}
            else:
                item = {"value": value, "unit_of_measure": {"unit": unit}}
            item.update(measurand=measurand, context=context)
            if location:
                item["location"] = location
            sampled.append(item)
        return {"timestamp": iso(now), "sampled_value": sampled}

    # --- profiles and physics ---------------------------------------------------------------------

    def install_profile(self, profile: Profile) -> str:
        """SetChargingProfile: the answer a real charger gives, and the profile installed."""
        status = self._install_profile(profile)
        self.profile_log.append((profile.purpose, status))
        return status

    def _install_profile(self, profile: Profile) -> str:
        tx = self.transaction
        if profile.purpose == TX:
            if tx is None or profile.evse_id != tx.evse_id:
                return "Rejected"  # a TxProfile needs a running transaction on that connector
            if profile.transaction_id not in (None, tx.transaction_id):
                return "Rejected"
        self.advance()  # energy so far was delivered under the old profiles
        # The same id, or the same purpose + stack level + connector, replaces (1.6 §3.13.2).
        self.profiles = {
            key: old
            for key, old in self.profiles.items()
            if key != profile.profile_id
            and not (
                old.purpose == profile.purpose
                and old.stack_level == profile.stack_level
                and old.evse_id == profile.evse_id
            )
        }
        self.profiles[profile.profile_id] = profile
        return "Accepted"

    def clear_profiles(
        self,
        *,
        profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> bool:
        self.advance()
        matching = [
            key
            for key, profile in self.profiles.items()
            if (profile_id is None or key == profile_id)
            and (evse_id is None or profile.evse_id == evse_id)
            and (purpose is None or profile.purpose == purpose)
            and (stack_level is None or profile.stack_level == stack_level)
        ]
        for key in matching:
            del self.profiles[key]
        return bool(matching)

    def composite(self, evse_id: int, duration_s: int) -> Composite:
        return composite_schedule(
            list(self.profiles.values()),
            self.clock(),
            duration_s,
            evse_id,
            self.transaction if self.transaction and self.transaction.evse_id == evse_id else None,
            unlimited_w=self.max_power_w,
        )

    def power_at(self, at: datetime) -> float:
        """Grid-side power the charger delivers at `at` (negative: discharging)."""
        tx = self.transaction
        if tx is None:
            return 0.0
        value = effective_at(list(self.profiles.values()), at, tx.evse_id, tx)
        limit = self.max_power_w if value.limit_w is None else min(value.limit_w, self.max_power_w)
        if value.setpoint_w is not None and self.version == "2.1":
            wanted = value.setpoint_w
            if wanted < 0:  # discharge: never beyond dischargeLimit (absent: no discharge)
                floor = min(0.0, value.discharge_limit_w or 0.0)
                wanted = max(wanted, floor, -self.max_power_w) if self.v2g else 0.0
            else:
                wanted = min(wanted, limit)
            return self.battery.power_w(wanted)
        return self.battery.power_w(max(0.0, limit))

    def advance(self, to: datetime | None = None) -> None:
        """Integrate energy and SoC from the last simulated instant to `to` (default: now)."""
        to = to or self.clock()
        moment = self.simulated_until or to
        profiles = list(self.profiles.values())
        while moment < to:
            end = min(to, moment + MAX_STEP, next_change(profiles, moment, to, self.transaction))
            self.power_w = self.power_at(moment)
            seconds = (end - moment).total_seconds()
            if self.power_w > 0:
                self.energy_import_wh += self.power_w * seconds / 3600
            else:
                self.energy_export_wh += -self.power_w * seconds / 3600
            self.battery.apply(self.power_w, seconds)
            moment = end
        self.power_w = self.power_at(to)
        self.simulated_until = to

    # --- the demo loop ----------------------------------------------------------------------------

    async def run(self, *, meter_every_s: float = 60.0, plug_in_after_s: float = 5.0) -> None:
        """Real time, until cancelled: connect (retrying), boot, heartbeat, plug in, report."""
        backoff = 1.0
        while True:
            try:
                if not self.connected:
                    await self.connect()
                    await self.boot()
                    backoff = 1.0
                await self._live(meter_every_s, plug_in_after_s)
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                logger.warning("%s: link down (%s), retrying", self.charge_point_id, error)
                await self.disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)  # bounded: a CSMS restart must not be stormed

    async def _live(self, meter_every_s: float, plug_in_after_s: float) -> None:
        last_heartbeat = last_meter = asyncio.get_running_loop().time()
        await asyncio.sleep(plug_in_after_s)
        if self.transaction is None:
            await self.plug_in()
        while self.connected:
            await asyncio.sleep(1.0)
            now = asyncio.get_running_loop().time()
            if now - last_meter >= meter_every_s:
                await self.send_meter_values()
                last_meter = now
            if now - last_heartbeat >= self.heartbeat_interval_s:
                await self.heartbeat()
                last_heartbeat = now
            if self._socket is not None and self._socket.close_code is not None:
                raise websockets.ConnectionClosedError(None, None)
