from django.apps import AppConfig


class ChargersConfig(AppConfig):
    """Home chargers (EVSEs) and the OCPP central system that controls them."""

    name = "vehicles.chargers"
    label = "chargers"
    verbose_name = "Chargers"
