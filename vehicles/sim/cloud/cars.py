"""Simulated cars: catalogue, battery physics and the owner's daily routine.

Pure Python, no I/O and no clock of its own: `World` (world.py) owns simulated time and calls
`Car.integrate` between routine events. Everything here is deterministic for a given seed.

Power is battery-side (what goes into or out of the pack), so 11 kW for one hour adds exactly
11 kWh; charger losses are the planning side's business, not the car's.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A car stays awake (reports fresh data) this long after its last activity, like real telematics
# units that sleep to spare the 12 V battery.
AWAKE_AFTER_ACTIVITY = timedelta(minutes=15)
# Below this SoC after the morning trip's energy the owner leaves the car at home instead.
TRIP_RESERVE_PCT = 10.0
# SoC comparisons tolerate float noise from piecewise integration.
EPSILON_PCT = 1e-9


@dataclass(frozen=True)
class Model:
    make: str  # upper case, as Smartcar reports makes
    model: str
    year: int
    battery_kwh: float  # usable capacity
    max_ac_kw: float  # on-board charger limit
    v2g_capable: bool
    kwh_per_km: float
    wmi: str  # first 8 VIN characters: manufacturer and model descriptor


CATALOGUE: tuple[Model, ...] = (
    Model("FORD", "F-150 Lightning", 2023, 131.0, 19.2, True, 0.29, "1FTVW1EL"),
    Model("NISSAN", "LEAF", 2022, 40.0, 6.6, True, 0.17, "1N4AZ1CV"),
    Model("BMW", "i4 eDrive40", 2024, 80.7, 11.0, False, 0.18, "WBY73AW0"),
    Model("HONDA", "Prologue", 2024, 85.0, 11.5, False, 0.21, "5J6A2CK6"),
    Model("HYUNDAI", "IONIQ 5", 2023, 74.0, 10.9, True, 0.19, "KM8KRDAF"),
)

# Household the demo account's cars share: a quiet street in Sacramento, CA.
HOME = (38.5616, -121.4722)

_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_YEARS = {2022: "N", 2023: "P", 2024: "R", 2025: "S", 2026: "T"}
_VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # VINs never use I, O or Q


def make_vin(model: Model, rng: random.Random) -> str:
    """A VIN with a valid ISO 3779 check digit, so validators on the platform side accept it."""
    serial = "".join(rng.choice("0123456789") for _ in range(6))
    plant = rng.choice(_VIN_CHARS[10:])
    draft = f"{model.wmi}0{_VIN_YEARS.get(model.year, 'P')}{plant}{serial}"
    total = sum(_VIN_VALUES[c] * w for c, w in zip(draft, _VIN_WEIGHTS, strict=True))
    check = "X" if total % 11 == 10 else str(total % 11)
    return draft[:8] + check + draft[9:]


@dataclass(frozen=True)
class Routine:
    """When this car leaves and comes back on working days, and how far it goes."""

    depart_minute: int  # local minutes after midnight
    return_minute: int
    commute_km: float  # one way
    plug_in_chance: float  # evenings the owner remembers to plug in


@dataclass(frozen=True)
class RoutineEvent:
    at: datetime  # aware UTC
    kind: str  # "depart" | "arrive"
    car_index: int


@dataclass
class Car:
    index: int
    vehicle_id: str
    vin: str
    model: Model
    routine: Routine
    soc_pct: float
    charge_limit_pct: float
    plugged: bool
    power_kw: float = 0.0  # commanded battery-side power; + charges, − discharges (V2G)
    at_home: bool = True
    latitude: float = HOME[0]
    longitude: float = HOME[1]
    work: tuple[float, float] = HOME
    odometer_km: float = 0.0
    charge_on_plug: bool = True  # like a real car with no schedule: charges as soon as plugged
    follows_routine: bool = True
    awake_until: datetime | None = None
    frozen_report_at: datetime | None = None  # forced data age, cleared by the next activity
    wake_count: int = 0
    energy_in_kwh: float = 0.0
    energy_out_kwh: float = 0.0

    # -- derived state ------------------------------------------------------------------------
    @property
    def charging(self) -> bool:
        return self.power_kw > 0

    @property
    def discharging(self) -> bool:
        return self.power_kw < 0

    @property
    def charge_state(self) -> str:
        """Smartcar v2 `state`: CHARGING, FULLY_CHARGED or NOT_CHARGING (V2G reports the last)."""
        if self.power_kw > 0:
            return "CHARGING"
        if self.plugged and self.soc_pct >= self.charge_limit_pct - 1e-6:
            return "FULLY_CHARGED"
        return "NOT_CHARGING"

    @property
    def range_km(self) -> float:
        return self.soc_pct / 100 * self.model.battery_kwh / self.model.kwh_per_km

    def reported_at(self, now: datetime) -> datetime:
        """When the car last reported: now while awake, else the moment it fell asleep."""
        if self.frozen_report_at is not None:
            return self.frozen_report_at
        if self.power_kw != 0 or self.awake_until is None or now <= self.awake_until:
            return now
        return self.awake_until

    def is_asleep(self, now: datetime) -> bool:
        return self.reported_at(now) < now

    def touch(self, now: datetime) -> None:
        """Record activity: the car wakes and reports fresh data for a while."""
        self.frozen_report_at = None
        self.awake_until = now + AWAKE_AFTER_ACTIVITY

    # -- physics ------------------------------------------------------------------------------
    def integrate(self, start: datetime, seconds: float) -> list[str]:
        """Move SoC by power × time, stopping at the charge limit (charging) or 0 % (discharging).

        Returns what ended ("charge_complete", "discharge_empty") so the world can emit events.
        Unplugged cars take no power. A car doing something stays awake, so its data stays fresh.
        """
        notes: list[str] = []
        if seconds <= 0:
            return notes
        if not self.plugged:
            self.power_kw = 0.0
            return notes
        if self.power_kw == 0:
            return notes
        capacity = self.model.battery_kwh
        if self.power_kw > 0:
            store_kwh = max(0.0, (self.charge_limit_pct - self.soc_pct) / 100 * capacity)
        else:
            store_kwh = self.soc_pct / 100 * capacity
        rate_kw = abs(self.power_kw)
        energy = rate_kw * seconds / 3600
        if energy >= store_kwh - EPSILON_PCT:
            done_s = store_kwh / rate_kw * 3600
            if self.power_kw > 0:
                self.soc_pct = max(self.soc_pct, self.charge_limit_pct)
                self.energy_in_kwh += store_kwh
                notes.append("charge_complete")
            else:
                self.soc_pct = 0.0
                self.energy_out_kwh += store_kwh
                notes.append("discharge_empty")
            self.power_kw = 0.0
            self.touch(start + timedelta(seconds=done_s))
        else:
            if self.power_kw > 0:
                self.soc_pct += energy / capacity * 100
                self.energy_in_kwh += energy
            else:
                self.soc_pct -= energy / capacity * 100
                self.energy_out_kwh += energy
            self.touch(start + timedelta(seconds=seconds))
        return notes

    def start_charge(self) -> None:
        self.power_kw = self.model.max_ac_kw

    def set_power_kw(self, power_kw: float) -> None:
        """Command a setpoint between −max and +max AC kW (discharge needs a V2G-capable car)."""
        limit = self.model.max_ac_kw
        if not -limit <= power_kw <= limit:
            raise ValueError(f"power_kw must be between {-limit} and {limit} for this car")
        if power_kw < 0 and not self.model.v2g_capable:
            raise ValueError(f"{self.model.make} {self.model.model} cannot discharge (no V2G)")
        if power_kw != 0 and not self.plugged:
            raise ValueError("the car is not plugged in")
        if power_kw > 0 and self.soc_pct >= self.charge_limit_pct - EPSILON_PCT:
            power_kw = 0.0
        self.power_kw = float(power_kw)

    # -- routine ------------------------------------------------------------------------------
    def trip_kwh(self) -> float:
        return self.routine.commute_km * self.model.kwh_per_km

    def depart(self, now: datetime) -> bool:
        """Morning: unplug and drive to work, unless the battery is too low to go and come back."""
        if not self.at_home:
            return False
        trip_pct = self.trip_kwh() / self.model.battery_kwh * 100
        if self.soc_pct - 2 * trip_pct < TRIP_RESERVE_PCT:
            return False
        self.plugged = False
        self.power_kw = 0.0
        self.at_home = False
        self.soc_pct -= trip_pct
        self.odometer_km += self.routine.commute_km
        self.latitude, self.longitude = self.work
        self.touch(now)
        return True

    def arrive(self, now: datetime, *, plugs_in: bool) -> bool:
        """Evening: drive home and (most evenings) plug in; charging starts if the car does so."""
        if self.at_home:
            return False
        trip_pct = self.trip_kwh() / self.model.battery_kwh * 100
        self.soc_pct = max(0.0, self.soc_pct - trip_pct)
        self.odometer_km += self.routine.commute_km
        self.at_home = True
        self.latitude, self.longitude = HOME
        if plugs_in:
            self.plugged = True
            if self.charge_on_plug and self.soc_pct < self.charge_limit_pct - EPSILON_PCT:
                self.start_charge()
        self.touch(now)
        return True


def build_cars(count: int, seed: int) -> list[Car]:
    """The demo account's cars, identical for the same (count, seed)."""
    rng = random.Random(seed)
    cars = []
    for index in range(count):
        model = CATALOGUE[index % len(CATALOGUE)]
        routine = Routine(
            depart_minute=rng.randint(6 * 60 + 45, 8 * 60 + 30),
            return_minute=rng.randint(16 * 60 + 45, 19 * 60),
            commute_km=round(rng.uniform(12, 45), 1),
            plug_in_chance=0.9,
        )
        work = (
            round(HOME[0] + rng.uniform(-0.12, 0.12), 5),
            round(HOME[1] + rng.uniform(-0.15, 0.15), 5),
        )
        cars.append(
            Car(
                index=index,
                vehicle_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                vin=make_vin(model, rng),
                model=model,
                routine=routine,
                soc_pct=float(rng.randint(35, 75)),
                charge_limit_pct=float(rng.choice((80, 80, 90, 100))),
                plugged=False,
                work=work,
                odometer_km=float(rng.randint(4_000, 60_000)),
            )
        )
    return cars


def plugs_in_on(car: Car, day: date, seed: int) -> bool:
    """Whether the owner plugs this car in on the evening of `day` (deterministic per seed)."""
    return random.Random(f"{seed}:{car.index}:{day.isoformat()}:plug").random() < (
        car.routine.plug_in_chance
    )


def routine_events(car: Car, day: date, zone: ZoneInfo, utc: ZoneInfo) -> list[RoutineEvent]:
    """Departure and arrival on a working day; at weekends the car stays home."""
    if day.weekday() >= 5:
        return []
    depart = datetime.combine(day, _minute(car.routine.depart_minute), tzinfo=zone)
    arrive = datetime.combine(day, _minute(car.routine.return_minute), tzinfo=zone)
    return [
        RoutineEvent(depart.astimezone(utc), "depart", car.index),
        RoutineEvent(arrive.astimezone(utc), "arrive", car.index),
    ]


def _minute(minute: int) -> time:
    return time(minute // 60, minute % 60)
