"""Web push against a push service on loopback that verifies the VAPID token and really decrypts
the aes128gcm payload (tests/accounts/push_endpoint.py): the event notice reaches the owner's
phone; a 410 removes the subscription; every send signs fresh claims; quiet hours hold all but
urgent pushes; a burst becomes one digest."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse

from accounts.notifications import conf, push, services
from accounts.notifications.models import (
    Delivery,
    Notification,
    NotificationPreference,
    PushSubscription,
    VapidKeyPair,
)
from programs import events
from tests.accounts.push_endpoint import PushService
from tests.accounts.test_notifications import NOW, enrolled_car, program  # noqa: F401
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
AFTERNOON = NOW  # 15:00 in Chicago: outside the default quiet hours (22:00–07:00)
NIGHT = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # 23:00 in Chicago


@pytest.fixture
def service():
    with PushService() as running:
        yield running


def subscribe(owner, service):
    client = service.subscribe()
    services.subscribe_push(owner=owner, endpoint=service.endpoint(client), **client.keys())
    return client


def deliver_pending():
    ids = list(Notification.objects.filter(dispatched_at=None).values_list("pk", flat=True))
    return services.deliver_notifications(notification_ids=ids)


def test_the_owners_phone_receives_the_event_notice(owner, program, service):  # noqa: F811
    """Dispatch → stored → delivered: the push service checks our VAPID token and the phone's
    key decrypts a notice with the window, the expected earnings and the opt-out page."""
    phone = subscribe(owner, service)
    stranger = subscribe(UserFactory(), service)  # not enrolled: hears nothing
    with time_machine.travel(AFTERNOON, tick=False):
        enrolled_car(owner, program)
        event = events.create_event(
            program=program,
            kind="import_cap",
            starts_at=AFTERNOON + timedelta(hours=2),
            ends_at=AFTERNOON + timedelta(hours=4),
            target_kw=5.0,
            actor=None,
        )
        events.schedule_event(event=event, actor=None)
    with time_machine.travel(AFTERNOON + timedelta(seconds=5)):
        assert deliver_pending() == 1
    assert service.refused == []
    assert stranger.received == []
    [delivery] = phone.received
    notice = Notification.objects.get(owner=owner)
    assert delivery.payload == {
        "id": notice.pk,
        "kind": "event_announced",
        "title": "Grid event Wed 17:00: earn about $5.60",
        "body": notice.body,
        "url": reverse("programs:participation-opt-out", args=[event.participations.get().pk]),
        "tag": f"n{notice.pk}",
        "urgent": False,
    }
    assert "17:00–19:00" in delivery.payload["body"]
    assert delivery.claims["aud"] == service.origin
    assert delivery.claims["sub"].startswith("mailto:")
    assert delivery.server_key == push.application_server_key()
    assert delivery.headers["urgency"] == "normal"
    assert int(delivery.headers["ttl"]) == 24 * 3600
    notice.refresh_from_db()
    assert notice.push_status == Delivery.SENT
    assert PushSubscription.objects.get(endpoint=service.endpoint(phone)).last_success_at


def test_a_gone_subscription_is_removed_and_the_others_still_get_it(owner, service):
    old_phone, laptop = subscribe(owner, service), subscribe(owner, service)
    old_phone.status = 410
    with time_machine.travel(AFTERNOON):
        services.notify(owner=owner, kind="enrollment_approved", context={"program": "Peak"})
        deliver_pending()
    assert not PushSubscription.objects.filter(endpoint=service.endpoint(old_phone)).exists()
    assert PushSubscription.objects.filter(endpoint=service.endpoint(laptop)).exists()
    assert [d.payload["title"] for d in laptop.received] == ["You're in: Peak"]
    assert Notification.objects.get().push_status == Delivery.SENT


def test_every_send_signs_fresh_claims_for_its_own_push_service(owner):
    """pywebpush writes aud and exp into the claims dict it gets: a shared dict would send the
    first service's audience and a stale expiry everywhere. Two sends an hour apart carry
    different tokens and expiries; a second push service gets its own audience."""
    with PushService() as first, PushService() as second:
        phone, tablet = subscribe(owner, first), subscribe(owner, second)
        with time_machine.travel(AFTERNOON, tick=False):
            services.notify(owner=owner, kind="enrollment_approved", context={"program": "A"})
            deliver_pending()
        with time_machine.travel(AFTERNOON + timedelta(hours=1), tick=False):
            services.notify(owner=owner, kind="enrollment_approved", context={"program": "B"})
            deliver_pending()
        assert first.refused == []
        assert second.refused == []
        one, two = phone.received
        assert one.token != two.token
        assert two.claims["exp"] - one.claims["exp"] == 3600
        assert one.claims["exp"] == int(AFTERNOON.timestamp()) + push.CLAIMS_LIFETIME_SECONDS
        assert {d.claims["aud"] for d in tablet.received} == {second.origin}
        assert {d.claims["aud"] for d in phone.received} == {first.origin}


def test_the_vapid_key_is_generated_once_and_kept_encrypted(settings):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    push._generated.clear()  # a fresh process: nothing read yet
    key = push.application_server_key()
    assert push.application_server_key() == key
    stored = VapidKeyPair.objects.get()
    assert stored.public_key == key
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM accounts_vapidkeypair")
        raw = cursor.fetchone()[0]
    assert raw != stored.private_key
    assert raw.startswith("gAAAAA")


def test_quiet_hours_hold_pushes_until_morning_but_not_urgent_ones(owner, service):
    phone = subscribe(owner, service)
    with time_machine.travel(NIGHT, tick=False):
        services.notify(owner=owner, kind="enrollment_approved", context={"program": "Peak"})
        services.notify(
            owner=owner,
            kind="target_at_risk",
            context={"vehicle": "Leaf", "message": "You'll leave with about 40 % instead of 80 %."},
        )
        deliver_pending()
    assert [d.payload["kind"] for d in phone.received] == ["target_at_risk"]
    assert phone.received[0].headers["urgency"] == "high"
    held = Notification.objects.get(kind="enrollment_approved")
    assert held.push_status == Delivery.HELD
    assert held.push_after == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 07:00 in Chicago
    with time_machine.travel(datetime(2026, 11, 26, 12, 59, tzinfo=UTC), tick=False):
        assert services.flush_held_pushes(owner_id=owner.pk) == 0
    with time_machine.travel(datetime(2026, 11, 26, 13, 0, tzinfo=UTC), tick=False):
        assert services.flush_held_pushes(owner_id=owner.pk) == 1
    assert [d.payload["title"] for d in phone.received][-1] == "You're in: Peak"


def test_quiet_hours_can_be_turned_off(owner, service):
    phone = subscribe(owner, service)
    NotificationPreference.objects.create(owner=owner, quiet_hours=False)
    with time_machine.travel(NIGHT, tick=False):
        services.notify(owner=owner, kind="enrollment_approved", context={"program": "Peak"})
        deliver_pending()
    assert len(phone.received) == 1


def test_a_burst_becomes_one_digest_push(owner, service):
    """Four at once: one push "4 updates" instead of four; all four still in the centre."""
    phone = subscribe(owner, service)
    with time_machine.travel(AFTERNOON, tick=False):
        for program_name in ["A", "B", "C", "D"]:
            services.notify(
                owner=owner, kind="enrollment_approved", context={"program": program_name}
            )
        deliver_pending()
    assert len(phone.received) == 1
    digest = phone.received[0].payload
    assert digest["title"] == "4 updates from ChargeScape"
    assert digest["count"] == 4
    assert digest["url"] == reverse("accounts:notification-list")
    assert set(Notification.objects.values_list("push_status", flat=True)) == {Delivery.DIGESTED}


def test_a_slow_flood_is_held_and_sent_as_one_digest(owner, service):
    """Three pushes in ten minutes go out one by one; the next ones wait and go together."""
    phone = subscribe(owner, service)
    for minute in range(5):
        with time_machine.travel(AFTERNOON + timedelta(minutes=minute), tick=False):
            services.notify(
                owner=owner, kind="enrollment_approved", context={"program": str(minute)}
            )
            deliver_pending()
    assert len(phone.received) == 3
    held = Notification.objects.filter(push_status=Delivery.HELD)
    assert held.count() == 2
    later = AFTERNOON + timedelta(minutes=4, seconds=conf.digest_hold_seconds())
    with time_machine.travel(later, tick=False):
        assert services.flush_held_pushes(owner_id=owner.pk) == 2
    assert phone.received[-1].payload["title"] == "2 updates from ChargeScape"


def test_push_turned_off_for_a_kind_is_not_sent(owner, service):
    phone = subscribe(owner, service)
    NotificationPreference.objects.create(
        owner=owner, channels={"enrollment_approved": {"push": False, "email": False}}
    )
    with time_machine.travel(AFTERNOON, tick=False):
        services.notify(owner=owner, kind="enrollment_approved", context={"program": "Peak"})
        deliver_pending()
    assert phone.received == []
    assert Notification.objects.get().push_status == Delivery.SKIPPED


def test_subscribe_and_unsubscribe_through_the_account_endpoints(owner_client, owner):
    body = {
        "endpoint": "https://push.example.net/v1/abc",
        "keys": {"p256dh": "BPublicKey", "auth": "secret"},
    }
    response = owner_client.post(
        reverse("accounts:push-subscribe"), body, content_type="application/json"
    )
    assert response.status_code == 201
    assert PushSubscription.objects.get().owner == owner
    refused = owner_client.post(
        reverse("accounts:push-subscribe"),
        {"endpoint": "http://evil.example/x", "keys": {}},
        content_type="application/json",
    )
    assert refused.status_code == 400
    owner_client.post(
        reverse("accounts:push-unsubscribe"),
        {"endpoint": body["endpoint"]},
        content_type="application/json",
    )
    assert not PushSubscription.objects.exists()
