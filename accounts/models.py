"""Users of ChargeScape: EV owners and utility program managers, identified by email."""

import functools
import zoneinfo

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.validators import RegexValidator
from django.db import models


@functools.cache
def time_zone_choices() -> list[tuple[str, str]]:
    # available_timezones() walks the tz database on disk (~25 ms): read it once a process, not
    # once for every form or serializer that shows the field. Django copies callable choices.
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class UserManager(BaseUserManager["User"]):
    """Email is the login; there is no username."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields: object) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in: an EV owner, or (staff, in the Program managers group) a manager."""

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    time_zone = models.CharField(
        max_length=64,
        default="America/New_York",
        choices=time_zone_choices,
        help_text="Departure times and charts are shown in this time zone.",
    )
    service_zip = models.CharField(
        "service ZIP code",
        max_length=10,
        blank=True,
        validators=[RegexValidator(r"^\d{5}(-\d{4})?$", "Enter a US ZIP code like 94107.")],
        help_text="Where the car charges at home; decides which utility programs you can join.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()  # type: ignore[misc]

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


# Notifications live in their own package; importing them here registers them with the app.
from accounts.notifications.models import (  # noqa: E402
    Notification,
    NotificationPreference,
    PushSubscription,
    VapidKeyPair,
)

__all__ = [
    "Notification",
    "NotificationPreference",
    "PushSubscription",
    "User",
    "UserManager",
    "VapidKeyPair",
]
