"""Fixtures for the OCPP tests: a real OCPP process (uvicorn serving chargescape.asgi's
ocpp_application in a thread, on a free loopback port, against the test database and the real
Redis channel layer) and provisioned chargers with unique ids (test files run in parallel)."""

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from asgiref.sync import sync_to_async

from chargescape.management.commands.runstack import OCPP_WS_MAX_SIZE
from vehicles.chargers import services
from vehicles.chargers.hub import LOG_FLUSH_S
from vehicles.chargers.models import Charger
from vehicles.sim.chargers import ManualClock, SimulatedCharger

SCENARIO_TIMEOUT_S = 30  # every scenario is bounded; a hang fails instead of stalling the suite


@pytest.fixture(scope="module")
def ocpp_url(django_db_setup, django_db_blocker):
    """ws://127.0.0.1:<free port>/ocpp — the OCPP ASGI app under uvicorn, for this test module."""
    from chargescape.asgi import ocpp_application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        ocpp_application,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
        ws_max_size=OCPP_WS_MAX_SIZE,  # as `make run` serves it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"ws://127.0.0.1:{port}/ocpp"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = SCENARIO_TIMEOUT_S) -> Any:
    """Run an async scenario from a synchronous test, bounded in time."""

    async def bounded():
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


def db(function: Callable) -> Callable:
    """ORM and service calls inside scenarios: `await db(fn)(...)`. In a thread of its own, not
    asgiref's single thread-sensitive one: the in-process OCPP consumers need that one, and a
    service blocked on a charger's reply there would starve the consumer relaying it."""
    return sync_to_async(function, thread_sensitive=False)


async def refreshed(charger: Charger) -> Charger:
    return await db(Charger.objects.get)(pk=charger.pk)


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll a database condition the OCPP process reaches asynchronously (presence, the log)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await db(predicate)()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def provision(transactional_db):
    """provision(v2g=False) -> (charger, authorization key), with an id unique across workers."""

    def make(*, v2g: bool = False, max_power_kw: float = 11) -> tuple[Charger, str]:
        result = services.provision_charger(
            charge_point_id=f"T-{uuid.uuid4().hex[:12]}", v2g_capable=v2g, max_power_kw=max_power_kw
        )
        return result.charger, result.authorization_key

    return make


@pytest.fixture
def simulator(ocpp_url, provision):
    """simulator(version, v2g=False) -> (charger, SimulatedCharger on a ManualClock)."""

    def make(version: str, *, v2g: bool = False) -> tuple[Charger, SimulatedCharger]:
        charger, key = provision(v2g=v2g)
        sim = SimulatedCharger(
            charge_point_id=charger.charge_point_id,
            authorization_key=key,
            version=version,
            url=ocpp_url,
            clock=ManualClock(),
            v2g=v2g,
        )
        return charger, sim

    return make


async def raw_connect(url: str, charge_point_id: str, key: str, subprotocol: str, **kwargs: Any):
    """A bare websocket client (no ocpp library): sends and reads frames exactly as written."""
    import base64

    import websockets

    token = base64.b64encode(f"{charge_point_id}:{key}".encode()).decode()
    return await websockets.connect(
        f"{url}/{charge_point_id}",
        subprotocols=[subprotocol],
        additional_headers={"Authorization": f"Basic {token}"},
        open_timeout=5,
        **kwargs,
    )


async def recv_json(socket: Any, timeout: float = 5.0) -> Any:
    import json

    async with asyncio.timeout(timeout):
        return json.loads(await socket.recv())


@pytest.fixture(autouse=True)
def quiet_ocpp_server(request):
    """After a test that talks to the module's OCPP server, wait until every charger socket is
    closed server-side and the hub's batched log has flushed, before the database is flushed:
    a disconnect handler still writing while TRUNCATE runs deadlocks the teardown."""
    if "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")  # so its flush runs after this teardown
    yield
    deadline = time.monotonic() + 5
    while Charger.objects.filter(is_connected=True).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(3 * LOG_FLUSH_S)
