"""The vehicles app listens to its chargers (vehicles.chargers.signals): what a managed charger
measures reaches the owner's open pages as news of the car plugged into it, and a session
starting or ending there has the paired car's cloud read at once (the plug-in replan needs the
car's own plugged-in state and SoC, and a sleeping car's cloud may not tell us for minutes)."""

import logging
from typing import Any

from django.dispatch import receiver

from vehicles import services, tasks
from vehicles.chargers import signals as charger_signals
from vehicles.chargers.models import SessionState
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)


@receiver(charger_signals.charger_meter_values, dispatch_uid="vehicles.charger_meter_values")
def on_charger_meter_values(
    sender: object, charger: Any, session: Any, reading: Any, **_: Any
) -> None:
    # Outside a transaction (clock-aligned readings of an idle charger) no car is plugged in.
    if session is None or session.state != SessionState.ACTIVE:
        return
    services.publish_charger_reading(charger=charger, reading=reading)


@receiver(charger_signals.charger_session_started, dispatch_uid="vehicles.charger_session_started")
@receiver(charger_signals.charger_session_ended, dispatch_uid="vehicles.charger_session_ended")
def on_charger_session(sender: object, charger: Any, session: Any, **_: Any) -> None:
    """The paired car was plugged in or out here: poll its cloud now (signals come on commit)."""
    vehicle_id = charger.usual_vehicle_id
    if vehicle_id is None:
        return
    if not Vehicle.objects.filter(pk=vehicle_id, link_state=Vehicle.LinkState.LINKED).exists():
        return
    try:
        tasks.poll_vehicle.apply_async(args=[str(vehicle_id), True], queue="default")
    except Exception as error:  # broker away: the regular polls still come; never fail the charger
        logger.warning("poll after a charger session not queued: %s", type(error).__name__)
