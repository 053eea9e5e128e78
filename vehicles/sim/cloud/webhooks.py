"""Smartcar webhook deliveries: payload format 4.0, `SC-Signature`, the VERIFY challenge.

Format (Smartcar docs, "Webhooks → Event reference", payload version 4.0):

    {"eventId", "eventType": "VEHICLE_STATE" | "VEHICLE_ERROR" | "VERIFY", "vehicleId",
     "data": {"user": {"id"}, "vehicle": {"id", "make", "model", "year"},
              "triggers": [{"code", "name", "group"}], "signals": [{"code", "name", "group",
              "body": {...}, "meta": {"oemUpdatedAt": ms, "fetchedAt": ms}}]},
     "meta": {"version": "4.0", "deliveryId", "deliveredAt": ms, "webhookId", "webhookName",
              "signalCount", "mode": "LIVE"}}

`SC-Signature` is the hex HMAC-SHA256 of the raw body keyed with the application management
token, exactly what `smartcar.verify_payload(amt, signature, body)` recomputes; the VERIFY
challenge is answered with `{"challenge": smartcar.hash_challenge(amt, challenge)}`. A retry keeps
`eventId` and gets a new `deliveryId`; a replay re-sends the very same bytes and signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from .cars import Car

PAYLOAD_VERSION = "4.0"
USER_AGENT = "Smartcar-Webhooks (ChargeScape simulator)"

SIGNALS: dict[str, tuple[str, str]] = {
    "tractionbattery-stateofcharge": ("StateOfCharge", "TractionBattery"),
    "tractionbattery-range": ("Range", "TractionBattery"),
    "tractionbattery-nominalcapacity": ("NominalCapacity", "TractionBattery"),
    "charge-ischarging": ("IsCharging", "Charge"),
    "charge-ischargingcableconnected": ("IsChargingCableConnected", "Charge"),
    "charge-chargelimits": ("ChargeLimits", "Charge"),
    "location-preciselocation": ("PreciseLocation", "Location"),
    "odometer-traveleddistance": ("TraveledDistance", "Odometer"),
}


def hash_challenge(management_token: str, challenge: str) -> str:
    """Hex HMAC-SHA256 of `challenge` keyed with the management token (the SDK's algorithm)."""
    return hmac.new(management_token.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def sign(management_token: str, body: bytes) -> str:
    """The `SC-Signature` header value for a raw webhook body."""
    return hmac.new(management_token.encode(), body, hashlib.sha256).hexdigest()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def signal_bodies(car: Car) -> dict[str, dict]:
    limit = round(car.charge_limit_pct)
    return {
        "tractionbattery-stateofcharge": {"unit": "percent", "value": round(car.soc_pct, 2)},
        "tractionbattery-range": {"unit": "km", "value": round(car.range_km, 1)},
        "tractionbattery-nominalcapacity": {
            "capacity": car.model.battery_kwh,
            "source": "SMARTCAR",
        },
        "charge-ischarging": {"value": car.charging},
        "charge-ischargingcableconnected": {"value": car.plugged},
        "charge-chargelimits": {
            "values": [{"type": "GLOBAL", "limit": limit, "condition": None}],
            "activeLimit": limit,
            "unit": "percent",
        },
        "location-preciselocation": {"latitude": car.latitude, "longitude": car.longitude},
        "odometer-traveleddistance": {"unit": "km", "value": round(car.odometer_km, 1)},
    }


def _signal_ref(code: str) -> dict:
    if code not in SIGNALS:
        return {"code": code}  # e.g. FIRST_DELIVERY
    name, group = SIGNALS[code]
    return {"code": code, "name": name, "group": group}


def vehicle_state_event(
    *,
    car: Car,
    user_id: str,
    now: datetime,
    triggers: list[str],
    webhook_id: str,
    webhook_name: str,
) -> dict:
    """A VEHICLE_STATE event carrying every subscribed signal as the car reports it at `now`."""
    reported = _ms(car.reported_at(now))
    signals = [
        {
            **_signal_ref(code),
            "body": body,
            "meta": {"oemUpdatedAt": reported, "fetchedAt": _ms(now)},
        }
        for code, body in signal_bodies(car).items()
    ]
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_STATE",
        "vehicleId": car.vehicle_id,
        "data": {
            "user": {"id": user_id},
            "vehicle": _vehicle(car),
            "triggers": [_signal_ref(code) for code in triggers],
            "signals": signals,
        },
        "meta": _meta(now, webhook_id, webhook_name, signalCount=len(signals)),
    }


def vehicle_error_event(
    *,
    car: Car,
    user_id: str,
    now: datetime,
    error_type: str,
    code: str,
    description: str,
    state: str,
    webhook_id: str,
    webhook_name: str,
) -> dict:
    """A VEHICLE_ERROR event (`state` ERROR when it starts, RESOLVED when it clears)."""
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_ERROR",
        "vehicleId": car.vehicle_id,
        "data": {
            "user": {"id": user_id},
            "vehicle": _vehicle(car),
            "errors": [
                {
                    "type": error_type,
                    "code": code,
                    "state": state,
                    "description": description,
                    "resolution": {"type": "RETRY_LATER"},
                    "signals": [_signal_ref("tractionbattery-stateofcharge")],
                }
            ],
        },
        "meta": _meta(now, webhook_id, webhook_name),
    }


def verify_event(*, challenge: str, now: datetime, webhook_id: str, webhook_name: str) -> dict:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VERIFY",
        "data": {"challenge": challenge},
        "meta": _meta(now, webhook_id, webhook_name),
    }


def _vehicle(car: Car) -> dict:
    return {
        "id": car.vehicle_id,
        "make": car.model.make,
        "model": car.model.model,
        "year": car.model.year,
        "mode": "live",
        "powertrainType": "BEV",
    }


def _meta(now: datetime, webhook_id: str, webhook_name: str, **extra: object) -> dict:
    return {
        "version": PAYLOAD_VERSION,
        "deliveryId": str(uuid.uuid4()),
        "deliveredAt": _ms(now),
        "webhookId": webhook_id,
        "webhookName": webhook_name,
        **extra,
        "mode": "LIVE",
    }


@dataclass
class Delivery:
    """One POST of one event to the callback URL, with what came back."""

    event: dict
    url: str
    body: bytes
    signature: str
    status: int | None = None
    response_body: bytes = b""
    error: str | None = None
    attempts: list[int | None] = field(default_factory=list)

    @property
    def event_id(self) -> str:
        return self.event["eventId"]

    @property
    def delivery_id(self) -> str:
        return self.event["meta"]["deliveryId"]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def response_json(self) -> object:
        return json.loads(self.response_body or b"null")

    def summary(self) -> dict:
        return {
            "event_id": self.event_id,
            "delivery_id": self.delivery_id,
            "event_type": self.event["eventType"],
            "vehicle_id": self.event.get("vehicleId"),
            "url": self.url,
            "status": self.status,
            "error": self.error,
            "signature": self.signature,
            "body": self.body.decode(),
            "response_body": self.response_body.decode(errors="replace"),
        }


def encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def prepare(event: dict, *, url: str, management_token: str) -> Delivery:
    body = encode(event)
    return Delivery(event=event, url=url, body=body, signature=sign(management_token, body))


def post(delivery: Delivery, *, timeout_s: float = 10.0) -> Delivery:
    """POST the delivery's exact bytes with its signature; record status or the network error."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own callback
        delivery.url,
        data=delivery.body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "SC-Signature": delivery.signature,
            "User-Agent": USER_AGENT,
        },
    )
    try:
        # The URL is the webhook endpoint the simulator was configured with (http only).
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310  # nosec B310
            delivery.status = response.status
            delivery.response_body = response.read()
            delivery.error = None
    except urllib.error.HTTPError as exc:
        delivery.status = exc.code
        delivery.response_body = exc.read()
        delivery.error = None
    except (urllib.error.URLError, OSError) as exc:
        delivery.status = None
        delivery.error = str(exc)
    delivery.attempts.append(delivery.status)
    return delivery
