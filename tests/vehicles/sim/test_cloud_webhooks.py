"""Signed webhook deliveries and the VERIFY challenge, checked with the SDK's own helpers."""

from __future__ import annotations

import smartcar


def test_vehicle_state_webhook_is_signed_and_describes_the_car(cloud, linked, receiver):
    """SC-Signature verifies with smartcar.verify_payload over the raw body; a wrong token fails;
    the payload (format 4.0) carries the car's SoC, plug state and the trigger."""
    vin = linked[1][0]
    car = cloud.set_state(vin, soc_pct=61.5, plugged=True)
    delivery = cloud.trigger_webhook(vin, triggers=["charge-ischargingcableconnected"])
    assert delivery.ok
    headers, body = receiver.received[-1]
    assert headers["content-type"] == "application/json"
    assert smartcar.verify_payload(
        receiver.management_token, headers["sc-signature"], body.decode()
    )
    assert not smartcar.verify_payload("another-token", headers["sc-signature"], body.decode())

    event = receiver.last_json()
    assert event["eventType"] == "VEHICLE_STATE"
    assert event["vehicleId"] == car.vehicle_id
    assert event["meta"]["version"] == "4.0"
    assert event["data"]["user"]["id"] == cloud.user_id
    assert event["data"]["triggers"][0]["code"] == "charge-ischargingcableconnected"
    signals = {s["code"]: s["body"] for s in event["data"]["signals"]}
    assert signals["tractionbattery-stateofcharge"] == {"unit": "percent", "value": 61.5}
    assert signals["charge-ischargingcableconnected"] == {"value": True}
    assert event["meta"]["signalCount"] == len(signals)


def test_replay_resends_identical_bytes_and_retry_keeps_the_event_id(cloud, receiver):
    """A replay is byte-identical (same deliveryId and signature); a retry has the same eventId,
    a new deliveryId and a fresh valid signature."""
    vin = cloud.cars[0].vin
    first = cloud.trigger_webhook(vin)
    replay = cloud.replay_webhook(first)
    assert receiver.received[0][1] == receiver.received[1][1]
    assert receiver.received[0][0]["sc-signature"] == receiver.received[1][0]["sc-signature"]
    assert replay.delivery_id == first.delivery_id

    retry = cloud.retry_webhook(first.delivery_id)
    headers, body = receiver.received[2]
    assert retry.event_id == first.event_id
    assert retry.delivery_id != first.delivery_id
    assert smartcar.verify_payload(
        receiver.management_token, headers["sc-signature"], body.decode()
    )


def test_verify_challenge_checks_the_hmac_answer(cloud, receiver):
    """VERIFY passes when the app answers smartcar.hash_challenge(amt, challenge), else fails."""
    result = cloud.verify_webhook()
    assert result.ok
    event = receiver.last_json()
    assert event["eventType"] == "VERIFY"
    assert event["data"]["challenge"] == result.challenge
    assert result.expected == smartcar.hash_challenge(receiver.management_token, result.challenge)

    receiver.answer_challenge_with = "not-the-hmac"
    assert not cloud.verify_webhook().ok


def test_vehicle_error_webhook(cloud, receiver):
    """VEHICLE_ERROR carries the error type, code and state in data.errors."""
    vin = cloud.cars[1].vin
    cloud.trigger_error_webhook(vin, code="UNREACHABLE", state="ERROR")
    event = receiver.last_json()
    assert event["eventType"] == "VEHICLE_ERROR"
    error = event["data"]["errors"][0]
    assert (error["type"], error["code"], error["state"]) == (
        "VEHICLE_STATE",
        "UNREACHABLE",
        "ERROR",
    )


def test_auto_webhooks_follow_plug_in_for_connected_cars_only(receiver, monkeypatch):
    """With auto webhooks on, plugging in a linked car sends a VEHICLE_STATE with the cable
    trigger; an unlinked car stays silent."""
    import smartcar.config

    from vehicles.sim.cloud import SimulatedCloud

    from .conftest import link

    with SimulatedCloud(
        management_token=receiver.management_token, webhook_url=receiver.url, auto_webhooks=True
    ) as cloud:
        for name, value in cloud.sdk_config.items():
            monkeypatch.setattr(smartcar.config, name, value)
        _, ids = link(cloud, 1)
        unlinked = next(c.vin for c in cloud.cars if c.vehicle_id not in ids)
        cloud.set_state(unlinked, plugged=True)
        assert receiver.received == []
        cloud.set_state(ids[0], plugged=not cloud.car(ids[0]).plugged)
        event = receiver.last_json()
        assert event["vehicleId"] == ids[0]
        assert [t["code"] for t in event["data"]["triggers"]] == ["charge-ischargingcableconnected"]


def test_unreachable_callback_is_recorded_not_raised(cloud):
    """A delivery to a closed port records the network error instead of raising."""
    delivery = cloud.trigger_webhook(cloud.cars[0].vin, url="http://127.0.0.1:9/nothing")
    assert delivery.status is None
    assert delivery.error
    assert not delivery.ok
