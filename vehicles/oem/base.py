"""The interface every vehicle cloud adapter implements (DESIGN.md §4, settings.VEHICLE_PROVIDERS).

Plain dataclasses in and out, no ORM: services own persistence, adapters own the wire.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime


class OemError(Exception):
    """A vehicle cloud call failed."""


class TransientOemError(OemError):
    """Worth retrying later (5xx, timeout, rate limit)."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class AuthExpiredError(OemError):
    """The access token was refused (401): refresh it, then retry once."""


class LinkRevokedError(OemError):
    """The owner's grant is gone (refresh refused): they must link again."""


class PermanentOemError(OemError):
    """Retrying will not help (unknown vehicle, unsupported command, bad request)."""


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True)
class VehicleInfo:
    provider_vehicle_id: str
    make: str
    model: str
    year: int
    vin: str = ""
    battery_kwh: float | None = None
    max_ac_kw: float | None = None


@dataclass(frozen=True)
class VehicleState:
    recorded_at: datetime
    soc_pct: float | None = None
    range_km: float | None = None
    plugged_in: bool | None = None
    charging_state: str = ""
    charge_limit_pct: float | None = None
    odometer_km: float | None = None
    latitude: float | None = None
    longitude: float | None = None
    power_kw: float | None = None


@dataclass(frozen=True)
class WebhookEvent:
    delivery_id: str
    provider_vehicle_id: str
    state: VehicleState


@dataclass(frozen=True)
class WebhookMessage:
    """A verified webhook: a VERIFY challenge to answer, or vehicle events to ingest."""

    challenge_response: dict | None = None
    events: list[WebhookEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Capabilities:
    start_stop_charge: bool = True
    charge_limit: bool = True
    location: bool = True


class OemAdapter(abc.ABC):
    """One vehicle cloud. Instances are cheap; build one per use with `vehicles.oem.get_adapter`."""

    provider: str
    brands: tuple[str, ...] = ()

    @abc.abstractmethod
    def authorize_url(self, *, state: str, redirect_uri: str, brand: str | None = None) -> str: ...

    @abc.abstractmethod
    def complete_link(self, *, code: str, redirect_uri: str) -> TokenSet: ...

    @abc.abstractmethod
    def refresh(self, *, refresh_token: str) -> TokenSet: ...

    @abc.abstractmethod
    def list_vehicles(self, *, access_token: str) -> list[VehicleInfo]: ...

    @abc.abstractmethod
    def get_state(self, *, access_token: str, vehicle_id: str) -> VehicleState: ...

    @abc.abstractmethod
    def start_charge(self, *, access_token: str, vehicle_id: str) -> None: ...

    @abc.abstractmethod
    def stop_charge(self, *, access_token: str, vehicle_id: str) -> None: ...

    @abc.abstractmethod
    def set_charge_limit(self, *, access_token: str, vehicle_id: str, limit_pct: float) -> None: ...

    @abc.abstractmethod
    def disconnect(self, *, access_token: str, vehicle_id: str) -> None: ...

    @abc.abstractmethod
    def capabilities(self, *, access_token: str, vehicle_id: str) -> Capabilities: ...

    @abc.abstractmethod
    def parse_webhook(self, *, body: bytes, signature: str) -> WebhookMessage:
        """Verify the signature (raise PermanentOemError if wrong) and parse the body."""
