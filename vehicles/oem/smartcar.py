"""Smartcar adapter, on the official `smartcar` SDK (Ford, BMW, Honda, Nissan and most makes).

The SDK reads its API origins from module globals (`smartcar.config`); we set them from
settings.VEHICLE_PROVIDERS["smartcar"] whenever an adapter is built, so the same code talks to
Smartcar in production and to the simulated cloud (vehicles/sim/cloud) in the demo and tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import smartcar
from smartcar import config as smartcar_config
from smartcar.exception import SmartcarException

from vehicles.oem.base import (
    AuthExpiredError,
    Capabilities,
    LinkRevokedError,
    OemAdapter,
    PermanentOemError,
    TokenSet,
    TransientOemError,
    VehicleInfo,
    VehicleState,
    WebhookEvent,
    WebhookMessage,
)

SCOPES = [
    "read_vehicle_info",
    "read_vin",
    "read_battery",
    "read_charge",
    "control_charge",
    "read_location",
    "read_odometer",
]
TRANSIENT_TYPES = {"RATE_LIMIT", "SERVER", "UPSTREAM", "VEHICLE_STATE", "SDK_ERROR"}
KM_PER_MILE = 1.609344
VEHICLES_PAGE = 50  # Smartcar's largest page of GET /vehicles


def _translate(error: SmartcarException) -> Exception:
    """Map the SDK's one exception type onto ours, so callers retry only what is worth it."""
    kind = (getattr(error, "type", None) or "").upper()
    status = getattr(error, "status_code", None)
    message = str(error) or kind
    if kind == "AUTHENTICATION" or status == 401:
        return AuthExpiredError(message)
    if kind in {"INVALID_GRANT", "ACCESS_DENIED"}:
        return LinkRevokedError(message)
    if kind in TRANSIENT_TYPES or (isinstance(status, int) and status >= 500):
        retry_after = getattr(error, "retry_after", None)
        return TransientOemError(
            message, retry_after_seconds=float(retry_after) if retry_after else None
        )
    return PermanentOemError(message)


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except SmartcarException as error:
        raise _translate(error) from error


def _data_time(meta: Any, fallback: datetime) -> datetime:
    """When the car measured the value: the `sc-data-age` header (ISO-8601), else `fallback`."""
    value = getattr(meta, "data_age", None) if meta is not None else None
    if not value:
        return fallback
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SmartcarAdapter(OemAdapter):
    provider = "smartcar"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.brands = tuple(config.get("BRANDS", ()))
        # The SDK reads these module globals at call time (smartcar/config.py).
        smartcar_config.API_ORIGIN = config["API_ORIGIN"]
        smartcar_config.AUTH_ORIGIN = config["AUTH_ORIGIN"]
        smartcar_config.CONNECT_ORIGIN = config["CONNECT_ORIGIN"]
        smartcar_config.MANAGEMENT_API_ORIGIN = config.get(
            "MANAGEMENT_API_ORIGIN", smartcar_config.MANAGEMENT_API_ORIGIN
        )

    def _auth_client(self, redirect_uri: str) -> smartcar.AuthClient:
        return smartcar.AuthClient(
            client_id=self.config["CLIENT_ID"],
            client_secret=self.config["CLIENT_SECRET"],
            redirect_uri=redirect_uri,
            mode=self.config.get("MODE", "live"),
        )

    @staticmethod
    def _tokens(access: Any) -> TokenSet:
        now = datetime.now(UTC)
        expires = access.expiration or now + timedelta(seconds=access.expires_in or 0)
        return TokenSet(
            access_token=access.access_token,
            refresh_token=access.refresh_token,
            access_expires_at=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
            refresh_expires_at=(
                access.refresh_expiration.replace(tzinfo=UTC)
                if access.refresh_expiration and not access.refresh_expiration.tzinfo
                else access.refresh_expiration
            ),
        )

    def authorize_url(self, *, state: str, redirect_uri: str, brand: str | None = None) -> str:
        options: dict[str, Any] = {"state": state}
        if brand:
            options["make_bypass"] = brand.upper()
        return self._auth_client(redirect_uri).get_auth_url(SCOPES, options)

    def complete_link(self, *, code: str, redirect_uri: str) -> TokenSet:
        access = _call(self._auth_client(redirect_uri).exchange_code, code)
        return self._tokens(access)

    def refresh(self, *, refresh_token: str) -> TokenSet:
        client = self._auth_client(self.config.get("REDIRECT_URI", ""))
        try:
            access = client.exchange_refresh_token(refresh_token)
        except SmartcarException as error:
            translated = _translate(error)
            # A refused refresh token means the grant is gone, whatever the status says.
            if isinstance(translated, (AuthExpiredError, PermanentOemError)):
                raise LinkRevokedError(str(error)) from error
            raise translated from error
        return self._tokens(access)

    def _vehicle_ids(self, access_token: str) -> list[str]:
        """Every car of the grant: Smartcar pages the list (10 by default), so follow `paging`
        until the count is reached or a page comes back empty."""
        ids: list[str] = []
        while True:
            page = _call(
                smartcar.get_vehicles, access_token, {"limit": VEHICLES_PAGE, "offset": len(ids)}
            )
            ids.extend(page.vehicles)
            total = getattr(page.paging, "count", None)
            if not page.vehicles or total is None or len(ids) >= total:
                return ids

    def list_vehicles(self, *, access_token: str) -> list[VehicleInfo]:
        infos = []
        for vehicle_id in self._vehicle_ids(access_token):
            vehicle = smartcar.Vehicle(vehicle_id, access_token, {"unit_system": "metric"})
            attributes = _call(vehicle.attributes)
            vin = _call(vehicle.vin).vin
            try:
                capacity = _call(vehicle.battery_capacity).capacity
            except PermanentOemError:  # not every make reports it; the owner can enter it
                capacity = None
            infos.append(
                VehicleInfo(
                    provider_vehicle_id=vehicle_id,
                    make=attributes.make,
                    model=attributes.model,
                    year=int(attributes.year),
                    vin=vin or "",
                    battery_kwh=capacity,
                    max_ac_kw=self.config.get("DEFAULT_MAX_AC_KW"),
                )
            )
        return infos

    def get_state(self, *, access_token: str, vehicle_id: str) -> VehicleState:
        vehicle = smartcar.Vehicle(vehicle_id, access_token, {"unit_system": "metric"})
        now = datetime.now(UTC)
        battery = _call(vehicle.battery)
        charge = _call(vehicle.charge)
        limit = _call(vehicle.get_charge_limit)
        try:
            location = _call(vehicle.location)
        except PermanentOemError:  # location permission not granted on this car
            location = None
        return VehicleState(
            recorded_at=_data_time(battery.meta, now),
            soc_pct=battery.percent_remaining * 100,
            range_km=battery.range,
            plugged_in=charge.is_plugged_in,
            charging_state=charge.state or "",
            charge_limit_pct=limit.limit * 100 if limit.limit is not None else None,
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
        )

    def start_charge(self, *, access_token: str, vehicle_id: str) -> None:
        _call(smartcar.Vehicle(vehicle_id, access_token).start_charge)

    def stop_charge(self, *, access_token: str, vehicle_id: str) -> None:
        _call(smartcar.Vehicle(vehicle_id, access_token).stop_charge)

    def set_charge_limit(self, *, access_token: str, vehicle_id: str, limit_pct: float) -> None:
        _call(smartcar.Vehicle(vehicle_id, access_token).set_charge_limit, limit_pct / 100)

    def disconnect(self, *, access_token: str, vehicle_id: str) -> None:
        _call(smartcar.Vehicle(vehicle_id, access_token).disconnect)

    def capabilities(self, *, access_token: str, vehicle_id: str) -> Capabilities:
        return Capabilities()

    def parse_webhook(self, *, body: bytes, signature: str) -> WebhookMessage:
        """Smartcar webhooks, payload version 4.0 (eventType VERIFY / VEHICLE_STATE / …).

        Every delivery is signed: `SC-Signature` = hex HMAC-SHA256 of the raw body keyed with
        the application management token. Deduplication uses `eventId`, which a retry keeps.
        """
        token = self.config["MANAGEMENT_TOKEN"]
        text = body.decode("utf-8", errors="replace")
        if not signature or not smartcar.verify_payload(token, signature, text):
            raise PermanentOemError("Webhook signature does not match.")
        try:
            message = json.loads(text)
        except ValueError as error:
            raise PermanentOemError("Webhook body is not JSON.") from error
        if not isinstance(message, dict):
            raise PermanentOemError("Webhook body is not an object.")
        kind = message.get("eventType")
        if kind == "VERIFY":
            challenge = (message.get("data") or {}).get("challenge")
            if not isinstance(challenge, str):
                raise PermanentOemError("VERIFY without a challenge.")
            return WebhookMessage(
                challenge_response={"challenge": smartcar.hash_challenge(token, challenge)}
            )
        if kind != "VEHICLE_STATE":
            return WebhookMessage()  # VEHICLE_ERROR and future types carry no state to store
        try:
            return WebhookMessage(events=[self._state_event(message)])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PermanentOemError(f"Malformed VEHICLE_STATE event: {error!r}") from error

    @staticmethod
    def _state_event(message: dict[str, Any]) -> WebhookEvent:
        values: dict[str, Any] = {}
        measured_ms: list[int] = []
        for signal in (message.get("data") or {}).get("signals") or []:
            code, body = signal.get("code"), signal.get("body") or {}
            if signal.get("meta", {}).get("oemUpdatedAt"):
                measured_ms.append(int(signal["meta"]["oemUpdatedAt"]))
            if code == "tractionbattery-stateofcharge":
                values["soc_pct"] = float(body["value"])
            elif code == "tractionbattery-range":
                values["range_km"] = float(body["value"])
            elif code == "charge-ischargingcableconnected":
                values["plugged_in"] = bool(body["value"])
            elif code == "charge-ischarging":
                values["charging_state"] = "CHARGING" if body["value"] else "NOT_CHARGING"
            elif code == "charge-chargelimits" and body.get("activeLimit") is not None:
                values["charge_limit_pct"] = float(body["activeLimit"])
            elif code == "location-preciselocation":
                values["latitude"] = float(body["latitude"])
                values["longitude"] = float(body["longitude"])
            elif code == "odometer-traveleddistance":
                values["odometer_km"] = float(body["value"])
        recorded_at = (
            datetime.fromtimestamp(max(measured_ms) / 1000, tz=UTC)
            if measured_ms
            else datetime.now(UTC)
        )
        return WebhookEvent(
            delivery_id=str(message["eventId"]),
            provider_vehicle_id=str(message["vehicleId"]),
            state=VehicleState(recorded_at=recorded_at, **values),
        )
