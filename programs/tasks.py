"""Celery tasks of the programs app (thin: ids in, one service call)."""

from celery import shared_task
from django.core.cache import cache

# Replans requested within this window collapse into one (the task reads the newest state).
REPLAN_DEBOUNCE_SECONDS = 2


def pending_key(vehicle_id: str) -> str:
    return f"replan-pending:{vehicle_id}"


@shared_task(name="programs.replan_vehicle", acks_late=True, ignore_result=True)
def replan_vehicle(vehicle_id: str, trigger: str) -> None:
    from programs import services

    cache.delete(pending_key(vehicle_id))  # later changes must enqueue a fresh replan
    services.replan_vehicle(vehicle_id=vehicle_id, trigger=trigger)


@shared_task(name="programs.execute_due_slots", ignore_result=True)
def execute_due_slots() -> int:
    """Beat, every minute: the due slot of each current plan becomes a command (idempotent)."""
    from programs import execution

    return execution.execute_due_slots()


@shared_task(name="programs.execute_vehicle_slot", acks_late=True, ignore_result=True)
def execute_vehicle_slot(vehicle_id: str) -> int:
    """Right after a new plan is stored: its first slot goes out without waiting for the beat."""
    from programs import execution

    return execution.execute_due_slots(vehicle_id=vehicle_id)
