"""The program side's audit trail (DESIGN.md I7): one call per recorded action, inside the
service's transaction so an action and its record commit together."""

from typing import Any

from django.db import models

from programs.models import AuditEntry, Utility


def record(
    *, utility: Utility | int, actor: Any, action: str, target: models.Model, **data: Any
) -> AuditEntry:
    """Record that `actor` (a user, or None for the system) did `action` to `target`."""
    return AuditEntry.objects.create(
        utility_id=utility if isinstance(utility, int) else utility.pk,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        object_type=target._meta.model_name,
        object_id=str(target.pk),
        data=data,
    )
