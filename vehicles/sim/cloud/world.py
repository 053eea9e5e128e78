"""The simulated cloud's state: clock, cars, OAuth grants and tokens, faults, counters, webhooks.

One `World` per server. The HTTP handlers (api.py, oauth.py, app.py) and the control methods
(the `SimulatedCloud` handle, the `/_sim/` routes) all go through it under one lock, so tests can
drive it from their own thread while uvicorn serves from another.

Time is simulated: `now()` = start + seconds advanced + wall time × `time_scale`. Tests use
`time_scale=0` and `advance()`, so physics is exact and nothing sleeps. State is brought up to
`now()` lazily (`_sync`), stepping through the daily routine's departures and arrivals.
OAuth state lives in the `Grants` mixin (grants.py), faults and counters in `Faults` (faults.py).
"""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import webhooks
from .cars import (
    AWAKE_AFTER_ACTIVITY,
    HOME,
    Car,
    RoutineEvent,
    build_cars,
    plugs_in_on,
    routine_events,
)
from .faults import Faults
from .grants import ACCESS_TTL_S, Grants


@dataclass(frozen=True)
class SimEvent:
    at: datetime
    vin: str
    kind: str  # depart, arrive, plug_in, charging_started, charge_complete, discharge_empty
    triggers: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"at": self.at.isoformat(), "vin": self.vin, "kind": self.kind}


@dataclass(frozen=True)
class CarState:
    """A consistent snapshot of one car, for tests and `/_sim/state`."""

    vehicle_id: str
    vin: str
    make: str
    model: str
    year: int
    battery_kwh: float
    max_ac_kw: float
    v2g_capable: bool
    soc_pct: float
    plugged: bool
    charging: bool
    power_kw: float
    charge_state: str
    charge_limit_pct: float
    range_km: float
    latitude: float
    longitude: float
    at_home: bool
    odometer_km: float
    reported_at: datetime
    asleep: bool
    wake_count: int
    energy_in_kwh: float
    energy_out_kwh: float
    connected: bool

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["reported_at"] = self.reported_at.isoformat()
        return data


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # a machine without tzdata still runs, in UTC
        return ZoneInfo("UTC")


class World(Grants, Faults):
    """Clock, cars, routine and webhook outbox; OAuth and faults come from the mixins."""

    def __init__(
        self,
        *,
        cars: int = 3,
        seed: int = 1,
        client_id: str,
        client_secret: str,
        management_token: str,
        webhook_url: str | None = None,
        redirect_uris: tuple[str, ...] = (),
        start: datetime | None = None,
        time_scale: float = 0.0,
        timezone: str = "America/Los_Angeles",
        routine: bool = True,
        auto_webhooks: bool = False,
        soc_webhook_step_pct: float = 5.0,
        access_ttl_s: int = ACCESS_TTL_S,
        max_selection: int = 3,
    ) -> None:
        if cars < 1:
            raise ValueError("the demo account needs at least one car")
        self.lock = threading.RLock()
        self.seed = seed
        self.cars: list[Car] = build_cars(cars, seed)
        self._index_cars()
        self.user_id = str(uuid.UUID(int=(seed * 7919 + 17) % (1 << 122) + 1, version=4))
        self.client_id = client_id
        self.client_secret = client_secret
        self.management_token = management_token
        self.webhook_url = webhook_url
        self.webhook_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"chargescape-sim:{seed}"))
        self.webhook_name = "ChargeScape simulator"
        self.redirect_uris = tuple(redirect_uris)
        self.zone = _zone(timezone)
        self.routine = routine
        self.auto_webhooks = auto_webhooks
        self.soc_webhook_step_pct = soc_webhook_step_pct
        self.access_ttl_s = access_ttl_s
        self.max_selection = max_selection
        self.time_scale = time_scale
        start = (start or datetime.now(UTC)).astimezone(UTC)
        self._start = start
        self._advanced_s = 0.0
        self._wall0 = time.monotonic()
        self._synced_to = start
        self._init_grants()
        self._init_faults()
        self.events: list[SimEvent] = []
        self.outbox: list[dict] = []  # webhook events waiting to be POSTed (outside the lock)
        self.deliveries: list[webhooks.Delivery] = []
        self._last_webhook_soc: dict[str, float] = {}

    # -- persistence (make run keeps the demo's grants across restarts) -------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["lock"]
        state["_start"], state["_advanced_s"] = self.now(), 0.0  # freeze the clock
        state["outbox"], state["deliveries"] = [], []
        del state["_by_key"]
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("command_log", [])  # worlds saved before these existed
        state.setdefault("holds", [])
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self._wall0 = time.monotonic()
        self._index_cars()

    def save(self, path: Path) -> None:
        """Write the whole world (cars, grants, tokens, clock) to `path`, atomically."""
        with self.lock:
            data = pickle.dumps(self)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path, *, resume_at: datetime | None = None) -> World:
        """A world saved by `save`; with `resume_at`, the clock jumps there and the cars live
        through the gap (routine and charging) on the next sync."""
        # Our own state file, written by save() under .local/ (never data from elsewhere).
        world = pickle.loads(path.read_bytes())  # noqa: S301  # nosec B301
        if not isinstance(world, cls):
            raise TypeError(f"{path} does not hold a simulated world")
        if resume_at is not None and resume_at > world.now():
            world._start, world._advanced_s = resume_at, 0.0
            world._wall0 = time.monotonic()
        return world

    # -- clock ----------------------------------------------------------------------------------
    def now(self) -> datetime:
        wall = (time.monotonic() - self._wall0) * self.time_scale
        return self._start + timedelta(seconds=self._advanced_s + wall)

    def advance(self, seconds: float) -> list[SimEvent]:
        """Move simulated time forward; returns the routine and charging events on the way."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self.lock:
            self._sync()
            first = len(self.events)
            self._advanced_s += seconds
            self._sync()
            return self.events[first:]

    def sync(self) -> None:
        with self.lock:
            self._sync()

    def _sync(self) -> None:
        target = self.now()
        cursor = self._synced_to
        if target <= cursor:
            return
        for event in self._routine_events(cursor, target):
            self._integrate(cursor, event.at)
            cursor = event.at
            self._apply_routine(event)
        self._integrate(cursor, target)
        self._synced_to = target
        if self.auto_webhooks:
            self._queue_soc_changes(target)

    def _routine_events(self, after: datetime, until: datetime) -> list[RoutineEvent]:
        if not self.routine:
            return []
        utc = ZoneInfo("UTC")
        first = after.astimezone(self.zone).date() - timedelta(days=1)
        last = until.astimezone(self.zone).date()
        found = []
        day = first
        while day <= last:
            for car in self.cars:
                if car.follows_routine:
                    found += [
                        e for e in routine_events(car, day, self.zone, utc) if after < e.at <= until
                    ]
            day += timedelta(days=1)
        return sorted(found, key=lambda e: (e.at, e.car_index))

    def _integrate(self, start: datetime, end: datetime) -> None:
        seconds = (end - start).total_seconds()
        for car in self.cars:
            for note in car.integrate(start, seconds):
                triggers = ("charge-ischarging", "tractionbattery-stateofcharge")
                done_at = car.awake_until - AWAKE_AFTER_ACTIVITY if car.awake_until else end
                self._emit(car, note, triggers, done_at)

    def _apply_routine(self, event: RoutineEvent) -> None:
        car = self.cars[event.car_index]
        if event.kind == "depart":
            was_plugged = car.plugged
            if car.depart(event.at):
                triggers = ("location-preciselocation", "tractionbattery-stateofcharge")
                if was_plugged:
                    triggers += ("charge-ischargingcableconnected",)
                self._emit(car, "depart", triggers, event.at)
        else:
            local_day = event.at.astimezone(self.zone).date()
            plugs_in = plugs_in_on(car, local_day, self.seed)
            if car.arrive(event.at, plugs_in=plugs_in):
                self._emit(car, "arrive", ("location-preciselocation",), event.at)
                if car.plugged:
                    triggers = ("charge-ischargingcableconnected", "charge-ischarging")
                    self._emit(car, "plug_in", triggers, event.at)

    def _emit(self, car: Car, kind: str, triggers: tuple[str, ...], at: datetime) -> None:
        self.events.append(SimEvent(at, car.vin, kind, triggers))
        if self.auto_webhooks and self.webhook_url and self.is_connected(car):
            self._queue_state(car, list(triggers), at)

    def _queue_state(self, car: Car, triggers: list[str], at: datetime) -> dict:
        event = webhooks.vehicle_state_event(
            car=car,
            user_id=self.user_id,
            now=at,
            triggers=triggers,
            webhook_id=self.webhook_id,
            webhook_name=self.webhook_name,
        )
        self._last_webhook_soc[car.vehicle_id] = car.soc_pct
        self.outbox.append(event)
        return event

    def _queue_soc_changes(self, now: datetime) -> None:
        for car in self.cars:
            last = self._last_webhook_soc.setdefault(car.vehicle_id, car.soc_pct)
            if abs(car.soc_pct - last) >= self.soc_webhook_step_pct and self.is_connected(car):
                self._queue_state(car, ["tractionbattery-stateofcharge"], now)

    def take_outbox(self) -> list[dict]:
        with self.lock:
            events, self.outbox = self.outbox, []
            return events

    # -- cars -------------------------------------------------------------------------------------
    def _index_cars(self) -> None:
        """Cars by VIN and by vehicle id: every request names one (a bench's world has 30,000)."""
        self._by_key = {key: car for car in self.cars for key in (car.vin, car.vehicle_id)}

    def car(self, key: str) -> Car:
        """A car by VIN or vehicle id; KeyError if there is none."""
        return self._by_key[key]

    def car_by_id(self, vehicle_id: str) -> Car | None:
        car = self._by_key.get(vehicle_id)
        return car if car is not None and car.vehicle_id == vehicle_id else None

    def is_connected(self, car: Car) -> bool:
        return any(not g.revoked and g.holds(car.vehicle_id) for g in self.grants.values())

    def car_state(self, key: str) -> CarState:
        """One car's current state by VIN or vehicle id (KeyError if unknown)."""
        with self.lock:
            self._sync()
            return self.snapshot(self.car(key))

    def snapshot(self, car: Car) -> CarState:
        now = self.now()
        return CarState(
            vehicle_id=car.vehicle_id,
            vin=car.vin,
            make=car.model.make,
            model=car.model.model,
            year=car.model.year,
            battery_kwh=car.model.battery_kwh,
            max_ac_kw=car.model.max_ac_kw,
            v2g_capable=car.model.v2g_capable,
            soc_pct=car.soc_pct,
            plugged=car.plugged,
            charging=car.charging,
            power_kw=car.power_kw,
            charge_state=car.charge_state,
            charge_limit_pct=car.charge_limit_pct,
            range_km=car.range_km,
            latitude=car.latitude,
            longitude=car.longitude,
            at_home=car.at_home,
            odometer_km=car.odometer_km,
            reported_at=car.reported_at(now),
            asleep=car.is_asleep(now),
            wake_count=car.wake_count,
            energy_in_kwh=car.energy_in_kwh,
            energy_out_kwh=car.energy_out_kwh,
            connected=self.is_connected(car),
        )

    def car_states(self) -> list[CarState]:
        with self.lock:
            self._sync()
            return [self.snapshot(car) for car in self.cars]

    def set_state(
        self,
        key: str,
        *,
        soc_pct: float | None = None,
        plugged: bool | None = None,
        charging: bool | None = None,
        charge_limit_pct: float | None = None,
        at_home: bool | None = None,
        data_age_s: float | None = None,
        follows_routine: bool | None = None,
        charge_on_plug: bool | None = None,
    ) -> CarState:
        """Put a car in a state directly (the owner plugs in, a test needs 12 % SoC, ...).

        Plugging in through here does not start charging unless `charging=True`; `data_age_s`
        makes the car look asleep since that many seconds, until its next activity.
        """
        with self.lock:
            self._sync()
            car = self.car(key)
            now = self.now()
            if soc_pct is not None:
                if not 0 <= soc_pct <= 100:
                    raise ValueError("soc_pct must be within 0–100")
                car.soc_pct = float(soc_pct)
            if charge_limit_pct is not None:
                if not 50 <= charge_limit_pct <= 100:
                    raise ValueError("charge_limit_pct must be within 50–100")
                car.charge_limit_pct = float(charge_limit_pct)
            if at_home is not None:
                car.at_home = at_home
                car.latitude, car.longitude = HOME if at_home else car.work
            if plugged is not None and plugged != car.plugged:
                car.plugged = plugged
                if not plugged:
                    car.power_kw = 0.0
                kind = "plug_in" if plugged else "unplug"
                self._emit(car, kind, ("charge-ischargingcableconnected",), now)
            if follows_routine is not None:
                car.follows_routine = follows_routine
            if charge_on_plug is not None:
                car.charge_on_plug = charge_on_plug
            if charging is True:
                if not car.plugged:
                    raise ValueError("a car must be plugged in to charge")
                car.start_charge()
            elif charging is False:
                car.power_kw = 0.0
            if car.power_kw > 0 and car.soc_pct >= car.charge_limit_pct:
                car.power_kw = 0.0
            car.touch(now)
            if data_age_s is not None:
                car.frozen_report_at = now - timedelta(seconds=data_age_s)
                car.awake_until = car.frozen_report_at
            return self.snapshot(car)

    def set_power_kw(self, key: str, power_kw: float) -> CarState:
        """V2G-style setpoint: −max…+max AC kW, never past the charge limit or below 0 %."""
        with self.lock:
            self._sync()
            car = self.car(key)
            car.set_power_kw(power_kw)
            car.touch(self.now())
            return self.snapshot(car)

    # -- webhooks -------------------------------------------------------------------------------
    def state_event(self, key: str, triggers: list[str] | None = None) -> dict:
        with self.lock:
            self._sync()
            car = self.car(key)
            return webhooks.vehicle_state_event(
                car=car,
                user_id=self.user_id,
                now=self.now(),
                triggers=triggers or ["tractionbattery-stateofcharge"],
                webhook_id=self.webhook_id,
                webhook_name=self.webhook_name,
            )

    def error_event(
        self, key: str, *, code: str, state: str, error_type: str, description: str
    ) -> dict:
        with self.lock:
            self._sync()
            return webhooks.vehicle_error_event(
                car=self.car(key),
                user_id=self.user_id,
                now=self.now(),
                error_type=error_type,
                code=code,
                description=description,
                state=state,
                webhook_id=self.webhook_id,
                webhook_name=self.webhook_name,
            )

    def verify_event(self, challenge: str) -> dict:
        return webhooks.verify_event(
            challenge=challenge,
            now=self.now(),
            webhook_id=self.webhook_id,
            webhook_name=self.webhook_name,
        )

    def record_delivery(self, delivery: webhooks.Delivery) -> None:
        with self.lock:
            self.deliveries.append(delivery)

    def find_delivery(self, delivery_id: str) -> webhooks.Delivery:
        with self.lock:
            for delivery in reversed(self.deliveries):
                if delivery.delivery_id == delivery_id:
                    return delivery
        raise KeyError(delivery_id)
