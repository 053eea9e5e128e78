"""Every write of the notification system.

Callers (vehicles, programs) use `notify` for one owner and `notify_many` for a fan-out; both store
the notification in the caller's transaction (the outbox: if the caller rolls back, nobody is
told; if it commits, the row is there even when the worker dies) and enqueue its delivery after
commit. Both never raise: a notification must not fail the command, event or settlement that
caused it.

Delivery (`deliver_notifications`, run by the `accounts.deliver_notifications` task, in batches
on the `bulk` queue for fan-outs) sends each notification live to the owner's open pages, then
decides push (preferences, quiet hours, digest) and email.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from accounts.notifications import conf, email, kinds, live, push, quiet
from accounts.notifications.models import (
    Delivery,
    Notification,
    NotificationPreference,
    PushSubscription,
)
from chargescape.db import update_rows

logger = logging.getLogger(__name__)
# A delivery task that claimed a notification and then vanished (worker killed) gives it up
# after this long; the relay hands it to another worker (I1).
CLAIM_LEASE = timedelta(minutes=5)
# Celery ETAs on Redis must stay below the broker's visibility timeout (1 h) or the message is
# delivered twice: longer waits (quiet hours) hop in steps.
MAX_ETA = timedelta(minutes=50)
OUT = (Delivery.SENT, Delivery.DIGESTED)


# --- Storing ----------------------------------------------------------------------------------


def _row(
    *, owner_id: int, time_zone: str, kind: str, context: dict[str, Any], key: str, now: datetime
) -> Notification:
    message = kinds.build(kind, context, time_zone=time_zone, now=now)
    return Notification(
        owner_id=owner_id,
        kind=kind,
        title=message.title[:140],
        body=message.body[:600],
        url=message.url[:300],
        data={"context": context, **message.data()},
        urgent=kinds.is_urgent(kind),
        dedupe_key=key[:120],
        created_at=now,
    )


def notify(
    *,
    owner: Any,
    kind: str,
    context: dict[str, Any] | None = None,
    key: str = "",
    now: datetime | None = None,
) -> Notification | None:
    """Tell one owner. `key` names the cause ("command:42:failed"): a second call with the same
    key does nothing, so callers can run again safely. Returns the stored notification, or None
    (already told, or it could not be stored — logged, never raised)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's work intact
            if key and Notification.objects.filter(owner=owner, dedupe_key=key[:120]).exists():
                return None
            notification = _row(
                owner_id=owner.pk,
                time_zone=owner.time_zone,
                kind=kind,
                context=json.loads(json.dumps(context or {}, default=str)),
                key=key,
                now=now,
            )
            notification.save()
    except Exception:
        logger.exception("notification %s for owner %s not stored", kind, owner.pk)
        return None
    _enqueue_on_commit([notification.pk], queue="default")
    return notification


def notify_many(
    *,
    kind: str,
    recipients: Iterable[tuple[int, dict[str, Any]]],
    shared: dict[str, Any] | None = None,
    key: str = "",
    now: datetime | None = None,
) -> int:
    """Tell many owners at once (an event announced to a whole program): `recipients` are
    (owner id, context) pairs, each context merged over `shared`. Stored with one bulk insert per
    few thousand rows; delivered after commit by tasks of conf.batch_size() owners on the `bulk`
    queue. With a `key`, each recipient's row is keyed by it and its context, so a re-run stores
    nothing twice. Returns how many were stored; never raises."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            return _store_many(kind=kind, recipients=recipients, shared=shared, key=key, now=now)
    except Exception:
        logger.exception("%s notifications not stored", kind)
        return 0


def _store_many(
    *,
    kind: str,
    recipients: Iterable[tuple[int, dict[str, Any]]],
    shared: dict[str, Any] | None,
    key: str,
    now: datetime,
) -> int:
    items = [
        (owner_id, json.loads(json.dumps({**(shared or {}), **context}, default=str)))
        for owner_id, context in recipients
    ]
    if not items:
        return 0
    zones = dict(
        get_user_model()
        .objects.filter(pk__in={owner_id for owner_id, _ in items})
        .values_list("pk", "time_zone")
    )
    keyed = [
        (owner_id, context, _item_key(key, owner_id, context) if key else "")
        for owner_id, context in items
        if owner_id in zones
    ]
    if key:
        seen = set(
            Notification.objects.filter(
                owner_id__in=zones, dedupe_key__in=[k for _, _, k in keyed]
            ).values_list("owner_id", "dedupe_key")
        )
        keyed = [item for item in keyed if (item[0], item[2]) not in seen]
    rows = [
        _row(owner_id=owner_id, time_zone=zones[owner_id], kind=kind, context=ctx, key=k, now=now)
        for owner_id, ctx, k in keyed
    ]
    stored = Notification.objects.bulk_create(rows, batch_size=2000)
    ids = [row.pk for row in stored]
    size = conf.batch_size()
    for offset in range(0, len(ids), size):
        _enqueue_on_commit(ids[offset : offset + size], queue="bulk", priority=FANOUT_PRIORITY)
    return len(ids)


def _item_key(key: str, owner_id: int, context: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key}:{owner_id}:{digest}"[:120]


# A fan-out's delivery batches yield to every other message of the worker's queues (on Redis
# priority 0, the default, is taken first and 9 last): an event's thousands of notices wait
# until its device commands have gone out, instead of a worker composing emails first.
FANOUT_PRIORITY = 9


def _enqueue_on_commit(ids: list[int], *, queue: str, priority: int | None = None) -> None:
    def enqueue() -> None:
        from accounts.tasks import deliver_notifications  # tasks import this module

        try:
            deliver_notifications.apply_async(args=[ids], queue=queue, priority=priority)
        except Exception as error:  # broker away: the relay delivers them (I1)
            logger.warning("notification delivery not enqueued: %s", type(error).__name__)

    transaction.on_commit(enqueue)


# --- Delivering ---------------------------------------------------------------------------------


def _claim(ids: list[int], *, now: datetime) -> list[Notification]:
    """Take the undelivered ones among `ids` for this worker (another worker's fresh claim is
    left alone, a stale one is taken over)."""
    with transaction.atomic():
        claimable = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, dispatched_at=None)
            .filter(Q(claimed_at=None) | Q(claimed_at__lt=now - CLAIM_LEASE))
        )
        claimed = list(claimable.values_list("pk", flat=True))
        Notification.objects.filter(pk__in=claimed).update(claimed_at=now)
    return list(Notification.objects.filter(pk__in=claimed).select_related("owner").order_by("pk"))


def deliver_notifications(*, notification_ids: list[int], now: datetime | None = None) -> int:
    """Deliver a batch: live to open pages, then push and email as the owner wants. Every
    channel's failure is logged and recorded on the row; nothing here raises for one owner's
    trouble. Returns how many were delivered.

    Built for fan-outs: preferences, subscriptions, unread counts and digest counts are read once
    per batch, the live messages go out in one event loop, and statuses are written every
    STATUS_FLUSH notifications (a worker killed mid-batch re-sends at most that many)."""
    now = now or timezone.now()
    batch = _claim(notification_ids, now=now)
    if not batch:
        return 0
    owner_ids = {n.owner_id for n in batch}
    preferences = {
        p.owner_id: p for p in NotificationPreference.objects.filter(owner_id__in=owner_ids)
    }
    subscriptions: dict[int, list[PushSubscription]] = defaultdict(list)
    for subscription in PushSubscription.objects.filter(owner_id__in=owner_ids):
        subscriptions[subscription.owner_id].append(subscription)
    unread = dict(
        Notification.objects.filter(owner_id__in=owner_ids, read_at=None)
        .values_list("owner_id")
        .annotate(count=Count("id"))
    )
    live.publish_many(batch, unread=unread)
    crowded = _crowded_owners(owner_ids, now=now)
    done: list[Notification] = []
    succeeded: list[int] = []
    # Keep-alive to the push services and one mail connection across the batch.
    with requests.Session() as session, email.batch_mailer() as mailer:
        for notification in batch:
            owner_id = notification.owner_id
            preference = preferences.get(owner_id) or NotificationPreference(owner_id=owner_id)
            try:
                _push_step(
                    notification,
                    preference,
                    subscriptions[owner_id],
                    session=session,
                    now=now,
                    crowded=owner_id in crowded,
                    succeeded=succeeded,
                )
                _email_step(notification, preference, mailer=mailer)
            except Exception:  # one owner's trouble never stops the batch
                logger.exception("notification %s delivery failed", notification.pk)
            notification.dispatched_at = timezone.now()
            done.append(notification)
            if len(done) >= STATUS_FLUSH:
                _record(done, succeeded)
    _record(done, succeeded)
    return len(batch)


# Statuses are written in groups this size: one UPDATE round per group, not per owner.
STATUS_FLUSH = 50


def _record(done: list[Notification], succeeded: list[int]) -> None:
    if done:
        update_rows(done, ["dispatched_at", "push_status", "push_after", "email_status"])
    if succeeded:
        PushSubscription.objects.filter(pk__in=succeeded).update(
            last_success_at=timezone.now(), failures=0
        )
    done.clear()
    succeeded.clear()


def _crowded_owners(owner_ids: set[int], *, now: datetime) -> set[int]:
    """Owners whose pushes in the digest window (out or waiting) exceed the threshold: only they
    need the locked digest decision. Everyone else's push goes straight out — at most the
    threshold of them, whatever order concurrent workers run in."""
    window_start = now - timedelta(seconds=conf.digest_window_seconds())
    counts = (
        Notification.objects.filter(
            owner_id__in=owner_ids, urgent=False, created_at__gte=window_start
        )
        .filter(push_status__in=[*OUT, Delivery.PENDING, Delivery.HELD])
        .values_list("owner_id")
        .annotate(count=Count("id"))
    )
    return {owner_id for owner_id, count in counts if count > conf.digest_threshold()}


def _email_step(
    notification: Notification, preference: NotificationPreference, *, mailer: Any
) -> None:
    if notification.email_status != Delivery.PENDING:
        return
    if not preference.wants(notification.kind, "email") or not notification.owner.email:
        notification.email_status = Delivery.SKIPPED
        return
    sent = email.send(notification, mailer=mailer)
    notification.email_status = Delivery.SENT if sent else Delivery.FAILED


def _payload(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "url": notification.url,
        "tag": f"n{notification.pk}",
        "urgent": notification.urgent,
    }


def _send_to_all(
    subscriptions: list[PushSubscription],
    payload: dict[str, Any],
    *,
    urgent: bool,
    session: requests.Session | None,
    succeeded: list[int] | None = None,
) -> bool:
    """Send to each of the owner's devices; True when at least one took it. The subscriptions
    that worked are added to `succeeded` (the batch records them), or recorded now."""
    ok = [s.pk for s in subscriptions if push.send(s, payload, urgent=urgent, session=session).ok]
    if succeeded is not None:
        succeeded.extend(ok)
    elif ok:
        PushSubscription.objects.filter(pk__in=ok).update(
            last_success_at=timezone.now(), failures=0
        )
    return bool(ok)


def _push_step(
    notification: Notification,
    preference: NotificationPreference,
    subscriptions: list[PushSubscription],
    *,
    session: requests.Session | None,
    now: datetime,
    crowded: bool = True,
    succeeded: list[int] | None = None,
) -> None:
    """Send now, hold (quiet hours; a flood), or fold into a digest. For a `crowded` owner
    (more pushes in the window than the threshold) the decision runs under the owner's row lock,
    so two workers never both decide about the same owner's pushes at once."""
    if notification.push_status != Delivery.PENDING:
        return
    if not subscriptions or not preference.wants(notification.kind, "push"):
        notification.push_status = Delivery.SKIPPED
        return
    if notification.urgent:
        sent = _send_to_all(
            subscriptions, _payload(notification), urgent=True, session=session, succeeded=succeeded
        )
        notification.push_status = Delivery.SENT if sent else Delivery.FAILED
        return
    owner = notification.owner
    ends = quiet.quiet_until(
        enabled=preference.quiet_hours,
        start=preference.quiet_start,
        end=preference.quiet_end,
        time_zone=owner.time_zone,
        now=now,
    )
    if ends is not None:
        _hold(notification, until=ends)
        return
    if not crowded:
        sent = _send_to_all(
            subscriptions,
            _payload(notification),
            urgent=False,
            session=session,
            succeeded=succeeded,
        )
        notification.push_status = Delivery.SENT if sent else Delivery.FAILED
        return
    window_start = now - timedelta(seconds=conf.digest_window_seconds())
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        current = Notification.objects.filter(pk=notification.pk).values_list(
            "push_status", flat=True
        )
        if current.first() != Delivery.PENDING:  # folded into a digest by another worker
            notification.push_status = current.first()
            return
        mine = Notification.objects.filter(owner=owner, urgent=False, created_at__gte=window_start)
        already_out = mine.filter(push_status__in=OUT).count()
        waiting = [
            other
            for other in mine.filter(push_status=Delivery.PENDING).exclude(pk=notification.pk)
            if preference.wants(other.kind, "push")
        ]
        if already_out + 1 + len(waiting) <= conf.digest_threshold():
            fold: list[Notification] = []
        elif waiting:
            fold = [notification, *waiting]
            Notification.objects.filter(pk__in=[n.pk for n in fold]).update(
                push_status=Delivery.DIGESTED
            )
        else:  # a flood arriving one by one: hold and send them together shortly
            _hold(notification, until=now + timedelta(seconds=conf.digest_hold_seconds()))
            return
    if fold:
        notification.push_status = Delivery.DIGESTED
        _send_digest(fold, subscriptions, session=session, succeeded=succeeded)
        return
    sent = _send_to_all(
        subscriptions, _payload(notification), urgent=False, session=session, succeeded=succeeded
    )
    notification.push_status = Delivery.SENT if sent else Delivery.FAILED


def _hold(notification: Notification, *, until: datetime) -> None:
    notification.push_status = Delivery.HELD
    notification.push_after = until
    schedule_flush(owner_id=notification.owner_id, at=until)


def _send_digest(
    notifications: list[Notification],
    subscriptions: list[PushSubscription],
    *,
    session: requests.Session | None,
    succeeded: list[int] | None = None,
) -> bool:
    ordered = sorted(notifications, key=lambda n: n.pk)
    title, body = kinds.digest([n.title for n in ordered])
    payload = {
        "id": ordered[-1].pk,
        "kind": kinds.Kind.DIGEST.value,
        "title": title,
        "body": body,
        "url": reverse("accounts:notification-list"),
        "tag": "digest",
        "urgent": False,
        "count": len(ordered),
    }
    return _send_to_all(subscriptions, payload, urgent=False, session=session, succeeded=succeeded)


def schedule_flush(*, owner_id: int, at: datetime, hop: bool = False) -> None:
    """Ask for held pushes to go out at `at`: once per owner and time (a hop of an already
    scheduled flush passes `hop`), in steps when it is far (MAX_ETA)."""
    from accounts.tasks import flush_held_pushes  # tasks import this module

    first = cache.add(f"notif-flush:{owner_id}:{int(at.timestamp())}", 1, timeout=24 * 3600)
    if not first and not hop:
        return
    eta = min(at, timezone.now() + MAX_ETA)
    transaction.on_commit(
        lambda: flush_held_pushes.apply_async(args=[owner_id, at.isoformat()], eta=eta)
    )


def flush_held_pushes(*, owner_id: int, now: datetime | None = None) -> int:
    """Send the owner's held pushes whose time has come: one alone, several as one digest.
    Returns how many notifications went out."""
    now = now or timezone.now()
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=owner_id).first()
        due = list(
            Notification.objects.filter(
                owner_id=owner_id, push_status=Delivery.HELD, push_after__lte=now
            ).order_by("pk")
        )
        if not due:
            return 0
        status = Delivery.SENT if len(due) == 1 else Delivery.DIGESTED
        Notification.objects.filter(pk__in=[n.pk for n in due]).update(push_status=status)
    subscriptions = list(PushSubscription.objects.filter(owner_id=owner_id))
    if not subscriptions:
        return 0
    if len(due) == 1:
        _send_to_all(subscriptions, _payload(due[0]), urgent=False, session=None)
    else:
        _send_digest(due, subscriptions, session=None)
    return len(due)


def relay(*, now: datetime | None = None, limit: int = 5000) -> int:
    """Beat: re-drive what the on-commit fast path missed (I1) — notifications stored but not
    delivered after a minute (lost task, broker away, worker killed mid-batch), and held pushes
    whose time passed. Returns how many were re-enqueued."""
    from accounts.tasks import deliver_notifications, flush_held_pushes

    now = now or timezone.now()
    stale = now - timedelta(seconds=conf.relay_after_seconds())
    ids = list(
        Notification.objects.filter(dispatched_at=None, created_at__lte=stale)
        .filter(Q(claimed_at=None) | Q(claimed_at__lt=now - CLAIM_LEASE))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    size = conf.batch_size()
    for offset in range(0, len(ids), size):
        deliver_notifications.apply_async(
            args=[ids[offset : offset + size]], queue="bulk", priority=FANOUT_PRIORITY
        )
    owners = set(
        Notification.objects.filter(push_status=Delivery.HELD, push_after__lte=stale).values_list(
            "owner_id", flat=True
        )[:limit]
    )
    for owner_id in owners:
        flush_held_pushes.apply_async(args=[owner_id, now.isoformat()])
    return len(ids)


# --- The owner's own changes ----------------------------------------------------------------


@transaction.atomic
def mark_read(*, owner: Any, notification_id: int) -> int:
    """Mark one of the owner's notifications read (another owner's id changes nothing)."""
    return Notification.objects.filter(owner=owner, pk=notification_id, read_at=None).update(
        read_at=timezone.now()
    )


@transaction.atomic
def mark_all_read(*, owner: Any) -> int:
    return Notification.objects.filter(owner=owner, read_at=None).update(read_at=timezone.now())


@transaction.atomic
def subscribe_push(
    *, owner: Any, endpoint: str, p256dh: str, auth: str, user_agent: str = ""
) -> PushSubscription:
    """Keep this browser's push subscription. The same browser signing in as someone else moves
    the subscription to them: a phone shows one person's notifications."""
    subscription, _ = PushSubscription.objects.update_or_create(
        endpoint=endpoint,
        defaults={
            "owner": owner,
            "p256dh": p256dh,
            "auth": auth,
            "user_agent": user_agent[:300],
            "failures": 0,
        },
    )
    return subscription


@transaction.atomic
def unsubscribe_push(*, owner: Any, endpoint: str) -> int:
    deleted, _ = PushSubscription.objects.filter(owner=owner, endpoint=endpoint).delete()
    return deleted


@transaction.atomic
def update_preferences(
    *,
    owner: Any,
    channels: dict[str, dict[str, bool]],
    quiet_hours: bool,
    quiet_start: time,
    quiet_end: time,
) -> NotificationPreference:
    """Per kind and channel switches (unknown kinds ignored) and quiet hours."""
    clean = {
        kind: {
            "push": bool(channels.get(kind, {}).get("push")),
            "email": bool(channels.get(kind, {}).get("email")),
        }
        for kind in kinds.SPECS
    }
    preference, _ = NotificationPreference.objects.update_or_create(
        owner=owner,
        defaults={
            "channels": clean,
            "quiet_hours": quiet_hours,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
        },
    )
    return preference
