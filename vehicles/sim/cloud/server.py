"""`SimulatedCloud`: the simulator as a real HTTP server in a background thread, for tests.

    with SimulatedCloud(cars=3, webhook_url=url) as cloud:
        monkeypatch.setattr(smartcar.config, "API_ORIGIN", cloud.api_origin)   # and the others
        ...
        cloud.set_state(vin, plugged=True)
        cloud.advance(3600)

Every control method is also reachable over HTTP under `/_sim/` (app.py) for other processes.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from datetime import datetime

import uvicorn

from .app import CloudApp
from .control import Controller
from .world import World


class SimulatedCloud(Controller):
    """A Smartcar-compatible vehicle cloud on a loopback port (0 = any free port)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cars: int = 3,
        seed: int = 1,
        client_id: str | None = None,
        client_secret: str | None = None,
        management_token: str | None = None,
        webhook_url: str | None = None,
        redirect_uris: tuple[str, ...] = (),
        start: datetime | None = None,
        time_scale: float = 0.0,
        timezone: str = "America/Los_Angeles",
        routine: bool = True,
        auto_webhooks: bool = False,
        access_ttl_s: int = 7200,
    ) -> None:
        world = World(
            cars=cars,
            seed=seed,
            client_id=client_id or f"sim-client-{secrets.token_hex(4)}",
            client_secret=client_secret or secrets.token_urlsafe(24),
            management_token=management_token or secrets.token_urlsafe(24),
            webhook_url=webhook_url,
            redirect_uris=redirect_uris,
            start=start,
            time_scale=time_scale,
            timezone=timezone,
            routine=routine,
            auto_webhooks=auto_webhooks,
            access_ttl_s=access_ttl_s,
        )
        super().__init__(world)
        self.host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        # the ticker only matters when time runs on its own and webhooks go out by themselves
        self.app = CloudApp(world, tick_s=1.0 if auto_webhooks and time_scale > 0 else 0.0)

    # -- credentials and origins --------------------------------------------------------------
    @property
    def client_id(self) -> str:
        return self.world.client_id

    @property
    def client_secret(self) -> str:
        return self.world.client_secret

    @property
    def management_token(self) -> str:
        return self.world.management_token

    @property
    def webhook_url(self) -> str | None:
        return self.world.webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.world.webhook_url = url

    @property
    def user_id(self) -> str:
        return self.world.user_id

    @property
    def webhook_id(self) -> str:
        return self.world.webhook_id

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the simulated cloud is not running")
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    api_origin = url
    connect_origin = url
    management_origin = url

    @property
    def auth_origin(self) -> str:
        """The SDK's AUTH_ORIGIN is the whole token URL, not an origin (smartcar/config.py)."""
        return f"{self.url}/oauth/token"

    token_url = auth_origin

    @property
    def sdk_config(self) -> dict[str, str]:
        """Attribute values for `smartcar.config` (read by the SDK at call time)."""
        return {
            "API_ORIGIN": self.api_origin,
            "AUTH_ORIGIN": self.auth_origin,
            "CONNECT_ORIGIN": self.connect_origin,
            "MANAGEMENT_API_ORIGIN": self.management_origin,
            "VEHICLE_API_ORIGIN": self.url,
        }

    @property
    def sdk_environ(self) -> dict[str, str]:
        """The same as environment variables, for a process that imports `smartcar` later."""
        names = {
            "API_ORIGIN": "SMARTCAR_API_ORIGIN",
            "AUTH_ORIGIN": "SMARTCAR_AUTH_ORIGIN",
            "CONNECT_ORIGIN": "SMARTCAR_CONNECT_ORIGIN",
            "MANAGEMENT_API_ORIGIN": "SMARTCAR_MANAGEMENT_API_ORIGIN",
            "VEHICLE_API_ORIGIN": "SMARTCAR_VEHICLE_API_V3_ORIGIN",
        }
        return {names[k]: v for k, v in self.sdk_config.items()}

    def now(self) -> datetime:
        return self.world.now()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> SimulatedCloud:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(128)
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sim-cloud", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated cloud did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> SimulatedCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
