"""Fault injection and request counting for the simulated cloud.

A mixin of `World` (world.py), which supplies `lock` and `now()`.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

from . import errors
from .cars import Car

FAULT_KINDS = ("slow", "server_error", "rate_limit", "auth")


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
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def error(self) -> errors.ApiError | None:
        if self.kind == "server_error":
            return errors.server(self.status)
        if self.kind == "rate_limit":
            return errors.rate_limit(self.retry_after_s)
        if self.kind == "auth":
            return errors.authentication()
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
        }


class Faults:
    """The next N matching requests are slow or fail; every request is counted by endpoint."""

    def _init_faults(self) -> None:
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.request_log: deque[dict] = deque(maxlen=2000)

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
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if kind == "slow" and delay_s <= 0:
            raise ValueError("a slow fault needs delay_s > 0")
        if kind == "server_error" and not 500 <= status <= 599:
            raise ValueError("server_error status must be 5xx")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(kind, count, endpoint, vin, delay_s, retry_after_s, status)
        with self.lock:
            self.faults.append(fault)
        return fault

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

    def count(self, endpoint: str, *, status: int, vehicle_id: str | None = None) -> None:
        self.counts[endpoint] += 1
        self.request_log.append(
            {
                "at": self.now().isoformat(),
                "endpoint": endpoint,
                "status": status,
                "vehicle_id": vehicle_id,
            }
        )

    def request_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def reset_request_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.request_log.clear()
