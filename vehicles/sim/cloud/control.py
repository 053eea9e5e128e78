"""Test and demo controls over a `World`: the one implementation behind both the in-process
`SimulatedCloud` methods and the `/_sim/` HTTP routes.

Webhook POSTs are blocking I/O and run outside the world lock, in the caller's thread (the HTTP
routes hand them to a worker thread).
"""

from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass

from . import webhooks
from .faults import Fault
from .world import CarState, SimEvent, World


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a VERIFY challenge: did the callback answer with the right HMAC?"""

    ok: bool
    challenge: str
    expected: str
    delivery: webhooks.Delivery

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "challenge": self.challenge,
            "expected": self.expected,
            "delivery": self.delivery.summary(),
        }


class Controller:
    def __init__(self, world: World, *, webhook_timeout_s: float = 10.0) -> None:
        self.world = world
        self.webhook_timeout_s = webhook_timeout_s

    # -- cars and time ------------------------------------------------------------------------
    @property
    def cars(self) -> list[CarState]:
        return self.world.car_states()

    def car(self, key: str) -> CarState:
        """One car's current state by VIN or vehicle id (KeyError if unknown)."""
        return self.world.car_state(key)

    def set_state(self, key: str, **changes: object) -> CarState:
        state = self.world.set_state(key, **changes)
        self.deliver_outbox()
        return state

    def set_power_kw(self, key: str, power_kw: float) -> CarState:
        return self.world.set_power_kw(key, power_kw)

    def advance(self, seconds: float) -> list[SimEvent]:
        """Advance simulated time; with auto webhooks on, their deliveries happen before return."""
        events = self.world.advance(seconds)
        self.deliver_outbox()
        return events

    # -- faults, tokens, counters ---------------------------------------------------------------
    def inject_fault(self, kind: str, **options: object) -> Fault:
        return self.world.inject_fault(kind, **options)

    def clear_faults(self) -> None:
        self.world.clear_faults()

    def release_holds(self, fault_id: str | None = None) -> int:
        """Let requests parked by `hold` faults go on; returns how many were parked."""
        return self.world.release_holds(fault_id)

    def held_count(self) -> int:
        return self.world.held_count()

    def commands(self) -> list[dict]:
        """Every control request the cloud answered (endpoint, car, status, SoC at arrival)."""
        return self.world.commands()

    def revoke_tokens(self, key: str | None = None) -> int:
        return self.world.revoke_tokens(key)

    def expire_access_tokens(self) -> int:
        return self.world.expire_access_tokens()

    def request_counts(self) -> dict[str, int]:
        return self.world.request_counts()

    def request_count(self, endpoint: str) -> int:
        return self.world.request_counts().get(endpoint, 0)

    def reset_request_counts(self) -> None:
        self.world.reset_request_counts()

    # -- webhooks -------------------------------------------------------------------------------
    def _url(self, url: str | None) -> str:
        target = url or self.world.webhook_url
        if not target:
            raise ValueError("no webhook URL configured (pass webhook_url)")
        return target

    def send(self, event: dict, *, url: str | None = None) -> webhooks.Delivery:
        delivery = webhooks.prepare(
            event, url=self._url(url), management_token=self.world.management_token
        )
        webhooks.post(delivery, timeout_s=self.webhook_timeout_s)
        self.world.record_delivery(delivery)
        return delivery

    def trigger_webhook(
        self,
        key: str,
        *,
        triggers: list[str] | None = None,
        url: str | None = None,
    ) -> webhooks.Delivery:
        """POST a signed VEHICLE_STATE event for the car as it is now."""
        return self.send(self.world.state_event(key, triggers), url=url)

    def trigger_error_webhook(
        self,
        key: str,
        *,
        code: str = "UNREACHABLE",
        state: str = "ERROR",
        error_type: str = "VEHICLE_STATE",
        description: str = "The vehicle is offline or out of network range.",
        url: str | None = None,
    ) -> webhooks.Delivery:
        """POST a signed VEHICLE_ERROR event (`state` ERROR, or RESOLVED when it clears)."""
        event = self.world.error_event(
            key, code=code, state=state, error_type=error_type, description=description
        )
        return self.send(event, url=url)

    def replay_webhook(self, delivery: webhooks.Delivery | str) -> webhooks.Delivery:
        """Re-send a delivery byte for byte (same eventId, deliveryId and signature)."""
        original = self._delivery(delivery)
        copy_ = webhooks.Delivery(
            event=original.event, url=original.url, body=original.body, signature=original.signature
        )
        webhooks.post(copy_, timeout_s=self.webhook_timeout_s)
        self.world.record_delivery(copy_)
        return copy_

    def retry_webhook(self, delivery: webhooks.Delivery | str) -> webhooks.Delivery:
        """Smartcar's retry: the same event (eventId) in a new delivery (deliveryId, signature)."""
        event = copy.deepcopy(self._delivery(delivery).event)
        event["meta"]["deliveryId"] = str(uuid.uuid4())
        return self.send(event, url=self._delivery(delivery).url)

    def verify_webhook(self, *, url: str | None = None) -> VerifyResult:
        """Send the VERIFY challenge; ok when the callback answers `{"challenge": HMAC}`."""
        challenge = secrets.token_urlsafe(24)
        delivery = self.send(self.world.verify_event(challenge), url=url)
        expected = webhooks.hash_challenge(self.world.management_token, challenge)
        try:
            answer = delivery.response_json()
        except ValueError:
            answer = None
        ok = (
            delivery.status == 200
            and isinstance(answer, dict)
            and answer.get("challenge") == expected
        )
        return VerifyResult(ok, challenge, expected, delivery)

    def deliveries(self) -> list[webhooks.Delivery]:
        with self.world.lock:
            return list(self.world.deliveries)

    def deliver_outbox(self) -> list[webhooks.Delivery]:
        """POST the events the simulation queued (auto webhooks); no-op without a URL."""
        events = self.world.take_outbox()
        if not self.world.webhook_url:
            return []
        return [self.send(event) for event in events]

    def _delivery(self, delivery: webhooks.Delivery | str) -> webhooks.Delivery:
        return self.world.find_delivery(delivery) if isinstance(delivery, str) else delivery
