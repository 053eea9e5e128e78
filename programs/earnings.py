"""What the Earnings tab and the settlement reports show, read from the ledger and telemetry.

Owner side (programs.earnings_views): the balance and how it adds up, earnings by month and
program, one row per grid event, monthly statements, CSV lines, and what smart charging saved.
Manager side (the admin's settlement reports): per-event and per-program-per-month totals.

Every money figure comes from ledger entries (programs.ledger) and is classified exactly as
programs.statements classifies it — earned, opt-out fee or payout — so the pieces always add
up to the payable balance. Savings and CO₂ are computed from the car's measured charging
(VehicleReadings) against the owner's tariff and the estimated carbon profile (programs.carbon);
nothing is stored.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import TruncMonth
from django.http import Http404

from accounts.models import User
from programs import carbon, ledger, statements
from programs.models import (
    EventParticipation,
    GridEvent,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    Program,
    Statement,
)
from programs.tariffs import PriceSchedule
from vehicles.models import Vehicle, VehicleReading

SLOT = timedelta(minutes=15)
SLOT_H = 0.25
# A reading more than this after the previous one starts a new charging session: the car was
# not reporting, and energy is never invented across such a gap.
SESSION_GAP = timedelta(hours=12)
EARNED, FEE, PAYOUT = "earned", "fee", "payout"
PALETTE = ["#0b6e4f", "#2563a6", "#b7791f", "#6b4fa0", "#2f8f9d", "#9aa8a2"]


def month_of(moment: datetime, zone: zoneinfo.ZoneInfo) -> date:
    return moment.astimezone(zone).date().replace(day=1)


def next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


# programs.settlement writes event memos in UTC ("Peak Saver event 2026-11-25 00:00 UTC");
# owners read them in their own time zone.
UTC_MEMO = re.compile(r"^(?P<name>.*) event (?P<at>\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC$")


def owner_memo(memo: str, zone: zoneinfo.ZoneInfo) -> str:
    """A ledger memo for an owner: an event's UTC start shown as their local date and time."""
    found = UTC_MEMO.match(memo)
    if found is None:
        return memo
    at = datetime.strptime(found["at"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).astimezone(zone)
    return f"{found['name']} event, {at:%a %-d %b %Y %H:%M}"


def classify(kind: str, line: str | None) -> str:
    """Earned, opt-out fee or payout: the same split as programs.statements.build."""
    if kind in statements.PAYOUT_KINDS:
        return PAYOUT
    if line == "opt_out_fee":
        return FEE
    return EARNED


# --- The owner's ledger lines -------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One entry on the owner's payable account, as the owner reads it."""

    entry_id: int
    at: datetime
    month: date
    kind: str
    kind_label: str
    memo: str
    program: str
    event_id: int | None
    participation_id: int | None
    line: str
    cents: int  # positive: money the owner gains
    bucket: str  # earned, fee or payout


def owner_lines(owner: User) -> list[Line]:
    """All the owner's ledger lines, oldest first."""
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    labels = dict(LedgerTransaction.Kind.choices)
    lines = []
    for entry in ledger.owner_entries(owner).order_by("transaction__created_at", "pk"):
        posted = entry.transaction
        line = entry.detail.get("line")
        lines.append(
            Line(
                entry_id=entry.pk,
                at=posted.created_at,
                month=month_of(posted.created_at, zone),
                kind=posted.kind,
                kind_label=labels.get(posted.kind, posted.kind),
                memo=owner_memo(posted.memo, zone),
                program=posted.program.name if posted.program else "",
                event_id=posted.event_id,
                participation_id=entry.detail.get("participation"),
                line=line or posted.kind,
                cents=-entry.amount_cents,
                bucket=classify(posted.kind, line),
            )
        )
    return lines


@dataclass
class Totals:
    earned_cents: int = 0
    fees_cents: int = 0
    paid_out_cents: int = 0

    def add(self, line: Line) -> None:
        if line.bucket == PAYOUT:
            self.paid_out_cents -= line.cents
        elif line.bucket == FEE:
            self.fees_cents -= line.cents
        else:
            self.earned_cents += line.cents

    @property
    def net_cents(self) -> int:
        return self.earned_cents - self.fees_cents - self.paid_out_cents


@dataclass
class Summary:
    balance_cents: int
    all_time: Totals
    this_month: Totals
    month: date

    @property
    def reconciles(self) -> bool:
        return self.all_time.net_cents == self.balance_cents


def summary(owner: User, lines: Sequence[Line], *, now: datetime) -> Summary:
    """Balance now (the ledger's payable), and what was earned this month and all time."""
    current = month_of(now, zoneinfo.ZoneInfo(owner.time_zone))
    all_time, this_month = Totals(), Totals()
    for line in lines:
        all_time.add(line)
        if line.month == current:
            this_month.add(line)
    return Summary(ledger.payable_cents(owner), all_time, this_month, current)


@dataclass
class MonthRow:
    month: date
    by_program: dict[str, int] = field(default_factory=dict)  # earned cents per program
    totals: Totals = field(default_factory=Totals)


def by_month(lines: Iterable[Line]) -> list[MonthRow]:
    """Earnings per month (posting month in the owner's time zone) and program, oldest first.
    Lines without a program (a payout, a correction of one) count in the month's totals only."""
    rows: dict[date, MonthRow] = {}
    for line in lines:
        row = rows.setdefault(line.month, MonthRow(line.month))
        row.totals.add(line)
        if line.bucket == EARNED:
            name = line.program or "Other"
            row.by_program[name] = row.by_program.get(name, 0) + line.cents
    for row in rows.values():
        row.by_program = dict(sorted(row.by_program.items()))
    return [rows[month] for month in sorted(rows)]


def monthly_figure(rows: Sequence[MonthRow]) -> dict:
    """A stacked bar per month: earned by program above zero, opt-out fees below."""
    x = [row.month.strftime("%b %Y") for row in rows]
    programs = sorted({name for row in rows for name in row.by_program})
    figure = go.Figure()
    for index, name in enumerate(programs):
        figure.add_trace(
            go.Bar(
                x=x,
                y=[row.by_program.get(name, 0) / 100 for row in rows],
                name=name,
                marker={"color": PALETTE[index % len(PALETTE)]},
                hovertemplate="$%{y:,.2f}<extra>" + name + "</extra>",
            )
        )
    if any(row.totals.fees_cents for row in rows):
        figure.add_trace(
            go.Bar(
                x=x,
                y=[-row.totals.fees_cents / 100 for row in rows],
                name="Opt-out fees",
                marker={"color": "#b3261e"},
                hovertemplate="$%{y:,.2f}<extra>Opt-out fees</extra>",
            )
        )
    figure.update_layout(
        barmode="relative",
        height=280,
        margin={"l": 45, "r": 10, "t": 10, "b": 30},
        legend={"orientation": "h", "y": -0.2},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        hovermode="x unified",
        xaxis={"fixedrange": True, "type": "category"},
        yaxis={"tickprefix": "$", "fixedrange": True, "rangemode": "tozero"},
    )
    return figure.to_plotly_json()


# --- Grid events, one row each --------------------------------------------------------------------


@dataclass
class EventRow:
    participation: EventParticipation
    event: GridEvent
    notice: timedelta | None
    status: str  # took_part, partial, opted_out
    status_label: str
    settled: bool
    delivered_kwh: float | None
    missing_slots: int
    earned_cents: int = 0
    fee_cents: int = 0
    missed_cents: int = 0  # the per-event reward an opt-out gave up

    @property
    def notice_text(self) -> str:
        if self.notice is None:
            return "—"
        minutes = max(0, round(self.notice.total_seconds() / 60))
        if minutes >= 48 * 60:
            return f"{minutes // (24 * 60)} days"
        if minutes >= 60:
            hours, rest = divmod(minutes, 60)
            return f"{hours} h {rest} min" if rest else f"{hours} h"
        return f"{minutes} min"


def event_rows(owner: User, lines: Sequence[Line]) -> list[EventRow]:
    """The owner's cars' completed events, newest first, with what each earned or cost.
    Amounts are the ledger lines of that participation (corrections included)."""
    money: dict[int, Totals] = defaultdict(Totals)
    for line in lines:
        if line.participation_id is not None:
            money[line.participation_id].add(line)
    participations = (
        EventParticipation.objects.filter(
            vehicle__owner=owner, event__status=GridEvent.Status.COMPLETED
        )
        .select_related("event__program", "enrollment__terms", "vehicle")
        .order_by("-event__starts_at", "pk")
    )
    rows = []
    for participation in participations:
        event = participation.event
        if participation.opted_out_at is None:
            status, label = "took_part", "Took part"
        elif participation.keep_soc_pct is not None:
            status, label = "partial", f"Partly: kept charging to {participation.keep_soc_pct} %"
        else:
            status, label = "opted_out", "Opted out"
        totals = money.get(participation.pk, Totals())
        rules = participation.enrollment.terms.incentives
        rows.append(
            EventRow(
                participation=participation,
                event=event,
                notice=event.starts_at - event.notified_at if event.notified_at else None,
                status=status,
                status_label=label,
                settled=event.settled_at is not None,
                delivered_kwh=participation.delivered_kwh,
                missing_slots=participation.missing_slots,
                earned_cents=totals.earned_cents,
                fee_cents=totals.fees_cents,
                missed_cents=rules.get("per_event_cents", 0) if status == "opted_out" else 0,
            )
        )
    return rows


def bonus_lines(lines: Sequence[Line]) -> list[Line]:
    """Earnings that are not a grid event's: joining and monthly bonuses, their corrections."""
    return [line for line in lines if line.bucket == EARNED and line.participation_id is None]


# --- Statements ---------------------------------------------------------------------------------


@dataclass
class StatementView:
    statement: Statement
    closed: bool
    in_progress: bool
    lines: list[dict[str, Any]]


def parse_month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError as error:
        raise Http404("No such month.") from error


def statement_months(owner: User, lines: Sequence[Line], *, now: datetime) -> list[date]:
    """Months with a statement to show, newest first: from the first money movement (or the
    first closed statement) to this month."""
    current = month_of(now, zoneinfo.ZoneInfo(owner.time_zone))
    closed = list(Statement.objects.filter(owner=owner).values_list("month", flat=True))
    starts = [line.month for line in lines[:1]] + closed
    if not starts:
        return []
    month, months = min(starts), []
    while month <= current:
        months.append(month)
        month = next_month(month)
    return months[::-1]


def statement_for(owner: User, month: date, *, now: datetime) -> StatementView:
    """The closed statement of `month`, else the ledger's live view of it. A month with
    nothing to show for this owner (before their first money, in the future) is a 404."""
    closed = Statement.objects.filter(owner=owner, month=month).first()
    current = month_of(now, zoneinfo.ZoneInfo(owner.time_zone))
    if closed is None:
        if month > current:
            raise Http404("That month has not started.")
        _, until = statements.month_bounds(owner, month)
        before_end = ledger.owner_entries(owner).filter(transaction__created_at__lt=until)
        if not before_end.exists():
            raise Http404("No statement for that month.")
        statement = statements.build(owner=owner, month=month)
    else:
        statement = closed
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    lines = [
        {
            **line,
            "at": datetime.fromisoformat(line["at"]).astimezone(zone),
            "memo": owner_memo(line["memo"], zone),
        }
        for line in statement.lines
    ]
    return StatementView(statement, closed is not None, month >= current, lines)


# --- Payouts --------------------------------------------------------------------------------------


def payouts_of(owner: User) -> QuerySet[Payout]:
    return Payout.objects.filter(owner=owner).order_by("-created_at")


# --- Smart-charging savings ---------------------------------------------------------------------


@dataclass
class Savings:
    """Measured charging against "charge at full power the moment it was plugged in"."""

    sessions: int = 0
    energy_kwh: float = 0.0
    offpeak_kwh: float = 0.0
    actual_cost: float = 0.0  # currency units, summed exactly before rounding to cents
    immediate_cost: float = 0.0
    actual_co2_g: float = 0.0
    immediate_co2_g: float = 0.0

    def add(self, other: Savings) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def actual_cost_cents(self) -> int:
        return _cents(self.actual_cost)

    @property
    def immediate_cost_cents(self) -> int:
        return _cents(self.immediate_cost)

    @property
    def saved_cents(self) -> int:
        return self.immediate_cost_cents - self.actual_cost_cents

    @property
    def offpeak_pct(self) -> float | None:
        return 100 * self.offpeak_kwh / self.energy_kwh if self.energy_kwh > 0 else None

    @property
    def co2_avoided_kg(self) -> float:
        return (self.immediate_co2_g - self.actual_co2_g) / 1000


def _cents(amount: float) -> int:
    return math.floor(amount * 100 + 0.5)


class _Prices:
    """Import prices per 15-minute slot over a window, looked up by moment."""

    def __init__(
        self, schedule: PriceSchedule, *, start: datetime, until: datetime, time_zone: str
    ):
        self.start = start.astimezone(UTC).replace(second=0, microsecond=0)
        self.start -= timedelta(minutes=self.start.minute % 15)
        count = max(1, math.ceil((until - self.start) / SLOT))
        self.prices = schedule.import_prices(start=self.start, slots=count, time_zone=time_zone)
        self.cheapest = min([schedule.default_price, *(p.price for p in schedule.periods)])

    def at(self, moment: datetime) -> float:
        index = int((moment - self.start) / SLOT)
        return float(self.prices[min(max(index, 0), len(self.prices) - 1)])


@dataclass
class _Session:
    plugged_at: datetime
    month: date
    intervals: list[tuple[datetime, float]] = field(default_factory=list)  # (start, kWh)


def _sessions(readings: Sequence[tuple[datetime, float | None, bool | None]], zone) -> list:
    """Charging sessions of one car from its readings (oldest first). A session opens at the
    first reading that is plugged in or drawing power and closes at an unplugged reading or a
    reporting gap; each reading that draws power counts its power until the next reading, at
    most one slot (the rule of programs.settlement.offpeak_share)."""
    sessions: list[_Session] = []
    current: _Session | None = None
    for index, (at, power_kw, plugged) in enumerate(readings):
        following = readings[index + 1][0] if index + 1 < len(readings) else None
        if current is not None and index and at - readings[index - 1][0] > SESSION_GAP:
            current = None
        connected = plugged is True or (power_kw or 0) > 0
        if plugged is False and not (power_kw or 0) > 0:
            current = None
            continue
        if connected and current is None:
            current = _Session(at, month_of(at, zone))
            sessions.append(current)
        if current is not None and (power_kw or 0) > 0:
            hours = min(SLOT_H, ((following or at + SLOT) - at).total_seconds() / 3600)
            current.intervals.append((at, power_kw * hours))
    return [session for session in sessions if session.intervals]


def savings_by_month(
    owner: User,
    *,
    since: datetime,
    until: datetime,
    schedule: PriceSchedule,
    profile: Sequence[float] = carbon.HOURLY_G_PER_KWH,
    vehicles: Iterable[Vehicle] | None = None,
) -> dict[date, Savings]:
    """Per month of plug-in (owner's time zone): the energy the owner's cars charged, what it
    cost on their tariff, and what it would have cost (and emitted) charging at the car's full
    AC power from plug-in until the same energy was in. Off-peak: energy in the tariff's
    cheapest band, as the monthly bonus counts it."""
    zone_name = owner.time_zone
    zone = zoneinfo.ZoneInfo(zone_name)
    cars = list(vehicles if vehicles is not None else Vehicle.objects.filter(owner=owner))
    if not cars:
        return {}
    # The counterfactual can run past `until` (a late plug-in charged at once): one day more.
    prices = _Prices(schedule, start=since, until=until + timedelta(days=1), time_zone=zone_name)
    readings: dict[Any, list] = defaultdict(list)
    rows = (
        VehicleReading.objects.filter(
            vehicle__in=cars, recorded_at__gte=since, recorded_at__lt=until
        )
        .filter(Q(power_kw__isnull=False) | Q(plugged_in__isnull=False))
        .order_by("vehicle_id", "recorded_at")
        .values_list("vehicle_id", "recorded_at", "power_kw", "plugged_in")
    )
    for vehicle_id, at, power_kw, plugged in rows.iterator(chunk_size=5000):
        readings[vehicle_id].append((at, power_kw, plugged))
    result: dict[date, Savings] = {}
    for car in cars:
        full_kw = float(car.max_ac_kw)
        for session in _sessions(readings.get(car.pk, []), zone):
            month = result.setdefault(session.month, Savings())
            month.sessions += 1
            for at, kwh in session.intervals:
                price = prices.at(at)
                month.energy_kwh += kwh
                month.actual_cost += kwh * price
                month.actual_co2_g += kwh * carbon.intensity_g_per_kwh(
                    at, time_zone=zone_name, profile=profile
                )
                if price <= prices.cheapest + 1e-9:
                    month.offpeak_kwh += kwh
            remaining = sum(kwh for _, kwh in session.intervals)
            at = session.plugged_at
            while remaining > 1e-9:
                kwh = min(full_kw * SLOT_H, remaining)
                month.immediate_cost += kwh * prices.at(at)
                month.immediate_co2_g += kwh * carbon.intensity_g_per_kwh(
                    at, time_zone=zone_name, profile=profile
                )
                remaining -= kwh
                at += SLOT
    return result


def recent_savings(
    owner: User, *, now: datetime, months: int = 6, schedule: PriceSchedule
) -> tuple[list[tuple[date, Savings]], Savings]:
    """The last `months` months (this one included) that had charging, newest first, and their
    total."""
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    first = month_of(now, zone)
    for _ in range(months - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    since = datetime(first.year, first.month, 1, tzinfo=zone)
    found = savings_by_month(owner, since=since, until=now, schedule=schedule)
    total = Savings()
    for item in found.values():
        total.add(item)
    return sorted(found.items(), reverse=True), total


# --- Manager reports ----------------------------------------------------------------------------


@dataclass
class ParticipantRow:
    participation: EventParticipation
    status_label: str
    incentive_cents: int = 0
    fee_cents: int = 0

    @property
    def net_cents(self) -> int:
        return self.incentive_cents - self.fee_cents


@dataclass
class EventSettlement:
    event: GridEvent
    rows: list[ParticipantRow]
    transactions: list[LedgerTransaction]
    utility_charged_cents: int  # what the utility's receivable took for this event

    @property
    def delivered_kwh(self) -> float:
        return sum(row.participation.delivered_kwh or 0 for row in self.rows)

    @property
    def incentive_cents(self) -> int:
        return sum(row.incentive_cents for row in self.rows)

    @property
    def fee_cents(self) -> int:
        return sum(row.fee_cents for row in self.rows)

    @property
    def net_cents(self) -> int:
        return self.incentive_cents - self.fee_cents

    @property
    def took_part(self) -> int:
        return sum(1 for row in self.rows if row.participation.participating)

    @property
    def missing_slots(self) -> int:
        return sum(row.participation.missing_slots for row in self.rows)


def event_settlement(event: GridEvent) -> EventSettlement:
    """Each participant's delivery and money in one event (settlement and any corrections)."""
    participations = list(
        event.participations.select_related("vehicle__owner").order_by("vehicle__owner__email")
    )
    amounts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    entries = (
        LedgerEntry.objects.filter(
            transaction__event=event, account__kind=ledger.Kind.OWNER_PAYABLE
        )
        .annotate(line=KT("detail__line"), participation=KT("detail__participation"))
        .values("participation", "line")
        .annotate(total=Sum("amount_cents"))
    )
    for row in entries:
        if row["participation"] is not None:
            amounts[int(row["participation"])][row["line"] or ""] += -row["total"]
    rows = []
    for participation in participations:
        money = amounts.get(participation.pk, {})
        if participation.opted_out_at is None:
            label = "Took part"
        elif participation.keep_soc_pct is not None:
            label = f"Partial (kept {participation.keep_soc_pct} %)"
        else:
            label = "Opted out"
        rows.append(
            ParticipantRow(
                participation=participation,
                status_label=label,
                incentive_cents=money.get("incentive", 0),
                fee_cents=-money.get("opt_out_fee", 0),
            )
        )
    receivable = LedgerEntry.objects.filter(
        transaction__event=event, account__kind=ledger.Kind.UTILITY_RECEIVABLE
    ).aggregate(total=Sum("amount_cents"))["total"]
    transactions = list(LedgerTransaction.objects.filter(event=event).order_by("created_at"))
    return EventSettlement(event, rows, transactions, receivable or 0)


@dataclass
class ProgramMonth:
    program: Program
    month: date
    events: int = 0
    participations: int = 0
    delivered_kwh: float = 0.0
    incentive_cents: int = 0
    bonus_cents: int = 0
    fee_cents: int = 0

    @property
    def net_cents(self) -> int:
        return self.incentive_cents + self.bonus_cents - self.fee_cents


def program_months(programs: QuerySet[Program], *, time_zone: str) -> list[ProgramMonth]:
    """Per program and month (posting month in `time_zone`): events settled and their
    participants and delivered kWh, event incentives, bonuses and opt-out fees paid to or taken
    from owners. Newest month first. `programs` is already scoped to the manager's utilities."""
    zone = zoneinfo.ZoneInfo(time_zone)
    by_key: dict[tuple[int, date], ProgramMonth] = {}
    names = {program.pk: program for program in programs}

    def row(program_id: int, month: datetime | date) -> ProgramMonth:
        day = month.date() if isinstance(month, datetime) else month
        key = (program_id, day)
        if key not in by_key:
            by_key[key] = ProgramMonth(names[program_id], day)
        return by_key[key]

    money = (
        LedgerEntry.objects.filter(
            account__kind=ledger.Kind.OWNER_PAYABLE, transaction__program__in=programs
        )
        .annotate(month=TruncMonth("transaction__created_at", tzinfo=zone), line=KT("detail__line"))
        .values("transaction__program", "month", "transaction__kind", "line")
        .annotate(total=Sum("amount_cents"))
    )
    for item in money:
        target = row(item["transaction__program"], item["month"])
        credit = -item["total"]
        if item["line"] == "opt_out_fee":
            target.fee_cents -= credit
        elif item["line"] == "incentive":
            target.incentive_cents += credit
        else:
            target.bonus_cents += credit
    settled = (
        GridEvent.objects.filter(program__in=programs, settled_at__isnull=False)
        .annotate(month=TruncMonth("settled_at", tzinfo=zone))
        .values("program", "month")
        .annotate(
            events=Count("pk", distinct=True),
            participants=Count("participations"),
            kwh=Sum("participations__delivered_kwh"),
        )
    )
    for item in settled:
        target = row(item["program"], item["month"])
        target.events += item["events"]
        target.participations += item["participants"]
        target.delivered_kwh += item["kwh"] or 0.0
    return sorted(by_key.values(), key=lambda r: (-r.month.toordinal(), r.program.name))
