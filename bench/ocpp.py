"""OCPP benchmarks of issue 4, each as a ratio against a bare `websockets` server in the same run.

    python bench/ocpp.py            # 10,000 connections, profile to 1,000 chargers
    python bench/ocpp.py --quick    # 1,000 connections, profile to 1,000 chargers

O1 connections held: one OCPP process (uvicorn serving chargescape.asgi:ocpp_application, real
PostgreSQL and Redis) vs a bare websockets server answering the same frames; N chargers connect
(HTTP Basic, subprotocol ocpp1.6), send BootNotification and a Heartbeat, and stay connected.
Reported: server RSS growth per connection and the ratio (target ≤ 1.5×).
O2 fan-out: a SetChargingProfile to 1,000 connected chargers with every reply back — through the
channel layer (vehicles.chargers.rpc.call_chargers, as any process would send it: one group
message per OCPP process, replies in batches) vs the bare server writing the frame to its sockets
directly (target ≤ 3 s).

The OCPP process runs the development settings (demo credentials) with DEBUG switched off after
setup, as in production: DEBUG's query log alone is ~5 KiB per connection at 1,000 chargers.

The chargers are a separate process of raw websocket clients (not counted in either RSS) that
answer every CALL with {"status": "Accepted"}. Loopback only; every wait is bounded. Without
DATABASE_URL / REDIS_URL the script re-runs itself under chargescape.embedded (development data:
it migrates, adds BENCH-* chargers and deletes them afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "bench-key-0123456789abcdef01234567"  # one key for every bench charger (≥ 16 bytes)
PROFILE = {
    "connectorId": 0,
    "csChargingProfiles": {
        "chargingProfileId": 100,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2026-01-01T00:00:00Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}],
        },
    },
}
BOOT = {"chargePointVendor": "Bench", "chargePointModel": "Raw"}


def fix_channel_layer_timeout() -> None:
    """redis-py 8 reads with a 5 s socket timeout, the same as channels_redis's 5 s BZPOPMIN: under
    load an idle reader times out and dies. settings.py now sets the same 30 s; applied here too
    so the benchmark stays valid against settings without it."""
    from django.conf import settings

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"address": settings.REDIS_URL, "socket_timeout": 30}
    ]


def raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# --- the chargers (a process of their own) ---------------------------------------------------


async def run_clients(url: str, count: int, prefix: str, heartbeat_s: float) -> None:
    import websockets

    ready = 0
    gate = asyncio.Semaphore(200)  # connect in waves: the listen backlog is finite

    async def charger(index: int) -> None:
        nonlocal ready
        cp_id = f"{prefix}{index:05d}"
        token = base64.b64encode(f"{cp_id}:{KEY}".encode()).decode()
        async with gate:
            socket = await websockets.connect(
                f"{url}/{cp_id}",
                subprotocols=["ocpp1.6"],
                additional_headers={"Authorization": f"Basic {token}"},
                open_timeout=120,
                ping_interval=None,
            )
            pending: dict[str, asyncio.Future] = {}

            async def call(action: str, payload: dict) -> None:
                unique = uuid.uuid4().hex
                pending[unique] = asyncio.get_running_loop().create_future()
                await socket.send(json.dumps([2, unique, action, payload]))
                await asyncio.wait_for(pending[unique], 120)

            async def reader() -> None:
                async for raw in socket:
                    frame = json.loads(raw)
                    if frame[0] == 2:
                        await socket.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                    elif frame[1] in pending:
                        pending.pop(frame[1]).set_result(frame)

            task = asyncio.create_task(reader())
            await call("BootNotification", BOOT)
            await call("Heartbeat", {})
        ready += 1
        if ready == count:
            print("READY", flush=True)
        while True:
            await asyncio.sleep(heartbeat_s)
            await call("Heartbeat", {})
        await task

    await asyncio.gather(*(charger(i) for i in range(count)))


# --- the bare baseline server ----------------------------------------------------------------


async def serve_bare(port: int) -> None:
    from websockets.asyncio.server import serve

    chargers: set = set()
    waiting: dict[str, asyncio.Future] = {}

    async def handler(connection) -> None:  # type: ignore[no-untyped-def]
        if connection.request.path == "/control":
            async for message in connection:
                size = int(message.split()[1])
                started = time.perf_counter()
                targets = list(chargers)[:size]
                futures = []
                for target in targets:
                    unique = uuid.uuid4().hex
                    waiting[unique] = asyncio.get_running_loop().create_future()
                    futures.append(waiting[unique])
                    await target.send(json.dumps([2, unique, "SetChargingProfile", PROFILE]))
                await asyncio.wait_for(asyncio.gather(*futures), 120)
                await connection.send(f"{time.perf_counter() - started} {len(targets)}")
            return
        chargers.add(connection)
        try:
            async for raw in connection:
                frame = json.loads(raw)
                if frame[0] == 2:
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    reply = {"currentTime": now}
                    if frame[2] == "BootNotification":
                        reply.update(status="Accepted", interval=300)
                    await connection.send(json.dumps([3, frame[1], reply]))
                elif frame[1] in waiting:
                    waiting.pop(frame[1]).set_result(frame)
        finally:
            chargers.discard(connection)

    def select(connection, subprotocols):  # type: ignore[no-untyped-def]
        return "ocpp1.6" if "ocpp1.6" in subprotocols else None

    async with serve(
        handler, "127.0.0.1", port, select_subprotocol=select, ping_interval=None, backlog=2048
    ):
        print("LISTENING", flush=True)
        await asyncio.Future()


# --- the driver ------------------------------------------------------------------------------


def spawn(args: list[str], wait_for: str, timeout: float) -> subprocess.Popen:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        args, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if line.strip() == wait_for:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"{args[2:4]} did not print {wait_for} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def hold_connections(
    url: str, server_pid: int, count: int, prefix: str
) -> tuple[float, float, subprocess.Popen]:
    """(idle RSS MiB, RSS MiB with `count` chargers connected, booted and heartbeating, the
    client process to stop)."""
    idle = rss_mib(server_pid)
    clients = spawn(
        [sys.executable, __file__, "--clients", url, str(count), prefix],
        "READY",
        timeout=60 + count * 0.05,
    )
    time.sleep(2)  # let the server settle its buffers before reading RSS
    return idle, rss_mib(server_pid), clients


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--fanout", type=int, default=1000)
    options = parser.parse_args()
    count = options.connections or (1_000 if options.quick else 10_000)
    fanout = min(options.fanout, count)
    raise_file_limit()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    fix_channel_layer_timeout()
    from django.core.management import call_command

    from vehicles.chargers import rpc, security
    from vehicles.chargers.models import Charger

    call_command("migrate", verbosity=0)
    prefix = f"BENCH-{uuid.uuid4().hex[:6]}-"
    Charger.objects.bulk_create(
        Charger(
            charge_point_id=f"{prefix}{i:05d}",
            authorization_key_hash=security.hash_authorization_key(KEY),
            pairing_code_hash="!",
        )
        for i in range(count)
    )
    results: dict[str, float] = {}
    try:
        # Baseline: a bare websockets server.
        port = free_port()
        bare = spawn([sys.executable, __file__, "--serve-bare", str(port)], "LISTENING", 30)
        idle, held, clients = hold_connections(
            f"ws://127.0.0.1:{port}/ocpp", bare.pid, count, prefix
        )
        results["bare_idle"], results["bare_held"] = idle, held

        async def bare_fanout() -> float:
            import websockets

            async with websockets.connect(f"ws://127.0.0.1:{port}/control") as control:
                await control.send(f"FANOUT {fanout}")
                elapsed, sent = (await asyncio.wait_for(control.recv(), 180)).split()
                assert int(sent) == fanout
                return float(elapsed)

        results["bare_fanout_s"] = asyncio.run(bare_fanout())
        stop(clients)
        stop(bare)

        # The OCPP process.
        port = free_port()
        ocpp = spawn(
            [
                sys.executable,
                "-c",
                f"import sys;sys.path.insert(0,{str(ROOT)!r});sys.argv=sys.argv[:1];import django;"
                "django.setup();from bench.ocpp import fix_channel_layer_timeout as f;f();"
                # As in production: DEBUG's query log would hold the last 9,000 queries.
                "from django.conf import settings;settings.DEBUG=False;"
                "import uvicorn;print('LISTENING',flush=True);"
                f"uvicorn.run('chargescape.asgi:ocpp_application',host='127.0.0.1',port={port},"
                "ws='websockets-sansio',log_level='warning',lifespan='off',backlog=2048)",
            ],
            "LISTENING",
            30,
        )
        time.sleep(3)  # imports done, socket bound
        idle, held, clients = hold_connections(
            f"ws://127.0.0.1:{port}/ocpp", ocpp.pid, count, prefix
        )
        results["ocpp_idle"], results["ocpp_held"] = idle, held

        async def ocpp_fanout() -> float:
            started = time.perf_counter()
            replies = await rpc.call_chargers(
                [(f"{prefix}{i:05d}", "SetChargingProfile", PROFILE) for i in range(fanout)],
                timeout=120,
            )
            assert all(isinstance(reply, dict) for reply in replies), replies[:3]
            assert all(reply["status"] == "Accepted" for reply in replies)
            return time.perf_counter() - started

        results["ocpp_fanout_s"] = asyncio.run(ocpp_fanout())
        stop(clients)
        stop(ocpp)
    finally:
        Charger.objects.filter(charge_point_id__startswith=prefix).delete()

    bare_per = (results["bare_held"] - results["bare_idle"]) / count * 1024
    ocpp_per = (results["ocpp_held"] - results["ocpp_idle"]) / count * 1024
    memory_ratio = results["ocpp_held"] / results["bare_held"]
    fanout_ratio = results["ocpp_fanout_s"] / results["bare_fanout_s"]
    print(f"O1 {count} connections, booted + heartbeat, one process each:")
    print(
        f"   bare websockets: {results['bare_idle']:.0f} → {results['bare_held']:.0f} MiB RSS "
        f"({bare_per:.1f} KiB/connection)"
    )
    print(
        f"   OCPP process:    {results['ocpp_idle']:.0f} → {results['ocpp_held']:.0f} MiB RSS "
        f"({ocpp_per:.1f} KiB/connection)"
    )
    status = "PASS" if memory_ratio <= 1.5 else "FAIL"
    print(
        f"   total RSS ratio {memory_ratio:.2f}× (target ≤ 1.5×) {status}; "
        f"per-connection ratio {ocpp_per / bare_per:.2f}×"
    )
    status = "PASS" if results["ocpp_fanout_s"] <= 3 else "FAIL"
    print(
        f"O2 SetChargingProfile to {fanout} chargers, all replies back: OCPP "
        f"{results['ocpp_fanout_s']:.2f} s vs bare {results['bare_fanout_s']:.3f} s = "
        f"{fanout_ratio:.1f}× (target ≤ 3 s) {status}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        raise_file_limit()
        asyncio.run(run_clients(sys.argv[2], int(sys.argv[3]), sys.argv[4], heartbeat_s=60))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        raise_file_limit()
        asyncio.run(serve_bare(int(sys.argv[2])))
    elif not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        # Development settings (demo defaults for third-party credentials); Django keeps at most
        # 9,000 queries in its DEBUG log, so the OCPP process's RSS includes at most a few MiB.
        os.environ.setdefault("DJANGO_DEBUG", "1")
        os.chdir(ROOT)
        command = [sys.executable, "-m", "chargescape.embedded", "--", sys.executable, __file__]
        os.execv(sys.executable, command + sys.argv[1:])  # noqa: S606 - ourselves, wrapped
    else:
        main()
