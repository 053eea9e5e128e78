"""Load and soak benchmarks of issue 11 on the real stack (docs/benchmarks.md, "Load and soak").

    python bench/load.py                 # L1 300 s, L2 120 s, L3 10 min, L4 30 min
    python bench/load.py --quick         # L1 30 s, L2 30 s, L3 60 s, L4 2 min
    python bench/load.py --only ws       # one of api, dashboard, ws, soak (repeatable)

The stack is the one `make run` starts (chargescape.management.commands.runstack): uvicorn on
chargescape.asgi:application (web, `--web-workers`, default 2) and on ocpp_application (OCPP), a
Celery worker on commands/default/bulk (-c 2), one on control (-c 1) and beat, all as separate
processes on loopback ports 8100/8101, against a throw-away PostgreSQL database (Django's
test-database machinery: <name>_load, dropped afterwards) and the REDIS_URL given (its db is
flushed first: the bench owns it). The servers run with DEBUG off, as in production (development
settings otherwise; no access log). Outbound origins (vehicle cloud, OpenADR VTN) point at closed
ports in the bench range, so the beat's polls fail fast instead of reaching anyone's simulator.

Seed: `--owners` owners (default 500), one car each and a second car for every fourth, 48
readings a car (12 h at 15 min), a preference, a stored plan (programs.services.replan_fleet),
a signed-in session each (django.contrib.sessions, as after a login); the first 200 own a
charger paired with their car (provisioned and claimed through the services).

L1 owner API read mix (Locust FastHttpUser, headless, a subprocess): 50 users, each waiting an
exponential 1 s on average between requests (Poisson arrivals, ~50 requests/s), over
/api/v1/vehicles, a vehicle, its readings, its preferences, /api/v1/chargers/ and /api/v1/me
(weights 4:3:3:2:2:1). Targets p95 < 150 ms, p99 < 300 ms, zero 5xx.
L2 owner dashboard `/` at ~200 requests/s (200 such users). Target p99 ≤ 100 ms (and ≥ 180/s
achieved). The pages are then profiled in-process (queries, SQL, selector and template time) so
a miss says where the time goes.
L3 500 owner websockets (/ws/live/, session cookie, Origin checked) + 200 simulated chargers
(vehicles.sim.chargers.SimulatedCharger, real `ocpp` charge points, half OCPP 1.6 and half 2.0.1,
booting, plugging in, heartbeating every 30 s and sending MeterValues every 10 s). Every 10 s each
owner's group gets a numbered `vehicle.update` through the channel layer (as
vehicles.services.publish_vehicle_update sends it); the chargers' MeterValues add the stack's own
updates (vehicles.receivers: a paired charger's MeterValues during a session become a
`vehicle.update` for its owner; counted apart from the numbered ones). Target: zero
unexpected disconnects (owner or charger), zero failed handshakes, every numbered update
delivered.
L4 soak: L3's sockets and chargers + the L1 mix at 20 requests/s + the beat and workers, RSS of
every server process (uvicorn parents and workers, Celery parents and pool children, beat)
sampled every 10 s (5 s in --quick). Growth = mean total RSS over the last 3 minutes against the
mean over minutes 2–5 (the windows scale with --soak-seconds: last 10 % against 6.7 %–16.7 %).
Target < 10 % for the total and for each process, zero 5xx, zero unexpected disconnects.

Each line prints PASS or FAIL; the exit code is non-zero when a target is missed. Latencies are
client-side (Locust's, on the same 2 cores as the servers), so a loaded machine reads pessimistic:
the load average is printed with each result.
Without DATABASE_URL / REDIS_URL the script re-runs itself under chargescape.embedded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB_PORT, OCPP_PORT = 8100, 8101
CLOSED_PORTS = ("http://127.0.0.1:8198", "http://127.0.0.1:8199")  # nothing listens there

L1_P95_MS, L1_P99_MS = 150.0, 300.0
L2_P99_MS = 100.0
L4_GROWTH = 0.10
API_MIX = ["vehicles", "vehicle detail", "readings", "preferences", "chargers", "me"]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} cores"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- ASGI factories: uvicorn --factory bench.load:web_app (bench/: a namespace package) ------


def _production_like(application_name: str):  # type: ignore[no-untyped-def]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
    sys.path.insert(0, str(ROOT))
    from django.conf import settings

    from chargescape import asgi  # sets Django up

    # DEBUG keeps every query of a request and renders tracebacks: production runs without it.
    settings.DEBUG = False
    apply_channel_options()
    return getattr(asgi, application_name)


def apply_channel_options() -> None:
    """`--channel-capacity` / `--channel-max-connections`: override settings.CHANNEL_LAYERS for an
    experiment, in the web and OCPP processes and the bench's own sender (the capacity is
    checked by the sender of group_send)."""
    from django.conf import settings

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    if os.environ.get("LOAD_CHANNEL_CAPACITY"):
        config["capacity"] = int(os.environ["LOAD_CHANNEL_CAPACITY"])
    if os.environ.get("LOAD_CHANNEL_MAX_CONNECTIONS"):
        for host in config["hosts"]:
            host["max_connections"] = int(os.environ["LOAD_CHANNEL_MAX_CONNECTIONS"])


def web_app():  # type: ignore[no-untyped-def]
    return _production_like("application")


def ocpp_app():  # type: ignore[no-untyped-def]
    return _production_like("ocpp_application")


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """web, ocpp, worker, control, beat: the processes of `make run`, each in its own session."""

    def __init__(self, *, directory: Path, web_workers: int, db: str, pool_max: int) -> None:
        self.directory = directory
        self.web_workers = web_workers
        self.db, self.pool_max = db, pool_max
        self.processes: dict[str, subprocess.Popen] = {}

    def commands(self) -> dict[str, list[str]]:
        """`make run`'s command lines (runstack.processes), adapted for load: the ASGI apps through
        this module's factories (DEBUG off), `--web-workers` web processes, no access log,
        warnings only, worker names and a beat schedule of the bench's own."""
        from chargescape.management.commands.runstack import processes

        commands = processes("127.0.0.1", WEB_PORT, OCPP_PORT)
        factories = {"web": "bench.load:web_app", "ocpp": "bench.load:ocpp_app"}
        for name, factory in factories.items():
            line = commands[name]
            app = next(arg for arg in line if arg.startswith("chargescape.asgi:"))
            line[line.index(app)] = factory
            at = line.index("uvicorn") + 1
            line[at:at] = ["--factory", "--app-dir", str(ROOT)]
            line += ["--no-access-log", "--log-level", "warning"]
        commands["web"] += ["--workers", str(self.web_workers)]
        for name in ("worker", "control", "beat"):
            line = commands[name]
            line[line.index("--loglevel") + 1] = "WARNING"
            if "-n" in line:
                line[line.index("-n") + 1] = f"load-{line[line.index('-n') + 1]}"
            if "-s" in line:
                line[line.index("-s") + 1] = str(self.directory / "beat-schedule")
        return commands

    def start(self) -> None:
        from tests.database import database_url

        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            SMARTCAR_SIM_ORIGIN=CLOSED_PORTS[0],
            OPENADR_SIM_ORIGIN=CLOSED_PORTS[1],
            CHARGESCAPE_WEB_PORT=str(WEB_PORT),
            CHARGESCAPE_OCPP_PORT=str(OCPP_PORT),
        )
        for name, command in self.commands().items():
            log = (self.directory / f"{name}.log").open("w")
            process_env = dict(env)
            if name in ("web", "ocpp") and self.db == "pool":  # as `make run` (settings.py)
                process_env["DJANGO_DB_POOL_MAX"] = str(self.pool_max)
            elif name in ("web", "ocpp") and self.db == "no-persistent":
                process_env["DJANGO_CONN_MAX_AGE"] = "0"
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our interpreter, our modules
                command,
                cwd=ROOT,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name, port in (("web", WEB_PORT), ("ocpp", OCPP_PORT)):
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/healthz", timeout=5
                    ) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or self.processes[name].poll() is not None:
                    self.stop()
                    raise SystemExit(f"{name} did not answer /healthz: see {self.directory}")
                time.sleep(0.5)
        time.sleep(3)  # the workers and beat finish booting

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def rss_mib(self) -> dict[str, float]:
        """RSS of each process and its children (uvicorn workers, Celery pool), MiB."""
        import psutil

        sizes = {}
        for name, process in self.processes.items():
            try:
                parent = psutil.Process(process.pid)
                members = [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                sizes[name] = math.nan
                continue
            total = 0
            for member in members:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += member.memory_info().rss
            sizes[name] = total / 2**20
        return sizes

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- seed --------------------------------------------------------------------------------------


def seed(*, owners: int, chargers: int, directory: Path) -> tuple[Path, Path]:
    """Owners with cars, readings, preferences, plans, sessions and chargers. Returns the
    sessions file (for Locust and the websockets) and the chargers file (ids and keys)."""
    import random
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.utils import timezone

    from accounts.models import User
    from programs import services as program_services
    from vehicles.chargers import security
    from vehicles.chargers.models import Charger
    from vehicles.models import ChargingPreference, Vehicle, VehicleReading
    from vehicles.preferences import default_schedule

    rng = random.Random(11)
    now = timezone.now()
    users = User.objects.bulk_create(
        User(
            email=f"load{i}@example.com",
            first_name="Sam",
            time_zone="America/Chicago",
            service_zip="60601",
            password=make_password(None),
        )
        for i in range(owners)
    )
    cars = [(user, 0) for user in users] + [(user, 1) for user in users[::4]]
    vehicles = Vehicle.objects.bulk_create(
        Vehicle(
            owner=user,
            provider="smartcar",
            provider_vehicle_id=f"load-{user.pk}-{n}",
            make="Nissan",
            model="Leaf",
            year=2024,
            battery_kwh=rng.choice([40, 60, 75]),
            max_ac_kw=rng.choice([7.2, 11.0]),
        )
        for user, n in cars
    )
    ChargingPreference.objects.bulk_create(
        ChargingPreference(vehicle=vehicle, weekly_schedule=default_schedule(), min_soc_pct=20)
        for vehicle in vehicles
    )
    VehicleReading.objects.bulk_create(
        (
            VehicleReading(
                vehicle=vehicle,
                recorded_at=now - timedelta(minutes=15 * (47 - step)),
                source="poll",
                soc_pct=min(95.0, 30 + step),
                plugged_in=True,
                charging_state="CHARGING",
                power_kw=7.2,
                range_km=200 + step,
                charge_limit_pct=90,
            )
            for vehicle in vehicles
            for step in range(48)
        ),
        batch_size=5000,
    )
    program_services.replan_fleet(trigger="bench", now=now)
    by_owner: dict[int, list[str]] = {}
    for vehicle in vehicles:
        by_owner.setdefault(vehicle.owner_id, []).append(str(vehicle.pk))
    # Chargers written in bulk, owned and paired (as claim_charger and pair_vehicle leave them):
    # the services' PBKDF2 pairing-code hashes would take minutes for 200 and are not under test.
    first_car: dict[int, Vehicle] = {}
    for vehicle in vehicles:
        first_car.setdefault(vehicle.owner_id, vehicle)
    keys = [security.new_authorization_key() for _ in users[:chargers]]
    rows = Charger.objects.bulk_create(
        Charger(
            charge_point_id=f"LOAD-{index:04d}",
            authorization_key_hash=security.hash_authorization_key(key),
            pairing_code_hash="!",
            owner=user,
            usual_vehicle=first_car[user.pk],
            name=f"Garage {index}",
        )
        for index, (user, key) in enumerate(zip(users[:chargers], keys, strict=True))
    )
    charger_ids = {row.owner_id: [row.pk] for row in rows}
    charger_specs = [
        {"id": row.charge_point_id, "key": key, "v": "1.6" if index % 2 == 0 else "2.0.1"}
        for index, (row, key) in enumerate(zip(rows, keys, strict=True))
    ]
    backend = settings.AUTHENTICATION_BACKENDS[0]
    sessions = []
    for user in users:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = backend
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append(
            {
                "owner": user.pk,
                "session": store.session_key,
                "vehicles": by_owner[user.pk],
                "chargers": charger_ids.get(user.pk, []),
            }
        )
    sessions_file, chargers_file = directory / "sessions.json", directory / "chargers.json"
    sessions_file.write_text(json.dumps(sessions))
    chargers_file.write_text(json.dumps(charger_specs))
    return sessions_file, chargers_file


# --- Locust (L1, L2 and the soak's HTTP part) --------------------------------------------------


class LocustRun:
    def __init__(
        self, *, user_class: str, users: int, seconds: int, sessions: Path, directory: Path
    ) -> None:
        self.prefix = directory / user_class
        self.status_file = directory / f"{user_class}-status.json"
        env = dict(os.environ)
        env.update(
            LOAD_SESSIONS=str(sessions), LOAD_USER_RPS="1", LOAD_STATUS_OUT=str(self.status_file)
        )
        self.started = time.monotonic()
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our locustfile
            [
                sys.executable, "-m", "locust", "-f", str(ROOT / "bench/locust/owner.py"),
                user_class, "--headless", "--users", str(users), "--spawn-rate", str(users),
                "--run-time", f"{seconds}s", "--host", f"http://127.0.0.1:{WEB_PORT}",
                "--csv", str(self.prefix), "--only-summary", "--reset-stats",
                "--stop-timeout", "5", "--loglevel", "ERROR", "--exit-code-on-error", "0",
            ],
            cwd=ROOT, env=env, stdout=(directory / f"{user_class}.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait(self) -> dict:
        self.process.wait()
        elapsed = time.monotonic() - self.started
        rows = {row["Name"]: row for row in csv.DictReader(open(f"{self.prefix}_stats.csv"))}  # noqa: SIM115
        statuses = json.loads(self.status_file.read_text()) if self.status_file.exists() else {}
        total = rows["Aggregated"]
        return {
            "rows": rows,
            "requests": int(total["Request Count"]),
            "failures": int(total["Failure Count"]),
            "rps": float(total["Requests/s"]),
            "p50": float(total["50%"]),
            "p95": float(total["95%"]),
            "p99": float(total["99%"]),
            "max": float(total["Max Response Time"]),
            "statuses": statuses,
            "5xx": statuses.get("5xx", 0),
            "elapsed": elapsed,
        }


def print_locust(label: str, result: dict, names: list[str]) -> None:
    print(
        f"   {result['requests']:,} requests at {result['rps']:.1f}/s measured "
        f"(after ramp-up); statuses {json.dumps(result['statuses'], sort_keys=True)}"
    )
    print(f"   {'route':<16} {'n':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>7}  ms")
    for name in [*names, "Aggregated"]:
        row = result["rows"].get(name)
        if row:
            print(
                f"   {name:<16} {int(row['Request Count']):>7,} {row['50%']:>6} {row['95%']:>6} "
                f"{row['99%']:>6} {float(row['Max Response Time']):>7.0f}"
            )


def profile_pages(sessions: Path, samples: int = 30) -> None:
    """In-process (DEBUG off, one thread, the test client: no server, no network): queries, SQL
    time and total time of `/` and of the API routes for one owner, and `/` split into its
    selector (list_vehicles_for_owner) and the template render. Tells a miss where time goes."""
    from django.conf import settings
    from django.db import connection
    from django.template.loader import render_to_string
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from vehicles import selectors

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    owner = json.loads(sessions.read_text())[0]
    user = User.objects.get(pk=owner["owner"])
    client = Client()
    client.force_login(user)
    vehicle = owner["vehicles"][0]
    routes = {
        "dashboard /": "/",
        "vehicles": "/api/v1/vehicles",
        "vehicle detail": f"/api/v1/vehicles/{vehicle}",
        "readings": f"/api/v1/vehicles/{vehicle}/readings?limit=48",
        "preferences": f"/api/v1/vehicles/{vehicle}/preferences",
        "chargers": "/api/v1/chargers/",
        "me": "/api/v1/me",
    }
    print(
        f"   in-process profile, one owner ({len(owner['vehicles'])} car(s)), {samples} loads "
        "each, median ms:"
    )
    request = None
    for name, path in routes.items():
        client.get(path)  # warm caches and templates
        totals, sql, queries = [], [], 0
        for _ in range(samples):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                reply = client.get(path)
                totals.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200, (path, reply.status_code)
            queries = len(captured.captured_queries)
            sql.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            request = request or (reply.wsgi_request if path == "/" else None)
        print(
            f"   {name:<16} {queries:>2} queries, SQL {percentile(sql, 50):5.1f}, total "
            f"{percentile(totals, 50):5.1f} (max {max(totals):.1f})"
        )
    selector, template = [], []
    for _ in range(samples):
        started = time.perf_counter()
        vehicles = selectors.list_vehicles_for_owner(owner=user)
        middle = time.perf_counter()
        render_to_string("home.html", {"tab": "home", "vehicles": vehicles}, request=request)
        selector.append((middle - started) * 1000)
        template.append((time.perf_counter() - middle) * 1000)
    print(
        f"   dashboard split: list_vehicles_for_owner {percentile(selector, 50):.1f}, "
        f"home.html render {percentile(template, 50):.1f} (the rest of / is middleware: "
        "sessions, auth, CSRF, security headers)"
    )


# --- L3 clients: owner websockets, chargers and the numbered updates (their own process) ------


async def run_clients(spec: dict) -> dict:
    import websockets
    from channels.layers import get_channel_layer
    from ocpp.exceptions import OCPPError

    from vehicles.services import owner_group
    from vehicles.sim.chargers import Battery, SimulatedCharger

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    owners = json.loads(Path(spec["sessions"]).read_text())[: spec["sockets"]]
    charger_specs = json.loads(Path(spec["chargers"]).read_text())[: spec["chargers_count"]]
    stats = {
        "owner_connected": 0,
        "owner_disconnects": 0,
        "owner_disconnect_reasons": {},
        "owner_failed_handshakes": 0,
        "owner_handshake_errors": {},
        "received": 0,
        "received_stack_updates": 0,
        "bench_latency_ms": [],
        "charger_booted": 0,
        "charger_disconnects": 0,
        "charger_disconnect_reasons": {},
        "heartbeats": 0,
        "meter_values": 0,
        "charger_call_errors": 0,
        "charger_call_error_kinds": {},
        "published": 0,
    }
    received_seq: dict[int, set[int]] = {owner["owner"]: set() for owner in owners}
    ready = asyncio.Event()
    pending = len(owners) + len(charger_specs)

    def one_ready() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            ready.set()

    def reason(table: str, text: str) -> None:
        stats[table][text] = stats[table].get(text, 0) + 1

    handshakes = asyncio.Semaphore(spec["handshakes"])

    async def owner_socket(owner: dict) -> None:
        headers = {
            "Cookie": f"sessionid={owner['session']}",
            "Origin": f"http://127.0.0.1:{WEB_PORT}",
        }
        first = True
        while not stop.is_set():
            try:
                async with handshakes:  # owners open the app over time, not all in one instant
                    socket_ = await websockets.connect(
                        f"ws://127.0.0.1:{WEB_PORT}/ws/live/",
                        additional_headers=headers,
                        open_timeout=60,
                    )
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                stats["owner_failed_handshakes"] += 1
                reason("owner_handshake_errors", f"{type(error).__name__}: {error}"[:120])
                await asyncio.sleep(1)
                continue
            stats["owner_connected"] += 1
            if first:
                first = False
                one_ready()
            closer = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    reader = asyncio.ensure_future(socket_.recv())
                    done, _ = await asyncio.wait(
                        {reader, closer}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if closer in done:
                        reader.cancel()
                        await socket_.close()
                        return
                    message = json.loads(reader.result())
                    stats["received"] += 1
                    if "bench_seq" in message:
                        received_seq[owner["owner"]].add(message["bench_seq"])
                        stats["bench_latency_ms"].append((time.time() - message["sent_at"]) * 1000)
                    else:
                        stats["received_stack_updates"] += 1
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                if stop.is_set():
                    return
                stats["owner_disconnects"] += 1
                reason("owner_disconnect_reasons", f"{type(error).__name__}: {error}"[:120])
                closer.cancel()
                await asyncio.sleep(1)

    async def charger(index: int, item: dict) -> None:
        sim = SimulatedCharger(
            charge_point_id=item["id"],
            authorization_key=item["key"],
            version=item["v"],
            url=f"ws://127.0.0.1:{OCPP_PORT}/ocpp",
            battery=Battery(soc_pct=30 + (index * 7) % 50),
            response_timeout=60,
        )
        first = True
        while not stop.is_set():
            try:
                await sim.connect()
                await sim.boot()
                if sim.transaction is None:
                    await sim.plug_in()
                stats["charger_booted"] += 1
                if first:
                    first = False
                    one_ready()
                # Spread the chargers' messages over the period instead of in one burst.
                await asyncio.sleep((index % 10) + 0.1 * (index // 10 % 10))
                tick = 0
                while not stop.is_set():
                    if sim._socket.close_code is not None:
                        raise websockets.ConnectionClosedError(None, None)
                    try:
                        await sim.send_meter_values()
                        stats["meter_values"] += 1
                        if tick % 3 == 0:
                            await sim.heartbeat()
                            stats["heartbeats"] += 1
                    except OCPPError as error:  # the CSMS answered with a CallError
                        stats["charger_call_errors"] += 1
                        reason("charger_call_error_kinds", type(error).__name__)
                    tick += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), spec["meter_every_s"])
                await sim.disconnect()
                return
            except Exception as error:  # any failure of the link counts, then reconnect
                if stop.is_set():
                    return
                stats["charger_disconnects"] += 1
                reason("charger_disconnect_reasons", f"{type(error).__name__}: {error}"[:120])
                # Already counted; the socket is gone either way.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sim.disconnect(), 10)
                await asyncio.sleep(1)

    async def publisher() -> None:
        """One numbered vehicle.update to every owner group every `publish_every_s`."""
        layer = get_channel_layer()
        seq = 0
        while not stop.is_set():
            seq += 1
            for owner in owners:
                await layer.group_send(
                    owner_group(owner["owner"]),
                    {"type": "vehicle.update", "bench_seq": seq, "sent_at": time.time()},
                )
                stats["published"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), spec["publish_every_s"])

    raise_file_limit()
    tasks = [asyncio.ensure_future(owner_socket(owner)) for owner in owners]

    async def gated_charger(index: int, item: dict) -> None:
        await asyncio.sleep(index * 0.02)  # boot in waves (200 chargers over 4 s)
        await charger(index, item)

    tasks += [asyncio.ensure_future(gated_charger(i, c)) for i, c in enumerate(charger_specs)]
    try:
        await asyncio.wait_for(ready.wait(), 180)
    except TimeoutError:
        print(f"NOT READY ({pending} left)", flush=True)
    print("READY", flush=True)
    started = time.monotonic()
    pub = asyncio.ensure_future(publisher())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), spec["seconds"])
    elapsed = time.monotonic() - started
    # Stop publishing, let the last updates arrive, then close everything.
    pub.cancel()
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    published_seq = stats["published"] // max(1, len(owners))
    missing_by_seq: dict[int, int] = {}
    for seen in received_seq.values():
        for seq in set(range(1, published_seq + 1)) - seen:
            missing_by_seq[seq] = missing_by_seq.get(seq, 0) + 1
    missing = sum(missing_by_seq.values())
    stats["missing_by_round"] = dict(sorted(missing_by_seq.items()))
    latency = stats.pop("bench_latency_ms")
    stats.update(
        seconds=elapsed,
        sockets=len(owners),
        chargers=len(charger_specs),
        bench_delivered=len(latency),
        bench_missing=missing,
        latency_p50_ms=percentile(latency, 50),
        latency_p99_ms=percentile(latency, 99),
        latency_max_ms=max(latency, default=math.nan),
    )
    return stats


class Clients:
    def __init__(self, *, spec: dict, directory: Path) -> None:
        self.spec_file = directory / "clients-spec.json"
        self.out = directory / "clients-out.json"
        self.spec_file.write_text(json.dumps(spec))
        self.process = subprocess.Popen(  # noqa: S603 - ourselves
            [sys.executable, __file__, "--clients", str(self.spec_file), str(self.out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=(directory / "clients.log").open("w"),
            text=True, env=dict(os.environ),
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line.strip() == "READY" or (not line and self.process.poll() is not None):
                break
            if line.strip():
                print(f"   clients: {line.strip()}", flush=True)

    def wait(self, timeout: float) -> dict:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=60)
        if not self.out.exists():
            raise SystemExit(f"the client process wrote no result: see {self.spec_file.parent}")
        return json.loads(self.out.read_text())


def print_clients(result: dict) -> bool:
    delivered_ok = result["bench_missing"] == 0
    disconnects = result["owner_disconnects"] + result["charger_disconnects"]
    print(
        f"   {result['sockets']} owner sockets ({result['owner_connected']} connects), "
        f"{result['chargers']} chargers ({result['charger_booted']} boots), "
        f"{result['seconds']:.0f} s"
    )
    print(
        f"   numbered updates: {result['published']:,} published, "
        f"{result['bench_delivered']:,} delivered, {result['bench_missing']:,} missing "
        f"{result['missing_by_round'] or ''}; "
        f"latency p50 {result['latency_p50_ms']:.0f} ms, p99 {result['latency_p99_ms']:.0f} ms, "
        f"max {result['latency_max_ms']:.0f} ms"
    )
    print(
        f"   other live messages to owners: {result['received_stack_updates']:,}; chargers sent "
        f"{result['meter_values']:,} MeterValues and {result['heartbeats']:,} heartbeats, all "
        f"answered ({result['charger_call_errors']} CallErrors "
        f"{result['charger_call_error_kinds'] or ''})"
    )
    print(
        f"   unexpected disconnects: owners {result['owner_disconnects']} "
        f"{result['owner_disconnect_reasons'] or ''}; chargers (connect or drop) "
        f"{result['charger_disconnects']} {result['charger_disconnect_reasons'] or ''}; "
        f"failed owner handshakes {result['owner_failed_handshakes']} "
        f"{result['owner_handshake_errors'] or ''}"
    )
    return delivered_ok and disconnects == 0 and result["owner_failed_handshakes"] == 0


# --- L4 memory sampling ------------------------------------------------------------------------


class Sampler(threading.Thread):
    def __init__(self, stack: Stack, every_s: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.every_s = stack, every_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.halt = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.monotonic() - self.started_at, self.stack.rss_mib()))
            self.halt.wait(self.every_s)


def window_mean(samples: list, start: float, end: float, name: str | None) -> float:
    values = [
        sum(sizes.values()) if name is None else sizes[name]
        for at, sizes in samples
        if start <= at <= end
    ]
    return sum(values) / len(values) if values else math.nan


# --- the driver --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=["api", "dashboard", "ws", "soak"])
    parser.add_argument("--owners", type=int, default=500)
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--handshakes", type=int, default=20, help="owner websocket handshakes at once"
    )
    parser.add_argument(
        "--db",
        choices=["pool", "no-persistent", "settings"],
        default="pool",
        help="web/ocpp database connections: psycopg pool (default, as `make run`: "
        "DJANGO_DB_POOL_MAX), CONN_MAX_AGE=0, or persistent connections (CONN_MAX_AGE=60: one "
        "connection per concurrent request under ASGI, see docs/benchmarks.md)",
    )
    parser.add_argument("--db-pool-max", type=int, default=8, help="per web/ocpp process")
    parser.add_argument(
        "--channel-capacity",
        type=int,
        help="channels_redis `capacity` (default: settings.py's 5,000 pending messages a "
        "process); applied to web, ocpp and the bench's sender",
    )
    parser.add_argument(
        "--channel-max-connections",
        type=int,
        help="redis-py pool size of the channel layer (default: settings.py's 1,000 a process)",
    )
    parser.add_argument("--api-seconds", type=int)
    parser.add_argument("--dashboard-seconds", type=int)
    parser.add_argument("--ws-seconds", type=int)
    parser.add_argument("--soak-seconds", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    options = parser.parse_args()
    quick = options.quick
    api_s = options.api_seconds or (30 if quick else 300)
    dash_s = options.dashboard_seconds or (30 if quick else 120)
    ws_s = options.ws_seconds or (60 if quick else 600)
    soak_s = options.soak_seconds or (120 if quick else 1800)
    only = set(options.only or ["api", "dashboard", "ws", "soak"])
    raise_file_limit()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Read by the web/ocpp factories and the client process (all inherit the environment).
    if options.channel_capacity:
        os.environ["LOAD_CHANNEL_CAPACITY"] = str(options.channel_capacity)
    if options.channel_max_connections:
        os.environ["LOAD_CHANNEL_MAX_CONNECTIONS"] = str(options.channel_max_connections)
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    for port in (WEB_PORT, OCPP_PORT):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is taken (another bench/load.py?)")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    setup_test_environment()
    settings.DEBUG = False
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"{old_name}_load"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    directory = Path(tempfile.mkdtemp(prefix="chargescape-load-"))
    stack = Stack(
        directory=directory,
        web_workers=options.web_workers,
        db=options.db,
        pool_max=options.db_pool_max,
    )
    failed: list[str] = []
    try:
        started = time.monotonic()
        sessions, chargers = seed(
            owners=options.owners, chargers=options.chargers, directory=directory
        )
        print(
            f"seeded {options.owners} owners, their cars, readings, plans, sessions and "
            f"{options.chargers} chargers in {time.monotonic() - started:.1f} s; "
            f"logs in {directory}"
        )
        stack.start()
        print(
            f"stack up: web (uvicorn, {options.web_workers} workers) :{WEB_PORT}, "
            f"ocpp :{OCPP_PORT}, celery worker -c 2 + control -c 1 + beat; database "
            f"connections: {options.db}"
            + (f" (max {options.db_pool_max} a web/ocpp process)" if options.db == "pool" else "")
            + f"; channel layer capacity {options.channel_capacity or 'as settings.py (5,000)'}, "
            f"max connections {options.channel_max_connections or 'as settings.py (1,000)'}"
            + "; RSS MiB "
            + ", ".join(f"{k} {v:.0f}" for k, v in stack.rss_mib().items())
        )
        print(f"   {load_average()}", flush=True)

        if "api" in only:
            result = LocustRun(
                user_class="OwnerApiUser", users=50, seconds=api_s, sessions=sessions,
                directory=directory,
            ).wait()  # fmt: skip
            ok = result["p95"] < L1_P95_MS and result["p99"] < L1_P99_MS and not result["5xx"]
            print(
                f"L1 owner API read mix, 50 users, Poisson 1 req/s each, {api_s} s: "
                f"p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, "
                f"p99 {result['p99']:.0f} ms, {result['5xx']} 5xx "
                f"(targets p95 < {L1_P95_MS:.0f}, p99 < {L1_P99_MS:.0f}, 0) "
                + ("PASS" if ok else "FAIL")
            )
            print_locust("L1", result, API_MIX)
            print(f"   {load_average()}", flush=True)
            if "dashboard" not in only:
                profile_pages(sessions)
            if not ok:
                failed.append("L1")

        if "dashboard" in only:
            result = LocustRun(
                user_class="DashboardUser", users=200, seconds=dash_s, sessions=sessions,
                directory=directory,
            ).wait()  # fmt: skip
            ok = result["p99"] <= L2_P99_MS and not result["5xx"] and result["rps"] >= 180
            print(
                f"L2 owner dashboard /, 200 users, Poisson 1 req/s each, {dash_s} s, "
                f"{options.web_workers} uvicorn workers: {result['rps']:.0f} req/s, "
                f"p50 {result['p50']:.0f} ms, "
                f"p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f} ms, {result['5xx']} 5xx "
                f"(target p99 ≤ {L2_P99_MS:.0f} ms at ≥ 180 req/s achieved) "
                + ("PASS" if ok else "FAIL")
            )
            print_locust("L2", result, ["dashboard /"])
            print(f"   {load_average()}", flush=True)
            profile_pages(sessions)
            if not ok:
                failed.append("L2")

        spec = {
            "sessions": str(sessions),
            "chargers": str(chargers),
            "sockets": min(500, options.owners),
            "chargers_count": options.chargers,
            "meter_every_s": 10.0,
            "publish_every_s": 10.0,
            "handshakes": options.handshakes,
        }
        if "ws" in only:
            clients = Clients(spec=spec | {"seconds": ws_s}, directory=directory)
            result = clients.wait(timeout=ws_s + 120)
            dead = stack.dead()
            ok = print_clients(result) and not dead
            print(
                f"L3 {result['sockets']} owner websockets + {result['chargers']} chargers, "
                f"{ws_s} s: {result['owner_disconnects'] + result['charger_disconnects']} "
                f"unexpected disconnects, {result['owner_failed_handshakes']} failed "
                f"handshakes, {result['bench_missing']} updates missing"
                + (f", dead processes {dead}" if dead else "")
                + " (target 0, 0, 0) "
                + ("PASS" if ok else "FAIL")
            )
            print(f"   {load_average()}", flush=True)
            if not ok:
                failed.append("L3")

        if "soak" in only:
            every = 5.0 if quick else 10.0
            sampler = Sampler(stack, every)
            sampler.start()
            clients = Clients(spec=spec | {"seconds": soak_s}, directory=directory)
            http = LocustRun(
                user_class="OwnerApiUser", users=20, seconds=soak_s, sessions=sessions,
                directory=directory,
            )  # fmt: skip
            loads = []
            deadline = time.monotonic() + soak_s
            while time.monotonic() < deadline:
                time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
                loads.append(os.getloadavg()[0])
            ws_result = clients.wait(timeout=180)
            http_result = http.wait()
            sampler.halt.set()
            sampler.join()
            samples = sampler.samples
            end = samples[-1][0]
            scale = soak_s / 1800
            base = (120 * scale, 300 * scale)
            last = (end - 180 * scale, end)
            print(
                f"L4 soak {soak_s} s: API mix 20 req/s ({http_result['requests']:,} requests, "
                f"p99 {http_result['p99']:.0f} ms, {http_result['5xx']} 5xx), "
                f"{ws_result['sockets']} sockets, {ws_result['chargers']} chargers, workers and "
                f"beat; RSS every {every:.0f} s ({len(samples)} samples); load average during "
                f"the run {min(loads, default=0):.1f}–{max(loads, default=0):.1f}"
            )
            print_clients(ws_result)
            print(
                f"   {'process':<8} {'start':>7} {'base':>7} {'last':>7} {'growth':>7}  MiB "
                f"(base = mean over {base[0]:.0f}–{base[1]:.0f} s, last = mean over the "
                f"last {180 * scale:.0f} s)"
            )
            growth = math.nan
            grown: list[str] = []  # processes past the target on their own
            for name in [*stack.processes, None]:
                first = samples[0][1] if name is None else {name: samples[0][1][name]}
                start_mib = sum(first.values())
                base_mib = window_mean(samples, *base, name)
                last_mib = window_mean(samples, *last, name)
                change = last_mib / base_mib - 1
                if name is None:
                    growth = change
                elif not change < L4_GROWTH:
                    grown.append(f"{name} {change:+.1%}")
                print(
                    f"   {name or 'total':<8} {start_mib:>7.0f} {base_mib:>7.0f} "
                    f"{last_mib:>7.0f} {change:>+7.1%}"
                )
            dead = stack.dead()
            disconnects = ws_result["owner_disconnects"] + ws_result["charger_disconnects"]
            # The total and every process on its own: a leak in a small process would hide in
            # the total and still kill that process in the end.
            ok = (
                growth < L4_GROWTH
                and not grown
                and not http_result["5xx"]
                and not disconnects
                and not ws_result["bench_missing"]
                and not dead
            )
            print(
                f"   memory growth {growth:+.1%} in total, processes past the target "
                f"{grown or 'none'} (target < {L4_GROWTH:.0%} each), {http_result['5xx']} "
                f"5xx, {disconnects} unexpected disconnects, {ws_result['bench_missing']} "
                f"updates missing" + (f", dead processes {dead}" if dead else "") + " "
                + ("PASS" if ok else "FAIL")
            )  # fmt: skip
            (directory / "rss.json").write_text(json.dumps(samples))
            if not ok:
                failed.append("L4")
    finally:
        stack.stop()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if not options.keep and not failed:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
    print("all targets met" if not failed else f"missed: {', '.join(failed)} (logs in {directory})")
    return 1 if failed else 0


if __name__ == "__main__":
    # Run as a script, bench/ is first on sys.path, where bench/ocpp.py would shadow the `ocpp`
    # package: the project root takes its place.
    if Path(sys.path[0]).resolve() == ROOT / "bench":
        sys.path[0] = str(ROOT)
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
        import django

        django.setup()
        apply_channel_options()
        result = asyncio.run(run_clients(json.loads(Path(sys.argv[2]).read_text())))
        Path(sys.argv[3]).write_text(json.dumps(result))
    elif not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        os.environ.setdefault("DJANGO_DEBUG", "1")
        os.chdir(ROOT)
        command = [sys.executable, "-m", "chargescape.embedded", "--", sys.executable, __file__]
        os.execv(sys.executable, command + sys.argv[1:])  # noqa: S606 - ourselves, wrapped
    else:
        sys.path.insert(0, str(ROOT))
        sys.exit(main())
