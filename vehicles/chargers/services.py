"""Every write to chargers, sessions, readings and profiles (STYLE.md: services).

Callers: the OCPP consumer (through database_sync_to_async), the admin, the owner views and the
management commands. Functions that talk to a charger (`apply_profile`, `clear_dispatch`) do their
network I/O outside any transaction and record the outcome through an atomic writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from vehicles.chargers import payloads, rpc, security, signals
from vehicles.chargers.models import (
    MAX_LEASE,
    Charger,
    ChargingProfile,
    ChargingSession,
    Connector,
    ConnectorStatus,
    MeterValue,
    OcppMessage,
    OcppVersion,
    ProfilePurpose,
    ProfileState,
    SessionState,
)
from vehicles.chargers.selectors import profile_spec
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

# Stack levels (OCPP §3.13.2: higher wins within a purpose; a TxProfile overrides TxDefault).
PLAN_STACK_LEVEL = 1  # the day plan: low, so anything an installer sets above it still wins
DISPATCH_STACK_LEVEL = 10  # live event / V2G dispatch
# One profile id per purpose and EVSE: re-sending an id replaces the charger's copy in place.
_PROFILE_ID_BASE = {
    ProfilePurpose.TX_DEFAULT: 100,
    ProfilePurpose.CHARGER_MAX: 200,
    ProfilePurpose.TX: 300,
}


class ChargerError(Exception):
    """A request the charger side cannot carry out, with a message fit for the caller."""


@dataclass(frozen=True)
class ProvisionedCharger:
    """A new charger and its secrets, shown once to the operator, never stored in clear."""

    charger: Charger
    authorization_key: str
    pairing_code: str


def profile_id_for(purpose: str, evse_id: int) -> int:
    return _PROFILE_ID_BASE[ProfilePurpose(purpose)] + evse_id


# --- Provisioning and ownership ---------------------------------------------------------------


@transaction.atomic
def provision_charger(
    *,
    charge_point_id: str,
    max_power_kw: Decimal | float = Decimal("11"),
    v2g_capable: bool = False,
    name: str = "",
) -> ProvisionedCharger:
    """Create a charger with a fresh authorization key and pairing code (what installers set)."""
    key, code = security.new_authorization_key(), security.new_pairing_code()
    charger = Charger(
        charge_point_id=charge_point_id,
        authorization_key_hash=security.hash_authorization_key(key),
        pairing_code_hash=security.hash_pairing_code(code),
        max_power_kw=Decimal(str(max_power_kw)),
        v2g_capable=v2g_capable,
        name=name,
    )
    charger.full_clean(exclude=["authorization_key_hash", "pairing_code_hash", "owner"])
    try:
        with transaction.atomic():
            charger.save()
    except IntegrityError:
        raise ChargerError(f"A charger with id {charge_point_id} already exists.") from None
    return ProvisionedCharger(charger, key, security.format_pairing_code(code))


@transaction.atomic
def rotate_authorization_key(*, charger: Charger) -> str:
    """A new key for a charger whose key leaked; the old one stops working on the next connect."""
    key = security.new_authorization_key()
    charger.authorization_key_hash = security.hash_authorization_key(key)
    charger.save(update_fields=["authorization_key_hash", "updated_at"])
    return key


@transaction.atomic
def claim_charger(*, owner: Any, charge_point_id: str, pairing_code: str) -> Charger:
    """Give an unclaimed charger to `owner` when the pairing code matches.

    Every failure (unknown id, wrong code, someone else's charger) raises the same error, so the
    form never tells a stranger which charger ids exist. Claiming your own charger again is a no-op.
    """
    not_found = ChargerError("No charger with that id and pairing code.")
    charger = Charger.objects.select_for_update().filter(charge_point_id=charge_point_id).first()
    if charger is None or not security.check_pairing_code(pairing_code, charger.pairing_code_hash):
        raise not_found
    if charger.owner_id == owner.pk:
        return charger
    if charger.owner_id is not None:
        raise not_found
    charger.owner = owner
    charger.claimed_at = timezone.now()
    charger.save(update_fields=["owner", "claimed_at", "updated_at"])
    return charger


@transaction.atomic
def pair_vehicle(*, charger: Charger, vehicle: Vehicle | None) -> Charger:
    """Record which of the owner's cars usually plugs in here (None: no car in particular)."""
    if vehicle is not None and (
        vehicle.owner_id != charger.owner_id or vehicle.link_state == Vehicle.LinkState.UNLINKED
    ):
        raise ChargerError("Choose one of your linked cars.")
    charger.usual_vehicle = vehicle
    charger.save(update_fields=["usual_vehicle", "updated_at"])
    return charger


@transaction.atomic
def rename_charger(*, charger: Charger, name: str) -> Charger:
    charger.name = name.strip()[:60]
    charger.save(update_fields=["name", "updated_at"])
    return charger


# --- Presence -------------------------------------------------------------------------------------


@transaction.atomic
def mark_charger_connected(*, charger_id: int, protocol: str, channel_name: str) -> Charger:
    now = timezone.now()
    charger = Charger.objects.select_for_update().get(pk=charger_id)
    was_online = charger.is_connected
    charger.is_connected = True
    charger.protocol = OcppVersion(protocol)
    charger.connection_channel = channel_name
    charger.connected_at = charger.last_seen_at = now
    charger.save(
        update_fields=[
            "is_connected",
            "protocol",
            "connection_channel",
            "connected_at",
            "last_seen_at",
            "updated_at",
        ]
    )
    if not was_online:
        transaction.on_commit(
            lambda: signals.charger_presence_changed.send(Charger, charger=charger, online=True)
        )
    return charger


@transaction.atomic
def mark_charger_disconnected(*, charger_id: int, channel_name: str) -> None:
    """Offline, unless a newer connection of the same charger has taken over meanwhile (or the
    charger was deleted while connected)."""
    charger = Charger.objects.select_for_update().filter(pk=charger_id).first()
    if charger is None or charger.connection_channel != channel_name:
        return
    charger.is_connected = False
    charger.connection_channel = ""
    charger.disconnected_at = timezone.now()
    charger.save(
        update_fields=["is_connected", "connection_channel", "disconnected_at", "updated_at"]
    )
    transaction.on_commit(
        lambda: signals.charger_presence_changed.send(Charger, charger=charger, online=False)
    )


def touch_charger(*, charger_id: int, seen_at: datetime) -> None:
    """Record a sign of life (one UPDATE; atomic by itself)."""
    Charger.objects.filter(pk=charger_id).update(last_seen_at=seen_at)


@transaction.atomic
def record_boot(
    *,
    charger_id: int,
    vendor: str,
    model: str,
    serial_number: str = "",
    firmware_version: str = "",
    heartbeat_interval_s: int,
) -> Charger:
    now = timezone.now()
    charger = Charger.objects.select_for_update().get(pk=charger_id)
    charger.vendor, charger.model = vendor[:50], model[:50]
    charger.serial_number, charger.firmware_version = serial_number[:50], firmware_version[:50]
    charger.heartbeat_interval_s = heartbeat_interval_s
    charger.last_boot_at = charger.last_seen_at = now
    charger.save()
    return charger


@transaction.atomic
def record_status(
    *,
    charger_id: int,
    evse_id: int,
    connector_id: int,
    status: str,
    error_code: str = "",
    timestamp: datetime | None = None,
) -> Connector | None:
    """Connector status; 1.6 connectorId 0 (the whole charger) is not a connector and is skipped."""
    if evse_id <= 0:
        return None
    status = status if status in ConnectorStatus.values else ConnectorStatus.UNKNOWN
    connector, _ = Connector.objects.update_or_create(
        charger_id=charger_id,
        evse_id=evse_id,
        connector_id=connector_id,
        defaults={
            "status": status,
            "error_code": "" if error_code == "NoError" else error_code[:50],
            "status_at": timestamp or timezone.now(),
        },
    )
    transaction.on_commit(
        lambda: signals.charger_status_changed.send(
            Charger, charger=connector.charger, connector=connector
        )
    )
    return connector


# --- Sessions and readings --------------------------------------------------------------------


@transaction.atomic
def start_session(
    *,
    charger_id: int,
    evse_id: int,
    started_at: datetime,
    transaction_id: str | None = None,
    id_tag: str = "",
    meter_start_wh: int = 0,
) -> ChargingSession:
    """Open a session. 1.6 passes no id: the CSMS assigns one (the row's primary key).

    A 2.x charger re-sending a Started event (after a reconnect) gets the existing session back.
    """
    if transaction_id is not None:
        existing = ChargingSession.objects.filter(
            charger_id=charger_id, transaction_id=transaction_id
        ).first()
        if existing is not None:
            return existing
    session = ChargingSession.objects.create(
        charger_id=charger_id,
        evse_id=evse_id,
        transaction_id=transaction_id or f"pending-{timezone.now().timestamp()}",
        id_tag=id_tag[:36],
        started_at=started_at,
        meter_start_wh=meter_start_wh,
    )
    if transaction_id is None:
        session.transaction_id = str(session.pk)
        session.save(update_fields=["transaction_id"])
    transaction.on_commit(
        lambda: signals.charger_session_started.send(
            Charger, charger=session.charger, session=session
        )
    )
    return session


@transaction.atomic
def end_session(
    *,
    charger_id: int,
    transaction_id: str,
    ended_at: datetime,
    meter_stop_wh: int | None = None,
    reason: str = "",
) -> ChargingSession | None:
    """Close a session; unknown transaction ids (a stop for a session we never saw) are ignored.

    Lease profiles tied to the session are dropped: they cannot outlive their transaction.
    """
    session = (
        ChargingSession.objects.select_for_update()
        .filter(charger_id=charger_id, transaction_id=transaction_id)
        .first()
    )
    if session is None or session.state == SessionState.ENDED:
        return session
    session.state = SessionState.ENDED
    session.ended_at = ended_at
    session.stop_reason = reason[:40]
    if meter_stop_wh is not None:
        session.meter_stop_wh = meter_stop_wh
        session.energy_import_wh = max(0, meter_stop_wh - session.meter_start_wh)
    session.power_kw = Decimal(0)
    session.save()
    ChargingProfile.objects.filter(session=session).delete()
    transaction.on_commit(
        lambda: signals.charger_session_ended.send(
            Charger, charger=session.charger, session=session
        )
    )
    return session


@transaction.atomic
def record_meter_values(
    *,
    charger_id: int,
    evse_id: int,
    readings: list[payloads.Reading],
    transaction_id: str | None = None,
) -> list[MeterValue]:
    """Store readings and roll the latest into the session (energy, signed power, SoC)."""
    if not readings:
        return []
    session = None
    if transaction_id is not None:
        session = (
            ChargingSession.objects.select_for_update()
            .filter(charger_id=charger_id, transaction_id=transaction_id)
            .first()
        )
    elif evse_id > 0:
        session = (
            ChargingSession.objects.select_for_update()
            .filter(charger_id=charger_id, evse_id=evse_id, state=SessionState.ACTIVE)
            .first()
        )
    rows = MeterValue.objects.bulk_create(
        MeterValue(
            charger_id=charger_id,
            session=session,
            evse_id=evse_id,
            sampled_at=reading.sampled_at,
            energy_import_wh=reading.energy_import_wh,
            energy_export_wh=reading.energy_export_wh,
            power_kw=reading.power_kw,
            soc_pct=reading.soc_pct,
            context=reading.context[:24],
        )
        for reading in readings
    )
    if session is not None:
        latest = max(readings, key=lambda reading: reading.sampled_at)
        if session.reading_at is None or latest.sampled_at >= session.reading_at:
            session.reading_at = latest.sampled_at
            if latest.energy_import_wh is not None:
                session.energy_import_wh = max(0, latest.energy_import_wh - session.meter_start_wh)
            if latest.energy_export_wh is not None:
                session.energy_export_wh = latest.energy_export_wh
            if latest.power_kw is not None:
                session.power_kw = latest.power_kw
            if latest.soc_pct is not None:
                session.soc_pct = latest.soc_pct
            session.save()
    latest_row = max(rows, key=lambda row: row.sampled_at)
    transaction.on_commit(
        lambda: signals.charger_meter_values.send(
            Charger, charger=latest_row.charger, session=session, reading=latest_row
        )
    )
    return rows


@transaction.atomic
def record_ev_charging_needs(
    *, charger_id: int, evse_id: int, needs: dict[str, Any]
) -> ChargingSession | None:
    """2.1 NotifyEVChargingNeeds: kept on the EVSE's active session for planning to read."""
    session = (
        ChargingSession.objects.select_for_update()
        .filter(charger_id=charger_id, evse_id=evse_id, state=SessionState.ACTIVE)
        .first()
    )
    if session is None:
        return None
    session.ev_charging_needs = needs
    session.departure_at = payloads.parse_time(needs.get("departureTime"))
    session.save(update_fields=["ev_charging_needs", "departure_at"])
    transaction.on_commit(
        lambda: signals.charger_ev_charging_needs.send(
            Charger, charger=session.charger, session=session, needs=needs
        )
    )
    return session


def log_messages(*, entries: list[OcppMessage]) -> None:
    """Append frames to the message log in one INSERT (atomic by itself)."""
    OcppMessage.objects.bulk_create(entries)


# --- Smart charging ---------------------------------------------------------------------------


@transaction.atomic
def set_day_plan(
    *,
    charger: Charger,
    start: datetime,
    periods: list[dict[str, Any]],
    evse_id: int = 0,
    duration_s: int | None = None,
    source: str = "plan",
) -> ChargingProfile:
    """The day plan as a TxDefaultProfile at a low stack level. Periods: [{start_s, limit_w}].

    The plan ends `duration_s` after `start` (default: its last 15-minute slot); after it the
    charger charges at full power (charging fails open). Replaces the previous plan; send it with
    `apply_profile` (or the next boot does).
    """
    _check_periods(periods, allow_setpoint=False)
    if duration_s is None:
        duration_s = max(int(p["start_s"]) for p in periods) + 900
    profile, _ = ChargingProfile.objects.update_or_create(
        charger=charger,
        profile_id=profile_id_for(ProfilePurpose.TX_DEFAULT, evse_id),
        defaults={
            "purpose": ProfilePurpose.TX_DEFAULT,
            "evse_id": evse_id,
            "stack_level": PLAN_STACK_LEVEL,
            "session": None,
            "start_schedule": start,
            "duration_s": duration_s,
            "valid_from": None,
            "valid_to": None,
            "periods": periods,
            "state": ProfileState.PENDING,
            "source": source,
            "last_error": "",
        },
    )
    return profile


@transaction.atomic
def dispatch_lease(
    *,
    charger: Charger,
    power_kw: float,
    lease: timedelta,
    session: ChargingSession | None = None,
    source: str = "dispatch",
    now: datetime | None = None,
) -> ChargingProfile:
    """A live event or V2G dispatch as a TxProfile lease (I8): `power_kw` until now + `lease`.

    Positive power caps charging. Negative power discharges and needs an OCPP 2.1, V2G-capable
    charger (operationMode=CentralSetpoint, setpoint and dischargeLimit ≤ 0). The caller renews
    the lease while the dispatch holds; once it lapses, the charger returns to the day plan even
    if the link is down, and discharging stops (fails closed). Floors (I3) are the gateway's job.
    """
    if not timedelta(0) < lease <= MAX_LEASE:
        raise ChargerError("A dispatch lease lasts between 1 second and 15 minutes.")
    if power_kw < 0 and not (charger.v2g_capable and charger.protocol == OcppVersion.V21):
        raise ChargerError("Discharging needs a V2G-capable charger speaking OCPP 2.1.")
    if session is None:
        session = ChargingSession.objects.filter(charger=charger, state=SessionState.ACTIVE).first()
    if session is None:
        raise ChargerError("A dispatch needs an active charging session.")
    now = now or timezone.now()
    watts = float(power_kw) * 1000
    period: dict[str, Any] = {"start_s": 0, "limit_w": watts}
    if watts < 0:
        period = {"start_s": 0, "limit_w": None, "setpoint_w": watts, "discharge_limit_w": watts}
    profile, _ = ChargingProfile.objects.update_or_create(
        charger=charger,
        profile_id=profile_id_for(ProfilePurpose.TX, session.evse_id),
        defaults={
            "purpose": ProfilePurpose.TX,
            "evse_id": session.evse_id,
            "stack_level": DISPATCH_STACK_LEVEL,
            "session": session,
            "start_schedule": now,
            "duration_s": int(lease.total_seconds()),
            "valid_from": now,
            "valid_to": now + lease,
            "periods": [period],
            "state": ProfileState.PENDING,
            "source": source,
            "last_error": "",
        },
    )
    return profile


def _check_periods(periods: list[dict[str, Any]], *, allow_setpoint: bool) -> None:
    starts = [int(p["start_s"]) for p in periods]
    if not periods or starts[0] != 0 or starts != sorted(set(starts)):
        raise ChargerError("Periods start at 0 s and increase.")
    for period in periods:
        if period.get("limit_w") is None or period["limit_w"] < 0:
            raise ChargerError("A plan period needs a limit of 0 W or more.")
        if not allow_setpoint and period.get("setpoint_w") is not None:
            raise ChargerError("Setpoints belong in a dispatch lease, not the day plan.")


@transaction.atomic
def record_profile_result(*, profile_id: int, status: str, error: str = "") -> None:
    """The charger's answer to a SetChargingProfile (Accepted / Rejected / NotSupported / error)."""
    updated = {"sent_at": timezone.now(), "last_error": error[:200]}
    updated["state"] = ProfileState.ACCEPTED if status == "Accepted" else ProfileState.REJECTED
    ChargingProfile.objects.filter(pk=profile_id).exclude(state=ProfileState.CLEARED).update(
        **updated
    )


@transaction.atomic
def forget_cleared_profile(*, profile_id: int) -> None:
    """The charger confirmed a ClearChargingProfile: the desired state no longer has it."""
    ChargingProfile.objects.filter(pk=profile_id, state=ProfileState.CLEARED).delete()


@transaction.atomic
def expire_lapsed_leases(*, charger_id: int, now: datetime) -> int:
    """TxProfiles past their lease are not re-sent; the charger has already dropped them."""
    deleted, _ = ChargingProfile.objects.filter(
        charger_id=charger_id, purpose=ProfilePurpose.TX, valid_to__lte=now
    ).delete()
    return deleted


def apply_profile(*, profile: ChargingProfile, timeout: float = rpc.DEFAULT_TIMEOUT_S) -> str:
    """Send a stored profile to its charger now and record the answer; returns the status.

    Network I/O, so deliberately not atomic: the outcome is written by `record_profile_result`.
    Raises rpc.CommandError when the charger is offline or refuses the frame.
    """
    charger = profile.charger
    if not charger.is_connected:
        raise rpc.CommandTimeout(f"{charger.charge_point_id} is offline")
    action, payload = payloads.set_charging_profile(profile_spec(profile), charger.protocol)
    try:
        reply = rpc.call_charger_sync(charger.charge_point_id, action, payload, timeout=timeout)
    except rpc.CommandFailed as error:
        record_profile_result(profile_id=profile.pk, status="Error", error=str(error))
        raise
    record_profile_result(profile_id=profile.pk, status=reply.get("status", ""))
    return reply.get("status", "")


@transaction.atomic
def clear_profile(*, profile: ChargingProfile) -> ChargingProfile:
    """Mark a profile for removal; `send_clear` (or the next boot) tells the charger."""
    profile.state = ProfileState.CLEARED
    profile.save(update_fields=["state", "updated_at"])
    return profile


def send_clear(*, profile: ChargingProfile, timeout: float = rpc.DEFAULT_TIMEOUT_S) -> str:
    """ClearChargingProfile for a cleared profile; forgets it once the charger confirms."""
    charger = profile.charger
    action, payload = payloads.clear_charging_profile(profile.profile_id, charger.protocol)
    reply = rpc.call_charger_sync(charger.charge_point_id, action, payload, timeout=timeout)
    if reply.get("status") in {"Accepted", "Unknown"}:
        forget_cleared_profile(profile_id=profile.pk)
    return reply.get("status", "")


def get_composite_schedule(
    *, charger: Charger, evse_id: int, duration_s: int, timeout: float = rpc.DEFAULT_TIMEOUT_S
) -> tuple[datetime | None, list[dict[str, Any]]]:
    """Ask the charger what it will actually do (a read over the wire, no database write)."""
    action, payload = payloads.get_composite_schedule(evse_id, duration_s, charger.protocol)
    reply = rpc.call_charger_sync(charger.charge_point_id, action, payload, timeout=timeout)
    if reply.get("status") != "Accepted":
        raise rpc.CommandFailed("Rejected", "the charger refused GetCompositeSchedule")
    return payloads.composite_periods(reply, charger.protocol)
