"""Regression: the consumer never awaits a charger's reply inside a handler.

Channels hands a consumer one event at a time. Had a command handler awaited the charger's reply,
the `websocket.receive` carrying any later frame — including that reply — would wait behind it:
the charger's own CALLs would go unanswered and the command would only end at its timeout.
"""

import asyncio
import json

import pytest

from tests.vehicles.chargers.conftest import eventually, raw_connect, recv_json, run
from vehicles.chargers import rpc, services
from vehicles.chargers.models import Charger, ChargingProfile, ProfileState

BOOT_201 = {"chargingStation": {"model": "m", "vendorName": "v"}, "reason": "PowerUp"}


def test_charger_calls_are_answered_while_a_command_waits_for_the_charger(ocpp_url, provision):
    """While a command (GetVariables) waits on the charger, the charger's Heartbeat and
    StatusNotification are answered at once; then its reply completes the command."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp2.0.1")
        await eventually(lambda: Charger.objects.get(pk=charger.pk).is_connected)
        command = asyncio.create_task(
            rpc.call_charger(
                charger.charge_point_id,
                "GetVariables",
                {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]},
                timeout=10,
            )
        )
        call = await recv_json(socket)
        assert call[0] == 2
        assert call[2] == "GetVariables"
        # The charger talks first, before answering: it must not wait behind the command.
        await socket.send(json.dumps([2, "hb", "Heartbeat", {}]))
        assert (await recv_json(socket, timeout=3))[:2] == [3, "hb"]
        status = {
            "timestamp": "2026-01-01T00:00:00Z",
            "connectorStatus": "Occupied",
            "evseId": 1,
            "connectorId": 1,
        }
        await socket.send(json.dumps([2, "st", "StatusNotification", status]))
        assert (await recv_json(socket, timeout=3))[:2] == [3, "st"]
        result = {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "42",
                    "component": {"name": "X"},
                    "variable": {"name": "Y"},
                }
            ]
        }
        await socket.send(json.dumps([3, call[1], result]))
        reply = await command
        assert reply["getVariableResult"][0]["attributeValue"] == "42"
        await socket.close()
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())


def test_profiles_follow_the_boot_answer_and_one_call_is_outstanding_at_a_time(ocpp_url, provision):
    """After BootNotification the CSMS answers the boot first, then re-applies the stored
    profiles one CALL at a time (the next only after the charger answered the previous), and
    keeps answering the charger's own CALLs in between."""
    charger, key = provision()
    services.set_day_plan(
        charger=charger,
        start=services.timezone.now(),
        periods=[{"start_s": 0, "limit_w": 5000}],
        evse_id=0,
    )
    services.set_day_plan(
        charger=charger,
        start=services.timezone.now(),
        periods=[{"start_s": 0, "limit_w": 4000}],
        evse_id=1,
    )

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp2.0.1")
        await socket.send(json.dumps([2, "boot", "BootNotification", BOOT_201]))
        boot = await recv_json(socket)
        assert boot[:2] == [3, "boot"]
        assert boot[2]["status"] == "Accepted"
        first = await recv_json(socket)
        assert first[2] == "SetChargingProfile"
        assert first[3]["evseId"] == 0
        # Only one CALL is outstanding: nothing else arrives before we answer this one.
        await socket.send(json.dumps([2, "hb", "Heartbeat", {}]))
        assert (await recv_json(socket, timeout=3))[:2] == [3, "hb"]
        try:
            extra = await recv_json(socket, timeout=0.5)
        except TimeoutError:
            extra = None
        assert extra is None
        await socket.send(json.dumps([3, first[1], {"status": "Accepted"}]))
        second = await recv_json(socket)
        assert second[2] == "SetChargingProfile"
        assert second[3]["evseId"] == 1
        await socket.send(json.dumps([3, second[1], {"status": "Rejected"}]))

        def states():
            return dict(
                ChargingProfile.objects.filter(charger=charger).values_list("evse_id", "state")
            )

        await eventually(lambda: states() == {0: ProfileState.ACCEPTED, 1: ProfileState.REJECTED})
        await socket.close()
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())


def test_a_command_to_an_unreachable_charger_times_out_and_is_never_sent_late(ocpp_url, provision):
    """No socket for the charger: the command ends with CommandTimeout at its deadline; a charger
    connecting afterwards never receives it."""
    charger, key = provision()

    async def scenario():
        started = asyncio.get_running_loop().time()
        with pytest.raises(rpc.CommandTimeout):
            await rpc.call_charger(charger.charge_point_id, "GetVariables", {}, timeout=0.5)
        assert asyncio.get_running_loop().time() - started < 3
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp2.0.1")
        await socket.send(json.dumps([2, "hb", "Heartbeat", {}]))
        assert (await recv_json(socket))[:2] == [3, "hb"]
        await socket.close()
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())


def test_callerror_from_the_charger_reaches_the_caller(ocpp_url, provision):
    """A CALLERROR answer raises CommandFailed with the charger's error code."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp1.6")
        await eventually(lambda: Charger.objects.get(pk=charger.pk).is_connected)
        command = asyncio.create_task(
            rpc.call_charger(charger.charge_point_id, "GetConfiguration", {}, timeout=10)
        )
        call = await recv_json(socket)
        await socket.send(json.dumps([4, call[1], "NotSupported", "no", {}]))
        with pytest.raises(rpc.CommandFailed) as failed:
            await command
        assert failed.value.code == "NotSupported"
        await socket.close()
        await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_connected)

    run(scenario())
