"""Linking through the simulated cloud with the real `smartcar` SDK: consent, codes, tokens."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
import requests
import smartcar
import smartcar.config

from vehicles.sim.cloud import SimulatedCloud

from .conftest import (
    REDIRECT_URI,
    auth_client,
    link,
    open_consent,
    redirect_params,
    submit_consent,
)


def test_link_flow_returns_exactly_the_chosen_cars(cloud):
    """Auth URL → consent (pick 2 of 3) → code with state verbatim → tokens → those 2 cars."""
    state = "a b&c=d/é?"
    session, page, consent, car_ids = open_consent(cloud, state=state)
    assert page.status_code == 200
    assert car_ids == [c.vehicle_id for c in cloud.cars]

    response = submit_consent(cloud, session, consent, vehicles=[car_ids[2], car_ids[0]])
    assert response.status_code == 303
    params = redirect_params(response)
    assert params["state"] == state
    access = auth_client(cloud).exchange_code(params["code"])
    assert access.token_type == "Bearer"
    assert access.expires_in == 7200

    listed = smartcar.get_vehicles(access.access_token)
    assert listed.vehicles == [car_ids[0], car_ids[2]]
    assert listed.paging.count == 2
    first = cloud.car(car_ids[0])
    attributes = smartcar.Vehicle(car_ids[0], access.access_token).attributes()
    assert (attributes.make, attributes.model, attributes.year) == (
        first.make,
        first.model,
        first.year,
    )
    assert smartcar.Vehicle(car_ids[0], access.access_token).vin().vin == first.vin
    assert [c.connected for c in cloud.cars] == [True, False, True]


def test_deny_redirects_with_access_denied_and_the_state(cloud):
    """Denying consent sends the owner back with error=access_denied and no code."""
    session, _, consent, _ = open_consent(cloud, state="keep-me")
    params = redirect_params(submit_consent(cloud, session, consent, action="deny"))
    assert params["error"] == "access_denied"
    assert params["state"] == "keep-me"
    assert "code" not in params


@pytest.mark.parametrize("count", [0, 4])
def test_consent_needs_one_to_three_cars(monkeypatch, count):
    """Approving with no car, or with more than three, re-renders the page with a message."""
    with SimulatedCloud(cars=5) as cloud:
        monkeypatch.setattr(smartcar.config, "CONNECT_ORIGIN", cloud.connect_origin)
        session, _, consent, car_ids = open_consent(cloud)
        response = submit_consent(cloud, session, consent, vehicles=car_ids[:count])
        assert response.status_code == 400
        assert "Choose between 1 and 3 cars." in response.text
        assert "location" not in response.headers
        # the same consent still works once the owner corrects the choice
        fixed = submit_consent(cloud, session, consent, vehicles=car_ids[:3])
        assert "code" in redirect_params(fixed)


def test_single_select_offers_one_car(cloud):
    """single_select turns the checkboxes into radio buttons and allows one car only."""
    session, page, consent, car_ids = open_consent(cloud, single_select={"enabled": True})
    assert page.text.count("type=radio") == 3
    assert submit_consent(cloud, session, consent, vehicles=car_ids[:2]).status_code == 400


def test_consent_page_is_mobile_friendly_with_no_script(cloud):
    """Viewport meta, no script at all, and a CSP that only allows the page's own hashed style."""
    _, page, _, _ = open_consent(cloud)
    assert 'name=viewport content="width=device-width' in page.text
    assert "<script" not in page.text.lower()
    assert re.search(r"\son[a-z]+=", page.text) is None  # no inline event handlers either
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    style = re.search(r"<style>(.*?)</style>", page.text, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_unknown_client_is_refused_without_redirect(cloud):
    """A Connect URL with a foreign client_id gets an error page, never a redirect."""
    client = smartcar.AuthClient(
        client_id="someone-else", client_secret="x", redirect_uri=REDIRECT_URI
    )
    page = requests.get(client.get_auth_url(["read_battery"]), allow_redirects=False, timeout=5)
    assert page.status_code == 400
    assert "Unknown client_id" in page.text


def test_code_is_single_use(cloud):
    """Replaying an authorization code is invalid_grant."""
    session, _, consent, car_ids = open_consent(cloud)
    code = redirect_params(submit_consent(cloud, session, consent, vehicles=car_ids[:1]))["code"]
    auth_client(cloud).exchange_code(code)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        auth_client(cloud).exchange_code(code)
    assert excinfo.value.type == "invalid_grant"
    assert excinfo.value.status_code == 400


def test_wrong_client_secret_is_invalid_client(cloud):
    """The token endpoint checks HTTP Basic client credentials."""
    client = smartcar.AuthClient(
        client_id=cloud.client_id, client_secret="wrong", redirect_uri=REDIRECT_URI
    )
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        client.exchange_code("whatever")
    assert (excinfo.value.status_code, excinfo.value.type) == (401, "invalid_client")


def test_refresh_rotates_the_refresh_token(cloud, linked):
    """A refresh gives new tokens; the old refresh token is then spent; both access tokens work."""
    access, ids = linked
    renewed = auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert renewed.access_token != access.access_token
    assert renewed.refresh_token != access.refresh_token
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        auth_client(cloud).exchange_refresh_token(access.refresh_token)
    assert excinfo.value.type == "invalid_grant"
    for token in (renewed.access_token, access.access_token):
        assert smartcar.Vehicle(ids[0], token).battery().percent_remaining > 0
    assert cloud.request_count("auth.exchange_refresh_token") == 2


def test_token_reaches_only_the_chosen_cars(cloud, linked):
    """A car the owner did not pick answers 404 RESOURCE_NOT_FOUND to that token."""
    access, ids = linked
    other = next(c.vehicle_id for c in cloud.cars if c.vehicle_id not in ids)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        smartcar.Vehicle(other, access.access_token).battery()
    assert (excinfo.value.status_code, excinfo.value.type) == (404, "RESOURCE_NOT_FOUND")


def test_missing_scope_is_a_permission_error(cloud):
    """Without read_location the location endpoint is 403 PERMISSION; granted ones still work."""
    access, ids = link(cloud, 1, scopes=["read_vehicle_info", "read_battery"])
    vehicle = smartcar.Vehicle(ids[0], access.access_token)
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        vehicle.location()
    assert (excinfo.value.status_code, excinfo.value.type) == (403, "PERMISSION")
    assert vehicle.permissions().permissions == ["read_vehicle_info", "read_battery"]


def test_disconnect_removes_the_car_and_then_the_token(cloud, linked):
    """Disconnecting one of two cars makes it 404; disconnecting the last one kills the token."""
    access, ids = linked
    assert {c.vehicle_id for c in smartcar.get_connections(cloud.management_token).connections} == (
        set(ids)
    )
    assert smartcar.Vehicle(ids[0], access.access_token).disconnect().status == "success"
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        smartcar.Vehicle(ids[0], access.access_token).charge()
    assert excinfo.value.status_code == 404
    assert smartcar.get_vehicles(access.access_token).vehicles == [ids[1]]

    smartcar.Vehicle(ids[1], access.access_token).disconnect()
    with pytest.raises(smartcar.SmartcarException) as excinfo:
        smartcar.get_vehicles(access.access_token)
    assert (excinfo.value.status_code, excinfo.value.type) == (401, "AUTHENTICATION")
    assert smartcar.get_connections(cloud.management_token).connections == []
