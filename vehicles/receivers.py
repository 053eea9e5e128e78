"""The vehicles app listens to its chargers (vehicles.chargers.signals): what a managed charger
measures reaches the owner's open pages as news of the car plugged into it."""

from typing import Any

from django.dispatch import receiver

from vehicles import services
from vehicles.chargers import signals as charger_signals
from vehicles.chargers.models import SessionState


@receiver(charger_signals.charger_meter_values, dispatch_uid="vehicles.charger_meter_values")
def on_charger_meter_values(
    sender: object, charger: Any, session: Any, reading: Any, **_: Any
) -> None:
    # Outside a transaction (clock-aligned readings of an idle charger) no car is plugged in.
    if session is None or session.state != SessionState.ACTIVE:
        return
    services.publish_charger_reading(charger=charger, reading=reading)
