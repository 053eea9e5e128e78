"""A simulated OpenADR 3.0.1 VTN: real HTTP on loopback, the specification's REST shapes.

    POST /auth/token                      OAuth 2 client credentials (HTTP Basic or form)
    GET  /auth/server                     {"tokenURL": …}
    /programs[/{id}]   /events[/{id}]     BL clients write, VEN clients read
    /reports[/{id}]    /vens[/{id}]       VEN clients write their own reports and VEN object
    /subscriptions                        always empty (the VEN polls)
    /_sim/state  /_sim/faults            controls and what happened (BL token)

Objects are JSON as OpenADR 3.0.1 defines them (camelCase, `id`, `createdDateTime`,
`modificationDateTime`, `objectType`); lists take `skip`/`limit` (default 50) and the filters
the spec names (`programID`, `eventID`, `clientName`, `venName`). Errors are the spec's Problem
JSON `{type, title, status, detail}`. Faults for tests and the demo: expire every token (the next
call is 401 until the client fetches a new one) and answer 429 with Retry-After `count` times.

Used by the OpenADR round-trip tests (`SimulatedVtn`, a thread) and by `make run`
(`python -m programs.sim.vtn --demo`: a demo program and an evening capacity-limit event).
Standard library and uvicorn only: it knows nothing of ChargeScape.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import secrets
import socket
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import uvicorn

MAX_BODY = 1 << 20
TOKEN_SECONDS = 3600
COLLECTIONS = {"programs": "PROGRAM", "events": "EVENT", "reports": "REPORT", "vens": "VEN"}
# Who may do what (OpenADR 3.0.1 §7, simplified to the two roles a VTN must have).
WRITERS = {"programs": {"bl"}, "events": {"bl"}, "reports": {"ven"}, "vens": {"bl", "ven"}}
FILTERS = {
    "programID": "programID",
    "eventID": "eventID",
    "clientName": "clientName",
    "venName": "venName",
}


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", headers: dict | None = None):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}


def public(item: dict) -> dict:
    return {key: value for key, value in item.items() if not key.startswith("_")}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Vtn:
    """The VTN's state: clients, tokens, objects and faults; thread-safe."""

    clients: dict[str, tuple[str, str]]  # client id -> (secret, role "ven" | "bl")
    objects: dict[str, dict[str, dict]] = field(
        default_factory=lambda: {name: {} for name in COLLECTIONS}
    )
    tokens: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # → client, role, exp
    rate_limits: list[float] = field(default_factory=list)  # Retry-After of each coming 429
    log: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- controls (also over HTTP under /_sim/) --------------------------------------------------
    def expire_tokens(self) -> int:
        with self.lock:
            count = len(self.tokens)
            self.tokens.clear()
            return count

    def rate_limit(self, *, count: int = 1, retry_after_s: float = 5) -> None:
        with self.lock:
            self.rate_limits.extend([retry_after_s] * count)

    def list(self, collection: str, **filters: str) -> list[dict]:
        """Stored objects (with `_client`, who wrote them) matching `filters`."""
        with self.lock:
            return [
                dict(item)
                for item in self.objects[collection].values()
                if all(item.get(key) == value for key, value in filters.items())
            ]

    def requests(self, path_prefix: str = "") -> list[dict]:
        with self.lock:
            return [entry for entry in self.log if entry["path"].startswith(path_prefix)]

    def create(self, collection: str, body: dict, *, client: str = "") -> dict:
        """Store a new object as the VTN does (ids and timestamps are the VTN's)."""
        stamp = now_iso()
        with self.lock:
            item = {
                **{k: v for k, v in body.items() if k not in ("id", "createdDateTime")},
                "id": str(next(self.ids)),
                "createdDateTime": stamp,
                "modificationDateTime": stamp,
                "objectType": COLLECTIONS[collection],
            }
            if client:
                item["_client"] = client  # who wrote it (never shown)
            self.objects[collection][item["id"]] = item
            return public(item)

    # -- OAuth ------------------------------------------------------------------------------------
    def issue_token(self, headers: dict[str, str], form: dict[str, str]) -> dict:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if headers.get("authorization", "").lower().startswith("basic "):
            decoded = base64.b64decode(headers["authorization"][6:]).decode()
            client_id, _, secret = decoded.partition(":")
        if form.get("grant_type") != "client_credentials":
            raise Problem(400, "unsupported_grant_type")
        known = self.clients.get(client_id)
        if known is None or not secrets.compare_digest(known[0], secret):
            raise Problem(401, "invalid_client", "Unknown client or wrong secret.")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (client_id, known[1], time.time() + TOKEN_SECONDS)
        return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS}

    def caller(self, headers: dict[str, str]) -> tuple[str, str]:
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with self.lock:
            found = self.tokens.get(token)
        if found is None or found[2] < time.time():
            raise Problem(
                401,
                "Unauthorized",
                "Missing, unknown or expired access token.",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return found[0], found[1]

    # -- REST --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Any:
        parts = [part for part in path.split("/") if part]
        if parts == ["auth", "server"] and method == "GET":
            return 200, {"tokenURL": "/auth/token"}
        if parts == ["auth", "token"] and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            return 200, self.issue_token(headers, form)
        client, role = self.caller(headers)
        with self.lock:
            if self.rate_limits:
                retry = self.rate_limits.pop(0)
                raise Problem(
                    429, "Too Many Requests", "Slow down.", {"Retry-After": str(int(retry))}
                )
        if parts and parts[0] == "_sim":
            return self.control(method, parts[1:], role, body)
        if parts == ["subscriptions"]:
            return 200, []
        if not parts or parts[0] not in COLLECTIONS or len(parts) > 2:
            raise Problem(404, "Not Found", f"No such resource: {path}")
        collection = parts[0]
        if method != "GET" and role not in WRITERS[collection]:
            raise Problem(403, "Forbidden", f"A {role.upper()} client may not write {collection}.")
        if len(parts) == 1:
            if method == "GET":
                return 200, self.search(collection, query, client, role)
            if method == "POST":
                return 201, self.create(collection, self.body(body), client=client)
            raise Problem(405, "Method Not Allowed")
        item_id = parts[1]
        with self.lock:
            item = self.objects[collection].get(item_id)
        if item is None or not self.visible(collection, item, client, role):
            raise Problem(404, "Not Found", f"No {collection[:-1]} {item_id}.")
        if method == "GET":
            return 200, public(item)
        if method == "PUT":
            update = self.body(body)
            with self.lock:
                item = {
                    **item,
                    **update,
                    "id": item_id,
                    "createdDateTime": item["createdDateTime"],
                    "modificationDateTime": now_iso(),
                    "objectType": COLLECTIONS[collection],
                }
                self.objects[collection][item_id] = item
            return 200, public(item)
        if method == "DELETE":
            with self.lock:
                self.objects[collection].pop(item_id, None)
            return 200, public(item)
        raise Problem(405, "Method Not Allowed")

    def body(self, raw: bytes) -> dict:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise Problem(400, "Bad Request", "The body is not JSON.") from None
        if not isinstance(data, dict):
            raise Problem(400, "Bad Request", "Expected a JSON object.")
        return data

    def visible(self, collection: str, item: dict, client: str, role: str) -> bool:
        """A VEN sees only its own reports and its own VEN object."""
        if role == "bl":
            return True
        if collection in ("reports", "vens"):
            return item.get("_client") == client
        return True

    def search(self, collection: str, query: dict, client: str, role: str) -> list[dict]:
        try:
            skip, limit = int(query.get("skip", 0)), int(query.get("limit", 50))
        except ValueError:
            raise Problem(400, "Bad Request", "skip and limit are integers.") from None
        filters = {FILTERS[key]: value for key, value in query.items() if key in FILTERS}
        items = [
            item
            for item in self.list(collection, **filters)
            if self.visible(collection, item, client, role)
        ]
        items.sort(key=lambda item: int(item["id"]))
        return [public(item) for item in items][skip : skip + max(0, min(limit, 50))]

    def control(self, method: str, parts: list[str], role: str, body: bytes) -> Any:
        if role != "bl":
            raise Problem(403, "Forbidden", "Controls need a BL client.")
        if parts == ["state"] and method == "GET":
            with self.lock:
                return 200, {
                    name: [public(item) for item in items.values()]
                    for name, items in self.objects.items()
                }
        if parts == ["faults"] and method == "POST":
            fault = self.body(body)
            if fault.get("kind") == "expire_tokens":
                return 200, {"expired": self.expire_tokens()}
            if fault.get("kind") == "rate_limit":
                self.rate_limit(
                    count=int(fault.get("count", 1)),
                    retry_after_s=float(fault.get("retry_after_s", 5)),
                )
                return 201, fault
            raise Problem(400, "Bad Request", "kind: expire_tokens or rate_limit")
        raise Problem(404, "Not Found")


class VtnApp:
    """The ASGI callable (no framework)."""

    def __init__(self, vtn: Vtn) -> None:
        self.vtn = vtn

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY or not message.get("more_body"):
                break
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        extra: dict[str, str] = {}
        try:
            status, payload = self.vtn.handle(scope["method"], scope["path"], query, headers, body)
            content_type = "application/json"
        except Problem as problem:
            status, extra, content_type = (
                problem.status,
                problem.headers,
                "application/problem+json",
            )
            payload = {
                "type": "about:blank",
                "title": problem.title,
                "status": problem.status,
                "detail": problem.detail,
            }
        except Exception as exc:  # a simulator bug must still answer
            status, content_type = 500, "application/problem+json"
            payload = {
                "type": "about:blank",
                "title": "Internal Server Error",
                "status": 500,
                "detail": str(exc),
            }
        with self.vtn.lock:
            self.vtn.log.append(
                {
                    "at": now_iso(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                }
            )
            del self.vtn.log[:-500]
        data = json.dumps(payload).encode()
        response_headers = [(b"content-type", content_type.encode())]
        response_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": data})


class SimulatedVtn(Vtn):
    """The VTN on a loopback port in a background thread, for tests: `with SimulatedVtn(...) as
    vtn: vtn.url, vtn.token_url`."""

    def __init__(
        self, *, clients: dict[str, tuple[str, str]], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(clients=clients)
        self.host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self._socket is not None, "not started"  # noqa: S101
        return f"http://{self.host}:{self._socket.getsockname()[1]}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/auth/token"

    def start(self) -> SimulatedVtn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(64)
        self._socket = sock
        config = uvicorn.Config(
            VtnApp(self),
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sim-vtn", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated VTN did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> SimulatedVtn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- The demo ---------------------------------------------------------------------------------


def seed_demo(
    vtn: Vtn, *, time_zone: str = "America/Los_Angeles", now: datetime | None = None
) -> None:
    """A demo program and an evening event: import capacity limited to 20 kW, 19:00–20:30
    local tonight (tomorrow once tonight's is less than 90 minutes away), in two intervals."""
    zone = zoneinfo.ZoneInfo(time_zone)
    now = now or datetime.now(UTC)
    day = now.astimezone(zone).date()
    start = datetime(day.year, day.month, day.day, 19, tzinfo=zone)
    if start - now < timedelta(minutes=90):
        start += timedelta(days=1)
    program = vtn.create(
        "programs",
        {
            "programName": "evening-peak",
            "programLongName": "Golden Gate Power evening peak relief",
            "retailerName": "Golden Gate Power",
            "programType": "DYNAMIC_CAPACITY",
            "country": "US",
            "principalSubdivision": "CA",
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "IMPORT_CAPACITY_LIMIT",
                    "units": "KW",
                }
            ],
        },
    )
    vtn.create(
        "events",
        {
            "programID": program["id"],
            "eventName": "evening-peak-limit",
            "priority": 1,
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "IMPORT_CAPACITY_LIMIT",
                    "units": "KW",
                }
            ],
            "reportDescriptors": [
                {"payloadType": "USAGE", "readingType": "SUMMED", "units": "KWH"}
            ],
            "intervalPeriod": {"start": start.astimezone(UTC).isoformat(), "duration": "PT45M"},
            "intervals": [
                {"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [20.0]}]},
                {"id": 1, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [25.0]}]},
            ],
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m programs.sim.vtn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument(
        "--ven", action="append", default=[], metavar="ID:SECRET", help="a VEN client (repeatable)"
    )
    parser.add_argument(
        "--bl",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="a business-logic client (repeatable)",
    )
    parser.add_argument("--demo", action="store_true", help="publish the demo program and event")
    parser.add_argument("--timezone", default="America/Los_Angeles", help="the demo's zone")
    args = parser.parse_args(argv)
    clients = {}
    for role in ("ven", "bl"):
        for pair in getattr(args, role):
            client_id, _, secret = pair.partition(":")
            if not secret:
                parser.error(f"--{role} takes ID:SECRET")
            clients[client_id] = (secret, role)
    vtn = Vtn(clients=clients)
    if args.demo:
        seed_demo(vtn, time_zone=args.timezone)
    print(
        f"simulated OpenADR 3.0.1 VTN at http://{args.host}:{args.port} "
        f"(token URL /auth/token; {len(clients)} clients)",
        flush=True,
    )
    uvicorn.run(VtnApp(vtn), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
