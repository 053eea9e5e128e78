"""Reads with joins and the owner access checks (I6: owners only ever see their own chargers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from vehicles.chargers import payloads
from vehicles.chargers.models import (
    Charger,
    ChargingProfile,
    ChargingSession,
    OcppMessage,
    ProfilePurpose,
    ProfileState,
    SessionState,
)

# A connection that has sent nothing for this many heartbeat intervals counts as offline, which
# also covers an OCPP process that died without marking its chargers disconnected.
SILENT_INTERVALS = 2.5
MIN_SILENCE = timedelta(seconds=60)


def get_charger_for_connect(*, charge_point_id: str) -> Charger | None:
    return Charger.objects.filter(charge_point_id=charge_point_id).first()


def silence_limit(charger: Charger) -> timedelta:
    return max(MIN_SILENCE, timedelta(seconds=charger.heartbeat_interval_s * SILENT_INTERVALS))


def is_online(charger: Charger, *, now: datetime | None = None) -> bool:
    """Presence from the socket and the heartbeat: connected and heard from recently."""
    if not charger.is_connected or charger.last_seen_at is None:
        return False
    return (now or timezone.now()) - charger.last_seen_at <= silence_limit(charger)


def _owner_chargers(owner: Any) -> QuerySet[Charger]:
    active = ChargingSession.objects.filter(state=SessionState.ACTIVE).order_by("-started_at")
    return (
        Charger.objects.filter(owner=owner)
        .prefetch_related("connectors", Prefetch("sessions", active, to_attr="active_sessions"))
        .order_by("name", "charge_point_id")
    )


@dataclass(frozen=True)
class ChargerCard:
    """What the Vehicles tab shows for one charger."""

    charger: Charger
    online: bool
    status: str
    power_kw: Decimal | None
    session_energy_kwh: float | None
    soc_pct: Decimal | None

    @property
    def discharging(self) -> bool:
        return self.power_kw is not None and self.power_kw < 0


def _card(charger: Charger, now: datetime) -> ChargerCard:
    session = charger.active_sessions[0] if charger.active_sessions else None  # type: ignore[attr-defined]
    statuses = [connector.status for connector in charger.connectors.all()]
    online = is_online(charger, now=now)
    if not online:
        status = "Offline"
    elif session is not None:
        status = "Discharging" if session.power_kw and session.power_kw < 0 else "Charging"
    else:
        status = statuses[0] if statuses else "Online"
    return ChargerCard(
        charger=charger,
        online=online,
        status=status,
        power_kw=session.power_kw if session else None,
        session_energy_kwh=session.energy_kwh if session else None,
        soc_pct=session.soc_pct if session else None,
    )


def list_charger_cards_for_owner(*, owner: Any) -> list[ChargerCard]:
    now = timezone.now()
    return [_card(charger, now) for charger in _owner_chargers(owner)]


def get_owned_charger(*, owner: Any, charger_id: int) -> Charger:
    """The owner's charger, or 404 — the same answer whether it is someone else's or missing."""
    charger = _owner_chargers(owner).filter(pk=charger_id).first()
    if charger is None:
        raise Http404("No such charger.")
    return charger


def get_owned_charger_card(*, owner: Any, charger_id: int) -> ChargerCard:
    return _card(get_owned_charger(owner=owner, charger_id=charger_id), timezone.now())


def list_recent_sessions(*, charger: Charger, limit: int = 10) -> list[ChargingSession]:
    return list(charger.sessions.order_by("-started_at")[:limit])


def list_recent_messages(*, charger: Charger, limit: int = 50) -> list[OcppMessage]:
    return list(charger.messages.order_by("-created_at", "-id")[:limit])


def profile_spec(profile: ChargingProfile) -> payloads.ProfileSpec:
    return payloads.ProfileSpec(
        profile_id=profile.profile_id,
        evse_id=profile.evse_id,
        purpose=profile.purpose,
        stack_level=profile.stack_level,
        start_schedule=profile.start_schedule,
        periods=profile.periods,
        duration_s=profile.duration_s,
        valid_from=profile.valid_from,
        valid_to=profile.valid_to,
        transaction_id=profile.session.transaction_id if profile.session_id else None,
    )


@dataclass(frozen=True)
class ProfilePush:
    """A stored profile to (re-)send after a boot, or a cleared one to remove."""

    pk: int
    spec: payloads.ProfileSpec
    clear: bool


def profiles_to_push(*, charger_id: int, now: datetime | None = None) -> list[ProfilePush]:
    """What a charger should hold after it boots: clears first, then profiles by stack level.

    Leases past their end are skipped (the charger dropped them itself); a TxProfile whose session
    has ended is skipped too (it cannot outlive its transaction).
    """
    now = now or timezone.now()
    profiles = (
        ChargingProfile.objects.filter(charger_id=charger_id)
        .select_related("session")
        .order_by("stack_level", "profile_id")
    )
    pushes = []
    for profile in profiles:
        if profile.state == ProfileState.CLEARED:
            pushes.append(ProfilePush(profile.pk, profile_spec(profile), clear=True))
            continue
        if profile.valid_to is not None and profile.valid_to <= now:
            continue
        if profile.purpose == ProfilePurpose.TX and (
            profile.session is None or profile.session.state != SessionState.ACTIVE
        ):
            continue
        pushes.append(ProfilePush(profile.pk, profile_spec(profile), clear=False))
    pushes.sort(key=lambda push: not push.clear)
    return pushes
