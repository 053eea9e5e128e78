"""Programs listens to the vehicles app: plug-in, unplug, SoC moves and preference changes replan.

Owner actions (preference, boost, pause) go to the `control` queue so they never wait behind fleet
work (DESIGN.md I4); telemetry-driven replans go to `default`. Requests within a short window
collapse into one task (the cache key is cleared when the task starts). Plug-ins skip that window:
they are gathered into one batch task that plans them together (programs.tasks.replan_plugged_in).
"""

from django.core.cache import cache
from django.db import transaction
from django.dispatch import receiver

from programs.tasks import (
    REPLAN_DEBOUNCE_SECONDS,
    pending_key,
    replan_vehicle,
    request_plugged_in_replan,
)
from vehicles import signals


def request_replan(vehicle_id: object, *, trigger: str, queue: str) -> None:
    vehicle_id = str(vehicle_id)
    if not cache.add(pending_key(vehicle_id), trigger, timeout=60):
        return  # one is already queued and will read the newest state
    transaction.on_commit(
        lambda: replan_vehicle.apply_async(
            args=[vehicle_id, trigger], queue=queue, countdown=REPLAN_DEBOUNCE_SECONDS
        )
    )


@receiver(signals.vehicle_plugged_in)
def on_plugged_in(sender: object, vehicle_id: object, **kwargs: object) -> None:
    """Planned at once, in a batch with the other cars plugged in meanwhile (issue 6, B6). The
    pending mark makes the same reading's SoC news collapse into this replan."""
    cache.set(pending_key(str(vehicle_id)), "plugged_in", timeout=60)
    transaction.on_commit(lambda: request_plugged_in_replan(str(vehicle_id)))


@receiver(signals.vehicle_unplugged)
def on_unplugged(sender: object, vehicle_id: object, **kwargs: object) -> None:
    request_replan(vehicle_id, trigger="unplugged", queue="default")


@receiver(signals.vehicle_soc_changed)
def on_soc_changed(sender: object, vehicle_id: object, **kwargs: object) -> None:
    request_replan(vehicle_id, trigger="soc_changed", queue="default")


@receiver(signals.preference_changed)
def on_preference_changed(sender: object, vehicle_id: object, **kwargs: object) -> None:
    request_replan(vehicle_id, trigger="preference_changed", queue="control")


@receiver(signals.command_not_confirmed)
def on_command_not_confirmed(sender: object, vehicle_id: object, **kwargs: object) -> None:
    """A command the car never carried out: plan again from what the car reports now."""
    request_replan(vehicle_id, trigger="command_failed", queue="default")
