from django.apps import AppConfig


class ProgramsConfig(AppConfig):
    name = "programs"

    def ready(self) -> None:
        from programs import (  # noqa: F401 — connect their receivers
            account_deletion,  # accounts.deletion.account_deleting
            receivers,  # the vehicles signals
        )
