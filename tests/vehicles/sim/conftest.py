"""Fixtures for the simulated vehicle cloud: a live server per test, the real `smartcar` SDK
pointed at it, a webhook receiver on loopback, and a helper that links cars like a browser."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import smartcar
import smartcar.config

from vehicles.sim.cloud import SimulatedCloud

REDIRECT_URI = "http://127.0.0.1:9/vehicles/link/callback"
# Monday 2026-01-05 04:00 in Los Angeles: every car is home, none has left for work yet.
MONDAY_4AM = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ALL_SCOPES = [
    "read_vehicle_info",
    "read_vin",
    "read_battery",
    "read_charge",
    "control_charge",
    "read_location",
    "read_odometer",
]


@dataclass
class Receiver:
    """A webhook endpoint that records every POST and answers VERIFY like a correct app."""

    management_token: str
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer_challenge_with: str | None = None  # override the HMAC to simulate a wrong answer

    def last_json(self) -> dict:
        return json.loads(self.received[-1][1])


def _receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            event = json.loads(body)
            answer = {}
            if event.get("eventType") == "VERIFY":
                challenge = event["data"]["challenge"]
                answer = {
                    "challenge": receiver.answer_challenge_with
                    or smartcar.hash_challenge(receiver.management_token, challenge)
                }
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(management_token="amt-" + "x" * 20)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/smartcar"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def cloud(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedCloud]:
    """Three cars, frozen clock at a known Monday morning, SDK pointed at the server."""
    with SimulatedCloud(
        cars=3,
        seed=7,
        start=MONDAY_4AM,
        management_token=receiver.management_token,
        webhook_url=receiver.url,
    ) as cloud:
        for name, value in cloud.sdk_config.items():
            monkeypatch.setattr(smartcar.config, name, value)
        yield cloud


def auth_client(cloud: SimulatedCloud) -> smartcar.AuthClient:
    return smartcar.AuthClient(
        client_id=cloud.client_id,
        client_secret=cloud.client_secret,
        redirect_uri=REDIRECT_URI,
        mode="simulated",
    )


def open_consent(cloud: SimulatedCloud, scopes=None, state="st-1", **options) -> tuple:
    """GET the Connect URL the SDK builds; returns (session, response, consent id, car ids)."""
    url = auth_client(cloud).get_auth_url(scopes or ALL_SCOPES, {"state": state, **options})
    session = requests.Session()
    page = session.get(url, timeout=5)
    consent = re.search(r'name=consent value="([^"]+)"', page.text)
    car_ids = re.findall(r'name=vehicle value="([^"]+)"', page.text)
    return session, page, consent[1] if consent else None, car_ids


def submit_consent(cloud, session, consent, action="approve", vehicles=()) -> requests.Response:
    """POST the consent form as a browser would (no redirect following)."""
    return session.post(
        f"{cloud.connect_origin}/oauth/authorize",
        data={"consent": consent, "action": action, "vehicle": list(vehicles)},
        allow_redirects=False,
        timeout=5,
    )


def redirect_params(response: requests.Response) -> dict[str, str]:
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def link(cloud: SimulatedCloud, count: int = 2, scopes=None):
    """Link the first `count` cars through consent and the SDK; returns (access, vehicle ids)."""
    session, _, consent, car_ids = open_consent(cloud, scopes)
    response = submit_consent(cloud, session, consent, vehicles=car_ids[:count])
    access = auth_client(cloud).exchange_code(redirect_params(response)["code"])
    return access, car_ids[:count]


@pytest.fixture
def linked(cloud: SimulatedCloud):
    """Two of the three cars linked with every scope: (access, [vehicle ids])."""
    return link(cloud, 2)
