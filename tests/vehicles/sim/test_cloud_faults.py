"""Injected faults surface through the real SDK the way Smartcar's own failures do."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import smartcar

from .conftest import auth_client


def _battery(linked, index=0):
    access, ids = linked
    return smartcar.Vehicle(ids[index], access.access_token).battery()


def test_server_errors_hit_the_next_requests_then_clear(cloud, linked):
    """A 5xx fault for two requests fails exactly two, with Smartcar's error type for the code."""
    cloud.inject_fault("server_error", count=2, status=502)
    for _ in range(2):
        with pytest.raises(smartcar.SmartcarException) as excinfo:
            _battery(linked)
        assert (excinfo.value.status_code, excinfo.value.type) == (502, "UPSTREAM")
        assert excinfo.value.resolution["type"] == "RETRY_LATER"
    assert _battery(linked).percent_remaining > 0


def test_rate_limit_carries_retry_after(cloud, linked):
    """429 RATE_LIMIT arrives as SmartcarException with retry_after from the Retry-After header."""
    cloud.inject_fault("rate_limit", retry_after_s=17)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        _battery(linked)
    error = excinfo.value
    assert (error.status_code, error.type, error.code) == (429, "RATE_LIMIT", "VEHICLE")
    assert error.retry_after == "17"
    assert error.request_id


def test_auth_fault_is_a_401_for_one_request(cloud, linked):
    """An injected 401 looks like an expired token once; the token itself stays valid."""
    cloud.inject_fault("auth")
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        _battery(linked)
    assert (excinfo.value.status_code, excinfo.value.type) == (401, "AUTHENTICATION")
    assert _battery(linked).percent_remaining > 0


def test_faults_can_target_one_endpoint_and_one_car(cloud, linked):
    """A fault scoped to vehicle.charge on one VIN leaves other endpoints and cars alone."""
    access, ids = linked
    target = cloud.car(ids[0])
    cloud.inject_fault("server_error", endpoint="vehicle.charge", vin=target.vin)
    assert _battery(linked, 0).percent_remaining > 0
    assert smartcar.Vehicle(ids[1], access.access_token).charge().state
    with pytest.raises(smartcar.SmartcarException):
        smartcar.Vehicle(ids[0], access.access_token).charge()


def test_slow_command_times_out_for_the_client_but_still_happens(cloud, linked):
    """A slow start_charge times out on the caller's side yet reaches the car: the ambiguous
    failure a retry must resolve by reading state first."""
    access, ids = linked
    cloud.set_state(ids[0], soc_pct=40.0, plugged=True, follows_routine=False)
    cloud.inject_fault("slow", endpoint="vehicle.start_charge", delay_s=0.6)
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{cloud.api_origin}/v2.0/vehicles/{ids[0]}/charge",
            json={"action": "START"},
            headers={"Authorization": f"Bearer {access.access_token}"},
            timeout=0.15,
        )
    deadline = time.monotonic() + 5
    while cloud.request_count("vehicle.start_charge") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)  # waits for the server's own delay, not for simulated time
    assert smartcar.Vehicle(ids[0], access.access_token).charge().state == "CHARGING"


def test_ten_concurrent_401s_are_countable_and_one_refresh_heals_them(cloud, linked):
    """With every access token expired, ten concurrent reads all get 401; the counters show ten
    reads and, after one refresh, one refresh request and a working new token."""
    access, ids = linked
    cloud.reset_request_counts()
    assert cloud.expire_access_tokens() == 1
    barrier = threading.Barrier(10)

    def read() -> int:
        barrier.wait()
        try:
            _battery(linked)
        except smartcar.SmartcarException as exc:
            return exc.status_code
        return 200

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: read(), range(10)))
    assert statuses == [401] * 10
    renewed = auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert smartcar.Vehicle(ids[0], renewed.access_token).battery().percent_remaining > 0
    counts = cloud.request_counts()
    assert counts["vehicle.battery"] == 11
    assert counts["auth.exchange_refresh_token"] == 1


def test_access_tokens_expire_on_the_simulated_clock(cloud, linked):
    """Two simulated hours after issue the access token is refused; refreshing still works."""
    access, ids = linked
    cloud.advance(2 * 3600)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        _battery(linked)
    assert excinfo.value.status_code == 401
    renewed = auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert smartcar.Vehicle(ids[0], renewed.access_token).battery()


def test_revoked_tokens_fail_and_cannot_refresh(cloud, linked):
    """After the owner revokes access in the automaker's app, reads are 401 and refresh fails."""
    access, _ = linked
    assert cloud.revoke_tokens() == 1
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        _battery(linked)
    assert excinfo.value.status_code == 401
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert excinfo.value.type == "invalid_grant"


def test_token_endpoint_can_fail_with_retry_after(cloud, linked):
    """A rate-limit fault on the refresh grant answers 429 with Retry-After, then recovers."""
    access, _ = linked
    cloud.inject_fault("rate_limit", endpoint="auth.exchange_refresh_token", retry_after_s=5)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert excinfo.value.status_code == 429
    assert auth_client(cloud).exchange_refresh_token(access.refresh_token).access_token


def test_unknown_fault_kind_is_rejected(cloud):
    """Fault injection validates its arguments instead of silently doing nothing."""
    with pytest.raises(ValueError, match="kind"):
        cloud.inject_fault("explode")
    with pytest.raises(ValueError, match="delay_s"):
        cloud.inject_fault("slow")
