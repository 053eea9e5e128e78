"""A car whose vehicle-cloud link is gone leaves the poll rotation instead of failing every beat.

Found in the 30-minute soak (docs/benchmarks.md, "Load and soak"): cars marked linked without an
active link failed `vehicles.poll_vehicle` with LinkRevokedError ~120 times a minute, forever. Each
failed task leaves Celery's ExceptionInfo (billiard copies every frame's code positions, ~70 KiB)
in a reference cycle that only a full garbage collection frees, so the worker grew by that much
per failure for tens of minutes at a time.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import VehicleFactory
from vehicles import tasks
from vehicles.models import Vehicle, VehicleLink


@pytest.mark.django_db
@pytest.mark.parametrize("link", ["missing", "needs_reauth", "revoked"])
def test_poll_of_a_car_without_an_active_link_succeeds_and_stops_polling(link):
    """The poll task ends without an exception (nothing for Celery to keep), the owner is asked
    to link again, and the next beat enqueues no poll for the car: one visit, not one a beat."""
    vehicle = VehicleFactory(link=None) if link == "missing" else VehicleFactory(link__status=link)
    Vehicle.objects.filter(pk=vehicle.pk).update(next_poll_at=timezone.now() - timedelta(minutes=1))

    result = tasks.poll_vehicle.apply(args=[str(vehicle.pk)])

    assert result.successful(), result.traceback
    vehicle.refresh_from_db()
    assert vehicle.link_state == Vehicle.LinkState.NEEDS_REAUTH
    Vehicle.objects.filter(pk=vehicle.pk).update(next_poll_at=timezone.now() - timedelta(minutes=1))
    assert tasks.poll_due_vehicles.apply().get() == 0  # no poll enqueued, on any later beat
    result = tasks.poll_vehicle.apply(args=[str(vehicle.pk)])  # a poll already queued: a no-op
    assert result.successful(), result.traceback


@pytest.mark.django_db
def test_poll_of_an_active_link_keeps_the_car_linked(cloud, owner_client):
    """Only a missing or inactive grant moves the car; a working link keeps it in rotation."""
    from tests.vehicles.test_linking import _link

    vehicle = _link(owner_client, pick=1)[0]
    assert VehicleLink.objects.get(pk=vehicle.link_id).status == VehicleLink.Status.ACTIVE

    assert tasks.poll_vehicle.apply(args=[str(vehicle.pk)]).successful()

    vehicle.refresh_from_db()
    assert vehicle.link_state == Vehicle.LinkState.LINKED
