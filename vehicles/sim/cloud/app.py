"""The ASGI application: one origin serving Connect, auth, the Vehicle API and `/_sim/` controls.

    GET/POST /oauth/authorize              consent page (Connect origin)
    POST     /oauth/token  (also POST /)   token endpoint (SDK's AUTH_ORIGIN is the full URL)
    /v2.0/user, /v2.0/vehicles[/{id}/...]  Vehicle API (API origin)
    /v2.0/management/connections/          Management API (AMT Basic auth)
    /_sim/...                              controls, `Authorization: Bearer <management token>`

A plain ASGI callable served by uvicorn; no web framework, so the package needs nothing beyond
the standard library and uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from . import api, errors, oauth
from .cars import Car
from .control import Controller
from .faults import Fault
from .world import World

log = logging.getLogger("vehicles.sim.cloud")

VEHICLE_PATH = re.compile(r"^/v(?P<version>[0-9.]+)/vehicles/(?P<id>[^/]+)(?:/(?P<rest>.*))?$")
SIM_CAR_PATH = re.compile(r"^/_sim/cars/(?P<key>[^/]+)/(?P<what>state|power)$")
MAX_BODY = 1 << 20


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        if not self.body:
            return {}
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), headers=dict(headers or {}))

    async def send(self, send: Callable[[dict], Awaitable[None]]) -> None:
        headers = [(b"content-type", self.content_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def api_error(exc: errors.ApiError, request_id: str) -> Response:
    headers = {"sc-request-id": request_id, **exc.headers()}
    return Response.json(exc.status, exc.body(request_id), headers)


class CloudApp:
    """ASGI callable. `tick_s` > 0 runs a background loop that advances real-time simulation and
    POSTs queued webhooks (used by the CLI with auto webhooks)."""

    def __init__(self, world: World, *, tick_s: float = 0.0) -> None:
        self.world = world
        self.control = Controller(world)
        self.tick_s = tick_s
        self._ticker: asyncio.Task | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await Response.json(413, {"error": "request too large"}).send(send)
                return
            if not message.get("more_body"):
                break
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        request = Request(scope["method"], scope["path"], query, headers, body)
        try:
            response = await self.route(request)
        except Exception:
            log.exception("simulated cloud failed on %s %s", request.method, request.path)
            response = api_error(errors.server(500), api.request_id())
        await response.send(send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.tick_s > 0:
                    self._ticker = asyncio.create_task(self._tick())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._ticker:
                    self._ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._ticker
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.world.sync()
                await asyncio.to_thread(self.control.deliver_outbox)
            except Exception:
                log.exception("simulation tick failed")

    # -- routing --------------------------------------------------------------------------------
    async def route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path.startswith("/_sim/"):
            return await self._sim(request)
        if path == "/oauth/authorize":
            return self._connect(request)
        if method == "POST" and path in ("/oauth/token", "/"):
            return self._token(request)
        if path in ("/", "/healthz") and method == "GET":
            return Response.json(200, self._index())
        if path.startswith("/v"):
            return await self._api(request)
        return Response.json(404, {"error": "not_found"})

    def _index(self) -> dict:
        return {
            "service": "ChargeScape simulated vehicle cloud (Smartcar-compatible)",
            "cars": len(self.world.cars),
            "now": self.world.now().isoformat(),
            "docs": "docs/simulators.md",
        }

    def _page(self, page: oauth.Page) -> Response:
        headers = {"content-security-policy": oauth.CSP, "referrer-policy": "no-referrer"}
        if page.location:
            return Response(page.status, b"", "text/plain", {**headers, "location": page.location})
        if page.json is not None:
            return Response.json(page.status, page.json)
        return Response(
            page.status, (page.html or "").encode(), "text/html; charset=utf-8", headers
        )

    def _connect(self, request: Request) -> Response:
        with self.world.lock:
            self.world._sync()
            if request.method == "GET":
                page = oauth.authorize(self.world, request.query)
                self.world.count("connect.authorize", status=page.status)
            elif request.method == "POST":
                page = oauth.decide(self.world, request.form())
                self.world.count("connect.consent", status=page.status)
            else:
                return Response.json(405, {"error": "method_not_allowed"})
        return self._page(page)

    def _token(self, request: Request) -> Response:
        form = request.form()
        name = oauth.token_endpoint_name(form)
        with self.world.lock:
            self.world._sync()
            fault = self.world.take_fault(name, None)
            try:
                if fault is not None and fault.kind in ("server_error", "rate_limit"):
                    status = fault.status if fault.kind == "server_error" else 429
                    raise errors.OAuthError(status, "server_error", "Try again later.")
                page = oauth.token(self.world, request.headers.get("authorization"), form)
            except errors.OAuthError as exc:
                self.world.count(name, status=exc.status)
                headers = (
                    {"retry-after": str(fault.retry_after_s)} if fault and exc.status == 429 else {}
                )
                return Response.json(exc.status, exc.body(), headers)
            self.world.count(name, status=page.status)
        return self._page(page)

    async def _api(self, request: Request) -> Response:
        request_id = api.request_id()
        method, path = request.method, request.path
        unit = "imperial" if request.headers.get("sc-unit-system") == "imperial" else "metric"
        try:
            body = request.json() if method in ("POST", "PUT") else dict(request.query)
        except ValueError:
            return api_error(errors.validation("The request body must be JSON."), request_id)
        match = VEHICLE_PATH.match(path)
        version = match["version"] if match else path.split("/")[1].removeprefix("v")
        if version != api.API_VERSION:
            return api_error(errors.not_found("VERSION", f"version {version}"), request_id)
        if match is None:
            return self._top_level(request, request_id)

        car = self.world.car_by_id(match["id"])
        rest = (match["rest"] or "").strip("/")
        if rest == "batch" and method == "POST":
            name, endpoint = api.BATCH, None
        elif rest.startswith("webhooks/") and method == "DELETE":
            name, endpoint = api.UNSUBSCRIBE, None
        else:
            endpoint = api.vehicle_endpoint(method, rest, body)
            if endpoint is None:
                return api_error(errors.not_found("PATH", path), request_id)
            name = endpoint.name

        with self.world.lock:
            self.world._sync()
            fault = self.world.take_fault(name, car)
        hold = fault if fault is not None and fault.kind == "hold" else None
        answer = (request, request_id, name, endpoint, car, rest, body, unit)
        if hold is not None and hold.effect == "before":
            # The car acts now; only the answer waits (a client killed meanwhile never hears it).
            response = self._vehicle_call(*answer)
            await self._hold(hold)
            return response
        if hold is not None:
            await self._hold(hold)
        elif fault is not None and fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        response = self._vehicle_call(*answer, fault)
        events = self.world.outbox and self.world.auto_webhooks
        if events:
            await asyncio.to_thread(self.control.deliver_outbox)
        return response

    def _vehicle_call(
        self,
        request: Request,
        request_id: str,
        name: str,
        endpoint: api.Endpoint | None,
        car: Car | None,
        rest: str,
        body: dict,
        unit: str,
        fault: Fault | None = None,
    ) -> Response:
        """Answer one Vehicle API request under the world lock (a fault's error first)."""
        vehicle_id = car.vehicle_id if car else None
        with self.world.lock:
            self.world._sync()
            try:
                if fault is not None and fault.error() is not None:
                    raise fault.error()
                if name == api.UNSUBSCRIBE:
                    reply = self._unsubscribe(request, car, rest)
                else:
                    grant = self.world.authenticate(request.headers.get("authorization"))
                    if name == api.BATCH:
                        reply = api.batch(self.world, car, grant, body, unit)
                    else:
                        reply = api.call(self.world, endpoint, car, grant, body, unit)
            except errors.ApiError as exc:
                self.world.count(name, status=exc.status, vehicle_id=vehicle_id, car=car)
                return api_error(exc, request_id)
            self.world.count(name, status=reply.status, vehicle_id=vehicle_id, car=car)
        return Response.json(
            reply.status, reply.body, {"sc-request-id": request_id, **reply.headers}
        )

    async def _hold(self, fault: Fault) -> None:
        """Park a request until the hold is released or its `delay_s` cap passes."""
        with self.world.lock:
            fault.held += 1
        try:
            deadline = asyncio.get_running_loop().time() + fault.delay_s
            while not fault.released and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            with self.world.lock:
                fault.held -= 1

    def _unsubscribe(self, request: Request, car: object, rest: str) -> api.Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, self.world.management_token):
            raise errors.authentication()
        if car is None or rest.removeprefix("webhooks/") != self.world.webhook_id:
            raise errors.not_found("PATH", "webhook subscription")
        return api.Reply(200, {"status": "success"})

    def _top_level(self, request: Request, request_id: str) -> Response:
        rest = request.path.split("/", 2)[2].strip("/") if request.path.count("/") >= 2 else ""
        names = {"user": "user", "vehicles": "vehicles", "management/connections": "management"}
        name = names.get(rest)
        if name is None:
            return api_error(errors.not_found("PATH", request.path), request_id)
        with self.world.lock:
            self.world._sync()
            try:
                fault = self.world.take_fault(name, None)
                if fault is not None and fault.error() is not None:
                    raise fault.error()
                reply = self._top_level_reply(name, request)
            except errors.ApiError as exc:
                self.world.count(name, status=exc.status)
                return api_error(exc, request_id)
            self.world.count(name, status=reply.status)
        return Response.json(reply.status, reply.body, {"sc-request-id": request_id})

    def _top_level_reply(self, name: str, request: Request) -> api.Reply:
        if name == "management":
            if not api.management_authorized(self.world, request.headers.get("authorization")):
                raise errors.authentication()
            vehicle_id = request.query.get("vehicle_id")
            connections = self.world.connections(vehicle_id)
            if request.method == "DELETE":
                for grant in self.world.grants.values():
                    if vehicle_id is None:
                        grant.revoked = True
                    elif grant.holds(vehicle_id):
                        self.world.disconnect(grant, vehicle_id)
                return api.Reply(200, {"connections": connections})
            return api.Reply(200, {"connections": connections, "paging": {"cursor": None}})
        grant = self.world.authenticate(request.headers.get("authorization"))
        if name == "user":
            return api.Reply(200, {"id": grant.user_id})
        return api.vehicles_list(self.world, grant, request.query)

    # -- /_sim/ controls ------------------------------------------------------------------------
    async def _sim(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, self.world.management_token):
            return Response.json(401, {"error": "Bearer <management token> required"})
        try:
            return await self._sim_route(request, request.json())
        except KeyError as exc:
            return Response.json(404, {"error": f"not found: {exc.args[0]}"})
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})

    async def _sim_route(self, request: Request, data: dict) -> Response:
        c, method, path = self.control, request.method, request.path
        if (match := SIM_CAR_PATH.match(path)) and method == "POST":
            if match["what"] == "power":
                return Response.json(
                    200, c.set_power_kw(match["key"], float(data["power_kw"])).as_dict()
                )
            state = await asyncio.to_thread(c.set_state, match["key"], **data)
            return Response.json(200, state.as_dict())
        route = (method, path)
        if route == ("GET", "/_sim/state"):
            return Response.json(200, self._sim_state())
        if route == ("POST", "/_sim/time/advance"):
            events = await asyncio.to_thread(c.advance, float(data["seconds"]))
            now = self.world.now().isoformat()
            return Response.json(200, {"now": now, "events": [e.as_dict() for e in events]})
        if route == ("POST", "/_sim/faults"):
            kind = data.pop("kind")
            return Response.json(201, c.inject_fault(kind, **data).as_dict())
        if route == ("DELETE", "/_sim/faults"):
            c.clear_faults()
            return Response.json(200, {"faults": []})
        if route == ("GET", "/_sim/holds"):
            return Response.json(200, {"held": c.held_count()})
        if route == ("POST", "/_sim/holds/release"):
            return Response.json(200, {"released": c.release_holds(data.get("fault_id"))})
        if route == ("GET", "/_sim/commands"):
            return Response.json(200, c.commands())
        if route == ("POST", "/_sim/tokens/revoke"):
            return Response.json(200, {"revoked": c.revoke_tokens(data.get("vin"))})
        if route == ("POST", "/_sim/tokens/expire"):
            return Response.json(200, {"expired": c.expire_access_tokens()})
        if route == ("GET", "/_sim/requests"):
            return Response.json(200, c.request_counts())
        if route == ("DELETE", "/_sim/requests"):
            c.reset_request_counts()
            return Response.json(200, {})
        return await self._sim_webhooks(route, data)

    async def _sim_webhooks(self, route: tuple[str, str], data: dict) -> Response:
        c = self.control
        if route == ("POST", "/_sim/webhooks/trigger"):
            key = data.pop("vin")
            if data.pop("event_type", "VEHICLE_STATE") == "VEHICLE_ERROR":
                delivery = await asyncio.to_thread(c.trigger_error_webhook, key, **data)
            else:
                delivery = await asyncio.to_thread(c.trigger_webhook, key, **data)
            return Response.json(200, delivery.summary())
        if route == ("POST", "/_sim/webhooks/replay"):
            delivery = await asyncio.to_thread(c.replay_webhook, data["delivery_id"])
            return Response.json(200, delivery.summary())
        if route == ("POST", "/_sim/webhooks/retry"):
            delivery = await asyncio.to_thread(c.retry_webhook, data["delivery_id"])
            return Response.json(200, delivery.summary())
        if route == ("POST", "/_sim/webhooks/verify"):
            result = await asyncio.to_thread(c.verify_webhook, url=data.get("url"))
            return Response.json(200, result.as_dict())
        if route == ("GET", "/_sim/webhooks/deliveries"):
            return Response.json(200, [d.summary() for d in c.deliveries()])
        return Response.json(404, {"error": "no such control"})

    def _sim_state(self) -> dict:
        w = self.world
        with w.lock:
            return {
                "now": w.now().isoformat(),
                "user_id": w.user_id,
                "webhook": {"id": w.webhook_id, "url": w.webhook_url, "auto": w.auto_webhooks},
                "cars": [s.as_dict() for s in w.car_states()],
                "faults": [f.as_dict() for f in w.faults],
                "connections": w.connections(),
            }
