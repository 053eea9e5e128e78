"""Fault injection and request counting for the simulated cloud.

A mixin of `World` (world.py), which supplies `lock` and `now()`.

Besides slow and failing requests, a `hold` fault parks matching requests until the test releases
them (or `delay_s` passes): the window in which a client process can be killed mid-request.
`effect` says where the car stands meanwhile: "before" (the car already acted, only the answer
is held), "after" (it acts once released) or "none" (released, it answers 503 without acting:
the request never got through). Every control request (start, stop, charge limit) is also kept
in `command_log` with its answer and the car's SoC at that moment, so a test can count the
effects each car saw (I2) and check none went below the owner's floor (I3).
"""

from __future__ import annotations

import fnmatch
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

from . import errors
from .cars import Car

FAULT_KINDS = ("slow", "server_error", "rate_limit", "auth", "hold")
HOLD_EFFECTS = ("before", "after", "none")
# Endpoints that change a car (the SDK's method names): logged one by one in `command_log`.
CONTROL_ENDPOINTS = ("vehicle.start_charge", "vehicle.stop_charge", "vehicle.set_charge_limit")


@dataclass
class Fault:
    """Make the next `remaining` matching requests slow and/or fail."""

    kind: str
    remaining: int = 1
    endpoint: str = "*"  # fnmatch pattern over endpoint names, e.g. "vehicle.*"
    vin: str | None = None  # VIN or vehicle id; None matches any (and non-vehicle endpoints)
    delay_s: float = 0.0
    retry_after_s: int = 30
    status: int = 500
    effect: str = "after"  # hold only: see the module docstring
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    held: int = 0  # hold only: requests parked right now
    released: bool = False

    def error(self) -> errors.ApiError | None:
        if self.kind == "server_error":
            return errors.server(self.status)
        if self.kind == "rate_limit":
            return errors.rate_limit(self.retry_after_s)
        if self.kind == "auth":
            return errors.authentication()
        if self.kind == "hold" and self.effect == "none":
            return errors.server(503)
        return None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "remaining": self.remaining,
            "endpoint": self.endpoint,
            "vin": self.vin,
            "delay_s": self.delay_s,
            "retry_after_s": self.retry_after_s,
            "status": self.status,
            "effect": self.effect,
            "held": self.held,
            "released": self.released,
        }


class Faults:
    """The next N matching requests are slow or fail; every request is counted by endpoint."""

    def _init_faults(self) -> None:
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.request_log: deque[dict] = deque(maxlen=2000)
        self.command_log: list[dict] = []
        self.holds: list[Fault] = []  # every hold fault, also once its count is used up

    def inject_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        endpoint: str = "*",
        vin: str | None = None,
        delay_s: float = 0.0,
        retry_after_s: int = 30,
        status: int = 500,
        effect: str = "after",
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if kind == "slow" and delay_s <= 0:
            raise ValueError("a slow fault needs delay_s > 0")
        if kind == "server_error" and not 500 <= status <= 599:
            raise ValueError("server_error status must be 5xx")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "hold":
            if effect not in HOLD_EFFECTS:
                raise ValueError(f"effect must be one of {', '.join(HOLD_EFFECTS)}")
            delay_s = delay_s or 60.0  # a forgotten hold still ends
        fault = Fault(kind, count, endpoint, vin, delay_s, retry_after_s, status, effect)
        with self.lock:
            self.faults.append(fault)
            if kind == "hold":
                self.holds.append(fault)
        return fault

    def release_holds(self, fault_id: str | None = None) -> int:
        """Let held requests go on (all holds, or one); returns how many were parked."""
        with self.lock:
            chosen = [f for f in self.holds if fault_id in (None, f.id)]
            for fault in chosen:
                fault.released = True
            return sum(f.held for f in chosen)

    def held_count(self) -> int:
        """Requests parked by hold faults right now."""
        with self.lock:
            return sum(f.held for f in self.holds)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, endpoint: str, car: Car | None) -> Fault | None:
        for fault in self.faults:
            if fault.remaining <= 0 or not fnmatch.fnmatchcase(endpoint, fault.endpoint):
                continue
            if fault.vin is not None and (
                car is None or fault.vin not in (car.vin, car.vehicle_id)
            ):
                continue
            fault.remaining -= 1
            if fault.remaining == 0:
                self.faults.remove(fault)
            return fault
        return None

    def count(
        self, endpoint: str, *, status: int, vehicle_id: str | None = None, car: Car | None = None
    ) -> None:
        self.counts[endpoint] += 1
        entry = {
            "at": self.now().isoformat(),
            "endpoint": endpoint,
            "status": status,
            "vehicle_id": vehicle_id,
        }
        self.request_log.append(entry)
        if endpoint in CONTROL_ENDPOINTS and car is not None:
            self.command_log.append(
                {**entry, "soc_pct": round(car.soc_pct, 3), "limit_pct": car.charge_limit_pct}
            )

    def commands(self) -> list[dict]:
        """Every control request so far: endpoint, car, answer status, SoC when it arrived."""
        with self.lock:
            return list(self.command_log)

    def request_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def reset_request_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.request_log.clear()
            self.command_log.clear()
