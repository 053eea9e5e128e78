"""The email channel: plain text and HTML bodies say the same thing, in the owner's time zone,
with absolute links to act on (opt out, boost, earnings) and a way to change what we send."""

import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.mail.backends import locmem
from django.urls import reverse

from accounts.notifications import services
from accounts.notifications.models import Delivery, Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)  # 15:00 in Chicago, 13:00 in Los Angeles


def deliver():
    ids = list(Notification.objects.filter(dispatched_at=None).values_list("pk", flat=True))
    services.deliver_notifications(notification_ids=ids)


def test_event_notice_email_has_window_notice_earnings_and_opt_out_link(mailoutbox):
    owner = UserFactory(time_zone="America/Los_Angeles", email="dana@example.com")
    with time_machine.travel(NOW, tick=False):
        services.notify(
            owner=owner,
            kind="event_announced",
            context={
                "program": "Peak Saver",
                "participation": 77,
                "vehicle": "2024 Nissan Leaf",
                "earnings_cents": 560,
                "starts_at": (NOW + timedelta(hours=3)).isoformat(),
                "ends_at": (NOW + timedelta(hours=5)).isoformat(),
            },
        )
        deliver()
    [mail] = mailoutbox
    assert mail.to == ["dana@example.com"]
    assert mail.from_email == settings.DEFAULT_FROM_EMAIL
    assert mail.subject == "[ChargeScape] Grid event Wed 16:00: earn about $5.60"
    assert mail.extra_headers["X-ChargeScape-Kind"] == "event_announced"
    opt_out = settings.SITE_URL + reverse("programs:participation-opt-out", args=[77])
    plain = mail.body
    assert "When: Wed Nov 25, 16:00–18:00 PST" in plain  # the owner's zone, not the server's
    assert "Notice: 3 hours ahead" in plain
    assert "Car: 2024 Nissan Leaf" in plain
    assert "Expected earnings: about $5.60" in plain
    assert f"Opt out of this event: {opt_out}" in plain
    assert "<" not in plain  # plain text, no markup
    [(html, mimetype)] = mail.alternatives
    assert mimetype == "text/html"
    assert "<h1" in html
    assert "Grid event Wed 16:00: earn about $5.60" in html
    assert f'<a href="{opt_out}"' in html
    assert ">Opt out of this event</a>" in html
    assert "<strong>Wed Nov 25, 16:00–18:00 PST</strong>" in html
    assert settings.SITE_URL + "/account/#notifications" in html
    assert Notification.objects.get().email_status == Delivery.SENT


def test_event_result_email_says_what_was_delivered_and_earned(mailoutbox):
    owner = UserFactory()
    services.notify(
        owner=owner,
        kind="event_ended",
        context={"program": "Peak Saver", "earned_cents": 345, "delivered_kwh": 5.25},
    )
    deliver()
    [mail] = mailoutbox
    assert mail.subject == "[ChargeScape] You earned $3.45"
    assert "delivered 5.2 kWh of flexibility and earned you $3.45" in mail.body
    assert "Earned: $3.45" in mail.body
    assert "See your earnings: " + settings.SITE_URL + reverse("programs:earnings") in mail.body
    assert "<strong>$3.45</strong>" in mail.alternatives[0][0]


def test_target_at_risk_email_offers_boost_and_escapes_what_it_quotes(mailoutbox):
    owner = UserFactory()
    services.notify(
        owner=owner,
        kind="target_at_risk",
        context={
            "vehicle": "<b>Leaf</b>",
            "vehicle_id": "6d1f3a4e-0000-4000-8000-000000000001",
            "message": "You'll leave with about 40 % instead of 80 % at 07:00.",
            "expected_soc_pct": 40,
            "target_soc_pct": 80,
        },
    )
    deliver()
    [mail] = mailoutbox
    assert "Tap Boost to charge at full power now." in mail.body
    assert "Expected at departure: 40 %" in mail.body
    html = mail.alternatives[0][0]
    assert "&lt;b&gt;Leaf&lt;/b&gt;" in html
    assert "<b>Leaf</b>" not in html
    assert ">Boost now</a>" in html
    assert "/vehicles/6d1f3a4e-0000-4000-8000-000000000001/" in html


def test_a_refused_email_is_recorded_and_does_not_stop_the_batch(mailoutbox, settings):
    """The mail server refusing one owner marks that email failed; the others still go."""
    first, second = UserFactory(), UserFactory()
    Notification.objects.all().delete()
    services.notify(owner=first, kind="statement_ready", context={"month": "2026-10-01"})
    services.notify(owner=second, kind="statement_ready", context={"month": "2026-10-01"})
    first.email = ""  # nowhere to send: skipped, not an error
    first.save()
    deliver()
    statuses = dict(Notification.objects.values_list("owner_id", "email_status"))
    assert statuses == {first.pk: Delivery.SKIPPED, second.pk: Delivery.SENT}
    assert [m.to for m in mailoutbox] == [[second.email]]


class CountingBackend(locmem.EmailBackend):
    """Django's in-memory mail backend with a connection like SMTP's: counted when opened, and
    broken by a message to a `drop@` address until it is closed (what a server hanging up
    mid-batch does to smtplib)."""

    opened = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connection = None
        self.broken = False

    def open(self):
        if self.connection is not None:
            return False
        type(self).opened += 1
        self.connection = object()
        return True

    def close(self):
        self.connection, self.broken = None, False

    def send_messages(self, messages):
        created = self.open()
        try:
            if self.broken or any(to.startswith("drop@") for m in messages for to in m.to):
                self.broken = True
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            return super().send_messages(messages)
        finally:
            if created:
                self.close()


def test_a_batch_shares_one_mail_connection_and_reconnects_after_a_drop(mailoutbox, settings):
    """One connection (one SMTP login) for a batch, not one per email; a server that hangs up
    on one email fails only that one: the rest of the batch reconnects and goes out."""
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.CountingBackend"}}
    CountingBackend.opened = 0
    Notification.objects.all().delete()
    owners = [UserFactory(email=f"owner{n}@example.com") for n in range(3)]
    dropped = UserFactory(email="drop@example.com")
    after = UserFactory(email="after@example.com")
    for owner in [*owners, dropped, after]:
        services.notify(owner=owner, kind="statement_ready", context={"month": "2026-10-01"})
    deliver()
    statuses = dict(Notification.objects.values_list("owner__email", "email_status"))
    assert statuses == {
        **{owner.email: Delivery.SENT for owner in owners},
        "drop@example.com": Delivery.FAILED,
        "after@example.com": Delivery.SENT,
    }
    assert sorted(m.to[0] for m in mailoutbox) == sorted(
        [*(owner.email for owner in owners), "after@example.com"]
    )
    assert CountingBackend.opened == 2  # the batch's, and one after the drop
