"""Who is a program manager (staff in the Program managers group)."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import User


@transaction.atomic
def make_program_manager(*, user: User) -> User:
    """Give a user admin access as a program manager (MFA is still required by the admin site)."""
    group, _ = Group.objects.get_or_create(name=settings.PROGRAM_MANAGERS_GROUP)
    user.groups.add(group)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff", "updated_at"])
    return user
