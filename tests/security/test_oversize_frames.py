"""Oversized and malformed websocket frames against the real server processes (issue #11).

The web and OCPP processes are started exactly as `make run` starts them (runstack.processes: the
same uvicorn command line, --ws-max-size included) against the test database, so the tests see
only committed rows (`transactional_db`). Each test sends 2 MiB frames on fresh connections and
checks that every one is closed with 1009 (message too big), that the server's peak resident
memory grew by less than the frames would take if the server had buffered them, and that a
normal frame on a new connection is still answered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from django.conf import settings
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from accounts.notifications.models import Notification
from chargescape.management.commands.runstack import (
    OCPP_WS_MAX_SIZE,
    WEB_WS_MAX_SIZE,
    processes,
)
from tests.database import database_url
from tests.factories import UserFactory
from vehicles.chargers import services as charger_services

pytestmark = pytest.mark.stack

FRAME_BYTES = 2 * 1024 * 1024
FRAMES = 20
# Buffering even half of the 20 frames would take 20 MiB; a server that refuses them from the
# header grows by a few connection objects. (Peak RSS: VmHWM after clearing it.)
MAX_PEAK_GROWTH = 16 * 1024 * 1024
MESSAGE_TOO_BIG = 1009
ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited with {process.returncode}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("server did not start listening")


def server(name: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """Run runstack's `name` process (web or ocpp) on a free port against the test database."""
    web_port, ocpp_port = free_port(), free_port()
    port = web_port if name == "web" else ocpp_port
    command = processes("127.0.0.1", web_port, ocpp_port)[name]
    process = subprocess.Popen(  # noqa: S603 — our own command line
        command,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(process, port)
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def web_server(transactional_db) -> Iterator[tuple[subprocess.Popen, int]]:
    yield from server("web")


@pytest.fixture
def ocpp_server(transactional_db) -> Iterator[tuple[subprocess.Popen, int]]:
    yield from server("ocpp")


def clear_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def send_oversized(connect, count: int) -> list[int | None]:
    """Open `count` connections, send one 2 MiB text frame on each (all at once), and return the
    close code the server gave each."""

    async def one() -> int | None:
        ws = await connect()
        try:
            await ws.send("[" + " " * (FRAME_BYTES - 2) + "]")
            async with asyncio.timeout(15):
                await ws.recv()  # the server answers nothing: this ends with the close
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        finally:
            await ws.close()
        return None

    return await asyncio.gather(*(one() for _ in range(count)))


def run(coroutine) -> object:
    async def bounded():
        async with asyncio.timeout(90):
            return await coroutine

    return asyncio.run(bounded())


def test_max_sizes_are_set_on_the_command_lines():
    """Both servers run with an explicit websocket message limit, far below uvicorn's 16 MiB."""
    commands = processes("127.0.0.1", 8000, 8001)
    for name, limit in (("web", WEB_WS_MAX_SIZE), ("ocpp", OCPP_WS_MAX_SIZE)):
        command = commands[name]
        assert command[command.index("--ws-max-size") + 1] == str(limit)
        assert limit < FRAME_BYTES


def test_owner_socket_closes_oversized_frames_and_memory_stays_flat(web_server):
    """20 owner sockets each sending a 2 MiB frame are all closed with 1009; the web process's
    peak memory grows by less than buffering them would take; a deep-JSON frame under the limit
    is ignored without killing the socket; a normal request on a new socket is still answered."""
    process, port = web_server
    owner = UserFactory()
    notification = Notification.objects.create(
        owner=owner,
        kind=Notification._meta.get_field("kind").choices[0][0],
        title="Charged",
        body="Your car is ready.",
        url="/",
        created_at=timezone.now(),
    )
    browser = Client()
    browser.force_login(owner)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    url = f"ws://127.0.0.1:{port}/ws/live/"
    headers = {"Cookie": cookie}
    origin = f"http://127.0.0.1:{port}"

    def connect():
        return websockets.connect(
            url, additional_headers=headers, origin=origin, open_timeout=10, max_size=None
        )

    async def replay(ws) -> dict:
        await ws.send(json.dumps({"notifications_after": 0}))
        async with asyncio.timeout(10):
            return json.loads(await ws.recv())

    async def warm_up() -> None:
        async with connect() as ws:
            assert (await replay(ws))["notification"]["id"] == notification.pk

    run(warm_up())  # imports, database connection, channel layer: all paid before measuring
    clear_peak(process.pid)
    before = peak_rss(process.pid)
    codes = run(send_oversized(connect, FRAMES))
    growth = peak_rss(process.pid) - before

    assert codes == [MESSAGE_TOO_BIG] * FRAMES
    assert growth < MAX_PEAK_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert process.poll() is None

    async def afterwards() -> None:
        async with connect() as ws:
            # Malformed frames under the size limit are ignored; the socket stays useful.
            await ws.send("[" * 30_000 + "]" * 30_000)  # 60 KB, nested far deeper than json allows
            await ws.send(b"\x00\x01binary")
            await ws.send('{"notifications_after": NaN}')
            await ws.send(json.dumps({"notifications_after": 2**80}))
            assert (await replay(ws))["notification"]["id"] == notification.pk

    run(afterwards())


def test_ocpp_socket_closes_oversized_frames_and_memory_stays_flat(ocpp_server):
    """20 charger sockets each sending a 2 MiB frame are all closed with 1009; the OCPP process's
    peak memory grows by less than buffering them would take; a BootNotification on a new socket
    is still answered."""
    process, port = ocpp_server
    # One charger per socket: a second socket of the same charger would supersede the first.
    chargers = [
        charger_services.provision_charger(
            charge_point_id=f"OVR-{uuid.uuid4().hex[:12]}", v2g_capable=False, max_power_kw=11
        )
        for _ in range(FRAMES + 1)
    ]
    unused = iter(chargers)

    def connect():
        provisioned = next(unused)
        charge_point_id = provisioned.charger.charge_point_id
        token = base64.b64encode(f"{charge_point_id}:{provisioned.authorization_key}".encode())
        return websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{charge_point_id}",
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": f"Basic {token.decode()}"},
            open_timeout=10,
            max_size=None,
        )

    boot = [
        2,
        "boot-1",
        "BootNotification",
        {"chargePointVendor": "ChargeScape", "chargePointModel": "Oversize"},
    ]

    async def booted() -> list:
        async with connect() as ws:
            await ws.send(json.dumps(boot))
            async with asyncio.timeout(10):
                while True:  # the CSMS may send its own CALLs after the boot: skip them
                    reply = json.loads(await ws.recv())
                    if reply[0] == 3 and reply[1] == "boot-1":
                        return reply

    assert run(booted())[2]["status"] == "Accepted"  # warm-up
    clear_peak(process.pid)
    before = peak_rss(process.pid)
    codes = run(send_oversized(connect, FRAMES))
    growth = peak_rss(process.pid) - before

    assert all(code == MESSAGE_TOO_BIG for code in codes), codes
    assert growth < MAX_PEAK_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert process.poll() is None
    unused = iter(chargers[:1])  # the warm-up charger, on a new socket
    assert run(booted())[2]["status"] == "Accepted"
