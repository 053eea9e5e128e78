"""Re-encrypt every encrypted column under the first key of CHARGESCAPE_FIELD_KEYS.

Rotation: put the new key first and keep the old one after it, deploy, run this command, then
drop the old key. Rows are rewritten in batches, each batch in its own transaction; safe to re-run.
"""

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from chargescape import crypto

BATCH = 500


def encrypted_fields() -> list[tuple[type, list[str]]]:
    found = []
    for model in apps.get_models():
        names = [
            field.attname
            for field in model._meta.concrete_fields
            if isinstance(field, crypto.EncryptedTextField)
        ]
        if names:
            found.append((model, names))
    return found


def rotate_all() -> int:
    """Load and re-save every row holding secrets: reading decrypts with any listed key, saving
    encrypts with the first. Returns the number of rows rewritten."""
    rows = 0
    for model, names in encrypted_fields():
        queryset = model._default_manager.order_by("pk")
        last_pk = None
        while True:
            page = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
            batch = list(page[:BATCH])
            if not batch:
                break
            with transaction.atomic():
                for instance in batch:
                    instance.save(update_fields=names)
            rows += len(batch)
            last_pk = batch[-1].pk
    return rows


class Command(BaseCommand):
    help = "Re-encrypt stored secrets under the first key of CHARGESCAPE_FIELD_KEYS."

    def handle(self, *args: object, **options: object) -> None:
        count = rotate_all()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} rows under the newest key."))
