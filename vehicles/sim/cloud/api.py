"""Smartcar Vehicle API v2.0 on the simulated cars: the paths and JSON the `smartcar` SDK parses.

Called by app.py under the world lock, after faults (which may need an `await`) were applied.
Endpoint names are the SDK's method names (`vehicle.battery`, `vehicle.start_charge`,
`auth.exchange_refresh_token`, ...); request counters and fault patterns use them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import errors
from .cars import EPSILON_PCT, Car
from .grants import Grant
from .world import World

API_VERSION = "2.0"
KM_PER_MILE = 1.609344
ACTION_OK = {"status": "success", "message": "Successfully sent request to vehicle"}


@dataclass
class Reply:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as Smartcar writes `sc-data-age` and `sc-fetched-at`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Endpoint:
    name: str
    permission: str | None
    handler: Callable[[World, Car, Grant, dict, str], object]
    data: bool = True  # reads carry sc-data-age / sc-unit-system; actions do not


def _distance(km: float, unit: str) -> float:
    return round(km / KM_PER_MILE if unit == "imperial" else km, 1)


def _attributes(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    m = car.model
    return {"id": car.vehicle_id, "make": m.make, "model": m.model, "year": m.year}


def _vin(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"vin": car.vin}


def _battery(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    # percentRemaining is a fraction (0.42), as in Smartcar's API, not a percentage
    return {"percentRemaining": round(car.soc_pct / 100, 4), "range": _distance(car.range_km, unit)}


def _capacity(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"capacity": car.model.battery_kwh}


def _nominal_capacity(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    kwh = car.model.battery_kwh
    return {
        "availableCapacities": [{"capacity": kwh, "description": None}],
        "capacity": {"nominal": kwh, "source": "SMARTCAR"},
        "url": None,
    }


def _charge(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"isPluggedIn": car.plugged, "state": car.charge_state}


def _charge_limit(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"limit": round(car.charge_limit_pct / 100, 4)}


def _location(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"latitude": car.latitude, "longitude": car.longitude}


def _odometer(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    return {"distance": _distance(car.odometer_km, unit)}


def _permissions(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    limit = int(body.get("limit", 25))
    offset = int(body.get("offset", 0))
    return {
        "permissions": grant.scopes[offset : offset + limit],
        "paging": {"count": len(grant.scopes), "offset": offset},
    }


def _wake(world: World, car: Car) -> None:
    """Commands reach the car itself: a sleeping car is woken (and the wake counted)."""
    now = world.now()
    if car.is_asleep(now):
        car.wake_count += 1
    car.touch(now)


def _charge_command(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    action = body.get("action")
    if action not in ("START", "STOP"):
        raise errors.validation("action must be START or STOP")
    _wake(world, car)
    if action == "START":
        if not car.plugged:
            raise errors.vehicle_state(
                "CHARGING_PLUG_NOT_CONNECTED", "The charging cable is not plugged in."
            )
        if car.soc_pct >= car.charge_limit_pct - EPSILON_PCT:
            raise errors.vehicle_state(
                "FULLY_CHARGED", "The battery is already charged to its charge limit."
            )
        if not car.charging:
            car.start_charge()
            world._emit(car, "charging_started", ("charge-ischarging",), world.now())
    else:
        if car.power_kw == 0:
            raise errors.vehicle_state("NOT_CHARGING", "The vehicle is not currently charging.")
        car.power_kw = 0.0
        world._emit(car, "charging_stopped", ("charge-ischarging",), world.now())
    return ACTION_OK


def _set_charge_limit(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    limit = body.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0.5 <= limit <= 1:
        raise errors.validation("limit must be a number between 0.5 and 1.0")
    _wake(world, car)
    car.charge_limit_pct = round(float(limit) * 100, 2)
    if car.charging and car.soc_pct >= car.charge_limit_pct - EPSILON_PCT:
        car.power_kw = 0.0
    return ACTION_OK


def _disconnect(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    world.disconnect(grant, car.vehicle_id)
    return {"status": "success"}


def _subscribe(world: World, car: Car, grant: Grant, body: dict, unit: str) -> dict:
    if body.get("webhook_id") != world.webhook_id:
        raise errors.not_found(what="webhook")
    return {"webhookId": world.webhook_id, "vehicleId": car.vehicle_id}


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", ""): Endpoint("vehicle.attributes", "read_vehicle_info", _attributes),
    ("GET", "vin"): Endpoint("vehicle.vin", "read_vin", _vin),
    ("GET", "battery"): Endpoint("vehicle.battery", "read_battery", _battery),
    ("GET", "battery/capacity"): Endpoint("vehicle.battery_capacity", "read_battery", _capacity),
    ("GET", "battery/nominal_capacity"): Endpoint(
        "vehicle.nominal_capacity", "read_battery", _nominal_capacity
    ),
    ("GET", "charge"): Endpoint("vehicle.charge", "read_charge", _charge),
    ("GET", "charge/limit"): Endpoint("vehicle.get_charge_limit", "read_charge", _charge_limit),
    ("GET", "location"): Endpoint("vehicle.location", "read_location", _location),
    ("GET", "odometer"): Endpoint("vehicle.odometer", "read_odometer", _odometer),
    ("GET", "permissions"): Endpoint("vehicle.permissions", None, _permissions),
    ("POST", "charge/limit"): Endpoint(
        "vehicle.set_charge_limit", "control_charge", _set_charge_limit, data=False
    ),
    ("DELETE", "application"): Endpoint("vehicle.disconnect", None, _disconnect, data=False),
    ("POST", "webhooks"): Endpoint("vehicle.subscribe", None, _subscribe, data=False),
}
CHARGE_COMMAND = {
    "START": Endpoint("vehicle.start_charge", "control_charge", _charge_command, data=False),
    "STOP": Endpoint("vehicle.stop_charge", "control_charge", _charge_command, data=False),
}
BATCH = "vehicle.batch"
UNSUBSCRIBE = "vehicle.unsubscribe"


def vehicle_endpoint(method: str, subpath: str, body: dict) -> Endpoint | None:
    """The endpoint for `/v2.0/vehicles/{id}/{subpath}`; None for a path Smartcar lacks."""
    if method == "POST" and subpath == "charge":
        return CHARGE_COMMAND.get(body.get("action"), CHARGE_COMMAND["START"])
    if subpath.startswith("webhooks/") and method == "POST":
        body["webhook_id"] = subpath.removeprefix("webhooks/")
        return ENDPOINTS[("POST", "webhooks")]
    return ENDPOINTS.get((method, subpath))


def data_headers(world: World, car: Car, unit: str) -> dict[str, str]:
    now = world.now()
    return {
        "sc-data-age": iso(car.reported_at(now)),
        "sc-fetched-at": iso(now),
        "sc-unit-system": unit,
    }


def call(
    world: World, endpoint: Endpoint, car: Car | None, grant: Grant, body: dict, unit: str
) -> Reply:
    """Run one vehicle endpoint for an authenticated grant (404 for cars it does not hold)."""
    if car is None or not grant.holds(car.vehicle_id):
        raise errors.not_found("PATH", "vehicle")
    if endpoint.permission and endpoint.permission not in grant.scopes:
        raise errors.permission(endpoint.permission)
    payload = endpoint.handler(world, car, grant, body, unit)
    headers = data_headers(world, car, unit) if endpoint.data else {}
    return Reply(200, payload, headers)


def batch(world: World, car: Car | None, grant: Grant, body: dict, unit: str) -> Reply:
    """POST /batch: each GET path answered on its own, errors included, as the SDK unpacks them."""
    if car is None or not grant.holds(car.vehicle_id):
        raise errors.not_found("PATH", "vehicle")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise errors.validation("requests must be a non-empty list of {path}")
    responses = []
    for item in requests:
        path = str(item.get("path", "")) if isinstance(item, dict) else ""
        subpath = path.strip("/")
        endpoint = ENDPOINTS.get(("GET", subpath))
        try:
            if endpoint is None:
                raise errors.not_found("PATH", path)
            fault = world.take_fault(endpoint.name, car)
            if fault is not None and fault.error() is not None:
                raise fault.error()
            reply = call(world, endpoint, car, grant, {}, unit)
            world.count(endpoint.name, status=200, vehicle_id=car.vehicle_id)
            responses.append(
                {"path": path, "body": reply.body, "code": 200, "headers": reply.headers}
            )
        except errors.ApiError as exc:
            if endpoint is not None:
                world.count(endpoint.name, status=exc.status, vehicle_id=car.vehicle_id)
            responses.append(
                {
                    "path": path,
                    "body": exc.body(request_id()),
                    "code": exc.status,
                    "headers": exc.headers(),
                }
            )
    return Reply(200, {"responses": responses}, {"sc-unit-system": unit})


def request_id() -> str:
    return str(uuid.uuid4())


def vehicles_list(world: World, grant: Grant, query: dict[str, str]) -> Reply:
    try:
        limit = int(query.get("limit", 10))
        offset = int(query.get("offset", 0))
    except ValueError as exc:
        raise errors.validation("limit and offset must be integers") from exc
    ids = [c.vehicle_id for c in world.cars if grant.holds(c.vehicle_id)]
    page = ids[offset : offset + limit]
    return Reply(200, {"vehicles": page, "paging": {"count": len(ids), "offset": offset}})


def management_authorized(world: World, authorization: str | None) -> bool:
    """Management API auth: `Basic base64("default:" + application management token)`."""
    if not authorization or not authorization.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, _, amt = decoded.partition(":")
    return hmac.compare_digest(amt, world.management_token)
