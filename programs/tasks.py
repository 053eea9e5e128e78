"""Celery tasks of the programs app (thin: ids in, one service call)."""

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction

# Replans requested within this window collapse into one (the task reads the newest state).
REPLAN_DEBOUNCE_SECONDS = 2
# Plug-ins are edges, not noisy telemetry: they are planned without the debounce, together. The
# cars plugged in since the last batch wait in a Redis set; the flag says a batch task is queued
# or running.
PLUGGED_IN_SET = "replan:plugged-in"
PLUGGED_IN_QUEUED = "replan:plugged-in:queued"
PLUGGED_IN_BATCH = 1000
# The flag outlives a lost batch task by this long at most: then the next plug-in queues one.
PLUGGED_IN_QUEUED_TTL = 60
# Under a steady stream of plug-ins the next batch waits this long for cars to gather: at 50/s
# about ten a batch instead of two or three (when batches ran back to back, several at once),
# so a batch's fixed cost (a dozen queries to plan, a dozen to write the commands, a publish) is
# shared by more cars (B6). A plug-in on a quiet system is planned at once.
PLUGGED_IN_GATHER_SECONDS = 0.2


def fan_out(task: Any, vehicle_ids: list[Any], *args: Any, after_commit: bool = True) -> int:
    """Enqueue `task(batch, *args)` on the `bulk` queue for the cars in batches of
    PROGRAMS_FANOUT_BATCH (DESIGN.md §2), after the caller's transaction commits unless told
    otherwise. Returns the number of batches."""
    ids = [str(vehicle_id) for vehicle_id in vehicle_ids]
    size = settings.PROGRAMS_FANOUT_BATCH
    batches = [ids[offset : offset + size] for offset in range(0, len(ids), size)]
    for batch in batches:
        if after_commit:
            transaction.on_commit(
                lambda batch=batch: task.apply_async(args=[batch, *args], queue="bulk")
            )
        else:
            task.apply_async(args=[batch, *args], queue="bulk")
    return len(batches)


def pending_key(vehicle_id: str) -> str:
    return f"replan-pending:{vehicle_id}"


@shared_task(name="programs.replan_vehicle", acks_late=True, ignore_result=True)
def replan_vehicle(vehicle_id: str, trigger: str) -> None:
    from programs import services

    cache.delete(pending_key(vehicle_id))  # later changes must enqueue a fresh replan
    services.replan_vehicle(vehicle_id=vehicle_id, trigger=trigger)


def _plugged_in_set() -> tuple[Any, str]:
    """The Redis client holding PLUGGED_IN_SET and the set's key (with the cache's prefix)."""
    key = cache.make_and_validate_key(PLUGGED_IN_SET)
    return cache._cache.get_client(key, write=True), key


def request_plugged_in_replan(vehicle_id: str) -> None:
    """Add a just-plugged-in car to the next batch and make sure one batch task is queued."""
    client, key = _plugged_in_set()
    client.sadd(key, vehicle_id)
    if cache.add(PLUGGED_IN_QUEUED, 1, timeout=PLUGGED_IN_QUEUED_TTL):
        replan_plugged_in.apply_async(queue="default")


@shared_task(
    name="programs.replan_plugged_in",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_jitter=True,
    max_retries=8,
)
def replan_plugged_in() -> int:
    """One batch of the cars plugged in since the last: planned together, their first slots
    sent at once (returns how many commands exist for them).

    One batch task at a time: the flag stays set while one is queued or running. When more cars
    wait after a batch, the task queues itself again PLUGGED_IN_GATHER_SECONDS later (its worker
    process is free meanwhile); otherwise it clears the flag and looks once more, so a plug-in
    arriving just then is not left behind. SPOP hands each car to one batch only; on a database
    error the cars go back into the set and the task retries. A car lost with a killed worker
    charges unmanaged until its next SoC reading replans it."""
    from programs import execution, services

    client, key = _plugged_in_set()
    sent = 0
    if ids := client.spop(key, PLUGGED_IN_BATCH):
        vehicle_ids = [vehicle_id.decode() for vehicle_id in ids]
        cache.delete_many([pending_key(vehicle_id) for vehicle_id in vehicle_ids])
        try:
            planned = services.replan_plugged_in(vehicle_ids=vehicle_ids)
        except DatabaseError:
            client.sadd(key, *vehicle_ids)
            raise
        try:
            sent = execution.execute_due_slots(vehicle_ids=planned)
        except DatabaseError:
            # The plans are stored: their first slots go out from a task of their own, retried,
            # rather than waiting for the next beat (a batch takes row locks: a rare deadlock).
            execute_vehicle_slots.apply_async(args=[[str(v) for v in planned]], queue="default")
    if client.scard(key):
        cache.set(PLUGGED_IN_QUEUED, 1, timeout=PLUGGED_IN_QUEUED_TTL)
        replan_plugged_in.apply_async(countdown=PLUGGED_IN_GATHER_SECONDS, queue="default")
        return sent
    cache.delete(PLUGGED_IN_QUEUED)
    # A plug-in between the count and the delete saw the flag and queued nothing: take it now.
    if client.scard(key) and cache.add(PLUGGED_IN_QUEUED, 1, timeout=PLUGGED_IN_QUEUED_TTL):
        replan_plugged_in.apply_async(queue="default")
    return sent


@shared_task(name="programs.execute_due_slots", ignore_result=True)
def execute_due_slots() -> int:
    """Beat, every minute: the due slot of each current plan becomes a command (idempotent),
    in batches on the `bulk` queue."""
    from programs import execution

    return execution.fan_out_due_slots()


# Idempotent (plan version + slot + device keys), so a database error (a deadlock between two
# batches locking overlapping cars, a restart) is simply retried.
RETRY_ON_DATABASE_ERROR = {
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 1,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(
    name="programs.execute_vehicle_slot",
    acks_late=True,
    ignore_result=True,
    **RETRY_ON_DATABASE_ERROR,
)
def execute_vehicle_slot(vehicle_id: str) -> int:
    """Right after a new plan is stored: its first slot goes out without waiting for the beat."""
    from programs import execution

    return execution.execute_due_slots(vehicle_id=vehicle_id)


@shared_task(
    name="programs.execute_vehicle_slots",
    acks_late=True,
    ignore_result=True,
    **RETRY_ON_DATABASE_ERROR,
)
def execute_vehicle_slots(vehicle_ids: list[str]) -> int:
    """A batch of a fleet fan-out (an event starting): each car's due slot becomes a command."""
    from programs import execution

    return execution.execute_due_slots(vehicle_ids=vehicle_ids)


@shared_task(name="programs.replan_vehicles", acks_late=True, ignore_result=True)
def replan_vehicles(vehicle_ids: list[str], trigger: str) -> int:
    """A batch of cars replanned together (an event ended or was cancelled)."""
    from programs import services

    return services.replan_fleet(vehicle_ids=vehicle_ids, trigger=trigger)


@shared_task(name="programs.advance_events", ignore_result=True)
def advance_events() -> dict[str, int]:
    """Beat, every 30 s: start events whose window opened, complete those whose window closed."""
    from programs import events

    return events.advance_events()


@shared_task(name="programs.settle_events", ignore_result=True)
def settle_events() -> int:
    """Beat: settle every completed event not yet settled (each once; see settle_event)."""
    from programs import settlement
    from programs.models import GridEvent

    due = GridEvent.objects.filter(status=GridEvent.Status.COMPLETED, settled_at=None)
    return sum(
        settlement.settle_event(event_id=pk) is not None for pk in due.values_list("pk", flat=True)
    )


@shared_task(name="programs.close_months", ignore_result=True)
def close_months() -> int:
    """Beat, daily: last month's smart-charging bonuses, then its statements (idempotent)."""
    from django.utils import timezone

    from programs import settlement, statements

    today = timezone.now().date()
    month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    settlement.settle_month(month=month)
    return statements.close_previous_month(today=today)


@shared_task(
    name="programs.send_payout",
    acks_late=True,  # safe: the provider is idempotent per payout key
    autoretry_for=(OSError,),
    retry_backoff=10,
    max_retries=8,
    ignore_result=True,
)
def send_payout(payout_id: int) -> None:
    from programs import payouts

    payouts.send_payout(payout_id=payout_id)


@shared_task(
    name="programs.deliver_simulated_payout_webhook",
    autoretry_for=(OSError,),
    retry_backoff=5,
    max_retries=5,
    ignore_result=True,
)
def deliver_simulated_payout_webhook(message: dict) -> None:
    """The simulated payout provider calling our webhook over HTTP, signed, like a real one."""
    import json

    import requests
    from django.conf import settings

    from programs import payouts

    body = json.dumps(message).encode()
    requests.post(
        settings.PAYOUT_PROVIDER["WEBHOOK_URL"],
        data=body,
        headers={"Content-Type": "application/json", "X-Payout-Signature": payouts.sign(body)},
        timeout=10,
    ).raise_for_status()
