"""Locust users for bench/load.py: signed-in owners reading their API, or loading their home page.

    locust -f bench/locust/owner.py OwnerApiUser --headless ...   (bench/load.py starts it)

Each simulated user takes one seeded owner's session cookie (LOAD_SESSIONS: a JSON list of
{"session": key, "vehicles": [uuid, ...], "chargers": [id, ...]} written by bench/load.py) and
waits an exponential time (mean 1 / LOAD_USER_RPS) after each request: Poisson arrivals, so the
offered rate is users × LOAD_USER_RPS a second less the response times (the driver prints the
rate achieved). FastHttpUser (geventhttpclient) is the lean client: one core sends a few thousand
requests a second.

Every response's status is counted (LOAD_STATUS_OUT, JSON written when the run stops), so the
driver reports 5xx and any other non-2xx exactly, beside Locust's own percentiles (--csv).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter

from locust import FastHttpUser, events, task

SESSIONS = json.loads(open(os.environ["LOAD_SESSIONS"]).read())  # noqa: SIM115
USER_RPS = float(os.environ.get("LOAD_USER_RPS", "1"))
STATUS_OUT = os.environ.get("LOAD_STATUS_OUT")
statuses: Counter[str] = Counter()
_next_owner = iter(range(10**9))


@events.request.add_listener
def count_status(request_type, name, response, exception, **kwargs):  # type: ignore[no-untyped-def]
    code = getattr(response, "status_code", 0) or 0
    statuses[f"{code // 100}xx" if code else "error"] += 1
    if code >= 500 or not code:
        statuses[f"{name} {code or type(exception).__name__}"] += 1


@events.quitting.add_listener
def write_statuses(environment, **kwargs):  # type: ignore[no-untyped-def]
    if STATUS_OUT:
        with open(STATUS_OUT, "w") as handle:
            json.dump(dict(statuses), handle)


class _Owner(FastHttpUser):
    abstract = True

    def wait_time(self) -> float:
        # Poisson arrivals (exponential gaps, mean 1 / LOAD_USER_RPS) like independent owners.
        # Locust's constant_throughput starts every user in the same instant and keeps them in
        # step: 50 requests land together each second and queue behind each other (p50 ~110 ms
        # at 20 users where one request alone takes ~15 ms), which no real population does.
        return random.expovariate(USER_RPS)

    def on_start(self) -> None:
        self.owner = SESSIONS[next(_next_owner) % len(SESSIONS)]
        self.headers = {"Cookie": f"sessionid={self.owner['session']}"}

    def get(self, path: str, name: str) -> None:
        with self.client.get(path, headers=self.headers, name=name, catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}")


class OwnerApiUser(_Owner):
    """The owner app's read mix: the garage list most, then a car, its readings and
    preferences, the chargers and the profile (weights from how the app's pages call them)."""

    @task(4)
    def vehicles(self) -> None:
        self.get("/api/v1/vehicles", "vehicles")

    @task(3)
    def vehicle(self) -> None:
        vehicle = random.choice(self.owner["vehicles"])
        self.get(f"/api/v1/vehicles/{vehicle}", "vehicle detail")

    @task(3)
    def readings(self) -> None:
        vehicle = random.choice(self.owner["vehicles"])
        self.get(f"/api/v1/vehicles/{vehicle}/readings?limit=48", "readings")

    @task(2)
    def preferences(self) -> None:
        vehicle = random.choice(self.owner["vehicles"])
        self.get(f"/api/v1/vehicles/{vehicle}/preferences", "preferences")

    @task(2)
    def chargers(self) -> None:
        self.get("/api/v1/chargers/", "chargers")

    @task(1)
    def me(self) -> None:
        self.get("/api/v1/me", "me")


class DashboardUser(_Owner):
    """The owner's home page (`/`): their cars with the latest reading and tonight's promise."""

    @task
    def home(self) -> None:
        self.get("/", "dashboard /")
