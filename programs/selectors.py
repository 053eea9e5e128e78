"""Reads of programs data with access checks."""

from uuid import UUID

from accounts.models import User
from programs.models import ChargingPlan
from vehicles import selectors as vehicle_selectors
from vehicles.models import Vehicle


def current_plan_for(*, owner: User, vehicle_id: UUID | str) -> tuple[Vehicle, ChargingPlan | None]:
    """The owner's vehicle (404 for anyone else's) and its newest plan while it is plugged in."""
    vehicle = vehicle_selectors.get_owned_vehicle(owner=owner, vehicle_id=vehicle_id)
    if vehicle.latest is None or not vehicle.latest.plugged_in:
        return vehicle, None
    return vehicle, ChargingPlan.objects.filter(vehicle=vehicle).order_by("-version").first()
