"""Deployment checks of our own, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_field_encryption_keys(app_configs, **kwargs):  # type: ignore[no-untyped-def]
    if settings.FIELD_ENCRYPTION_KEYS:
        return []
    return [
        Error(
            "CHARGESCAPE_FIELD_KEYS is not set: OAuth tokens cannot be encrypted at rest.",
            hint="Generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and list old keys after it when rotating.",
            id="chargescape.E001",
        )
    ]
