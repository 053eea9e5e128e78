"""Security profiles 1/2 on the upgrade: HTTP Basic with the charge point id and its key, and an
OCPP subprotocol; anything else is answered with an HTTP error instead of a websocket."""

import pytest
import websockets

from tests.vehicles.chargers.conftest import raw_connect, refreshed, run
from vehicles.chargers.models import OcppMessage


def _refusal(url, charge_point_id, key, subprotocol="ocpp2.0.1"):
    async def attempt():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await raw_connect(url, charge_point_id, key, subprotocol)
        return refused.value.response

    return run(attempt())


def test_wrong_password_is_refused_before_the_websocket_is_accepted(ocpp_url, provision):
    """A wrong key gets HTTP 401 with a Basic challenge, never a 101 upgrade: the charger stays
    offline and not one frame is exchanged or logged."""
    charger, key = provision()
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    response = _refusal(ocpp_url, charger.charge_point_id, wrong)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    stored = run(refreshed(charger))
    assert not stored.is_connected
    assert stored.connected_at is None
    assert not OcppMessage.objects.filter(charger=charger).exists()


@pytest.mark.parametrize(
    "who",
    ["unknown id", "user name is another charger", "key too short"],
)
def test_other_credential_failures_get_the_same_401(ocpp_url, provision, who):
    """Unknown chargers, a user name that is not the path's id and short keys all get 401."""
    charger, key = provision()
    other, other_key = provision()
    if who == "unknown id":
        response = _refusal(ocpp_url, "T-nobody", key)
    elif who == "user name is another charger":

        async def attempt():
            import base64

            token = base64.b64encode(f"{other.charge_point_id}:{other_key}".encode()).decode()
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(
                    f"{ocpp_url}/{charger.charge_point_id}",
                    subprotocols=["ocpp1.6"],
                    additional_headers={"Authorization": f"Basic {token}"},
                )
            return refused.value.response

        response = run(attempt())
    else:
        response = _refusal(ocpp_url, charger.charge_point_id, key[:15])
    assert response.status_code == 401


@pytest.mark.parametrize("offered", [["ocpp1.5"], ["ocpp2.0"], []])
def test_unknown_subprotocol_is_refused(ocpp_url, provision, offered):
    """Without ocpp1.6, ocpp2.0.1 or ocpp2.1 on offer the upgrade is refused (400)."""
    charger, key = provision()

    async def attempt():
        import base64

        token = base64.b64encode(f"{charger.charge_point_id}:{key}".encode()).decode()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{ocpp_url}/{charger.charge_point_id}",
                subprotocols=offered or None,
                additional_headers={"Authorization": f"Basic {token}"},
            )
        return refused.value.response

    assert run(attempt()).status_code == 400


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
def test_right_key_is_accepted_with_the_offered_subprotocol(ocpp_url, provision, subprotocol):
    """The right key opens the socket, speaking the version the charger offered; the key itself
    is stored only as a hash."""
    charger, key = provision()
    assert key not in charger.authorization_key_hash
    assert len(key) >= 16

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, subprotocol)
        assert socket.subprotocol == subprotocol
        await socket.close()

    run(scenario())
