"""B-N1: an event announced to 10,000 owners reaches their phones within its notice (issue 9).

    python bench/notifications.py [--owners 10000] [--quick] [--sample 200]

Creates a throw-away database (Django's test-database machinery, so nothing touches real data)
with N owners, each with a linked, enrolled car and a web push subscription to a push service on
loopback (a separate process answering 201, so its work does not share our interpreter). Then
times the real path: `programs.events.schedule_event` (participants, and one notification per
owner stored in the dispatch transaction) and the delivery of every notification in batches of
`NOTIFICATIONS_BATCH` — live message over the Channels layer, VAPID-signed aes128gcm web push,
and email composed (dummy mail backend) — as one worker would run the `bulk` queue's tasks.

Baseline, same run: one task per owner — `notify` and a one-notification delivery per owner (own
queries, own HTTP connection), timed on a sample and extrapolated to N. Broker overhead per task
is left out, which flatters the baseline.

Target: every notice delivered within the program's notice window (60 min) by one worker; the
ratio shows what batching buys.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
os.environ.setdefault("EMAIL_URL", "dummymail://")  # composed, not printed 10,000 times

import django

django.setup()

from django.db import connection  # noqa: E402

NOTICE_MINUTES = 60


def serve_push(port_queue: multiprocessing.Queue, count: multiprocessing.Value) -> None:
    """A push service stand-in: reads the encrypted body, answers 201 Created (keep-alive)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ok = self.headers.get("Authorization", "").startswith("vapid t=")
            with count.get_lock():
                count.value += 1
            self.send_response(201 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def populate(owners: int, origin: str) -> tuple[object, object]:
    """N owners in ZIP 60601, each with a linked, enrolled car and a push subscription."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.contrib.auth.hashers import make_password

    from accounts.models import PushSubscription, User
    from programs.models import Enrollment, Feeder, Program, ProgramTerms, Utility
    from vehicles.models import Vehicle

    utility = Utility.objects.create(
        name="Bench Electric", slug="bench", time_zone="America/Chicago"
    )
    Feeder.objects.create(utility=utility, code="f1", region="Central", zip_codes=["60601"])
    program = Program.objects.create(
        utility=utility,
        code="bench-dr",
        name="Bench Peak Saver",
        kind=Program.Kind.DEMAND_RESPONSE,
        status=Program.Status.OPEN,
        summary="bench",
        notice_minutes=NOTICE_MINUTES,
        max_events_per_month=100,
        max_events_per_season=100,
    )
    terms = ProgramTerms.objects.create(
        program=program,
        version=1,
        body="bench",
        incentives={"per_event_cents": 200, "per_kwh_cents": 25},
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    # One browser key pair for every subscription: the sender still does a fresh ECDH per push.
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    p256dh = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    auth = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    unusable = make_password(None)
    batch = 5000
    for first in range(0, owners, batch):
        count = min(batch, owners - first)
        users = User.objects.bulk_create(
            [
                User(
                    email=f"n{first + i}@example.com",
                    password=unusable,
                    service_zip="60601",
                    time_zone="America/Chicago",
                )
                for i in range(count)
            ]
        )
        vehicles = Vehicle.objects.bulk_create(
            [
                Vehicle(
                    owner=u,
                    provider="smartcar",
                    provider_vehicle_id=f"n{u.pk}",
                    make="Nissan",
                    model="Leaf",
                    year=2024,
                    battery_kwh=60,
                    max_ac_kw=7.2,
                )
                for u in users
            ]
        )
        Enrollment.objects.bulk_create(
            [
                Enrollment(
                    program=program,
                    vehicle=v,
                    terms=terms,
                    accepted_at=NOW,
                    status=Enrollment.Status.ACTIVE,
                )
                for v in vehicles
            ]
        )
        PushSubscription.objects.bulk_create(
            [
                PushSubscription(
                    owner=u, endpoint=f"{origin}/push/{u.pk}", p256dh=p256dh, auth=auth
                )
                for u in users
            ]
        )
    return program, utility


NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 14:00 in Chicago: outside quiet hours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 owners")
    parser.add_argument("--sample", type=int, default=200, help="owners for the baseline loop")
    args = parser.parse_args()
    owners = 1_000 if args.quick else args.owners

    import time_machine

    from accounts import tasks
    from accounts.models import Notification, User
    from accounts.notifications import conf, push, services
    from programs import events

    # The batches the real code enqueues after commit are kept and run here, one after the other,
    # as one worker on the `bulk` queue would (no broker, no second delivery).
    enqueued: list[list[int]] = []
    tasks.deliver_notifications.apply_async = lambda args, queue: enqueued.append(args[0])

    ports: multiprocessing.Queue = multiprocessing.Queue()
    received = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve_push, args=(ports, received), daemon=True)
    server.start()
    origin = f"http://127.0.0.1:{ports.get(timeout=10)}"

    old_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"test_{old_name}_bench_notifications"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with time_machine.travel(NOW, tick=True):
            began = time.perf_counter()
            program, _ = populate(owners, origin)
            print(
                f"populated {owners:,} owners, cars, enrollments, push subscriptions in "
                f"{time.perf_counter() - began:.1f} s"
            )
            push.application_server_key()  # the VAPID key exists before timing

            # Baseline: one task per owner (notify, then a one-notification delivery), on a sample.
            sample_owners = list(User.objects.order_by("pk")[: args.sample])
            began = time.perf_counter()
            for owner in sample_owners:
                note = services.notify(
                    owner=owner, kind="enrollment_approved", context={"program": "Bench"}
                )
                services.deliver_notifications(notification_ids=[note.pk])
            per_owner = (time.perf_counter() - began) / len(sample_owners)
            Notification.objects.all().delete()
            received.value = 0
            enqueued.clear()

            announced_at = time.perf_counter()
            event = events.create_event(
                program=program,
                kind="import_cap",
                starts_at=NOW + timedelta(minutes=NOTICE_MINUTES + 15),
                ends_at=NOW + timedelta(minutes=NOTICE_MINUTES + 75),
                target_kw=1000.0,
                actor=None,
            )
            events.schedule_event(event=event, actor=None)
            stored_s = time.perf_counter() - announced_at
            ids = [pk for batch in enqueued for pk in batch]
            size, batches = conf.batch_size(), len(enqueued)
            for batch in list(enqueued):
                services.deliver_notifications(notification_ids=batch)
            seconds = time.perf_counter() - announced_at

        sent = Notification.objects.filter(kind="event_announced", push_status="sent").count()
        assert len(ids) == owners, len(ids)
        assert sent == owners, sent
        assert received.value >= owners, received.value
        baseline = per_owner * owners
        window = NOTICE_MINUTES * 60
        ok = seconds <= window
        print(
            f"B-N1 event announced to {owners:,} owners: stored in {stored_s:.1f} s, all delivered "
            f"(live + web push + email) in {seconds:.1f} s by one worker in {batches} batches of "
            f"{size} (target ≤ {window} s, the notice window; "
            f"{owners / seconds:,.0f} owners/s); baseline one task per owner "
            f"{per_owner * 1000:.1f} ms/owner × {owners:,} = {baseline:.0f} s (measured on "
            f"{len(sample_owners)}) → {baseline / seconds:.1f}× "
            f"{'PASS' if ok else 'FAIL'}"
        )
        return 0 if ok else 1
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        server.terminate()


if __name__ == "__main__":
    sys.exit(main())
