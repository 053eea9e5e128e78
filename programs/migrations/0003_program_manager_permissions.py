"""What program managers may do in the admin: view, add and change their utility's programs
data. Which utility is theirs is enforced by programs.admin; these are the model permissions.

Nothing is deletable by a manager: enrollments, events and the audit trail change only through
services, and a feeder, tariff or program is closed rather than deleted.
"""

from django.db import migrations

GROUP = "Program managers"
PERMISSIONS = {
    "utility": ["view"],
    "feeder": ["view", "add", "change"],
    "tariff": ["view", "add", "change"],
    "tariffprice": ["view", "add", "change"],
    "program": ["view", "add", "change"],
    "programterms": ["view", "add"],
    "enrollment": ["view", "change"],
    "enrollmentchange": ["view"],
    "gridevent": ["view", "add", "change"],
    "eventparticipation": ["view"],
    "auditentry": ["view"],
}


def codenames() -> list[str]:
    return [f"{verb}_{model}" for model, verbs in PERMISSIONS.items() for verb in verbs]


def grant(apps, schema_editor):
    # Permissions are normally created after migrate (post_migrate): create them now.
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("programs")
    if getattr(app_config, "models_module", None) is None:  # a migration state's app stub
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="programs", codename__in=codenames())
    )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="programs", codename__in=codenames())
        )


class Migration(migrations.Migration):
    dependencies = [
        ("programs", "0002_utilities_programs_events"),
        ("accounts", "0002_program_managers_group"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
