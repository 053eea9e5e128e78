"""Malformed frames get the CALLERROR their version's spec names, and the socket lives on."""

import json

import pytest

from tests.vehicles.chargers.conftest import raw_connect, recv_json, run

BOOT = {
    "1.6": {"chargePointVendor": 5, "chargePointModel": "x"},
    "2.0.1": {"chargingStation": {"model": 5, "vendorName": "x"}, "reason": "PowerUp"},
}
MISSING = {"1.6": {"chargePointModel": "x"}, "2.0.1": {"reason": "PowerUp"}}
EXTRA = {
    "1.6": {"chargePointVendor": "v", "chargePointModel": "x", "colour": "red"},
    "2.0.1": {"chargingStation": {"model": "m", "vendorName": "v"}, "reason": "PowerUp", "x": 1},
}
BAD_ENUM = {
    "1.6": {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"},
    "2.0.1": {
        "timestamp": "2026-01-01T00:00:00Z",
        "connectorStatus": "Dancing",
        "evseId": 1,
        "connectorId": 1,
    },
}
EXPECTED = {
    "1.6": {
        "json": ("-1", "FormationViolation"),
        "shape": ("-1", "FormationViolation"),
        "short": ("m1", "ProtocolError"),
        "type": ("m2", "ProtocolError"),
        "unknown": ("m3", "NotImplemented"),
        "unhandled": ("m4", "NotSupported"),
        "wrong type": ("m5", "TypeConstraintViolation"),
        "missing": ("m6", "OccurenceConstraintViolation"),
        "extra": ("m7", "FormationViolation"),
        "enum": ("m8", "PropertyConstraintViolation"),
    },
    "2.0.1": {
        "json": ("-1", "RpcFrameworkError"),
        "shape": ("-1", "RpcFrameworkError"),
        "short": ("m1", "RpcFrameworkError"),
        "type": ("m2", "MessageTypeNotSupported"),
        "unknown": ("m3", "NotImplemented"),
        "unhandled": ("m4", "NotSupported"),
        "wrong type": ("m5", "TypeConstraintViolation"),
        "missing": ("m6", "OccurrenceConstraintViolation"),
        "extra": ("m7", "FormatViolation"),
        "enum": ("m8", "PropertyConstraintViolation"),
    },
}


def _frames(version: str) -> dict[str, str]:
    status = "StatusNotification"
    return {
        "json": "this is not json",
        "shape": json.dumps({"messageTypeId": 2}),
        "short": json.dumps([2, "m1", "Heartbeat"]),
        "type": json.dumps([9, "m2", "Heartbeat", {}]),
        "unknown": json.dumps([2, "m3", "FlyToTheMoon", {}]),
        "unhandled": json.dumps([2, "m4", "DataTransfer", {"vendorId": "acme"}]),
        "wrong type": json.dumps([2, "m5", "BootNotification", BOOT[version]]),
        "missing": json.dumps([2, "m6", "BootNotification", MISSING[version]]),
        "extra": json.dumps([2, "m7", "BootNotification", EXTRA[version]]),
        "enum": json.dumps([2, "m8", status, BAD_ENUM[version]]),
    }


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_malformed_frames_get_the_right_callerror_and_the_socket_survives(
    ocpp_url, provision, version
):
    """Every kind of malformed frame is answered [4, id, code, …] with the spec's code for the
    version, in order, and a Heartbeat afterwards still gets its CALLRESULT."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, f"ocpp{version}")
        for name, frame in _frames(version).items():
            await socket.send(frame)
            answer = await recv_json(socket)
            assert answer[0] == 4, name
            assert (answer[1], answer[2]) == EXPECTED[version][name], name
            assert isinstance(answer[3], str)
            assert isinstance(answer[4], dict)
        await socket.send(json.dumps([2, "alive", "Heartbeat", {}]))
        answer = await recv_json(socket)
        assert answer[:2] == [3, "alive"]
        assert "currentTime" in answer[2]
        await socket.close()

    run(scenario())


def test_a_stray_callresult_is_not_answered(ocpp_url, provision):
    """A CALLRESULT nobody asked for gets no reply (answering replies could ping-pong forever)."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp2.1")
        await socket.send(json.dumps([3, "nobody-asked", {}]))
        await socket.send(json.dumps([2, "next", "Heartbeat", {}]))
        answer = await recv_json(socket)
        assert answer[:2] == [3, "next"]
        await socket.close()

    run(scenario())
