from django.apps import AppConfig


class VehiclesConfig(AppConfig):
    name = "vehicles"

    def ready(self) -> None:
        from vehicles import receivers  # noqa: F401 — connects the charger signal receivers
