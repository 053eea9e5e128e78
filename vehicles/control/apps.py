from django.apps import AppConfig


class ControlConfig(AppConfig):
    """Device commands: the outbox, the safety gateway and execution against clouds and chargers."""

    name = "vehicles.control"
    label = "control"
    verbose_name = "Device commands"
