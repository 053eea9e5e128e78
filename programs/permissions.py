"""Model permissions of the Program managers group, granted by data migrations (0003, 0005).

Migrations call these with their historical `apps`; which utility a manager may see is enforced
by programs.admin's scoping, not here.
"""

from typing import Any

from django.conf import settings


def codenames(permissions: dict[str, list[str]]) -> list[str]:
    """{"program": ["view", "change"]} → ["view_program", "change_program"]."""
    return [f"{verb}_{model}" for model, verbs in permissions.items() for verb in verbs]


def grant(apps: Any, permissions: dict[str, list[str]]) -> None:
    """Create the programs app's permissions now (normally a post_migrate step) and give the
    listed ones to the group."""
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("programs")
    if getattr(app_config, "models_module", None) is None:  # a migration state's app stub
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=settings.PROGRAM_MANAGERS_GROUP)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="programs", codename__in=codenames(permissions)
        )
    )


def revoke(apps: Any, permissions: dict[str, list[str]]) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=settings.PROGRAM_MANAGERS_GROUP).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(
                content_type__app_label="programs", codename__in=codenames(permissions)
            )
        )
