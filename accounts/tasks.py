"""Celery tasks of the accounts app: notification delivery (thin: ids in, one service call).

Delivery tasks are safe to run twice: a notification is claimed before it is sent and marked
dispatched after, so a re-run skips it (I1, and no double push)."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task


@shared_task(name="accounts.deliver_notifications", acks_late=True, ignore_result=True)
def deliver_notifications(notification_ids: list[int]) -> int:
    """A batch (one notification, or up to conf.batch_size() of a fan-out on `bulk`)."""
    from accounts.notifications import services

    return services.deliver_notifications(notification_ids=notification_ids)


@shared_task(name="accounts.flush_held_pushes", acks_late=True, ignore_result=True)
def flush_held_pushes(owner_id: int, due_at: str) -> int:
    """Held pushes (quiet hours, a flood) go out; a far time hops in steps under an hour."""
    from django.utils import timezone

    from accounts.notifications import services

    due = datetime.fromisoformat(due_at)
    if due > timezone.now():
        services.schedule_flush(owner_id=owner_id, at=due, hop=True)
        return 0
    return services.flush_held_pushes(owner_id=owner_id)


@shared_task(name="accounts.relay_notifications", ignore_result=True)
def relay_notifications() -> int:
    """Beat, every minute: deliver what the on-commit path missed (I1)."""
    from accounts.notifications import services

    return services.relay()
