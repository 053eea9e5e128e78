"""Program managers read the ledger for their settlement reports (programs.earnings_views):
view permission on ledger transactions and entries. Which utility's money they see is enforced
by the reports' scoping (programs.admin_views.scoped); no ModelAdmin lists ledger rows, and
owners' payouts and statements stay out of managers' reach.
"""

from django.db import migrations

GROUP = "Program managers"
PERMISSIONS = {"ledgertransaction": ["view"], "ledgerentry": ["view"]}


def codenames() -> list[str]:
    return [f"{verb}_{model}" for model, verbs in PERMISSIONS.items() for verb in verbs]


def grant(apps, schema_editor):
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
    dependencies = [("programs", "0004_ledger")]

    operations = [migrations.RunPython(grant, revoke)]
