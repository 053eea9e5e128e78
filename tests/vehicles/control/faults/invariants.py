"""`assert_invariants`: what every fault test checks at its end (DESIGN.md §5, I1–I4 and I8).

Reads the commands from the database and the control requests the simulated cloud answered (its
own log, with the car's SoC when each request arrived), so a doubled or unsafe effect is seen
where it would matter: at the car.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from vehicles.control.models import TERMINAL_STATES, Command, CommandEvent
from vehicles.models import ChargingPreference

# The cloud endpoint each car command lands on (the SDK's method names, see vehicles/sim/cloud).
ENDPOINT = {
    Command.Action.START_CHARGE: "vehicle.start_charge",
    Command.Action.STOP_CHARGE: "vehicle.stop_charge",
    Command.Action.SET_CHARGE_LIMIT: "vehicle.set_charge_limit",
}
CURTAILING_ENDPOINTS = {"vehicle.stop_charge"}
MAX_LEASE = timedelta(minutes=15)  # I8
OPT_OUT_P99 = timedelta(seconds=30)  # I4


@dataclass
class Summary:
    states: Counter[str] = field(default_factory=Counter)
    effects: Counter[tuple[str, str]] = field(default_factory=Counter)
    pending: int = 0


def _device_key(command: Command) -> tuple[str, str]:
    return (command.vehicle.provider_vehicle_id, ENDPOINT[command.action])


def assert_invariants(cloud, *, now: datetime | None = None) -> Summary:
    """Assert I1, I2, I3, I4 and I8 over every command in the database and every control request
    `cloud` (a SimulatedCloud) answered. Returns what it counted, for test-specific checks.

    I1  every command is terminal, or pending with its next attempt still ahead;
    I2  no car accepted a command's action more often than there are such commands, and each
        command marked `sent` was accepted by its car exactly once;
    I3  no curtailment reached a car below its owner's floor; no charge limit below it;
    I4  owner commands (opt-out, boost) reached the car within 30 s of being written;
    I8  every curtailment has a lease end at most 15 min after it was written, and none was
        sent after its lease ended.
    """
    now = now or timezone.now()
    commands = list(
        Command.objects.select_related("vehicle").filter(charger__isnull=True).order_by("id")
    )
    summary = Summary(states=Counter(c.state for c in commands))

    # I1 — nothing lost.
    for command in commands:
        if command.state in TERMINAL_STATES:
            continue
        assert command.state == Command.State.PENDING, (
            f"I1: command #{command.pk} is stuck in {command.state}"
        )
        ahead = command.next_attempt_at is not None and command.next_attempt_at > now
        assert ahead, f"I1: command #{command.pk} is pending with no attempt ahead"
        summary.pending += 1

    # I2 — no double effect, counted at the car.
    accepted = Counter(
        (entry["vehicle_id"], entry["endpoint"])
        for entry in cloud.commands()
        if 200 <= entry["status"] < 300
    )
    summary.effects = accepted
    per_device = Counter(_device_key(c) for c in commands)
    for key, count in accepted.items():
        assert count <= per_device[key], (
            f"I2: car {key[0]} accepted {key[1]} {count}× for {per_device[key]} command(s)"
        )
    for command in commands:
        if command.state == Command.State.SENT and per_device[_device_key(command)] == 1:
            assert accepted[_device_key(command)] == 1, (
                f"I2: command #{command.pk} is sent but its car accepted it "
                f"{accepted[_device_key(command)]}×"
            )
    twice = (
        CommandEvent.objects.filter(kind__in=[Command.State.SENT, Command.State.CONFIRMED])
        .values_list("command_id", flat=True)
        .order_by("command_id")
    )
    doubled = [pk for pk, n in Counter(twice).items() if n > 1]
    assert not doubled, f"I2: commands {doubled} finished twice"

    # I3 — never below the floor, as the car saw it.
    floors = dict(
        ChargingPreference.objects.values_list("vehicle__provider_vehicle_id", "min_soc_pct")
    )
    for entry in cloud.commands():
        if not 200 <= entry["status"] < 300:
            continue
        floor = floors.get(entry["vehicle_id"], 0)
        if entry["endpoint"] in CURTAILING_ENDPOINTS:
            assert entry["soc_pct"] >= floor, (
                f"I3: {entry['endpoint']} reached car {entry['vehicle_id']} at "
                f"{entry['soc_pct']} %, below its {floor} % floor"
            )
        if entry["endpoint"] == "vehicle.set_charge_limit":
            assert entry["limit_pct"] >= floor, f"I3: charge limit below the floor: {entry}"

    for command in commands:
        # I4 — opt-out and boost are fast.
        if command.source == Command.Source.OWNER and command.state in TERMINAL_STATES:
            took = (command.finished_at or now) - command.created_at
            assert took <= OPT_OUT_P99, f"I4: owner command #{command.pk} took {took}"
        # I8 — bounded leases.
        if command.curtails_or_discharges:
            assert command.lease_end is not None, f"I8: command #{command.pk} has no lease"
            assert command.lease_end - command.created_at <= MAX_LEASE, (
                f"I8: command #{command.pk}'s lease runs past 15 min"
            )
            if command.sent_at is not None:
                assert command.sent_at <= command.lease_end, (
                    f"I8: command #{command.pk} was sent after its lease ended"
                )
    return summary
