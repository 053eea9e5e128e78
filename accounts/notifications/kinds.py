"""What owners are told: each kind's wording, link, urgency and default channels.

Pure functions over JSON-friendly context dicts (the callers in vehicles and programs pass plain
values), so a message can be rebuilt, previewed and tested without a database. `build` turns a
kind and its context into a `Message`: title and body for push and the notification centre, facts
and actions for the email.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.urls import NoReverseMatch, reverse


class Kind(models.TextChoices):
    EVENT_ANNOUNCED = "event_announced", "Grid event announced"
    EVENT_STARTING = "event_starting", "Grid event starting"
    EVENT_ENDED = "event_ended", "Grid event results"
    PLUG_IN_REMINDER = "plug_in_reminder", "Plug-in reminders"
    TARGET_AT_RISK = "target_at_risk", "Departure charge at risk"
    CHARGING_COMPLETE = "charging_complete", "Charging complete"
    COMMAND_FAILED = "command_failed", "Car not responding"
    ENROLLMENT_APPROVED = "enrollment_approved", "Enrollment approved"
    ENROLLMENT_SUSPENDED = "enrollment_suspended", "Enrollment suspended"
    STATEMENT_READY = "statement_ready", "Monthly statement ready"
    DIGEST = "digest", "Several updates"


@dataclass(frozen=True)
class KindSpec:
    description: str  # shown beside the switches on the Account page
    push: bool  # default for the push channel
    email: bool  # default for the email channel
    # Safety: the owner may leave short of charge. Sent in quiet hours and never folded into a
    # digest (DESIGN.md §5, departure promise: "told early and can boost").
    urgent: bool = False


SPECS: dict[str, KindSpec] = {
    Kind.EVENT_ANNOUNCED: KindSpec(
        "When and how long, what you may earn, how to opt out.", True, True
    ),
    Kind.EVENT_STARTING: KindSpec("As an event begins.", True, False),
    Kind.EVENT_ENDED: KindSpec("What your car delivered and what you earned.", True, True),
    Kind.PLUG_IN_REMINDER: KindSpec("Your car is unplugged before an event.", True, False),
    Kind.TARGET_AT_RISK: KindSpec(
        "You may leave with less charge than you asked for (with a boost button).",
        True,
        True,
        urgent=True,
    ),
    Kind.CHARGING_COMPLETE: KindSpec("Your car reached its target.", False, False),
    Kind.COMMAND_FAILED: KindSpec(
        "Your car didn't do what we asked, and why (\u201cwhy isn't my car charging?\u201d).",
        True,
        False,
        urgent=True,
    ),
    Kind.ENROLLMENT_APPROVED: KindSpec("The utility accepted your car into a program.", True, True),
    Kind.ENROLLMENT_SUSPENDED: KindSpec("A program paused your car's enrollment.", True, True),
    Kind.STATEMENT_READY: KindSpec("Your monthly earnings statement.", False, True),
}
PREFERENCE_KINDS = [kind for kind in Kind if kind in SPECS]


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    url: str  # a path of this site; the push click and the email button open it
    facts: list[tuple[str, str]] = field(default_factory=list)  # email: label, value
    actions: list[tuple[str, str]] = field(default_factory=list)  # email buttons: label, path

    def data(self) -> dict[str, Any]:
        return {"facts": [list(f) for f in self.facts], "actions": [list(a) for a in self.actions]}


def is_urgent(kind: str) -> bool:
    spec = SPECS.get(kind)
    return bool(spec and spec.urgent)


def dollars(cents: int | float | None) -> str:
    text = f"${abs(cents or 0) / 100:,.2f}".replace(".00", "")
    return f"−{text}" if (cents or 0) < 0 else text


def _url(name: str, *args: Any, fallback: str = "/") -> str:
    """A page of another app by URL name (a name, not an import: accounts sits below them)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return fallback


def _when(value: str, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.fromisoformat(value).astimezone(zone)


def _window(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo) -> str:
    start, end = _when(ctx["starts_at"], zone), _when(ctx["ends_at"], zone)
    return f"{start:%a %b %-d, %H:%M}–{end:%H:%M %Z}"


def _notice(ctx: dict[str, Any], now: datetime) -> str:
    minutes = max(0, round((datetime.fromisoformat(ctx["starts_at"]) - now).total_seconds() / 60))
    if minutes >= 120:
        return f"{minutes / 60:.0f} hours"
    return f"{minutes} minutes"


def _car(ctx: dict[str, Any]) -> str:
    return ctx.get("vehicle") or "Your car"


def _vehicle_url(ctx: dict[str, Any]) -> str:
    if ctx.get("vehicle_id"):
        return _url("vehicles:vehicle-detail", ctx["vehicle_id"], fallback="/vehicles/")
    return _url("vehicles:vehicle-list", fallback="/vehicles/")


def _event_action(ctx: dict[str, Any]) -> str:
    return "send energy back to the grid" if ctx.get("export") else "pause or slow its charging"


def _event_announced(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    window = _window(ctx, zone)
    opt_out = _url("programs:participation-opt-out", ctx.get("participation", 0), fallback="/")
    earnings = dollars(ctx.get("earnings_cents"))
    return Message(
        title=f"Grid event {_when(ctx['starts_at'], zone):%a %H:%M}: earn about {earnings}",
        body=(
            f"{ctx.get('program', 'Your program')}: {_car(ctx)} will {_event_action(ctx)} "
            f"{window}. Expected earnings about {earnings}; you'll still reach your departure "
            f"charge. Not a good time? Opt out."
        ),
        url=opt_out,
        facts=[
            ("Program", ctx.get("program", "")),
            ("When", window),
            ("Notice", f"{_notice(ctx, now)} ahead"),
            ("Car", _car(ctx)),
            ("Expected earnings", f"about {earnings}"),
        ],
        actions=[("Opt out of this event", opt_out)],
    )


def _event_starting(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    opt_out = _url("programs:participation-opt-out", ctx.get("participation", 0), fallback="/")
    end = _when(ctx["ends_at"], zone)
    return Message(
        title="Grid event starting now",
        body=f"{_car(ctx)} will {_event_action(ctx)} until {end:%H:%M}. Need it now? Opt out.",
        url=opt_out,
        facts=[("Program", ctx.get("program", "")), ("When", _window(ctx, zone))],
        actions=[("Opt out", opt_out)],
    )


def _event_ended(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    earned = dollars(ctx.get("earned_cents"))
    delivered = float(ctx.get("delivered_kwh") or 0)
    url = _url("programs:earnings", fallback="/earnings/")
    return Message(
        title=f"You earned {earned}",
        body=(
            f"{ctx.get('program', 'The grid event')} is over: {_car(ctx)} delivered "
            f"{delivered:.1f} kWh of flexibility and earned you {earned}. Thank you!"
        ),
        url=url,
        facts=[
            ("Program", ctx.get("program", "")),
            ("Delivered", f"{delivered:.1f} kWh"),
            ("Earned", earned),
        ],
        actions=[("See your earnings", url)],
    )


def _plug_in_reminder(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _vehicle_url(ctx)
    at = f" before {_when(ctx['starts_at'], zone):%H:%M}" if ctx.get("starts_at") else ""
    return Message(
        title=f"Plug in {_car(ctx)}",
        body=f"{_car(ctx)} is unplugged. Plug it in{at} to take part and keep your charge plan.",
        url=url,
        facts=[("Car", _car(ctx))],
        actions=[("Open your car", url)],
    )


def _target_at_risk(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _vehicle_url(ctx)
    message = ctx.get("message") or "You may leave with less charge than you asked for."
    facts = [("Car", _car(ctx))]
    if ctx.get("expected_soc_pct") is not None:
        facts.append(("Expected at departure", f"{ctx['expected_soc_pct']} %"))
    if ctx.get("target_soc_pct") is not None:
        facts.append(("Your target", f"{ctx['target_soc_pct']} %"))
    return Message(
        title=f"{_car(ctx)} may not be ready",
        body=f"{message} Tap Boost to charge at full power now.",
        url=url,
        facts=facts,
        actions=[("Boost now", url)],
    )


def _charging_complete(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _vehicle_url(ctx)
    soc = f" at {ctx['soc_pct']:.0f} %" if ctx.get("soc_pct") is not None else ""
    return Message(
        title=f"{_car(ctx)} is charged",
        body=f"{_car(ctx)} finished charging{soc}.",
        url=url,
        facts=[("Car", _car(ctx))],
        actions=[("Open your car", url)],
    )


def _command_failed(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _vehicle_url(ctx)
    diagnosis = ctx.get("diagnosis") or "We couldn't reach it."
    return Message(
        title=f"Why isn't {_car(ctx)} charging?",
        body=f"{_car(ctx)} didn't respond as planned. {diagnosis}",
        url=url,
        facts=[("Car", _car(ctx)), ("What we see", diagnosis)],
        actions=[("See what to do", url)],
    )


def _enrollment_approved(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _url("programs:program-list", fallback="/programs/")
    program = ctx.get("program", "the program")
    return Message(
        title=f"You're in: {program}",
        body=f"{_car(ctx)} is now enrolled in {program}. We'll tell you before every grid event.",
        url=url,
        facts=[("Program", program), ("Car", _car(ctx))],
        actions=[("See your programs", url)],
    )


def _enrollment_suspended(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _url("programs:program-list", fallback="/programs/")
    program = ctx.get("program", "the program")
    reason = ctx.get("reason") or "The utility paused it."
    return Message(
        title=f"Enrollment paused: {program}",
        body=f"{_car(ctx)}'s enrollment in {program} is suspended. {reason}",
        url=url,
        facts=[("Program", program), ("Car", _car(ctx)), ("Reason", reason)],
        actions=[("See your programs", url)],
    )


def _statement_ready(ctx: dict[str, Any], zone: zoneinfo.ZoneInfo, now: datetime) -> Message:
    url = _url("programs:earnings", fallback="/earnings/")
    month = datetime.fromisoformat(ctx["month"]).strftime("%B %Y")
    closing = dollars(ctx.get("closing_cents"))
    facts = [("Month", month)]
    if ctx.get("earned_cents") is not None:
        facts.append(("Earned", dollars(ctx["earned_cents"])))
    facts.append(("Balance", closing))
    return Message(
        title=f"Your {month} statement is ready",
        body=f"Your {month} statement is ready: balance {closing}.",
        url=url,
        facts=facts,
        actions=[("Open your statement", url)],
    )


BUILDERS: dict[str, Callable[[dict[str, Any], zoneinfo.ZoneInfo, datetime], Message]] = {
    Kind.EVENT_ANNOUNCED: _event_announced,
    Kind.EVENT_STARTING: _event_starting,
    Kind.EVENT_ENDED: _event_ended,
    Kind.PLUG_IN_REMINDER: _plug_in_reminder,
    Kind.TARGET_AT_RISK: _target_at_risk,
    Kind.CHARGING_COMPLETE: _charging_complete,
    Kind.COMMAND_FAILED: _command_failed,
    Kind.ENROLLMENT_APPROVED: _enrollment_approved,
    Kind.ENROLLMENT_SUSPENDED: _enrollment_suspended,
    Kind.STATEMENT_READY: _statement_ready,
}


def build(kind: str, context: dict[str, Any], *, time_zone: str, now: datetime) -> Message:
    """The message of `kind` for one owner, times in their zone. KeyError for an unknown kind."""
    zone = zoneinfo.ZoneInfo(time_zone)
    return BUILDERS[kind](context, zone, now)


def digest(titles: list[str]) -> tuple[str, str]:
    """One push instead of a flood: "4 updates" and the first few titles."""
    shown = "; ".join(titles[:3]) + ("; …" if len(titles) > 3 else "")
    return f"{len(titles)} updates from ChargeScape", shown


# How long a push service keeps a message for an offline phone: an event notice is worth
# nothing after the event starts; a day covers the longest notice the programs give.
PUSH_TTL = timedelta(hours=24)
