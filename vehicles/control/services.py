"""Every write of command execution: create (with its outbox entry), relay, send, retry, finish.

Callers: programs.execution (plan slots become commands), the `control.*` Celery tasks and the
admin. The life of a command (DESIGN.md §5):

    create_command ──(same transaction)──▶ OutboxEntry ──relay_outbox──▶ control.send_command
    send_command: claim (row lock) → expired? superseded? → safety gateway → [read state if the
    last attempt may have acted] → device I/O (no transaction held) → sent | retry | failed

A crash anywhere is recovered: an unpublished entry is published by the relay beat (I1), a message
delivered twice meets a terminal state or a live claim (I2), a worker killed mid-send leaves the
command `sending`, and the next run reads the device before sending again (I2). A broker that
lost its messages (Redis wiped, or restarted without its data) is noticed by a missing marker
key and every live command is published again (I1). Every transition is a CommandEvent row with
its actor and time, committed together with the transition (I7).
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from vehicles.chargers.models import Charger
from vehicles.control import devices, gateway
from vehicles.control.models import TERMINAL_STATES, Command, CommandEvent, OutboxEntry
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

# Retry timing and budget: settings.CONTROL_* (documented there).
RETRY_CAP_S = 300.0  # never wait longer than 5 minutes between attempts
RELAY_BATCH = 500
# While the database is down a send comes back after this long (with jitter): soon enough that a
# restart costs seconds, not the stall re-drive (CONTROL_STALL_AFTER_SECONDS).
DATABASE_RETRY_S = 5.0
# Written into the broker by the relay. When it is gone, so is every message the broker held
# (FLUSHALL, or a restart that lost its data): the relay publishes every live command again at
# once instead of waiting out the stall time for each (I1).
BROKER_MARKER_KEY = "chargescape:control:broker-marker"
# What the car's "your command does not fit my state" answers mean for the owner, in plain words.
STATE_CONFLICTS_SATISFIED = {
    "FULLY_CHARGED": "The car is already charged to its limit.",
    "NOT_CHARGING": "The car is not charging.",
}
STATE_CONFLICTS_HOPELESS = {
    "CHARGING_PLUG_NOT_CONNECTED": "The car is not plugged in.",
}


class RetryLater(Exception):
    """Not now: run the command again in `countdown` seconds (the task re-schedules itself)."""

    def __init__(self, countdown: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {countdown:.1f} s")
        self.countdown = countdown


def claim_timeout() -> timedelta:
    """A `sending` claim older than this belongs to a worker that died mid-send."""
    return timedelta(seconds=settings.CONTROL_CLAIM_TIMEOUT_SECONDS)


def stall_after() -> timedelta:
    """A live command untouched this long lost its broker message: the relay re-drives it."""
    return timedelta(seconds=settings.CONTROL_STALL_AFTER_SECONDS)


def _record(
    command: Command,
    kind: str,
    *,
    actor: str,
    at: datetime,
    detail: str = "",
    data: dict[str, Any] | None = None,
    actor_user: Any = None,
) -> CommandEvent:
    return CommandEvent.objects.create(
        command=command,
        kind=kind,
        actor=actor,
        actor_user=actor_user,
        at=at,
        detail=detail[:300],
        data=data or {},
    )


# --- Creating ------------------------------------------------------------------------------------


@transaction.atomic
def create_command(
    *,
    vehicle: Vehicle,
    action: str,
    idempotency_key: str,
    source: str = Command.Source.PLAN,
    charger: Charger | None = None,
    power_kw: float | None = None,
    limit_pct: float | None = None,
    lease_end: datetime | None = None,
    plan_version: int | None = None,
    slot_start: datetime | None = None,
    actor: str,
    actor_user: Any = None,
) -> tuple[Command, bool]:
    """Write a command and its outbox entry in one transaction; (command, created).

    Idempotent on `idempotency_key`: a second call (a second beat, a retried task, two beat
    processes at once) returns the existing command and publishes nothing. Older commands of the
    same device still waiting are superseded: only the newest intent may reach the device.
    """
    now = timezone.now()
    command, created = Command.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "vehicle": vehicle,
            "charger": charger,
            "action": action,
            "power_kw": power_kw,
            "limit_pct": limit_pct,
            "lease_end": lease_end,
            "source": source,
            "plan_version": plan_version,
            "slot_start": slot_start,
        },
    )
    if not created:
        return command, False
    _record(
        command,
        "created",
        actor=actor,
        actor_user=actor_user,
        at=now,
        detail=command.get_action_display(),
        data={"power_kw": power_kw, "limit_pct": limit_pct, "source": source},
    )
    older = (
        Command.objects.select_for_update(skip_locked=True)
        .filter(vehicle=vehicle, charger=charger, state=Command.State.PENDING)
        .exclude(pk=command.pk)
    )
    for stale in older:
        _finish(stale, Command.State.SUPERSEDED, actor=actor, at=now, detail=f"by #{command.pk}")
    entry = OutboxEntry.objects.create(command=command)
    transaction.on_commit(lambda: _publish_soon(entry.pk))
    return command, True


def _publish_soon(entry_id: int) -> None:
    """Fast path after commit; if the broker is down the relay beat publishes it later (I1)."""
    try:
        relay_outbox(entry_ids=[entry_id])
    except Exception as error:  # the beat relay retries; the caller's write already committed
        logger.warning("outbox fast path failed, the relay will publish: %s", error)


# --- Relaying ------------------------------------------------------------------------------------


def queue_for(command: Command) -> str:
    """Owner actions never wait behind fleet work (DESIGN.md I4)."""
    return "control" if command.source == Command.Source.OWNER else "commands"


def relay_outbox(*, entry_ids: list[int] | None = None, limit: int = RELAY_BATCH) -> int:
    """Publish unpublished outbox entries; returns how many.

    `FOR UPDATE SKIP LOCKED` lets several relays run at once without publishing an entry twice
    at the same time. Publishing happens before the commit: a crash in between publishes the
    entry again later, which is harmless (the send is idempotent, I2); the reverse order could
    lose it (I1).
    """
    from vehicles.control.tasks import send_command  # tasks import services

    now = timezone.now()
    broker_was_wiped = entry_ids is None and not _broker_marker_present()
    if broker_was_wiped:
        redrive_live_commands(now=now, reason="broker lost its messages")
    with transaction.atomic():
        pending = OutboxEntry.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            published_at__isnull=True
        )
        if entry_ids is not None:
            pending = pending.filter(pk__in=entry_ids)
        entries = list(pending.select_related("command").order_by("id")[:limit])
        for entry in entries:
            send_command.apply_async(args=[entry.command_id], queue=queue_for(entry.command))
        OutboxEntry.objects.filter(pk__in=[e.pk for e in entries]).update(
            published_at=now, publish_count=F("publish_count") + 1
        )
        CommandEvent.objects.bulk_create(
            CommandEvent(command_id=e.command_id, kind="published", actor="control.relay", at=now)
            for e in entries
        )
    if broker_was_wiped:
        _set_broker_marker(now)  # after the publishes: a crash before it only re-drives again
    return len(entries)


_BROKER_CLIENTS: dict[str, redis.Redis] = {}  # one connection pool per broker URL and process


def _broker_client() -> redis.Redis | None:
    """The broker's Redis, or None when the broker is something else (then no marker)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = _BROKER_CLIENTS.get(url)
    if client is None:
        client = _BROKER_CLIENTS[url] = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5
        )
    return client


def _broker_marker_present() -> bool:
    client = _broker_client()
    if client is None:
        return True
    return bool(client.exists(BROKER_MARKER_KEY))


def _set_broker_marker(now: datetime) -> None:
    client = _broker_client()
    if client is not None:
        client.set(BROKER_MARKER_KEY, now.isoformat())


@transaction.atomic
def redrive_live_commands(*, now: datetime, reason: str) -> int:
    """Give every live (non-terminal) command a new outbox entry; returns how many.

    For a broker that lost its messages. A command whose entry is still unpublished needs none;
    a live command that still had a message somewhere (a worker holding it) just gets a second
    delivery, which meets its claim or its terminal state (I2).
    """
    live = (
        Command.objects.select_for_update(skip_locked=True)
        .exclude(state__in=TERMINAL_STATES)
        .exclude(outbox__published_at__isnull=True)
        .order_by("id")
    )
    commands = list(live)
    OutboxEntry.objects.bulk_create(OutboxEntry(command=command) for command in commands)
    CommandEvent.objects.bulk_create(
        CommandEvent(command=command, kind="redriven", actor="control.relay", at=now, detail=reason)
        for command in commands
    )
    if commands:
        logger.warning("re-publishing %d live commands: %s", len(commands), reason)
    return len(commands)


@transaction.atomic
def redrive_stalled_commands(*, now: datetime | None = None) -> int:
    """Give commands whose broker message was lost (Redis wiped or restarted) a new outbox entry.

    A live command is touched at least every attempt; one untouched for the stall time past its next
    attempt (or claim) has no message left anywhere.
    """
    now = now or timezone.now()
    cutoff = now - stall_after()
    stalled = (
        Command.objects.select_for_update(skip_locked=True)
        .filter(updated_at__lt=cutoff)
        .filter(
            Q(state=Command.State.PENDING)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=cutoff))
            | Q(state=Command.State.SENDING, claimed_at__lt=now - claim_timeout())
        )
        .exclude(outbox__published_at__isnull=True)
    )
    count = 0
    for command in stalled[:RELAY_BATCH]:
        OutboxEntry.objects.create(command=command)
        command.save(update_fields=["updated_at"])
        _record(command, "redriven", actor="control.relay", at=now, detail="message lost")
        count += 1
    return count


# --- Sending -------------------------------------------------------------------------------------


@transaction.atomic  # the state and its audit row commit together, or neither does (I7)
def _finish(
    command: Command,
    state: str,
    *,
    actor: str,
    at: datetime,
    detail: str = "",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> Command:
    command.state = state
    command.finished_at = at
    command.claimed_at = None
    for name, value in fields.items():
        setattr(command, name, value)
    if state in (Command.State.REFUSED, Command.State.FAILED):
        command.last_error = detail[:300]
    command.save()
    _record(command, state, actor=actor, at=at, detail=detail, data=data)
    return command


def _claim(command_id: int, *, now: datetime, actor: str) -> Command | None:
    """Lock the command and decide whether this run may touch the device.

    Returns the claimed command (state `sending`), or None when there is nothing to do.
    """
    with transaction.atomic():
        command = (
            Command.objects.select_for_update(of=("self",))
            .select_related("vehicle", "charger")
            .filter(pk=command_id)
            .first()
        )
        if command is None or command.state in TERMINAL_STATES:
            return None  # a duplicate message or a re-run after success: no second effect (I2)
        if command.next_attempt_at and command.next_attempt_at > now:
            raise RetryLater((command.next_attempt_at - now).total_seconds(), "not yet")
        if command.state == Command.State.SENDING:
            lapse = claim_timeout()
            if command.claimed_at and command.claimed_at > now - lapse:
                wait = (command.claimed_at + lapse - now).total_seconds()
                raise RetryLater(wait, "another worker is sending it")
            # The worker holding it died mid-send: the device may have acted.
            command.verify_before_send = True
            _record(
                command,
                "worker_lost",
                actor=actor,
                at=timezone.now(),
                detail="re-checking the device",
            )
        if command.lease_end is not None and command.lease_end <= now:
            _finish(
                command, Command.State.EXPIRED, actor=actor, at=timezone.now(), detail="lease over"
            )
            return None
        newer = Command.objects.filter(
            vehicle_id=command.vehicle_id, charger_id=command.charger_id, pk__gt=command.pk
        ).exclude(state__in=[Command.State.REFUSED, Command.State.EXPIRED])
        if newer.exists():
            _finish(
                command,
                Command.State.SUPERSEDED,
                actor=actor,
                at=timezone.now(),
                detail="newer intent",
            )
            return None
        verdict = gateway.check_command(command=command, now=now)
        if not verdict.allowed:
            _finish(
                command,
                Command.State.REFUSED,
                actor="control.gateway",
                at=timezone.now(),
                detail=verdict.reason,
                data={"code": verdict.code},
            )
            return None
        command.state = Command.State.SENDING
        command.claimed_at = now
        command.attempts += 1
        command.next_attempt_at = None
        command.save()
        _record(
            command, "sending", actor=actor, at=timezone.now(), data={"attempt": command.attempts}
        )
        return command


def send_command(
    *, command_id: int, now: datetime | None = None, actor: str = "control.send_command"
) -> Command | None:
    """Carry one command out, at most once in effect. Raises RetryLater to be run again later.

    Idempotent: a terminal command is left alone; a command whose last attempt may have reached
    the device is confirmed from the device's own state instead of being sent again (I2).

    While the database is unreachable (restarting, failing over) the message is not burnt: the
    task comes back in a few seconds. A command claimed before the outage keeps its claim, and
    the run after the claim lapses reads the device before sending again (I2).
    """
    try:
        return _send_command(command_id=command_id, now=now, actor=actor)
    except (OperationalError, InterfaceError) as error:
        countdown = DATABASE_RETRY_S * random.uniform(0.5, 1.0)  # noqa: S311 — jitter
        raise RetryLater(countdown, f"database unavailable: {error}") from error


def _send_command(*, command_id: int, now: datetime | None, actor: str) -> Command | None:
    now = now or timezone.now()
    command = _claim(command_id, now=now, actor=actor)
    if command is None:
        return None
    try:
        if command.verify_before_send:
            in_place = devices.read_effect(command)
            _record(
                command,
                "verified",
                actor=actor,
                at=timezone.now(),
                detail="already in place" if in_place else "not in place: sending",
            )
            if in_place:
                return _finish(
                    command,
                    Command.State.CONFIRMED,
                    actor=actor,
                    at=timezone.now(),
                    detail="The device already shows the effect; not sent again.",
                    verify_before_send=False,
                )
        reference = devices.send(command, now=now)
    except devices.DeviceStateConflict as conflict:
        return _resolve_conflict(command, conflict, now=now, actor=actor)
    except devices.TransientDeviceError as error:
        return _retry_or_fail(command, error, now=now, actor=actor)
    except devices.PermanentDeviceError as error:
        return _finish(
            command, Command.State.FAILED, actor=actor, at=timezone.now(), detail=str(error)
        )
    done = timezone.now()
    return _finish(
        command,
        Command.State.SENT,
        actor=actor,
        at=done,
        detail=reference,
        sent_at=done,
        provider_reference=reference,
        verify_before_send=False,
        last_error="",
    )


def _resolve_conflict(
    command: Command, conflict: devices.DeviceStateConflict, *, now: datetime, actor: str
) -> Command:
    """The car refused because of its state: done if the intent already holds, failed in plain
    words if it cannot hold (not plugged in), otherwise retried."""
    if conflict.code in STATE_CONFLICTS_SATISFIED:
        return _finish(
            command,
            Command.State.CONFIRMED,
            actor=actor,
            at=timezone.now(),
            detail=STATE_CONFLICTS_SATISFIED[conflict.code],
            verify_before_send=False,
        )
    if conflict.code in STATE_CONFLICTS_HOPELESS:
        return _finish(
            command,
            Command.State.FAILED,
            actor=actor,
            at=timezone.now(),
            detail=STATE_CONFLICTS_HOPELESS[conflict.code],
        )
    return _retry_or_fail(command, conflict, now=now, actor=actor)


def retry_countdown(*, attempts: int, error: devices.TransientDeviceError) -> float:
    """Exponential backoff with jitter, never shorter than the device's Retry-After, and after an
    ambiguous failure never shorter than the settle time."""
    base = settings.CONTROL_RETRY_BASE_SECONDS
    backoff = min(RETRY_CAP_S, base * 2 ** max(attempts - 1, 0))
    # Jitter spreads a fleet's retries so a recovering cloud is not hit by all of them at once.
    countdown = backoff * random.uniform(0.5, 1.0)  # noqa: S311 — jitter, not a secret
    if error.retry_after_seconds is not None:
        countdown = max(countdown, error.retry_after_seconds)
    if error.ambiguous:
        countdown = max(countdown, settings.CONTROL_AMBIGUOUS_SETTLE_SECONDS)
    return countdown


def _retry_or_fail(
    command: Command, error: devices.TransientDeviceError, *, now: datetime, actor: str
) -> Command:
    """Schedule the next attempt (raising RetryLater) or, past the budget, fail for good."""
    with transaction.atomic():  # the retry state and its audit row commit together (I7)
        countdown = _schedule_retry(command, error, now=now, actor=actor)
    if countdown is None:
        return command
    raise RetryLater(countdown, str(error))


def _schedule_retry(
    command: Command, error: devices.TransientDeviceError, *, now: datetime, actor: str
) -> float | None:
    """Store the next attempt and return its countdown; None when the command ended instead."""
    at = timezone.now()
    max_attempts = settings.CONTROL_MAX_ATTEMPTS
    verify = command.verify_before_send or error.ambiguous
    if command.attempts >= max_attempts:
        _finish(
            command,
            Command.State.FAILED,
            actor=actor,
            at=at,
            detail=f"Gave up after {command.attempts} attempts: {error}",
            verify_before_send=verify,
        )
        return None
    countdown = retry_countdown(attempts=command.attempts, error=error)
    next_at = at + timedelta(seconds=countdown)
    if command.lease_end is not None and next_at >= command.lease_end:
        _finish(
            command,
            Command.State.EXPIRED,
            actor=actor,
            at=at,
            detail=f"Lease ends before the next attempt ({error}).",
        )
        return None
    command.state = Command.State.PENDING
    command.claimed_at = None
    command.next_attempt_at = next_at
    command.verify_before_send = verify
    command.last_error = str(error)[:300]
    command.save()
    _record(
        command,
        "retry",
        actor=actor,
        at=at,
        detail=f"{error} — next attempt in {countdown:.0f} s",
        data={
            "countdown_s": countdown,
            "retry_after_s": error.retry_after_seconds,
            "ambiguous": error.ambiguous,
        },
    )
    return countdown
