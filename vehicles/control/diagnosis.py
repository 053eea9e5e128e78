"""Plain words for owners: why a car is not doing what we asked, and what each command did.

`diagnose` is pure (plain dataclasses in, a `Diagnosis` out, table-driven tests): from the newest
reading, the link, the owner's pause and recent command troubles it picks the one most likely
cause, with a one-sentence explanation and the one thing the owner can do. `facts_for` is the
only function here that reads the database. Callers: vehicles.control.confirm (the closed loop
records a diagnosis on every command the car's telemetry did not confirm), vehicles.selectors
(the "Why isn't my car charging?" card) and the activity log (`describe_event`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.utils import formats, timezone

from vehicles.models import SOC_STALE_AFTER

# Troubles older than this say nothing about now (a car revoked an hour ago was relinked since,
# a 429 from yesterday is long over).
TROUBLE_WINDOW = timedelta(hours=1)
# Below this the car draws no real power (the planner's float noise, a car's standby draw).
IDLE_KW = 0.05
# A charge limit this close to the SoC means the car stopped at its own limit.
LIMIT_REACHED_MARGIN_PCT = 1.0


class Want(StrEnum):
    """What we asked the car to do."""

    CHARGE = "charge"
    STOP = "stop"
    LIMIT = "limit"


class Trouble(StrEnum):
    """What a failed or retried command tells us about the car or its cloud."""

    LINK_REVOKED = "link_revoked"
    CHARGER_REJECTED = "charger_rejected"
    NOT_PLUGGED_IN = "not_plugged_in"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Reading:
    recorded_at: datetime
    plugged_in: bool | None = None
    at_home: bool | None = None
    charging_state: str = ""
    power_kw: float | None = None
    soc_pct: float | None = None
    charge_limit_pct: float | None = None

    @property
    def charging(self) -> bool:
        return self.charging_state == "CHARGING" or (self.power_kw or 0) > IDLE_KW


@dataclass(frozen=True)
class Facts:
    now: datetime
    make: str = ""
    linked: bool = True
    reading: Reading | None = None
    paused_until: datetime | None = None
    target_soc_pct: int | None = None
    # (trouble, when) for troubles within TROUBLE_WINDOW, oldest first.
    troubles: tuple[tuple[Trouble, datetime], ...] = ()

    def has(self, trouble: Trouble) -> bool:
        return any(kind == trouble for kind, _ in self.troubles)

    def last(self, trouble: Trouble) -> datetime | None:
        times = [at for kind, at in self.troubles if kind == trouble]
        return max(times) if times else None

    @property
    def fresh_reading(self) -> Reading | None:
        if self.reading is None or self.now - self.reading.recorded_at > SOC_STALE_AFTER:
            return None
        return self.reading


@dataclass(frozen=True)
class Diagnosis:
    code: str
    title: str  # a short heading: "Your car seems to be asleep"
    explanation: str  # one sentence: what we see
    action: str  # one sentence: what the owner can do
    # Would sending the same command once more plausibly help? (The closed loop re-sends once.)
    resend_helps: bool
    # The one-tap button the card offers: "boost", "resume", "relink", or none.
    owner_action: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sentence(self) -> str:
        return f"{self.explanation} {self.action}"


def _automaker(facts: Facts) -> str:
    return facts.make or "your automaker"


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 90:
        return f"{max(minutes, 1)} min"
    hours = round(minutes / 60)
    return f"{hours} hours" if hours < 36 else f"{round(hours / 24)} days"


def diagnose(facts: Facts, *, want: Want = Want.CHARGE) -> Diagnosis:
    """The most likely reason the car is not doing `want`, most certain and most blocking first:
    a revoked link or the owner's own pause stop everything; a charger's or the car's explicit
    refusal is certain; a rate limit or silence means we cannot know more yet; only a fresh
    reading can show the cable, the place or the car's own limit."""
    reading = facts.fresh_reading
    if not facts.linked or facts.has(Trouble.LINK_REVOKED):
        return Diagnosis(
            code="link_revoked",
            title="We lost access to your car",
            explanation=(
                f"{_automaker(facts)} no longer lets us reach the car, "
                "so we can't start or stop its charging."
            ),
            action="Sign in to your automaker's account again to relink it.",
            resend_helps=False,
            owner_action="relink",
        )
    if want == Want.CHARGE and facts.paused_until is not None and facts.paused_until > facts.now:
        until = formats.date_format(timezone.localtime(facts.paused_until), "l j F")
        return Diagnosis(
            code="owner_paused",
            title="Smart charging is paused",
            explanation=(
                f"You paused smart charging until {until}, so we aren't sending the car any "
                "commands: it charges on its own settings."
            ),
            action="Resume smart charging to charge on your plan again.",
            resend_helps=False,
            owner_action="resume",
        )
    if facts.has(Trouble.CHARGER_REJECTED):
        return Diagnosis(
            code="charger_rejected",
            title="Your charger turned down our schedule",
            explanation="The charger refused the charging schedule we sent, so it won't "
            "deliver power as planned.",
            action="Check that the charger is online and allows ChargeScape to manage it, "
            "or restart it; we'll try again on the next step of the plan.",
            resend_helps=False,
        )
    if want == Want.CHARGE and _unplugged(facts):
        return Diagnosis(
            code="not_plugged_in",
            title="Your car isn't plugged in",
            explanation="The car reports no charging cable connected, so it can't charge.",
            action="Plug it in at home; we'll start charging within a few minutes.",
            resend_helps=False,
        )
    if facts.has(Trouble.RATE_LIMITED):
        return Diagnosis(
            code="rate_limited",
            title=f"{_automaker(facts)}'s service asked us to slow down",
            explanation=(
                f"{_automaker(facts)}'s cloud is limiting how often we can reach the car, "
                "so our last request is waiting its turn."
            ),
            action="Nothing to do: we'll try again automatically in a few minutes.",
            resend_helps=True,
        )
    if reading is None:
        heard = (
            f"for {_age(facts.now - facts.reading.recorded_at)}"
            if facts.reading is not None
            else "yet"
        )
        return Diagnosis(
            code="car_asleep",
            title="Your car seems to be asleep",
            explanation=(
                f"We haven't heard from the car {heard}, so we can't tell whether it "
                "followed our last request."
            ),
            action="Open your car's app or get in the car to wake it; we'll keep trying.",
            resend_helps=True,
            data={"reading_at": facts.reading.recorded_at.isoformat() if facts.reading else None},
        )
    if want == Want.CHARGE and reading.plugged_in and reading.at_home is False:
        return Diagnosis(
            code="not_at_home",
            title="Your car is plugged in away from home",
            explanation="We only manage charging at home, and the car is plugged in elsewhere.",
            action="Charging there is up to that charger; we take over again when you're home.",
            resend_helps=False,
        )
    if want == Want.CHARGE and _stopped_at_own_limit(facts, reading):
        limit = f"{reading.charge_limit_pct:.0f}"
        return Diagnosis(
            code="charge_limit_below_target",
            title=f"Your car stops at its own {limit} % limit",
            explanation=(
                f"The car's charge limit is {limit} %, below your {facts.target_soc_pct} % "
                "target, and it has reached it."
            ),
            action=f"Raise the charge limit to at least {facts.target_soc_pct} % in the car "
            "or its app.",
            resend_helps=False,
            data={"charge_limit_pct": reading.charge_limit_pct},
        )
    if want == Want.STOP:
        return Diagnosis(
            code="no_effect",
            title="Your car kept charging",
            explanation="The car accepted our request to pause charging but is still drawing "
            "power.",
            action="Nothing to do: we'll ask again; your departure target is never at risk.",
            resend_helps=True,
        )
    if want == Want.LIMIT:
        return Diagnosis(
            code="no_effect",
            title="Your car kept its old charge limit",
            explanation="The car accepted the new charge limit but still reports the old one.",
            action="Nothing to do: we'll ask again, or you can set it in the car's app.",
            resend_helps=True,
        )
    return Diagnosis(
        code="no_effect",
        title="Your car hasn't started charging",
        explanation="The car accepted our request to charge but isn't drawing power.",
        action="Check the cable and the charger's lights, or tap Charge now to try again.",
        resend_helps=True,
        owner_action="boost",
    )


def _unplugged(facts: Facts) -> bool:
    """The car said so: a fresh reading, or a refusal newer than the newest reading."""
    reading = facts.fresh_reading
    if reading is not None and reading.plugged_in is False:
        return True
    refused_at = facts.last(Trouble.NOT_PLUGGED_IN)
    if refused_at is None:
        return False
    return facts.reading is None or facts.reading.recorded_at <= refused_at


def _stopped_at_own_limit(facts: Facts, reading: Reading) -> bool:
    limit = reading.charge_limit_pct
    if limit is None or facts.target_soc_pct is None or limit >= facts.target_soc_pct:
        return False
    return reading.charging_state == "FULLY_CHARGED" or (
        reading.soc_pct is not None and reading.soc_pct >= limit - LIMIT_REACHED_MARGIN_PCT
    )


# --- Troubles, from what commands went through --------------------------------------------------

_LINK_WORDS = re.compile(r"linkrevoked|authexpired|revoked|re-?authori[sz]", re.IGNORECASE)
_CHARGER_WORDS = re.compile(r"charger (refused|answered)", re.IGNORECASE)
_RATE_WORDS = re.compile(r"rate.?limit|too many requests|\b429\b", re.IGNORECASE)
_ATTEMPTS = re.compile(r"Gave up after (\d+) attempts", re.IGNORECASE)


def classify_trouble(
    *, kind: str, detail: str, data: dict[str, Any] | None = None
) -> Trouble | None:
    """What a CommandEvent (`failed` or `retry`) says about the car, if anything."""
    data = data or {}
    if kind == "retry":
        if data.get("retry_after_s") is not None or _RATE_WORDS.search(detail):
            return Trouble.RATE_LIMITED
        return None
    if kind != "failed":
        return None
    if _LINK_WORDS.search(detail):
        return Trouble.LINK_REVOKED
    if _CHARGER_WORDS.search(detail):
        return Trouble.CHARGER_REJECTED
    if "not plugged in" in detail.lower():
        return Trouble.NOT_PLUGGED_IN
    if _RATE_WORDS.search(detail):
        return Trouble.RATE_LIMITED
    return None


def failure_in_plain_words(detail: str, *, device: str = "car") -> str:
    """A failed command's reason as the owner reads it (the admin keeps the technical one)."""
    trouble = classify_trouble(kind="failed", detail=detail)
    if trouble == Trouble.LINK_REVOKED:
        return "Your automaker no longer lets us reach the car: sign in again to relink it."
    if trouble == Trouble.CHARGER_REJECTED:
        return "The charger refused our charging schedule."
    if trouble == Trouble.NOT_PLUGGED_IN:
        return "The car is not plugged in."
    if trouble == Trouble.RATE_LIMITED:
        return "Your automaker's service kept asking us to slow down."
    if attempts := _ATTEMPTS.search(detail):
        return f"We tried {attempts.group(1)} times but couldn't reach the {device}."
    if detail.startswith(("Not confirmed", "No sign")):
        return detail  # the closed loop already speaks plainly
    return f"The {device} didn't accept it."


def owner_words(reason: str) -> str:
    """The safety gateway speaks of "the owner"; the owner reads "you"."""
    return (
        reason.replace("The owner asked", "You asked")
        .replace("The owner paused", "You paused")
        .replace("the owner's", "your")
        .replace("The owner's", "Your")
    )


# --- The activity log -----------------------------------------------------------------------------

# CommandEvent kinds an owner sees; the rest (published, sending, redriven…) are plumbing.
OWNER_EVENT_KINDS = (
    "created",
    "sent",
    "confirmed",
    "refused",
    "failed",
    "expired",
    "superseded",
    "retry",
    "telemetry_requested",
    "unconfirmed",
)
SOURCE_WORDS = {
    "plan": "Asked by your charging plan.",
    "owner": "You asked for it.",
    "event": "Asked for a grid event you take part in.",
    "operator": "Asked by ChargeScape support.",
}
# The command's state as a badge: (label, tone).
STATE_BADGES = {
    "pending": ("In progress", "info"),
    "sending": ("In progress", "info"),
    "sent": ("Delivered", "info"),
    "confirmed": ("Confirmed", "ok"),
    "refused": ("Not sent", "warn"),
    "failed": ("Failed", "error"),
    "superseded": ("Replaced", "muted"),
    "expired": ("Dropped", "muted"),
}


def command_title(*, action: str, power_kw: float | None, limit_pct: float | None) -> str:
    if action == "start_charge":
        return "Start charging"
    if action == "stop_charge":
        return "Hold charging"
    if action == "set_charge_limit":
        return f"Set the charge limit to {limit_pct or 0:.0f} %"
    if action == "set_power":
        if (power_kw or 0) < 0:
            return f"Send {abs(power_kw or 0):g} kW to the grid"
        return f"Charge at {power_kw or 0:g} kW"
    return "Back to your plan"


def describe_event(
    *, kind: str, detail: str, data: dict[str, Any], actor: str, source: str, device: str
) -> tuple[str, str] | None:
    """One step of a command for the activity log, as (tone, sentence); None to leave it out."""
    if kind == "created":
        if actor == "control.confirm":
            return "info", "Asked again: the first request showed no effect in the car's data."
        return "info", SOURCE_WORDS.get(source, "Requested.")
    if kind == "sent":
        return "info", f"Delivered: the {device} accepted it."
    if kind == "confirmed":
        if data.get("by") == "telemetry":
            return "ok", f"Confirmed by the car's own data: {data.get('summary', 'done')}."
        if detail.startswith("The device already shows"):
            return "ok", f"Confirmed: the {device} already did it, so we didn't send it twice."
        return "ok", f"Confirmed: {detail[0].lower() + detail[1:] if detail else 'done.'}"
    if kind == "refused":
        return "warn", f"Not sent, for safety: {owner_words(detail)}"
    if kind == "failed":
        return "error", f"Failed: {failure_in_plain_words(detail, device=device)}"
    if kind == "expired":
        return "muted", f"Dropped: its time ran out before the {device} could be reached."
    if kind == "superseded":
        return "muted", "Replaced by a newer instruction before it was sent."
    if kind == "retry":
        if classify_trouble(kind=kind, detail=detail, data=data) == Trouble.RATE_LIMITED:
            return "muted", "Waiting: the automaker's service asked us to slow down."
        return "muted", f"Couldn't reach the {device}; trying again shortly."
    if kind == "telemetry_requested":
        return "muted", "Checking: we asked the car for fresh data to confirm it."
    if kind == "unconfirmed":
        return "warn", detail
    return None


# --- Reading the facts (the only database access) ----------------------------------------------


def reading_facts(reading: Any) -> Reading | None:
    if reading is None:
        return None
    return Reading(
        recorded_at=reading.recorded_at,
        plugged_in=reading.plugged_in,
        at_home=reading.at_home,
        charging_state=reading.charging_state or "",
        power_kw=reading.power_kw,
        soc_pct=reading.soc_pct,
        charge_limit_pct=reading.charge_limit_pct,
    )


def facts_for(
    *, vehicle: Any, now: datetime, target_soc_pct: int | None = None, reading: Any = None
) -> Facts:
    """The facts about `vehicle` now: newest reading, link, pause, and the troubles its commands
    met since the device last accepted one (within TROUBLE_WINDOW). Troubles the closed loop
    concluded itself are left out, so a guess never feeds the next guess."""
    from vehicles import selectors as vehicle_selectors
    from vehicles.control.models import CommandEvent

    if reading is None:
        reading = vehicle_selectors.latest_reading(vehicle=vehicle)
    preference = vehicle_selectors.preference_for(vehicle=vehicle)
    since = now - TROUBLE_WINDOW
    # The device accepting or confirming a command since proves the link, the cloud and the
    # charger work again: troubles before that are over.
    last_success = (
        CommandEvent.objects.filter(
            command__vehicle=vehicle, kind__in=("sent", "confirmed"), at__gte=since, at__lte=now
        )
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    events = (
        CommandEvent.objects.filter(
            command__vehicle=vehicle,
            kind__in=("failed", "retry"),
            at__gte=max(since, last_success) if last_success else since,
            at__lte=now,
        )
        .exclude(actor="control.confirm")
        .order_by("at", "id")
    )
    troubles = tuple(
        (trouble, event.at)
        for event in events
        if (trouble := classify_trouble(kind=event.kind, detail=event.detail, data=event.data))
    )
    return Facts(
        now=now,
        make=vehicle.make,
        linked=vehicle.link_state == "linked",
        reading=reading_facts(reading),
        paused_until=preference.pause_until,
        target_soc_pct=target_soc_pct,
        troubles=troubles,
    )
