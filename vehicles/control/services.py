"""Every write of command execution: create (with its outbox entry), relay, send, retry, finish.

Callers: programs.execution (plan slots become commands), the `control.*` Celery tasks and the
admin. The life of a command (DESIGN.md §5):

    create_commands ──(same transaction)──▶ OutboxEntries ──relay_outbox──▶ control.send_commands
    (up to SEND_BATCH fleet commands a message on `commands`; owner commands one a message on
    `control`, as control.send_command)
    send_commands: claim them (one transaction, row locks) → expired? superseded? → safety
    gateway → [read state if the last attempt may have acted] → device I/O, overlapped (no
    transaction held) → sent | retry | failed, stored in one transaction

`create_command` and `send_command` are the same functions for one command.

A crash anywhere is recovered: an unpublished entry is published by the relay beat (I1), a message
delivered twice meets a terminal state or a live claim (I2), a worker killed mid-send leaves the
command `sending`, and the next run reads the device before sending again (I2). A broker that
lost its messages (Redis wiped, or restarted without its data) is noticed by a missing marker
key and every live command is published again (I1). Every transition is a CommandEvent row with
its actor and time, committed together with the transition (I7).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max, Q, prefetch_related_objects
from django.utils import timezone

from chargescape.db import update_rows
from vehicles import selectors as vehicle_selectors
from vehicles.chargers.models import Charger
from vehicles.control import devices, gateway
from vehicles.control.models import TERMINAL_STATES, Command, CommandEvent, OutboxEntry
from vehicles.models import ChargingPreference, Vehicle

logger = logging.getLogger(__name__)

# Retry timing and budget: settings.CONTROL_* (documented there).
RETRY_CAP_S = 300.0  # never wait longer than 5 minutes between attempts
RELAY_BATCH = 500
# Fleet commands per `control.send_commands` message. Big enough that a send's fixed costs (task,
# claim and outcome transactions) are shared; small enough that one slow device call holds few
# batch-mates and that a fan-out still spreads over every worker process (B5, B6).
SEND_BATCH = 20
# Rows per INSERT statement of create_commands (PostgreSQL takes at most 65,535 parameters).
INSERT_CHUNK = 1000
# A command another transaction holds at the claim (SKIP LOCKED) is looked at again this soon.
LOCKED_RETRY_S = 1.0
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


@dataclass(frozen=True)
class CommandSpec:
    """One command to write (`create_commands`): what, on which device, under which key."""

    vehicle: Vehicle
    action: str
    idempotency_key: str
    source: str = Command.Source.PLAN
    charger: Charger | None = None
    power_kw: float | None = None
    limit_pct: float | None = None
    lease_end: datetime | None = None
    plan_version: int | None = None
    slot_start: datetime | None = None


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
    """Write one command and its outbox entry in one transaction; (command, created).

    `create_commands` with a single spec: idempotent on `idempotency_key`, supersedes the
    device's older waiting commands, publishes through the outbox.
    """
    spec = CommandSpec(
        vehicle=vehicle,
        action=action,
        idempotency_key=idempotency_key,
        source=source,
        charger=charger,
        power_kw=power_kw,
        limit_pct=limit_pct,
        lease_end=lease_end,
        plan_version=plan_version,
        slot_start=slot_start,
    )
    ((command, created),) = create_commands(specs=[spec], actor=actor, actor_user=actor_user)
    return command, created


@transaction.atomic
def create_commands(
    *, specs: Sequence[CommandSpec], actor: str, actor_user: Any = None
) -> list[tuple[Command, bool]]:
    """Write commands with their outbox entries in one transaction; (command, created) per spec,
    in order. A handful of set-based statements whatever the batch's size (B6).

    Idempotent on `idempotency_key`: a key already written (a second beat, a retried task, two
    beat processes at once, or the same key twice in `specs`) returns the existing command and
    publishes nothing. `INSERT … ON CONFLICT DO NOTHING` makes a concurrent writer of the same
    key wait for the other's commit, so exactly one of them creates it. Older commands of the
    same devices still waiting are superseded, and so is an earlier spec for a device a later
    spec also addresses: only the newest intent may reach a device. The entries are published
    after commit (fast path) or by the relay beat (I1).
    """
    now = timezone.now()
    wanted: dict[str, CommandSpec] = {}
    for spec in specs:
        wanted.setdefault(spec.idempotency_key, spec)
    # Sorted keys: two batches writing overlapping keys wait on each other in the same order.
    fresh = {key: _new_command(wanted[key], now=now) for key in sorted(wanted)}
    written = _insert_new(list(fresh.values()))
    created: list[Command] = []  # in the order of `specs`: for one device the last one stands
    for key in wanted:
        if key in written:
            command = fresh[key]
            command.pk = written[key]
            command._state.adding = False
            command._state.db = connection.alias
            created.append(command)
    found = {
        command.idempotency_key: command
        for command in Command.objects.filter(
            idempotency_key__in=[key for key in wanted if key not in written]
        )
    }
    if len(found) + len(written) != len(wanted):  # a key neither written nor committed: a bug
        raise RuntimeError("create_commands: a command neither inserted nor found")
    CommandEvent.objects.bulk_create(
        CommandEvent(
            command=command,
            kind="created",
            actor=actor,
            actor_user=actor_user,
            at=now,
            detail=command.get_action_display(),
            data={
                "power_kw": command.power_kw,
                "limit_pct": command.limit_pct,
                "source": command.source,
            },
        )
        for command in created
    )
    _supersede_waiting(created, actor=actor, at=now)
    entries = OutboxEntry.objects.bulk_create(OutboxEntry(command=command) for command in created)
    if entries:
        entry_ids = [entry.pk for entry in entries]
        transaction.on_commit(lambda: _publish_soon(entry_ids))
    results: list[tuple[Command, bool]] = []
    seen: set[str] = set()
    for spec in specs:
        key = spec.idempotency_key
        if key in written:
            results.append((fresh[key], key not in seen))  # a key given twice: created once
        else:
            results.append((found[key], False))
        seen.add(key)
    return results


def _new_command(spec: CommandSpec, *, now: datetime) -> Command:
    return Command(
        vehicle=spec.vehicle,
        charger=spec.charger,
        action=spec.action,
        power_kw=spec.power_kw,
        limit_pct=spec.limit_pct,
        lease_end=spec.lease_end,
        source=spec.source,
        plan_version=spec.plan_version,
        slot_start=spec.slot_start,
        idempotency_key=spec.idempotency_key,
        created_at=now,
        updated_at=now,
    )


def _insert_new(commands: list[Command]) -> dict[str, int]:
    """`INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING`: {key: id} of the rows this
    call wrote. Values are prepared by the model's own fields, as Model.save would."""
    fields = [field for field in Command._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    table, unique = quote(Command._meta.db_table), quote("idempotency_key")
    written: dict[str, int] = {}
    for chunk in itertools.batched(commands, INSERT_CHUNK):
        params = [
            field.get_db_prep_save(field.pre_save(command, add=True), connection)
            for command in chunk
            for field in fields
        ]
        with connection.cursor() as cursor:
            # Table and column names come from the model; every value is a parameter.
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(chunk))} "  # noqa: S608  # nosec B608
                f"ON CONFLICT ({unique}) DO NOTHING RETURNING id, idempotency_key",
                params,
            )
            written.update({key: pk for pk, key in cursor.fetchall()})
    return written


def _supersede_waiting(created: list[Command], *, actor: str, at: datetime) -> None:
    """Supersede the older `pending` commands of the devices just given a command (the newest of
    each device stays). SKIP LOCKED: a command locked right now is being claimed, and its claim
    finds the newer intent itself."""
    newest: dict[tuple[Any, Any], Command] = {}
    for command in created:  # the last one of a device stands
        newest[(command.vehicle_id, command.charger_id)] = command
    if not newest:
        return
    devices = Q(vehicle_id__in=[v for v, c in newest if c is None], charger__isnull=True)
    for vehicle_id, charger_id in newest:
        if charger_id is not None:
            devices |= Q(vehicle_id=vehicle_id, charger_id=charger_id)
    stale = list(
        Command.objects.select_for_update(skip_locked=True, no_key=True)
        .filter(devices, state=Command.State.PENDING)
        .exclude(pk__in=[command.pk for command in newest.values()])
        .order_by("id")
        .values_list("id", "vehicle_id", "charger_id")
    )
    if not stale:
        return
    Command.objects.filter(pk__in=[pk for pk, _, _ in stale]).update(
        state=Command.State.SUPERSEDED, finished_at=at, claimed_at=None, updated_at=at
    )
    CommandEvent.objects.bulk_create(
        CommandEvent(
            command_id=pk,
            kind=Command.State.SUPERSEDED,
            actor=actor,
            at=at,
            detail=f"by #{newest[(vehicle_id, charger_id)].pk}",
        )
        for pk, vehicle_id, charger_id in stale
    )


def _publish_soon(entry_ids: list[int]) -> None:
    """Fast path after commit; if the broker is down the relay beat publishes it later (I1)."""
    try:
        relay_outbox(entry_ids=entry_ids)
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
        _publish_sends([entry.command for entry in entries])
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


def _publish_sends(commands: list[Command]) -> None:
    """One `control.send_command` message per owner command (`control`, I4); fleet commands in
    `control.send_commands` messages of up to SEND_BATCH (`commands`), one send task for many."""
    from vehicles.control.tasks import send_command, send_commands  # tasks import services

    fleet: list[int] = []
    for command in {command.pk: command for command in commands}.values():
        if queue_for(command) == "control":
            send_command.apply_async(args=[command.pk], queue="control")
        else:
            fleet.append(command.pk)
    for batch in itertools.batched(fleet, SEND_BATCH):
        if len(batch) == 1:
            send_command.apply_async(args=[batch[0]], queue="commands")
        else:
            send_commands.apply_async(args=[list(batch)], queue="commands")


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


@dataclass
class SendOutcome:
    """Where one command of a send ended up."""

    command_id: int
    command: Command | None = None  # None: nothing to do (gone, already terminal, or unknown)
    retry: RetryLater | None = None  # run it again in `retry.countdown` seconds


class _Transitions:
    """Commands' state changes and their audit rows, written together by `write()` in the
    caller's transaction: a transition commits with its CommandEvent, or neither does (I7)."""

    FIELDS = (
        "state",
        "claimed_at",
        "finished_at",
        "attempts",
        "next_attempt_at",
        "verify_before_send",
        "last_error",
        "sent_at",
        "provider_reference",
        "updated_at",
    )

    def __init__(self) -> None:
        self.changed: dict[int, Command] = {}
        self.events: list[CommandEvent] = []

    def record(
        self,
        command: Command,
        kind: str,
        *,
        actor: str,
        at: datetime,
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            CommandEvent(
                command=command, kind=kind, actor=actor, at=at, detail=detail[:300], data=data or {}
            )
        )

    def change(self, command: Command) -> None:
        self.changed[command.pk] = command

    def finish(
        self,
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
        self.change(command)
        self.record(command, state, actor=actor, at=at, detail=detail, data=data)
        return command

    def write(self) -> None:
        if self.changed:
            now = timezone.now()
            for command in self.changed.values():
                command.updated_at = now
            update_rows(list(self.changed.values()), self.FIELDS)
        CommandEvent.objects.bulk_create(self.events)


class _ClaimContext:
    """What the claim of a batch needs to know about its cars, read in a few queries: the owners'
    preferences, the newest readings and the newest live intent of each device."""

    def __init__(self, commands: list[Command]) -> None:
        vehicle_ids = list({command.vehicle_id for command in commands})
        self.preferences = {
            preference.vehicle_id: preference
            for preference in ChargingPreference.objects.filter(vehicle_id__in=vehicle_ids)
        }
        self.readings = vehicle_selectors.latest_readings(vehicle_ids=vehicle_ids)
        self.newest = {
            (row["vehicle_id"], row["charger_id"]): row["newest"]
            for row in Command.objects.filter(
                vehicle_id__in=vehicle_ids, pk__gt=min(command.pk for command in commands)
            )
            .exclude(state__in=[Command.State.REFUSED, Command.State.EXPIRED])
            .order_by()
            .values("vehicle_id", "charger_id")
            .annotate(newest=Max("id"))
        }

    def newer_intent(self, command: Command) -> bool:
        return self.newest.get((command.vehicle_id, command.charger_id), 0) > command.pk

    def verdict(self, command: Command, *, now: datetime) -> gateway.Verdict:
        preference = self.preferences.get(command.vehicle_id)
        if preference is None:
            preference = vehicle_selectors.preference_for(vehicle=command.vehicle)
        return gateway.check_command(
            command=command,
            now=now,
            preference=preference,
            reading=self.readings.get(command.vehicle_id),
        )


def _claim(
    command_ids: list[int], *, now: datetime, actor: str
) -> tuple[list[Command], dict[int, SendOutcome]]:
    """Lock the commands and decide, for each, whether this run may touch its device.

    Returns the claimed commands (state `sending`) and the outcome of every other one, all
    committed in one transaction. `FOR NO KEY UPDATE SKIP LOCKED`: a command another transaction
    holds this instant (a duplicate delivery claiming it, a new command superseding it) is
    looked at again in a second or two instead of holding up its batch.
    """
    claimed: list[Command] = []
    decided: dict[int, SendOutcome] = {}
    writes = _Transitions()
    with transaction.atomic():
        rows = list(
            # NO KEY UPDATE: the relay's "published" audit rows hold a KEY SHARE lock on the
            # command until its commit, which comes just after the publish; that must not
            # make a fast worker skip the command.
            Command.objects.select_for_update(of=("self",), skip_locked=True, no_key=True)
            .select_related("vehicle", "charger")
            .filter(pk__in=command_ids)
            .order_by("id")
        )
        held = set(command_ids) - {command.pk for command in rows}
        for pk in (
            Command.objects.filter(pk__in=held)
            .exclude(state__in=TERMINAL_STATES)
            .values_list("pk", flat=True)
        ):
            countdown = LOCKED_RETRY_S * random.uniform(1.0, 2.0)  # noqa: S311 — jitter
            decided[pk] = SendOutcome(pk, retry=RetryLater(countdown, "held by another worker"))
        live = [command for command in rows if command.state not in TERMINAL_STATES]
        context = _ClaimContext(live) if live else None
        for command in live:
            outcome = _claim_one(command, context=context, writes=writes, now=now, actor=actor)
            if outcome is None:
                claimed.append(command)
            else:
                decided[command.pk] = outcome
        writes.write()
    return claimed, decided


def _claim_one(
    command: Command, *, context: Any, writes: _Transitions, now: datetime, actor: str
) -> SendOutcome | None:
    """One command of `_claim`: None when claimed, else its outcome (a terminal state or a
    retry). A duplicate message or a re-run after success never reaches here (I2)."""
    if command.next_attempt_at and command.next_attempt_at > now:
        wait = (command.next_attempt_at - now).total_seconds()
        return SendOutcome(command.pk, command, RetryLater(wait, "not yet"))
    if command.state == Command.State.SENDING:
        lapse = claim_timeout()
        if command.claimed_at and command.claimed_at > now - lapse:
            wait = (command.claimed_at + lapse - now).total_seconds()
            later = RetryLater(wait, "another worker is sending it")
            return SendOutcome(command.pk, command, later)
        # The worker holding it died mid-send: the device may have acted.
        command.verify_before_send = True
        writes.change(command)
        writes.record(
            command, "worker_lost", actor=actor, at=timezone.now(), detail="re-checking the device"
        )
    if command.lease_end is not None and command.lease_end <= now:
        writes.finish(
            command, Command.State.EXPIRED, actor=actor, at=timezone.now(), detail="lease over"
        )
        return SendOutcome(command.pk, command)
    if context.newer_intent(command):
        writes.finish(
            command, Command.State.SUPERSEDED, actor=actor, at=timezone.now(), detail="newer intent"
        )
        return SendOutcome(command.pk, command)
    verdict = context.verdict(command, now=now)
    if not verdict.allowed:
        writes.finish(
            command,
            Command.State.REFUSED,
            actor="control.gateway",
            at=timezone.now(),
            detail=verdict.reason,
            data={"code": verdict.code},
        )
        return SendOutcome(command.pk, command)
    command.state = Command.State.SENDING
    command.claimed_at = now
    command.attempts += 1
    command.next_attempt_at = None
    writes.change(command)
    writes.record(
        command, "sending", actor=actor, at=timezone.now(), data={"attempt": command.attempts}
    )
    return None


def send_command(
    *, command_id: int, now: datetime | None = None, actor: str = "control.send_command"
) -> Command | None:
    """Carry one command out, at most once in effect. Raises RetryLater to be run again later.

    `send_commands` with one id: a terminal command is left alone; a command whose last attempt
    may have reached the device is confirmed from the device's own state instead of being sent
    again (I2).
    """
    (outcome,) = send_commands(command_ids=[command_id], now=now, actor=actor)
    if outcome.retry is not None:
        raise outcome.retry
    return outcome.command


def send_commands(
    *, command_ids: list[int], now: datetime | None = None, actor: str = "control.send_commands"
) -> list[SendOutcome]:
    """Carry several commands out, each at most once in effect; one SendOutcome per id, in order.

    Three steps whatever the batch's size: claim them all in one transaction (lease, newer
    intent and the safety gateway for each); talk to their devices with no transaction held,
    the vehicle-cloud requests in flight together (`devices.carry_out`); store every outcome
    with its audit row in one transaction. Each command keeps its own guarantees: its claim,
    its read-before-resend (I2), its retries with backoff and Retry-After, its refusal.

    While the database is unreachable (restarting, failing over) nothing is burnt: the commands
    come back in a few seconds. A command claimed before the outage keeps its claim, and the run
    after the claim lapses reads the device before sending again (I2).
    """
    now = now or timezone.now()
    ids = list(dict.fromkeys(command_ids))
    outcomes: dict[int, SendOutcome] = {}
    try:
        claimed, decided = _claim(ids, now=now, actor=actor)
        outcomes.update(decided)  # committed
        if claimed:
            outcomes.update(_carry_out(claimed, now=now, actor=actor))
    except (OperationalError, InterfaceError) as error:
        for pk in ids:
            if pk not in outcomes:
                outcomes[pk] = SendOutcome(pk, retry=_database_retry(error))
    return [outcomes.get(pk) or SendOutcome(pk) for pk in command_ids]


def _database_retry(error: Exception) -> RetryLater:
    countdown = DATABASE_RETRY_S * random.uniform(0.5, 1.0)  # noqa: S311 — jitter
    return RetryLater(countdown, f"database unavailable: {error}")


def _carry_out(claimed: list[Command], *, now: datetime, actor: str) -> dict[int, SendOutcome]:
    """Device I/O for claimed commands, then their outcomes in one transaction."""
    cloud_cars = [command.vehicle for command in claimed if command.charger_id is None]
    prefetch_related_objects(cloud_cars, "link")  # their tokens, in one query
    attempts = devices.carry_out(claimed, now=now)
    writes = _Transitions()
    retries: dict[int, RetryLater] = {}
    untouched: list[int] = []  # left claimed: the run after the claim lapses reads first (I2)
    for command, attempt in zip(claimed, attempts, strict=True):
        at = timezone.now()
        error = attempt.error
        if isinstance(error, OperationalError | InterfaceError):
            retries[command.pk] = _database_retry(error)
            untouched.append(command.pk)
            continue
        if error is not None and not isinstance(error, devices.DeviceError):
            # A bug, not a device's answer: handled like a worker lost mid-send (the claim
            # lapses, the relay re-drives it, the next run reads the device first).
            logger.error("command %s: unexpected error", command.pk, exc_info=error)
            untouched.append(command.pk)
            continue
        if attempt.verified:
            detail = "already in place" if attempt.in_place else "not in place: sending"
            writes.record(command, "verified", actor=actor, at=at, detail=detail)
        if error is None and attempt.in_place:
            writes.finish(
                command,
                Command.State.CONFIRMED,
                actor=actor,
                at=at,
                detail="The device already shows the effect; not sent again.",
                verify_before_send=False,
            )
        elif error is None:
            writes.finish(
                command,
                Command.State.SENT,
                actor=actor,
                at=at,
                detail=attempt.reference,
                sent_at=at,
                provider_reference=attempt.reference,
                verify_before_send=False,
                last_error="",
            )
        elif isinstance(error, devices.DeviceStateConflict):
            later = _resolve_conflict(writes, command, error, now=now, actor=actor)
            if later is not None:
                retries[command.pk] = later
        elif isinstance(error, devices.TransientDeviceError):
            later = _schedule_retry(writes, command, error, now=now, actor=actor)
            if later is not None:
                retries[command.pk] = later
        else:  # PermanentDeviceError
            writes.finish(command, Command.State.FAILED, actor=actor, at=at, detail=str(error))
    with transaction.atomic():
        writes.write()
    return {
        command.pk: SendOutcome(
            command.pk, None if command.pk in untouched else command, retries.get(command.pk)
        )
        for command in claimed
    }


def _resolve_conflict(
    writes: _Transitions,
    command: Command,
    conflict: devices.DeviceStateConflict,
    *,
    now: datetime,
    actor: str,
) -> RetryLater | None:
    """The car refused because of its state: done if the intent already holds, failed in plain
    words if it cannot hold (not plugged in), otherwise retried."""
    if conflict.code in STATE_CONFLICTS_SATISFIED:
        writes.finish(
            command,
            Command.State.CONFIRMED,
            actor=actor,
            at=timezone.now(),
            detail=STATE_CONFLICTS_SATISFIED[conflict.code],
            verify_before_send=False,
        )
        return None
    if conflict.code in STATE_CONFLICTS_HOPELESS:
        writes.finish(
            command,
            Command.State.FAILED,
            actor=actor,
            at=timezone.now(),
            detail=STATE_CONFLICTS_HOPELESS[conflict.code],
        )
        return None
    return _schedule_retry(writes, command, conflict, now=now, actor=actor)


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


def _schedule_retry(
    writes: _Transitions,
    command: Command,
    error: devices.TransientDeviceError,
    *,
    now: datetime,
    actor: str,
) -> RetryLater | None:
    """Store the next attempt and return when to run it; None when the command ended instead
    (past the budget, or its lease ends first)."""
    at = timezone.now()
    max_attempts = settings.CONTROL_MAX_ATTEMPTS
    verify = command.verify_before_send or error.ambiguous
    if command.attempts >= max_attempts:
        writes.finish(
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
        writes.finish(
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
    writes.change(command)
    writes.record(
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
    return RetryLater(countdown, str(error))
