"""The process hub: fleet commands (one channel-layer message per OCPP process), commands and
reconnects routed through its one channel, the batched message log and the silence sweep."""

import asyncio
import json

from tests.vehicles.chargers.conftest import eventually, raw_connect, recv_json, run
from vehicles.chargers import hub, rpc
from vehicles.chargers.models import Charger, Direction, OcppMessage

PROFILE_16 = {
    "connectorId": 0,
    "csChargingProfiles": {
        "chargingProfileId": 100,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2026-01-01T00:00:00Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}],
        },
    },
}


def _connected(charger: Charger) -> bool:
    return Charger.objects.get(pk=charger.pk).is_connected


def test_bulk_commands_answer_each_charger_in_order_and_time_out_the_absent(ocpp_url, provision):
    """`call_chargers` returns one entry per command, in order: the reply of a charger that
    accepts, CommandFailed for one that answers with a CALLERROR, CommandTimeout for one no
    process holds. A charger that misses the deadline never receives its command later."""
    (accepting, key_a), (refusing, key_r), (absent, _) = provision(), provision(), provision()

    async def answer(socket, reply):
        call = await recv_json(socket)
        assert call[2] == "SetChargingProfile"
        assert call[3] == PROFILE_16
        await socket.send(json.dumps(reply(call[1])))

    async def scenario():
        socket_a = await raw_connect(ocpp_url, accepting.charge_point_id, key_a, "ocpp1.6")
        socket_r = await raw_connect(ocpp_url, refusing.charge_point_id, key_r, "ocpp1.6")
        await eventually(lambda: _connected(accepting) and _connected(refusing))
        fanout = asyncio.create_task(
            rpc.call_chargers(
                [
                    (accepting.charge_point_id, "SetChargingProfile", PROFILE_16),
                    (absent.charge_point_id, "SetChargingProfile", PROFILE_16),
                    (refusing.charge_point_id, "SetChargingProfile", PROFILE_16),
                ],
                timeout=2,
            )
        )
        await answer(socket_a, lambda unique: [3, unique, {"status": "Accepted"}])
        await answer(socket_r, lambda unique: [4, unique, "NotSupported", "no", {}])
        accepted, missing, refused = await fanout
        assert accepted == {"status": "Accepted"}
        assert isinstance(missing, rpc.CommandTimeout)
        assert isinstance(refused, rpc.CommandFailed)
        assert refused.code == "NotSupported"
        for socket in (socket_a, socket_r):
            await socket.close()
        await eventually(lambda: not _connected(accepting) and not _connected(refusing))

    run(scenario())


def test_bulk_commands_keep_one_call_outstanding_per_charger(ocpp_url, provision):
    """Two bulk commands for the same charger: the second CALL is sent only after the charger
    answered the first."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp1.6")
        await eventually(lambda: _connected(charger))
        command = (charger.charge_point_id, "SetChargingProfile", PROFILE_16)
        fanout = asyncio.create_task(rpc.call_chargers([command, command], timeout=10))
        first = await recv_json(socket)
        try:
            early = await recv_json(socket, timeout=0.5)
        except TimeoutError:
            early = None
        assert early is None
        await socket.send(json.dumps([3, first[1], {"status": "Accepted"}]))
        second = await recv_json(socket)
        assert second[1] != first[1]
        await socket.send(json.dumps([3, second[1], {"status": "Rejected"}]))
        assert await fanout == [{"status": "Accepted"}, {"status": "Rejected"}]
        await socket.close()
        await eventually(lambda: not _connected(charger))

    run(scenario())


def test_no_logged_frame_is_lost_when_the_charger_disconnects(ocpp_url, provision):
    """The log is written in batches, but a consumer flushes before it marks its charger
    offline: the moment the charger shows offline, every frame it exchanged is in the log."""
    charger, key = provision()

    async def scenario():
        socket = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp1.6")
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        await socket.send(json.dumps([2, "st-1", "StatusNotification", status]))
        assert (await recv_json(socket))[:2] == [3, "st-1"]
        await socket.send(json.dumps([2, "bad", "NoSuchAction", {}]))
        assert (await recv_json(socket))[:2] == [4, "bad"]
        await socket.close()
        await eventually(lambda: not _connected(charger))
        return await asyncio.to_thread(
            lambda: sorted(
                OcppMessage.objects.filter(charger=charger).values_list("unique_id", "direction")
            )
        )

    rows = run(scenario())
    assert rows == [
        ("bad", Direction.IN),
        ("bad", Direction.OUT),
        ("st-1", Direction.IN),
        ("st-1", Direction.OUT),
    ]


def test_the_log_is_written_in_batches_without_waiting_for_a_disconnect(
    monkeypatch, transactional_db
):
    """Rows logged within one tick go out as one INSERT (at most LOG_BATCH rows each), on the
    hub's timer, with no call to flush."""
    batches: list[int] = []

    async def scenario():
        written = asyncio.Event()

        def log_messages(*, entries):
            batches.append(len(entries))
            if sum(batches) == 2 * hub.LOG_BATCH + 3:
                written.set()

        monkeypatch.setattr(hub.services, "log_messages", log_messages)
        shared = hub.Hub(layer=None)
        for _ in range(2 * hub.LOG_BATCH + 3):
            shared.log(object())
        async with asyncio.timeout(5):
            await written.wait()

    run(scenario())
    assert batches == [hub.LOG_BATCH, hub.LOG_BATCH, 3]


def test_the_hub_closes_chargers_silent_past_their_limit(monkeypatch):
    """One sweep per process closes every consumer past its silence limit, once, and leaves
    the others alone."""
    monkeypatch.setattr(hub, "SWEEP_S", 0.01)
    closed: list[str] = []

    class Consumer:
        def __init__(self, name: str, silent: bool) -> None:
            self.name, self.silent, self.heard_at = name, silent, 0.0
            self.closed = asyncio.Event()

        def silent_for(self, now: float) -> float | None:
            return 1.0 if self.silent and self.heard_at == 0.0 else None

        async def close(self) -> None:
            closed.append(self.name)
            self.closed.set()

    async def scenario():
        shared = hub.Hub(layer=None)
        quiet, chatty = Consumer("quiet", silent=True), Consumer("chatty", silent=False)
        shared.consumers = {"quiet": quiet, "chatty": chatty}
        sweeper = asyncio.create_task(shared._sweep_silent())
        async with asyncio.timeout(5):
            await quiet.closed.wait()
        for _ in range(3):  # more sweeps: no second close
            await asyncio.sleep(0.02)
        sweeper.cancel()

    run(scenario())
    assert closed == ["quiet"]


def test_a_reconnect_closes_the_older_socket_and_commands_reach_the_new_one(ocpp_url, provision):
    """The same charger connects again before its old socket closed: the old socket is closed
    by the CSMS, the charger stays online, and a command reaches the new socket."""
    charger, key = provision()

    async def scenario():
        old = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp1.6")
        await eventually(lambda: _connected(charger))
        new = await raw_connect(ocpp_url, charger.charge_point_id, key, "ocpp1.6")
        async with asyncio.timeout(5):
            await old.wait_closed()
        command = asyncio.create_task(
            rpc.call_charger(charger.charge_point_id, "GetConfiguration", {}, timeout=10)
        )
        call = await recv_json(new)
        assert call[2] == "GetConfiguration"
        await new.send(json.dumps([3, call[1], {"configurationKey": []}]))
        assert await command == {"configurationKey": []}
        await eventually(lambda: _connected(charger))
        await new.close()
        await eventually(lambda: not _connected(charger))

    run(scenario())
