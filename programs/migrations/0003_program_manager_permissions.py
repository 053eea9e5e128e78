"""What program managers may do in the admin: view, add and change their utility's programs
data. Which utility is theirs is enforced by programs.admin; these are the model permissions.

Nothing is deletable by a manager: enrollments, events and the audit trail change only through
services, and a feeder, tariff or program is closed rather than deleted.
"""

from django.db import migrations

from programs import permissions

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


def grant(apps, schema_editor):
    permissions.grant(apps, PERMISSIONS)


def revoke(apps, schema_editor):
    permissions.revoke(apps, PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("programs", "0002_utilities_programs_events"),
        ("accounts", "0002_program_managers_group"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
