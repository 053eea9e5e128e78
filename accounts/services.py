"""Writes to accounts. Views, API views and admin actions call these, never .save() directly."""

from django.db import transaction

from accounts.models import User


@transaction.atomic
def update_profile(*, user: User, time_zone: str, service_zip: str) -> User:
    """Set the owner's time zone and home ZIP code (both validated by the model's validators)."""
    user.time_zone = time_zone
    user.service_zip = service_zip
    user.full_clean(exclude=["password"])
    user.save(update_fields=["time_zone", "service_zip", "updated_at"])
    return user
