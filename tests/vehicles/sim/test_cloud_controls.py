"""The `/_sim/` HTTP controls (for other processes) and the command-line entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests


def _sim(cloud, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {cloud.management_token}"}
    return requests.request(
        method, f"{cloud.url}/_sim/{path}", headers=headers, timeout=5, **kwargs
    )


def test_controls_require_the_management_token(cloud):
    """Without the management token every control is 401."""
    assert requests.get(f"{cloud.url}/_sim/state", timeout=5).status_code == 401
    assert _sim(cloud, "GET", "state").status_code == 200


def test_http_controls_drive_state_time_faults_and_webhooks(cloud, receiver):
    """Set a car's state, advance time, inject a fault, count requests and trigger a webhook, all
    over HTTP, with the same effects as the in-process methods."""
    vin = cloud.cars[0].vin
    state = _sim(cloud, "POST", f"cars/{vin}/state", json={"soc_pct": 50, "plugged": True}).json()
    assert (state["soc_pct"], state["plugged"]) == (50, True)
    _sim(cloud, "POST", f"cars/{vin}/state", json={"charging": True, "follows_routine": False})
    advanced = _sim(cloud, "POST", "time/advance", json={"seconds": 1800}).json()
    assert advanced["now"] == cloud.now().isoformat()
    car = cloud.car(vin)
    assert car.soc_pct == pytest.approx(50 + car.max_ac_kw * 0.5 / car.battery_kwh * 100)

    fault = _sim(cloud, "POST", "faults", json={"kind": "rate_limit", "retry_after_s": 9})
    assert fault.status_code == 201
    answer = requests.get(f"{cloud.api_origin}/v2.0/vehicles", timeout=5)
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "9")
    assert _sim(cloud, "GET", "requests").json()["vehicles"] == 1

    delivery = _sim(cloud, "POST", "webhooks/trigger", json={"vin": vin}).json()
    assert delivery["status"] == 200
    replay = _sim(cloud, "POST", "webhooks/replay", json={"delivery_id": delivery["delivery_id"]})
    assert replay.json()["body"] == delivery["body"]
    assert len(receiver.received) == 2
    assert _sim(cloud, "POST", "webhooks/verify").json()["ok"] is True


def test_http_controls_report_bad_input(cloud):
    """Unknown cars are 404 and invalid values 400, with a message."""
    assert _sim(cloud, "POST", "cars/NOPE/state", json={"soc_pct": 5}).status_code == 404
    bad = _sim(cloud, "POST", f"cars/{cloud.cars[0].vin}/state", json={"soc_pct": 150})
    assert bad.status_code == 400
    assert "soc_pct" in bad.json()["error"]


def test_command_line_serves_and_prints_its_url(tmp_path):
    """`python -m vehicles.sim.cloud --port 0` prints a URL that answers."""
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vehicles.sim.cloud",
            "--port",
            "0",
            "--client-secret",
            "s3cret",
            "--management-token",
            "amt",
            "--time-scale",
            "0",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        for _ in range(100):
            try:
                health = requests.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                import time

                time.sleep(0.05)
        assert health.json()["cars"] == 3
    finally:
        process.terminate()
        process.wait(timeout=10)
