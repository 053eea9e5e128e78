"""Reads of vehicles with their owners' access checks: another owner's vehicle is a 404."""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404

from accounts.models import User
from vehicles.models import ChargingPreference, Vehicle, VehicleReading


def _with_latest_reading(vehicles: QuerySet[Vehicle]) -> QuerySet[Vehicle]:
    latest = VehicleReading.objects.filter(vehicle=OuterRef("pk")).order_by("-recorded_at")
    return vehicles.annotate(latest_reading_id=Subquery(latest.values("pk")[:1]))


def list_vehicles_for_owner(*, owner: User) -> list[Vehicle]:
    """The owner's linked cars, each with `.latest` (reading or None) and `.preference` loaded."""
    vehicles = list(
        _with_latest_reading(
            Vehicle.objects.filter(owner=owner).exclude(link_state=Vehicle.LinkState.UNLINKED)
        ).select_related("preference")
    )
    readings = VehicleReading.objects.in_bulk(
        [v.latest_reading_id for v in vehicles if v.latest_reading_id]
    )
    for vehicle in vehicles:
        vehicle.latest = readings.get(vehicle.latest_reading_id)
    return vehicles


def get_owned_vehicle(*, owner: User, vehicle_id: UUID | str) -> Vehicle:
    """The owner's (still linked) vehicle, or Http404 — also for other owners' vehicles."""
    try:
        vehicle = (
            Vehicle.objects.select_related("preference", "link")
            .exclude(link_state=Vehicle.LinkState.UNLINKED)
            .get(pk=vehicle_id, owner=owner)
        )
    except (Vehicle.DoesNotExist, ValueError) as error:
        raise Http404("No such vehicle.") from error
    vehicle.latest = latest_reading(vehicle=vehicle)
    return vehicle


def latest_reading(*, vehicle: Vehicle) -> VehicleReading | None:
    return vehicle.readings.order_by("-recorded_at").first()


def readings_since(*, vehicle: Vehicle, since: datetime) -> QuerySet[VehicleReading]:
    return vehicle.readings.filter(recorded_at__gte=since).order_by("recorded_at")


def preference_for(*, vehicle: Vehicle) -> ChargingPreference:
    return ChargingPreference.objects.get_or_create(vehicle=vehicle)[0]


def latest_readings(*, vehicle_ids: list[Any] | QuerySet) -> dict[Any, VehicleReading]:
    """The newest reading of each vehicle, in one query (PostgreSQL DISTINCT ON)."""
    readings = (
        VehicleReading.objects.filter(vehicle_id__in=vehicle_ids)
        .order_by("vehicle_id", "-recorded_at")
        .distinct("vehicle_id")
    )
    return {reading.vehicle_id: reading for reading in readings}
