"""Program managers read the ledger for their settlement reports (programs.earnings_views):
view permission on ledger transactions and entries. Which utility's money they see is enforced
by the reports' scoping (programs.admin_views.scoped); no ModelAdmin lists ledger rows, and
owners' payouts and statements stay out of managers' reach.
"""

from django.db import migrations

from programs import permissions

PERMISSIONS = {"ledgertransaction": ["view"], "ledgerentry": ["view"]}


def grant(apps, schema_editor):
    permissions.grant(apps, PERMISSIONS)


def revoke(apps, schema_editor):
    permissions.revoke(apps, PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("programs", "0004_ledger")]

    operations = [migrations.RunPython(grant, revoke)]
