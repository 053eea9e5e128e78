"""Celery tasks of the vehicles app: thin wrappers over services (ids in, re-fetch, one call)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from vehicles.oem.base import TransientOemError

# Polls fanned out per beat tick; the rest wait for the next tick (a minute later).
POLL_BATCH = 500
POLL_CLAIM_MINUTES = 5


@shared_task(
    name="vehicles.poll_vehicle",
    acks_late=True,  # a repeated poll only adds one more reading
    autoretry_for=(TransientOemError,),
    retry_backoff=30,
    retry_jitter=True,
    max_retries=3,
    ignore_result=True,
)
def poll_vehicle(vehicle_id: str, fresh: bool = False) -> None:
    from vehicles import services

    services.poll_vehicle(vehicle_id=vehicle_id, fresh=fresh)


@shared_task(name="vehicles.poll_due_vehicles", ignore_result=True)
def poll_due_vehicles() -> int:
    """Beat, every minute: enqueue a poll for each linked car whose next poll is due."""
    from vehicles.models import Vehicle

    due = (
        Vehicle.objects.filter(
            link_state=Vehicle.LinkState.LINKED, next_poll_at__lte=timezone.now()
        )
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:POLL_BATCH]
    )
    ids = [str(pk) for pk in due]
    # Claim them for a few minutes so a slow worker does not get the same car twice; the poll
    # itself sets the real next time.
    Vehicle.objects.filter(pk__in=ids).update(
        next_poll_at=timezone.now() + timedelta(minutes=POLL_CLAIM_MINUTES)
    )
    for vehicle_id in ids:
        poll_vehicle.delay(vehicle_id)
    return len(ids)


@shared_task(name="vehicles.purge_precise_locations", ignore_result=True)
def purge_precise_locations() -> int:
    from vehicles import services

    return services.purge_precise_locations()
