"""Celery tasks of the utility API (thin: ids in, one service call)."""

from celery import shared_task


@shared_task(name="programs.send_webhook", acks_late=True, ignore_result=True)
def send_webhook(delivery_id: int) -> None:
    """Right after commit: one signed webhook (a second run finds it delivered: a no-op)."""
    from programs.api import webhooks

    webhooks.deliver(delivery_id=delivery_id)


@shared_task(name="programs.redrive_webhooks", ignore_result=True)
def redrive_webhooks() -> int:
    """Beat: pending webhooks whose retry is due (and any an on-commit send missed)."""
    from programs.api import webhooks

    return webhooks.redrive()
