"""Vehicle cloud adapters, chosen per provider in settings.VEHICLE_PROVIDERS (like allauth's)."""

from django.conf import settings
from django.utils.module_loading import import_string

from vehicles.oem.base import OemAdapter


def get_adapter(provider: str) -> OemAdapter:
    """A configured adapter for `provider`; KeyError for a provider we do not offer."""
    config = settings.VEHICLE_PROVIDERS[provider]
    return import_string(config["ADAPTER"])(config)


def providers() -> dict[str, dict]:
    return settings.VEHICLE_PROVIDERS
