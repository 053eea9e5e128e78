"""The utility REST API as a utility's system uses it: OAuth 2 client credentials at the token
endpoint, then bearer calls. Every object is its own utility's (another's answers 404), scopes
gate writes, POSTs are idempotent per key, lists paginate, clients are rate limited, and event
state changes reach the utility as signed webhooks."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone

from programs import enrollments
from programs.api import services as api_services
from programs.api import webhooks
from programs.api.models import WebhookDelivery
from programs.models import AuditEntry, GridEvent
from tests.factories import UserFactory, VehicleFactory
from tests.programs.conftest import make_program
from tests.programs.factories import FeederFactory, GridEventFactory, TariffFactory, UtilityFactory

pytestmark = pytest.mark.django_db
BASE = "/api/utility/v1"


def fetch_token(client: Client, client_id: str, secret: str, scope: str | None = None) -> dict:
    """The token request a utility's system makes (RFC 6749 §4.4, HTTP Basic client auth)."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = client.post(f"{BASE}/oauth/token", data=data, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    return response.json()


class Caller:
    """A utility's system: its credentials and a bearer-authenticated client."""

    def __init__(self, utility, *, scopes=("read", "dispatch"), webhook_url=""):
        self.api_client, self.secret = api_services.create_api_client(
            utility=utility, name="Grid ops", scopes=list(scopes), webhook_url=webhook_url
        )
        self.http = Client()
        self.token = fetch_token(self.http, self.api_client.application.client_id, self.secret)
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token['access_token']}"}

    def get(self, path, **params):
        return self.http.get(f"{BASE}{path}", params, **self.headers)

    def post(self, path, body=None, **headers):
        return self.http.post(
            f"{BASE}{path}",
            json.dumps(body or {}),
            content_type="application/json",
            **self.headers,
            **headers,
        )


def territory(utility):
    """Feeders, a tariff and a demand-response program with two enrolled, plugged-in cars."""
    FeederFactory(utility=utility, code=f"{utility.slug}-loop", region="Loop", zip_codes=["60601"])
    TariffFactory(utility=utility)
    program = make_program(utility, code=f"{utility.slug}-peak", notice_minutes=30)
    for _ in range(2):
        vehicle = VehicleFactory(owner=UserFactory(service_zip="60601"), max_ac_kw=7.2)
        enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=None)
    return program


@pytest.fixture(autouse=True)
def fast_secret_hashing(settings):
    """Client secrets are stored hashed with Django's password hasher (PBKDF2, deliberately
    slow). They are 320-bit random strings, not passwords, so tests hash them quickly."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def home():
    utility = UtilityFactory(name="Lakeshore Electric", slug="lakeshore")
    return utility, territory(utility)


@pytest.fixture
def other():
    utility = UtilityFactory(name="Prairie Power", slug="prairie")
    return utility, territory(utility)


@pytest.fixture
def caller(home):
    return Caller(home[0])


def event_body(program, **extra):
    start = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    return {
        "program": program.code,
        "kind": "import_cap",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "target_kw": 5,
        **extra,
    }


# --- Authentication and scopes --------------------------------------------------------------------


def test_token_then_programs_with_enrollment_counts(caller, home):
    """A client-credentials token reads the utility's programs with their enrollment counts."""
    assert caller.token["token_type"] == "Bearer"
    assert set(caller.token["scope"].split()) == {"read", "dispatch"}
    response = caller.get("/programs")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    program = body["results"][0]
    assert program["code"] == home[1].code
    assert program["enrollments"] == {"active": 2, "pending": 0, "suspended": 0, "ended": 0}


def test_no_token_or_a_bad_one_is_401(home):
    http = Client()
    assert http.get(f"{BASE}/programs").status_code == 401
    response = http.get(f"{BASE}/programs", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_gets_no_token(caller):
    basic = base64.b64encode(f"{caller.api_client.application.client_id}:nope".encode()).decode()
    response = Client().post(
        f"{BASE}/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_read_only_client_cannot_dispatch(home):
    """A client granted only `read` never gets `dispatch`, even asking for it: POSTs are 403."""
    reader = Caller(home[0], scopes=("read",))
    assert reader.token["scope"] == "read"
    response = reader.post("/events", event_body(home[1]))
    assert response.status_code == 403
    assert not GridEvent.objects.exists()
    assert reader.get("/events").status_code == 200


def test_disabled_client_token_stops_working(caller):
    caller.api_client.is_active = False
    caller.api_client.save()
    assert caller.get("/programs").status_code == 401


# --- Isolation (I6) ---------------------------------------------------------------------------


def test_second_utility_gets_404_on_the_first_utilitys_objects(home, other):
    """Another utility's client sees none of the first's programs, feeders or events: detail
    routes answer 404 and lists leave them out; it cannot dispatch in their program."""
    first, second = Caller(home[0]), Caller(other[0])
    created = first.post("/events", event_body(home[1]))
    assert created.status_code == 201, created.content
    event_id = created.json()["id"]

    for path in (
        f"/programs/{home[1].code}",
        f"/events/{event_id}",
        f"/events/{event_id}/delivery",
        f"/events/{event_id}/report",
    ):
        assert second.get(path).status_code == 404, path
        assert first.get(path).status_code == 200, path
    assert second.post(f"/events/{event_id}/cancel").status_code == 404
    assert second.post(f"/events/{event_id}/dispatch").status_code == 404
    assert GridEvent.objects.get(pk=event_id).status == GridEvent.Status.SCHEDULED

    assert [p["code"] for p in second.get("/programs").json()["results"]] == [other[1].code]
    assert second.get("/events").json()["count"] == 0
    assert second.get("/reports/events").json()["count"] == 0
    assert {f["code"] for f in second.get("/feeders").json()["results"]} == {"prairie-loop"}
    foreign = second.post("/events", event_body(home[1]))
    assert foreign.status_code == 400
    assert foreign.json()["error"]["fields"]["program"] == ["No such program."]
    feeder = second.post("/events", event_body(other[1], feeder="lakeshore-loop"))
    assert feeder.json()["error"]["fields"]["feeder"] == ["No such feeder."]
    flex = second.get("/flexibility", program=home[1].code)
    assert flex.status_code == 400


# --- Events ------------------------------------------------------------------------------------


def test_create_dispatches_and_cancel(caller, home):
    """A created event is dispatched at once (the enrolled cars become participants), audited
    with the client's name, readable, and cancellable."""
    response = caller.post("/events", event_body(home[1], external_id="ops-42"))
    assert response.status_code == 201, response.content
    event = response.json()
    assert event["status"] == "scheduled"
    assert event["participants"] == 2
    assert event["source"] == "api"
    assert event["external_id"] == "ops-42"
    assert AuditEntry.objects.filter(
        action="api.event.create", data__client="Grid ops", object_id=str(event["id"])
    ).exists()

    detail = caller.get(f"/events/{event['id']}").json()
    assert detail["status"] == "scheduled"
    cancel = caller.post(f"/events/{event['id']}/cancel", {"reason": "Cooler than forecast"})
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    assert cancel.json()["cancel_reason"] == "Cooler than forecast"


def test_program_rules_refuse_with_field_messages(caller, home):
    too_soon = timezone.now() + timedelta(minutes=5)
    body = event_body(
        home[1],
        starts_at=too_soon.isoformat(),
        ends_at=(too_soon + timedelta(hours=9)).isoformat(),
    )
    response = caller.post("/events", body)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "starts_at" in fields
    assert "ends_at" in fields
    assert not GridEvent.objects.exists()


def test_draft_then_dispatch(caller, home):
    draft = caller.post("/events", event_body(home[1], dispatch=False)).json()
    assert draft["status"] == "draft"
    assert draft["participants"] == 0
    dispatched = caller.post(f"/events/{draft['id']}/dispatch")
    assert dispatched.status_code == 200
    assert dispatched.json()["status"] == "scheduled"
    again = caller.post(f"/events/{draft['id']}/dispatch")
    assert again.status_code == 400


def test_idempotency_key_replays_and_refuses_reuse(caller, home):
    """A retry with the same Idempotency-Key gets the first answer and makes no second event;
    the same key with another body is 422."""
    body = event_body(home[1])
    first = caller.post("/events", body, HTTP_IDEMPOTENCY_KEY="abc-123")
    second = caller.post("/events", body, HTTP_IDEMPOTENCY_KEY="abc-123")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert GridEvent.objects.count() == 1
    reused = caller.post("/events", {**body, "target_kw": 6}, HTTP_IDEMPOTENCY_KEY="abc-123")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # A different client may use the same key string: keys are per client.
    other_client = Caller(home[0])
    theirs = other_client.post("/events", body, HTTP_IDEMPOTENCY_KEY="abc-123")
    assert theirs.status_code == 201
    assert not theirs.has_header("Idempotent-Replayed")
    assert GridEvent.objects.count() == 2


def test_refused_request_keeps_no_key(caller, home):
    """A refused request changed nothing: its key can carry the corrected request."""
    refused = caller.post("/events", event_body(home[1], target_kw=-1), HTTP_IDEMPOTENCY_KEY="k1")
    assert refused.status_code == 400
    ok = caller.post("/events", event_body(home[1]), HTTP_IDEMPOTENCY_KEY="k1")
    assert ok.status_code == 201


def test_lists_paginate(caller, home):
    for hours in (2, 3, 4):
        GridEventFactory(
            program=home[1],
            starts_at=timezone.now() + timedelta(hours=hours),
            ends_at=timezone.now() + timedelta(hours=hours, minutes=30),
        )
    page = caller.get("/events", limit=2).json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert "offset=2" in page["next"]
    rest = caller.get("/events", limit=2, offset=2).json()
    assert len(rest["results"]) == 1


def test_rate_limit_answers_429_with_retry_after(caller, settings):
    settings.UTILITY_API_RATE_LIMITS = {**settings.UTILITY_API_RATE_LIMITS, "read": 3}
    codes = [caller.get("/programs").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = caller.get("/programs")
    assert response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60


# --- Flexibility and reports -----------------------------------------------------------------


def test_flexibility_forecast_48h_by_feeder_and_region(caller, home):
    body = caller.get("/flexibility").json()
    assert body["slot_minutes"] == 15
    assert len(body["slot_starts"]) == 192
    assert body["total"]["enrolled_cars"] == 2
    assert len(body["total"]["charge_only_kw"]) == 192
    assert [row["feeder"] for row in body["feeders"]] == ["lakeshore-loop"]
    assert [row["region"] for row in body["regions"]] == ["Loop"]
    narrowed = caller.get("/flexibility", region="Nowhere").json()
    assert narrowed["feeders"] == []
    assert narrowed["total"]["enrolled_cars"] == 0


def test_event_report_totals_and_slots(caller, home):
    event = GridEventFactory(program=home[1], status=GridEvent.Status.SCHEDULED)
    body = caller.get(f"/events/{event.pk}/report").json()
    assert body["event"]["id"] == event.pk
    assert body["totals"]["delivered_kwh"] == 0
    assert body["totals"]["settled"] is False
    assert len(body["slots"]) == 4  # a one-hour event: four 15-minute slots
    listing = caller.get("/reports/events").json()
    assert listing["results"][0]["event"]["id"] == event.pk


# --- Webhooks ----------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def test_state_changes_reach_the_utility_signed(home, receiver, django_capture_on_commit_callbacks):
    """Dispatch and cancellation each POST a signed webhook to the utility's URL (over HTTP on
    loopback), verifiable with the client's secret."""
    caller = Caller(home[0], webhook_url=receiver)
    with django_capture_on_commit_callbacks(execute=False):
        event = caller.post("/events", event_body(home[1])).json()
        caller.post(f"/events/{event['id']}/cancel")
    deliveries = list(WebhookDelivery.objects.order_by("pk"))
    assert [d.kind for d in deliveries] == ["event.scheduled", "event.cancelled"]
    for delivery in deliveries:
        webhooks.deliver(delivery_id=delivery.pk)
    assert [d.state for d in WebhookDelivery.objects.order_by("pk")] == ["delivered"] * 2
    secret = caller.api_client.webhook_secret
    kinds = []
    for headers, body in Receiver.received:
        assert webhooks.verify(secret=secret, body=body, header=headers[webhooks.SIGNATURE_HEADER])
        assert not webhooks.verify(
            secret="wrong", body=body, header=headers[webhooks.SIGNATURE_HEADER]
        )
        payload = json.loads(body)
        assert payload["data"]["event"]["id"] == event["id"]
        kinds.append(payload["type"])
    assert kinds == ["event.scheduled", "event.cancelled"]


def test_failed_webhook_is_retried_with_backoff(home):
    """An unreachable endpoint is retried later (backoff), by the beat's redrive."""
    caller = Caller(home[0], webhook_url="http://127.0.0.1:9/unreachable")
    GridEventFactory(program=home[1], status=GridEvent.Status.SCHEDULED)
    delivery = WebhookDelivery.objects.get(client=caller.api_client)
    assert delivery.kind == "event.scheduled"
    assert webhooks.redrive() == 1
    delivery.refresh_from_db()
    assert delivery.state == "pending"
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.last_error
    assert webhooks.redrive() == 0  # not due yet
    assert webhooks.redrive(now=delivery.next_attempt_at) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2
