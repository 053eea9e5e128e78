"""The fault tests' world: a real `celery -A chargescape worker` (and beat, when a test needs the
relay) against the pytest-django test database, a Redis server of our own that a test may kill
or wipe, and the simulated vehicle cloud on loopback with a fleet of cars linked through the
real SDK.

The worker is a subprocess, so it sees only committed rows: the tests use `transactional_db`.
The test process publishes to our Redis too (the on-commit fast path of `create_command`), so
the machine's shared Redis never sees these messages and no other test's worker can take them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from chargescape.celery import app as celery_app
from tests.database import database_url
from tests.factories import UserFactory
from tests.vehicles.conftest import simulated_cloud
from tests.vehicles.control.faults.processes import (
    Beat,
    PostgresServer,
    RedisServer,
    Worker,
    wait_for,
)
from vehicles import services as vehicle_services
from vehicles.control import services as control_services
from vehicles.control.models import TERMINAL_STATES, Command
from vehicles.models import Vehicle
from vehicles.oem.base import VehicleState
from vehicles.sim.cloud import SimulatedCloud
from vehicles.sim.cloud.grants import ALL_SCOPES

# Monday 2026-01-05 04:00 in Los Angeles: every car is at home, and the simulated clock is frozen.
MONDAY_4AM = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FLEET_SIZE = 24
FLOOR_PCT = 30

# Command timings for the worker, scaled down ~20× from production so minutes become seconds.
FAST_TIMINGS = {
    "CONTROL_RETRY_BASE_SECONDS": "0.25",  # production 5 s
    "CONTROL_AMBIGUOUS_SETTLE_SECONDS": "1.5",  # production 30 s
    "CONTROL_CLAIM_TIMEOUT_SECONDS": "6",  # production 120 s
    "CONTROL_STALL_AFTER_SECONDS": "6",  # production 120 s
    "CONTROL_OEM_TIMEOUT_SECONDS": "5",  # production 20 s
}


def fresh_broker(server: RedisServer) -> None:
    """An empty broker that has been in service: the relay's marker is there (a wiped broker is
    what test_broker.py does on purpose)."""
    client = server.client()
    client.flushall()
    client.set(control_services.BROKER_MARKER_KEY, "set by the test fixture")


@contextlib.contextmanager
def side_connection() -> Iterator[psycopg.Connection]:
    """A second connection to the test database, outside Django: the tests take locks with it
    to park the worker at a precise point (a real lock wait, nothing patched)."""
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    ) as side:
        yield side


def backends_waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory) -> Iterator[RedisServer]:
    """One Redis server per test process, ours to kill and wipe (never the machine's)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def broker(own_redis, settings) -> Iterator[RedisServer]:
    """Point this process's Celery producer (and the relay's broker marker) at our Redis, empty.

    The Celery app caches its connection pools; dropping them makes the next publish connect to
    the new URL. Restored afterwards for the rest of the suite.
    """
    if own_redis.process is None:
        own_redis.start()

    def use(url: str) -> None:
        celery_app.conf.broker_url = url
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    previous = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = own_redis.url
    use(own_redis.url)
    fresh_broker(own_redis)
    yield own_redis
    use(previous)
    if own_redis.process is None:  # a test killed it and did not bring it back
        own_redis.start()


@pytest.fixture
def own_postgres(transactional_db) -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own, with the test database's schema, that this process's
    default connection (and the worker started afterwards) uses for the test: a test may crash
    and restart it. The shared test database is back in place before pytest-django flushes it.

    The schema is copied (pg_dump --schema-only) from the test database pytest-django migrated,
    so it is exactly the schema every other test runs on."""
    directory = Path(tempfile.mkdtemp(prefix="cs-faults-pg-"))  # traversable by the PG user
    server = PostgresServer(directory)
    saved = dict(connection.settings_dict)
    try:
        server.init().start()  # stopped below even when a later step of the setup fails
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
        ) as admin:
            admin.execute("CREATE DATABASE faults")
        server.copy_schema(from_url=database_url(), to_database="faults")
        connection.close()
        connection.settings_dict.update(
            NAME="faults", HOST="127.0.0.1", PORT=str(server.port), USER="postgres", PASSWORD=""
        )
        yield server
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cloud(settings) -> Iterator[SimulatedCloud]:
    """A simulated cloud with FLEET_SIZE cars; this process's Smartcar settings point at it."""
    with simulated_cloud(settings, cars=FLEET_SIZE, seed=11, start=MONDAY_4AM) as sim:
        yield sim


@dataclass
class Fleet:
    vehicles: list[Vehicle]

    def by_vehicle_id(self, vehicle_id: str) -> Vehicle:
        return next(v for v in self.vehicles if v.provider_vehicle_id == vehicle_id)


@pytest.fixture
def fleet(transactional_db, broker, cloud, settings) -> Fleet:
    """Every simulated car linked to one owner (the real OAuth code exchange and listing),
    plugged in at 50 %, not charging, limit 90 %, floor 30 %, with a fresh reading."""
    owner = UserFactory()
    redirect_uri = settings.VEHICLE_PROVIDERS["smartcar"]["REDIRECT_URI"]
    with cloud.world.lock:
        code = cloud.world.issue_code(
            client_id=cloud.client_id,
            vehicle_ids=[car.vehicle_id for car in cloud.cars],
            scopes=list(ALL_SCOPES),
            redirect_uri=redirect_uri,
        )
    vehicles = vehicle_services.link_vehicles(
        owner=owner, provider="smartcar", code=code, redirect_uri=redirect_uri
    )
    assert len(vehicles) == FLEET_SIZE  # Smartcar pages GET /vehicles, 10 a page by default
    for vehicle in vehicles:
        vehicle.preference.min_soc_pct = FLOOR_PCT
        vehicle.preference.save()
        cloud.set_state(
            vehicle.vin, soc_pct=50.0, plugged=True, charging=False, charge_limit_pct=90
        )
        vehicle_services.record_reading(
            vehicle=vehicle,
            state=VehicleState(recorded_at=timezone.now(), soc_pct=50.0, plugged_in=True),
            source="poll",
        )
    cloud.reset_request_counts()
    fresh_broker(broker)  # drops the link's telemetry polls: not part of any scenario
    return Fleet(vehicles=vehicles)


@pytest.fixture
def process_env(cloud, broker) -> dict[str, str]:
    """The environment of our worker and beat: our Redis, the simulated cloud and the scaled-down
    command timings (the database is added when a process starts)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.vehicles.control.faults.worker_settings",
        REDIS_URL=broker.url,
        CELERY_BROKER_URL=broker.url,
        CELERY_RESULT_BACKEND=broker.url,
        SMARTCAR_CLIENT_ID=cloud.client_id,
        SMARTCAR_CLIENT_SECRET=cloud.client_secret,
        SMARTCAR_MANAGEMENT_TOKEN=cloud.management_token,
        SMARTCAR_API_ORIGIN=cloud.api_origin,
        SMARTCAR_AUTH_ORIGIN=cloud.auth_origin,
        SMARTCAR_CONNECT_ORIGIN=cloud.connect_origin,
        DJANGO_CONN_MAX_AGE="60",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"FAULTS_{name}": value for name, value in FAST_TIMINGS.items()})
    return env


class Processes:
    """Start workers and beats for one test; all are stopped when it ends."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.started: list[Worker | Beat] = []

    def _env(self, overrides: dict[str, str]) -> dict[str, str]:
        # The database as it is now: test_postgres.py moves this process to its own server.
        return {**self.env, "DATABASE_URL": database_url(), **overrides}

    def worker(self, *, concurrency: int = 2, name: str = "worker", **env: str) -> Worker:
        process = Worker(
            concurrency=concurrency,
            env=self._env(env),
            directory=self.directory,
            name=f"{name}{len(self.started)}",
        )
        self.started.append(process)
        return process.start()

    def beat(self, *, name: str = "beat", **env: str) -> Beat:
        process = Beat(
            env=self._env(env), directory=self.directory, name=f"{name}{len(self.started)}"
        )
        self.started.append(process)
        return process.start()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.started)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop(timeout_s=5)


@pytest.fixture
def processes(transactional_db, process_env, cloud, tmp_path, request) -> Iterator[Processes]:
    """Worker and beat processes of this test. Stopped before the database is flushed; their
    logs are printed when the test failed."""
    started = Processes(process_env, tmp_path)
    yield started
    cloud.release_holds()  # a held request must not keep a warm shutdown waiting
    started.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(started.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def live_commands() -> int:
    return Command.objects.exclude(state__in=TERMINAL_STATES).count()


def wait_until_settled(*, timeout_s: float, what: str = "every command to end") -> None:
    """Poll the database until no command is pending or sending (the worker's work is done)."""
    wait_for(lambda: live_commands() == 0, timeout_s=timeout_s, what=what, every_s=0.2)


def commands_in(state: str) -> int:
    return Command.objects.filter(state=state).count()


def seconds_since(moment: datetime) -> float:
    return (timezone.now() - moment) / timedelta(seconds=1)


def accepted(cloud, vehicle, endpoint: str = "vehicle.start_charge") -> int:
    """How many `endpoint` commands the simulated cloud accepted for `vehicle` (its own log):
    the count a "never sent twice" assertion reads."""
    return sum(
        1
        for entry in cloud.commands()
        if entry["vehicle_id"] == vehicle.provider_vehicle_id
        and entry["endpoint"] == endpoint
        and 200 <= entry["status"] < 300
    )
