"""Every write of the vehicles app: linking, tokens, telemetry, preferences, unlinking.

Views, API views, webhooks, consumers and tasks call these. Adapter I/O happens outside database
transactions (a slow vehicle cloud must never hold a row lock), except the token refresh, which
holds its link's row lock on purpose so concurrent 401s cause one refresh.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.notifications import services as notifications
from vehicles import signals
from vehicles.control.diagnosis import IDLE_KW
from vehicles.models import (
    ChargingPreference,
    Vehicle,
    VehicleLink,
    VehicleReading,
    WebhookDelivery,
)
from vehicles.oem import get_adapter
from vehicles.oem.base import (
    AuthExpiredError,
    LinkRevokedError,
    OemError,
    TokenSet,
    TransientOemError,
    VehicleState,
    WebhookMessage,
)
from vehicles.preferences import default_schedule

logger = logging.getLogger(__name__)

# A SoC move smaller than this is noise for planning; larger ones notify the planner.
SOC_CHANGE_NOTIFY_PCT = 1.0


# --- Linking -------------------------------------------------------------------------------------


def _store_tokens(link: VehicleLink, tokens: TokenSet) -> None:
    link.access_token = tokens.access_token
    link.refresh_token = tokens.refresh_token
    link.access_expires_at = tokens.access_expires_at
    link.refresh_expires_at = tokens.refresh_expires_at


def link_vehicles(*, owner: User, provider: str, code: str, redirect_uri: str) -> list[Vehicle]:
    """Finish an OAuth link: exchange the code, list the cars the owner granted, store them.

    A car another ChargeScape account had linked is moved to this owner: the automaker just
    confirmed they control it. The previous owner keeps the history under an unlinked row.
    """
    adapter = get_adapter(provider)
    tokens = adapter.complete_link(code=code, redirect_uri=redirect_uri)
    infos = adapter.list_vehicles(access_token=tokens.access_token)
    with transaction.atomic():
        link = VehicleLink(owner=owner, provider=provider)
        _store_tokens(link, tokens)
        link.save()
        vehicles = []
        for info in infos:
            Vehicle.objects.filter(
                provider=provider, provider_vehicle_id=info.provider_vehicle_id
            ).exclude(owner=owner).exclude(link_state=Vehicle.LinkState.UNLINKED).update(
                link_state=Vehicle.LinkState.UNLINKED, link=None
            )
            vehicle, _ = Vehicle.objects.update_or_create(
                owner=owner,
                provider=provider,
                provider_vehicle_id=info.provider_vehicle_id,
                defaults={
                    "link": link,
                    "link_state": Vehicle.LinkState.LINKED,
                    "make": info.make,
                    "model": info.model,
                    "year": info.year,
                    "vin": info.vin,
                    "next_poll_at": timezone.now(),
                },
                create_defaults={
                    "link": link,
                    "make": info.make,
                    "model": info.model,
                    "year": info.year,
                    "vin": info.vin,
                    "battery_kwh": info.battery_kwh or 60,
                    "max_ac_kw": info.max_ac_kw or 7.2,
                },
            )
            ChargingPreference.objects.get_or_create(
                vehicle=vehicle, defaults={"weekly_schedule": default_schedule()}
            )
            vehicles.append(vehicle)
            _enqueue_poll(vehicle.pk)
        # Older grants of the same provider for the same owner are superseded by this one.
        VehicleLink.objects.filter(owner=owner, provider=provider).exclude(pk=link.pk).filter(
            vehicles__isnull=True
        ).update(status=VehicleLink.Status.REVOKED, access_token="", refresh_token="")
    return vehicles


def refresh_link(*, link_id: int, failed_access_token: str) -> str:
    """A fresh access token after `failed_access_token` was refused.

    Runs under the link's row lock: of ten callers that saw the same 401 at once, the first
    refreshes and the other nine find the new token already stored and return it (one refresh).
    """
    with transaction.atomic():
        link = VehicleLink.objects.select_for_update().get(pk=link_id)
        if link.status != VehicleLink.Status.ACTIVE:
            raise LinkRevokedError("This link was revoked; the owner must link again.")
        if link.access_token != failed_access_token:
            return link.access_token
        try:
            tokens = get_adapter(link.provider).refresh(refresh_token=link.refresh_token)
        except LinkRevokedError:
            link.status = VehicleLink.Status.NEEDS_REAUTH
            link.save(update_fields=["status", "updated_at"])
            link.vehicles.exclude(link_state=Vehicle.LinkState.UNLINKED).update(
                link_state=Vehicle.LinkState.NEEDS_REAUTH
            )
            raise
        _store_tokens(link, tokens)
        link.refreshed_count += 1
        link.save()
        return tokens.access_token


def call_with_token[T](*, vehicle: Vehicle, call: Callable[[str], T]) -> T:
    """Run `call(access_token)` for the vehicle's link; on a 401 refresh once and retry."""
    link = vehicle.link
    if link is None or link.status != VehicleLink.Status.ACTIVE:
        raise LinkRevokedError("This vehicle is not linked.")
    token = link.access_token
    try:
        return call(token)
    except AuthExpiredError:
        fresh = refresh_link(link_id=link.pk, failed_access_token=token)
        link.access_token = fresh
        return call(fresh)


def unlink_vehicle(*, vehicle: Vehicle) -> Vehicle:
    """Stop managing a car: revoke our access at the automaker and wipe tokens nobody needs.

    The revoke is best effort (the owner's intent wins even if the cloud is down); telemetry
    history stays for earnings and statements.
    """
    adapter = get_adapter(vehicle.provider)
    try:
        call_with_token(
            vehicle=vehicle,
            call=lambda token: adapter.disconnect(
                access_token=token, vehicle_id=vehicle.provider_vehicle_id
            ),
        )
    except OemError as error:
        logger.warning("unlink: revoke at %s failed: %s", vehicle.provider, type(error).__name__)
    with transaction.atomic():
        link = vehicle.link
        vehicle.link_state = Vehicle.LinkState.UNLINKED
        vehicle.link = None
        vehicle.save(update_fields=["link_state", "link", "updated_at"])
        if link is not None and not link.vehicles.exists():
            link.status = VehicleLink.Status.REVOKED
            link.access_token = ""
            link.refresh_token = ""
            link.save()
    return vehicle


# --- Telemetry -----------------------------------------------------------------------------------


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), enough for a 200 m geofence."""
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = rlat2 - rlat1, math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(rlat1) * math.cos(rlat2) * math.sin(dlon / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def _at_home(vehicle: Vehicle, state: VehicleState) -> bool | None:
    if state.latitude is None or state.longitude is None or vehicle.home_latitude is None:
        return None
    distance = _distance_m(
        float(vehicle.home_latitude),
        float(vehicle.home_longitude),
        state.latitude,
        state.longitude,
    )
    return distance <= settings.HOME_GEOFENCE_METERS


def record_reading(*, vehicle: Vehicle, state: VehicleState, source: str) -> VehicleReading:
    """Store one observation; tell the planner about plug-in, unplug and SoC moves (on commit)
    and push it to the owner's open pages."""
    with transaction.atomic():
        previous = VehicleReading.objects.filter(vehicle=vehicle).order_by("-recorded_at").first()
        reading = VehicleReading.objects.create(
            vehicle=vehicle,
            recorded_at=state.recorded_at,
            source=source,
            soc_pct=state.soc_pct,
            range_km=state.range_km,
            plugged_in=state.plugged_in,
            charging_state=state.charging_state,
            power_kw=state.power_kw,
            charge_limit_pct=state.charge_limit_pct,
            odometer_km=state.odometer_km,
            latitude=None if state.latitude is None else round(state.latitude, 6),
            longitude=None if state.longitude is None else round(state.longitude, 6),
            at_home=_at_home(vehicle, state),
        )
        # An older reading arriving late (a delayed webhook) is history, not news.
        if previous is None or reading.recorded_at >= previous.recorded_at:
            _announce_changes(vehicle, previous, reading)
        transaction.on_commit(lambda: publish_vehicle_update(vehicle=vehicle, reading=reading))
    return reading


def _announce_changes(
    vehicle: Vehicle, previous: VehicleReading | None, reading: VehicleReading
) -> None:
    was_plugged = previous.plugged_in if previous else None
    sent: list[tuple[Any, dict[str, Any]]] = []
    if reading.plugged_in is True and was_plugged is not True:
        sent.append((signals.vehicle_plugged_in, {}))
    elif reading.plugged_in is False and was_plugged is True:
        sent.append((signals.vehicle_unplugged, {}))
    if reading.soc_pct is not None and (
        previous is None
        or previous.soc_pct is None
        or abs(reading.soc_pct - previous.soc_pct) >= SOC_CHANGE_NOTIFY_PCT
    ):
        sent.append((signals.vehicle_soc_changed, {}))
    if (
        previous is not None
        and previous.charging_state == VehicleReading.ChargingState.CHARGING
        and reading.charging_state == VehicleReading.ChargingState.FULLY_CHARGED
    ):
        notifications.notify(
            owner=vehicle.owner,
            kind="charging_complete",
            key=f"reading:{reading.pk}:charged",
            context={
                "vehicle": vehicle.display_name,
                "vehicle_id": str(vehicle.pk),
                "soc_pct": reading.soc_pct,
            },
        )
    for signal, extra in sent:
        transaction.on_commit(
            lambda signal=signal, extra=extra: signal.send(
                sender=Vehicle, vehicle_id=vehicle.pk, reading_id=reading.pk, **extra
            )
        )


def owner_group(owner_id: int) -> str:
    """The Channels group of one owner's open pages (consumers join it; nobody else's)."""
    return f"owner.{owner_id}"


def publish_vehicle_update(*, vehicle: Vehicle, reading: VehicleReading) -> None:
    """Push a reading to the owner's open pages. Best effort: live view only, never blocks."""
    message = {
        "type": "vehicle.update",
        "vehicle": str(vehicle.pk),
        "soc_pct": reading.soc_pct,
        "plugged_in": reading.plugged_in,
        "charging_state": reading.charging_state,
        "range_km": reading.range_km,
        "recorded_at": reading.recorded_at.isoformat(),
    }
    _send_live(owner_id=vehicle.owner_id, message=message)


def publish_charger_reading(*, charger: Any, reading: Any) -> None:
    """Push a managed charger's meter reading to the owner's open pages as news of the car that
    usually plugs in there: charging or sending energy back, at what power, and the SoC when the
    charger reports it (OCPP 2.x often does, 1.6 rarely). Live view only: nothing is stored as a
    car reading, and a charger whose car belongs to someone else tells no one."""
    vehicle_id = charger.usual_vehicle_id
    if vehicle_id is None or charger.owner_id is None:
        return
    mine = Vehicle.objects.filter(pk=vehicle_id, owner_id=charger.owner_id).exclude(
        link_state=Vehicle.LinkState.UNLINKED
    )
    if not mine.exists():
        return
    power = None if reading.power_kw is None else float(reading.power_kw)
    if power is None:
        state = None  # the page keeps what it shows
    elif power > IDLE_KW:
        state = VehicleReading.ChargingState.CHARGING.value
    elif power < -IDLE_KW:
        state = VehicleReading.ChargingState.DISCHARGING.value
    else:
        state = VehicleReading.ChargingState.NOT_CHARGING.value
    message = {
        "type": "vehicle.update",
        "vehicle": str(vehicle_id),
        "source": "charger",
        "soc_pct": None if reading.soc_pct is None else float(reading.soc_pct),
        "plugged_in": True,
        "charging_state": state,
        "power_kw": power,
        "range_km": None,
        "recorded_at": reading.sampled_at.isoformat(),
    }
    _send_live(owner_id=charger.owner_id, message=message)


def _send_live(*, owner_id: int, message: dict[str, Any]) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(owner_group(owner_id), message)
    except Exception as error:  # a Redis hiccup must not fail the ingest
        logger.warning("live update not sent: %s", type(error).__name__)


def _enqueue_poll(vehicle_id: Any) -> None:
    from vehicles.tasks import poll_vehicle  # tasks import services

    poll_vehicle.delay_on_commit(str(vehicle_id))


def poll_vehicle(*, vehicle_id: Any, fresh: bool = False) -> VehicleReading | None:
    """Read a car's state from its cloud and schedule the next poll.

    Polling is the fallback: skipped while webhooks keep us current, unless `fresh` (news from
    elsewhere, such as its charger starting a session, says the car just changed); after a 429
    not before the cloud's Retry-After either way.
    """
    vehicle = Vehicle.objects.select_related("link").filter(pk=vehicle_id).first()
    if vehicle is None or vehicle.link_state != Vehicle.LinkState.LINKED:
        return None
    now = timezone.now()
    if vehicle.poll_backoff_until and vehicle.poll_backoff_until > now:
        return None
    latest = VehicleReading.objects.filter(vehicle=vehicle).order_by("-received_at").first()
    interval = timedelta(seconds=_poll_interval_seconds(latest.plugged_in if latest else None))
    if (
        not fresh
        and latest is not None
        and latest.source == VehicleReading.Source.WEBHOOK
        and now - latest.received_at < interval
    ):
        # Webhooks are flowing: a poll would only wake the car to learn what we know.
        Vehicle.objects.filter(pk=vehicle.pk).update(next_poll_at=latest.received_at + interval)
        return None
    adapter = get_adapter(vehicle.provider)
    try:
        state = call_with_token(
            vehicle=vehicle,
            call=lambda token: adapter.get_state(
                access_token=token, vehicle_id=vehicle.provider_vehicle_id
            ),
        )
    except LinkRevokedError:
        # No active grant (none at all, or one needing sign-in): only the owner can fix that, so
        # the car leaves the rotation instead of failing every few minutes; each failed task costs
        # a logged traceback and ~70 KiB of Celery exception info freed only by a full GC.
        Vehicle.objects.filter(pk=vehicle.pk, link_state=Vehicle.LinkState.LINKED).update(
            link_state=Vehicle.LinkState.NEEDS_REAUTH
        )
        logger.info("poll: vehicle %s has no active link; needs sign-in again", vehicle.pk)
        return None
    except TransientOemError as error:
        wait = error.retry_after_seconds or settings.TELEMETRY_POLL_PLUGGED_SECONDS
        Vehicle.objects.filter(pk=vehicle.pk).update(
            poll_backoff_until=now + timedelta(seconds=wait),
            next_poll_at=now + timedelta(seconds=wait),
        )
        raise
    reading = record_reading(vehicle=vehicle, state=state, source=VehicleReading.Source.POLL)
    Vehicle.objects.filter(pk=vehicle.pk).update(
        next_poll_at=now + timedelta(seconds=_poll_interval_seconds(state.plugged_in)),
        poll_backoff_until=None,
    )
    return reading


def _poll_interval_seconds(plugged_in: bool | None) -> int:
    """Often while plugged in (the plan depends on it), rarely otherwise (polls wake cars)."""
    if plugged_in:
        return settings.TELEMETRY_POLL_PLUGGED_SECONDS
    return settings.TELEMETRY_POLL_IDLE_SECONDS


def ingest_webhook(*, provider: str, body: bytes, signature: str) -> WebhookMessage:
    """Verify and apply a vehicle cloud webhook. A delivery seen before changes nothing."""
    message = get_adapter(provider).parse_webhook(body=body, signature=signature)
    for event in message.events:
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(provider=provider, delivery_id=event.delivery_id)
        except IntegrityError:
            logger.info("webhook replay ignored")
            continue
        vehicle = (
            Vehicle.objects.filter(provider=provider, provider_vehicle_id=event.provider_vehicle_id)
            .exclude(link_state=Vehicle.LinkState.UNLINKED)
            .first()
        )
        if vehicle is not None:
            record_reading(vehicle=vehicle, state=event.state, source=VehicleReading.Source.WEBHOOK)
    return message


def purge_precise_locations(*, now: Any = None) -> int:
    """Keep precise GPS no longer than PRECISE_LOCATION_RETENTION_DAYS; at_home stays."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PRECISE_LOCATION_RETENTION_DAYS)
    return (
        VehicleReading.objects.filter(recorded_at__lt=cutoff)
        .exclude(latitude__isnull=True)
        .update(latitude=None, longitude=None)
    )


def set_home_location(*, vehicle: Vehicle) -> Vehicle:
    """Make the car's last known position its home geofence centre (rounded to ~100 m)."""
    reading = vehicle.readings.exclude(latitude__isnull=True).order_by("-recorded_at").first()
    if reading is None:
        raise ValueError("We don't know where the car is yet.")
    vehicle.home_latitude = round(reading.latitude, 3)
    vehicle.home_longitude = round(reading.longitude, 3)
    vehicle.save(update_fields=["home_latitude", "home_longitude", "updated_at"])
    return vehicle


# --- Preferences ---------------------------------------------------------------------------------


@transaction.atomic
def update_preference(*, vehicle: Vehicle, **fields: Any) -> ChargingPreference:
    """Change the owner's charging preferences (validated by the caller's serializer/form).

    The planner replans on commit (signal), on the control queue for pause/boost.
    """
    preference, _ = ChargingPreference.objects.get_or_create(vehicle=vehicle)
    for name, value in fields.items():
        setattr(preference, name, value)
    preference.full_clean()
    preference.save()
    transaction.on_commit(
        lambda: signals.preference_changed.send(sender=Vehicle, vehicle_id=vehicle.pk)
    )
    return preference
