"""Demo data for `make run` (idempotent): a utility with three feeders, a time-of-use tariff and
three programs, and a fleet of simulated cars linked through the simulated vehicle cloud's real
OAuth consent flow, enrolled, with a grid event tonight — so a manager sees a living dashboard.

Called by chargescape's seed_demo command (utility and programs) and by runstack once the
simulated cloud answers (the fleet).
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import requests
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from programs import enrollments, events, ledger, payouts, settlement, statements
from programs.models import (
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Tariff,
    Utility,
)
from programs.openadr.demo import seed_vtn_link
from vehicles import oem
from vehicles import services as vehicle_services
from vehicles.models import Vehicle, VehicleReading

logger = logging.getLogger(__name__)

UTILITY_SLUG = "golden-gate"
# The simulated cloud's first cars belong to the demo owner (the first one comes with a few
# months of history); the fleet's follow.
OWNER_CARS = 3
TIME_ZONE = "America/Los_Angeles"
FEEDERS = {  # code: (region, ZIP codes)
    "soma-1": ("SoMa", ["94107", "94105", "94158"]),
    "mission-1": ("Mission", ["94110", "94103"]),
    "sunset-1": ("Sunset", ["94116", "94122"]),
}
TERMS = """By enrolling you let ChargeScape, on behalf of {utility}, decide when your car charges
{what}. Your departure time and charge target always come first: the car is never left below
the minimum charge you set. You can opt out of any event from the app; the program's monthly
allowance of free opt-outs applies. Rewards are paid monthly to your ChargeScape balance."""
PROGRAMS = [
    {
        "code": "smart-charge",
        "name": "Smart Charge Rewards",
        "kind": Program.Kind.MANAGED_CHARGING,
        "summary": "We charge your car overnight when power is cheapest and cleanest.",
        "rules": {"max_events_per_month": 4, "opt_outs_per_month": 4},
        "what": "overnight",
        "incentives": {
            "enrollment_bonus_cents": 2500,
            "monthly_bonus_cents": 1000,
            "monthly_bonus_min_offpeak_pct": 80,
            "annual_cap_cents": 20000,
        },
    },
    {
        "code": "peak-saver",
        "name": "Peak Saver",
        "kind": Program.Kind.DEMAND_RESPONSE,
        "summary": "On a few hot evenings a month your car pauses charging for up to 3 hours.",
        "rules": {
            "max_events_per_month": 8,
            "max_event_minutes": 180,
            "notice_minutes": 60,
            "opt_outs_per_month": 2,
            "opt_out_fee_cents": 300,
        },
        "what": "and pauses charging during grid events",
        "incentives": {"per_event_cents": 200, "per_kwh_cents": 30, "enrollment_bonus_cents": 5000},
    },
    {
        "code": "grid-return",
        "name": "Grid Return V2G",
        "kind": Program.Kind.V2G,
        "summary": "Your bidirectional car sends energy back at peaks and is paid per kWh.",
        "rules": {
            "max_events_per_month": 10,
            "max_event_minutes": 240,
            "notice_minutes": 30,
            "requires_v2g": True,
        },
        "what": "and sends energy back to the grid during events",
        "incentives": {"per_event_cents": 300, "per_kwh_cents": 45},
    },
]


@transaction.atomic
def seed_programs(*, manager: User) -> Utility:
    """The demo utility, its feeders, tariff and open programs; `manager` runs it."""
    utility, _ = Utility.objects.get_or_create(
        slug=UTILITY_SLUG, defaults={"name": "Golden Gate Power", "time_zone": TIME_ZONE}
    )
    utility.managers.add(manager)
    for code, (region, zips) in FEEDERS.items():
        Feeder.objects.update_or_create(
            utility=utility, code=code, defaults={"region": region, "zip_codes": zips}
        )
    Tariff.objects.get_or_create(
        utility=utility,
        name="EV time of use",
        defaults={
            "is_default": True,
            "default_price": "0.31",
            "export_price": "0.08",
            "periods": [
                {"start": "00:00", "end": "15:00", "price": 0.24},
                {"start": "16:00", "end": "21:00", "price": 0.52},
            ],
        },
    )
    for spec in PROGRAMS:
        program, created = Program.objects.get_or_create(
            code=spec["code"],
            defaults={
                "utility": utility,
                "name": spec["name"],
                "kind": spec["kind"],
                "summary": spec["summary"],
                "status": Program.Status.OPEN,
                **spec["rules"],
            },
        )
        if created:
            ProgramTerms.objects.create(
                program=program,
                version=1,
                body=TERMS.format(utility=utility.name, what=spec["what"]),
                incentives=spec["incentives"],
                published_at=timezone.now() - timedelta(days=90),
            )
    seed_vtn_link(utility=utility)  # the simulated VTN's link (OpenADR demo)
    return utility


def seed_fleet(*, count: int) -> int:
    """Link `count` demo owners' cars through the simulated cloud's consent page (the same OAuth
    flow an owner's browser goes through), set their preferences and enroll them. Idempotent:
    owners who already have a car are skipped. Returns the number of cars linked now."""
    utility = Utility.objects.get(slug=UTILITY_SLUG)
    taken = set(Vehicle.objects.values_list("provider_vehicle_id", flat=True))
    zips = [z for _, codes in FEEDERS.values() for z in codes]
    linked = 0
    session = requests.Session()
    for index in range(count):
        owner, _ = User.objects.get_or_create(
            email=f"fleet{index:02d}@chargescape.test",
            defaults={
                "first_name": f"Driver {index + 1}",
                "password": make_password(None),  # nobody signs in as a fleet owner
                "service_zip": zips[index % len(zips)],
                "time_zone": TIME_ZONE,
            },
        )
        if owner.vehicles.exists():
            continue
        # The first cars of the cloud's account are the demo owner's to link by hand.
        vehicles = _link_free_car(session, owner=owner, taken=taken, skip=OWNER_CARS)
        if not vehicles:
            logger.info("demo fleet: the simulated cloud has no unlinked car left")
            break
        for vehicle in vehicles:
            _prefer_and_enroll(vehicle, utility=utility, index=index)
            linked += 1
    return linked


def _link_free_car(
    session: requests.Session, *, owner: User, taken: set[str], skip: int = 0
) -> list[Vehicle]:
    """Link the first car nobody has linked yet (after the first `skip` on the page) to `owner`
    through the simulated cloud's consent page, as an owner's browser would; [] when every car
    is taken."""
    adapter = oem.get_adapter("smartcar")
    redirect_uri = oem.providers()["smartcar"]["REDIRECT_URI"]
    url = adapter.authorize_url(state=secrets.token_urlsafe(16), redirect_uri=redirect_uri)
    page = session.get(url, timeout=10)
    page.raise_for_status()
    consent = re.search(r'name=consent value="([^"]+)"', page.text)[1]
    cars = re.findall(r'name=vehicle value="([^"]+)"', page.text)
    free = [car for car in cars[skip:] if car not in taken]
    if not free:
        return []
    answer = session.post(
        url.split("?")[0],
        data={"consent": consent, "action": "approve", "vehicle": free[:1]},
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    vehicles = vehicle_services.link_vehicles(
        owner=owner, provider="smartcar", code=code, redirect_uri=redirect_uri
    )
    taken.update(vehicle.provider_vehicle_id for vehicle in vehicles)
    return vehicles


def _prefer_and_enroll(vehicle: Vehicle, *, utility: Utility, index: int) -> None:
    leave = ["06:30", "07:00", "07:30", "08:00", "08:30"][index % 5]
    target = [70, 80, 90][index % 3]
    vehicle_services.update_preference(
        vehicle=vehicle,
        weekly_schedule={str(d): {"departure": leave, "target_soc_pct": target} for d in range(7)},
        min_soc_pct=25,
        v2g_consent=vehicle.v2g_capable,
    )
    codes = ["smart-charge"] + (["peak-saver"] if index % 3 else [])
    if vehicle.v2g_capable:
        codes.append("grid-return")
    for program in Program.objects.filter(utility=utility, code__in=codes):
        terms = enrollments.current_terms(program)
        if terms is not None and not enrollments.ineligibility(program=program, vehicle=vehicle):
            enrollments.enroll(
                vehicle=vehicle,
                program=program,
                terms_version=terms.version,
                actor=None,
                source="demo",
            )


def schedule_evening_event(*, now: datetime | None = None) -> GridEvent | None:
    """A Peak Saver event 17:00–19:00 local tonight (tomorrow when too late for its notice),
    unless one is already coming."""
    now = now or timezone.now()
    program = Program.objects.filter(code="peak-saver").first()
    if program is None:
        return None
    upcoming = GridEvent.objects.filter(
        program=program,
        status__in=[GridEvent.Status.SCHEDULED, GridEvent.Status.ACTIVE],
        ends_at__gt=now,
    )
    if upcoming.exists():
        return None
    zone = zoneinfo.ZoneInfo(program.utility.time_zone)
    day = now.astimezone(zone).date()
    starts = datetime.combine(day, time(17), tzinfo=zone)
    if starts - now < timedelta(minutes=program.notice_minutes + 5):
        starts = datetime.combine(day + timedelta(days=1), time(17), tzinfo=zone)
    scope = events.enrollments_in_scope(program=program, feeder=None, region="")
    available = events.flexible_kw(scope, kind=GridEvent.Kind.IMPORT_CAP)
    if available <= 0:
        return None
    event = events.create_event(
        program=program,
        kind=GridEvent.Kind.IMPORT_CAP,
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        target_kw=round(max(1.0, available * 0.3), 1),
        actor=None,
        source="demo",
    )
    return events.schedule_event(event=event, actor=None)


# --- The demo owner's earnings history ----------------------------------------------------------
#
# The demo owner (owner@chargescape.test) gets one of the simulated cloud's cars, linked through
# the same consent flow as the fleet, and a few months of history for it: nightly charging as
# telemetry, past Peak Saver (and, for a V2G car, Grid Return) events with their participations,
# all settled by the real settlement code, monthly bonuses, closed statements and one payout.
# Nothing is written to the ledger directly. The ledger dates postings itself (created_at), so
# the history is replayed in time order under a demo clock (`_clock`) that sets Django's
# `timezone.now` to the moment each step would have run — the enrollment, each event's
# settlement after it ended, each month's close — so statements and monthly totals fall in the
# months they belong to. On event evenings the car plugs in just before the event needing a good
# charge; its recorded baseline is charging at full power from then on.

HISTORY_SOURCE = "demo-history"
HISTORY_DAYS = 80  # about three months, within the demo terms' publication (90 days back)


@contextmanager
def _clock(moment: datetime) -> Iterator[None]:
    """Django's clock set to `moment` (timezone.now and auto_now fields) for a replayed step.
    Only the demo's seeding thread runs Django code in its process (runstack), so this is safe."""
    with mock.patch.object(timezone, "now", return_value=moment):
        yield


@dataclass
class _Night:
    plug_at: datetime
    depart_at: datetime
    need_kwh: float
    boost: bool = False  # the owner charged at once (boost): not off-peak


@dataclass
class _PastEvent:
    program: Program
    kind: str
    starts_at: datetime
    ends_at: datetime
    outcome: str  # took_part, opted_out, partial, missing
    night: _Night


def seed_demo_earnings(*, owner: User, now: datetime | None = None) -> int:
    """Give the demo owner a car (when they have none) and a few months of earnings history for
    it, settled through programs.settlement. Idempotent: once the history exists, nothing is
    done. Returns the number of past grid events created."""
    now = now or timezone.now()
    if GridEvent.objects.filter(
        source=HISTORY_SOURCE, participations__vehicle__owner=owner
    ).exists():
        return 0
    vehicle = (
        owner.vehicles.filter(link_state=Vehicle.LinkState.LINKED).order_by("created_at").first()
    )
    if vehicle is None:
        taken = set(Vehicle.objects.values_list("provider_vehicle_id", flat=True))
        linked = _link_free_car(requests.Session(), owner=owner, taken=taken)
        if not linked:
            logger.info("demo earnings: no free car in the simulated cloud for the demo owner")
            return 0
        vehicle = linked[0]
    utility = Utility.objects.get(slug=UTILITY_SLUG)
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    published = max(
        ProgramTerms.objects.filter(program__utility=utility).values_list("published_at", flat=True)
    )
    first_day = max(
        (now - timedelta(days=HISTORY_DAYS)).astimezone(zone).date(),
        (published + timedelta(days=1)).astimezone(zone).date(),
    )
    rng = random.Random(f"demo-earnings:{vehicle.provider_vehicle_id}")  # noqa: S311 — demo data
    with transaction.atomic():
        with _clock(datetime.combine(first_day, time(9), tzinfo=zone)):
            _prefer_and_enroll(vehicle, utility=utility, index=1)
        enrolled = {
            e.program.code: e
            for e in vehicle.enrollments.filter(status="active").select_related("program")
        }
        nights = _nights(vehicle, first_day=first_day, now=now, zone=zone, rng=rng)
        past = _past_events(enrolled, nights, zone=zone, rng=rng)
        readings = _charging_readings(vehicle, nights, past, owner=owner)
        VehicleReading.objects.bulk_create(readings, batch_size=2000)
        steps: list[tuple[datetime, str, Any]] = []
        for item in past:
            event = _record_event(item, vehicle=vehicle, enrollment=enrolled[item.program.code])
            steps.append((item.ends_at + timedelta(minutes=20), "settle", event))
        month = first_day.replace(day=1)
        closed = []
        while True:
            month_end = datetime.combine((month + timedelta(days=32)).replace(day=1), time(1))
            month_end = month_end.replace(tzinfo=zone)
            if month_end >= now:
                break
            steps.append((month_end, "month", month))
            closed.append((month, month_end))
            month = month_end.date()
        if len(closed) >= 2:  # cash out once, a few days after the second month closed
            paid_at = closed[1][1] + timedelta(days=4, hours=9)
            if paid_at + timedelta(days=2) < now:
                steps.append((paid_at, "payout", f"demo-history:{owner.pk}:{closed[1][0]:%Y-%m}"))
                steps.append((paid_at + timedelta(days=2), "paid", None))
        payout_key = ""
        for moment, action, subject in sorted(steps, key=lambda step: step[0]):
            with _clock(moment):
                if action == "settle":
                    settlement.settle_event(event_id=subject.pk)
                elif action == "month":
                    settlement.settle_month(month=subject)
                    statements.close_month(owner=owner, month=subject)
                elif action == "payout" and ledger.payable_cents(owner) >= (
                    settings.PAYOUT_MINIMUM_CENTS
                ):
                    payout_key = subject
                    payouts.request_payout(owner=owner, key=subject)
                elif action == "paid" and payout_key:
                    payouts.apply_webhook(kind="payout.paid", payout_key=payout_key)
    return len(past)


def _nights(
    vehicle: Vehicle, *, first_day: date, now: datetime, zone: zoneinfo.ZoneInfo, rng
) -> list[_Night]:
    """Evenings the car came home and plugged in (nine in ten), until last night."""
    nights = []
    day = first_day
    while True:
        plug_at = datetime.combine(day, time(17, 30), tzinfo=zone)
        plug_at += timedelta(minutes=rng.randrange(0, 120))
        depart_at = datetime.combine(day + timedelta(days=1), time(7), tzinfo=zone)
        depart_at += timedelta(minutes=rng.randrange(0, 60))
        if depart_at >= now:
            return nights
        if rng.random() < 0.9:
            weekend = day.weekday() >= 5
            need = rng.uniform(3, 7) if weekend else rng.uniform(6, 14)
            nights.append(_Night(plug_at, depart_at, round(need, 2), boost=rng.random() < 0.08))
        day += timedelta(days=1)


def _past_events(enrolled: dict, nights: list[_Night], *, zone, rng) -> list[_PastEvent]:
    """Three Peak Saver evenings a month (17:00–19:00) and, for a V2G car, two Grid Return
    hours (18:00–19:00), on weekday nights the car was plugged in; a few with an opt-out, a
    partial opt-out or missing telemetry, as real months have."""
    by_month: dict[date, list[_Night]] = {}
    for night in nights:
        local = night.plug_at.astimezone(zone)
        if local.weekday() < 5 and not night.boost:
            by_month.setdefault(local.date().replace(day=1), []).append(night)
    plans = [("peak-saver", GridEvent.Kind.IMPORT_CAP, time(17), 120, 3)]
    plans.append(("grid-return", GridEvent.Kind.EXPORT_REQUEST, time(18), 60, 2))
    outcomes = ["missing", "took_part", "took_part", "opted_out", "took_part", "partial"]
    past: list[_PastEvent] = []
    for month in sorted(by_month):
        pool = list(by_month[month])
        rng.shuffle(pool)
        for code, kind, start, minutes, count in plans:
            if code not in enrolled:
                continue
            for night in pool[:count]:
                pool.remove(night)
                local_day = night.plug_at.astimezone(zone).date()
                starts = datetime.combine(local_day, start, tzinfo=zone)
                # Home just before the event, needing a good charge.
                night.plug_at = starts - timedelta(minutes=rng.randrange(5, 15))
                night.need_kwh = max(night.need_kwh, 12.0)
                number = sum(1 for item in past if item.program.code == code)
                outcome = outcomes[number % len(outcomes)] if code == "peak-saver" else "took_part"
                past.append(
                    _PastEvent(
                        program=enrolled[code].program,
                        kind=kind,
                        starts_at=starts,
                        ends_at=starts + timedelta(minutes=minutes),
                        outcome=outcome,
                        night=night,
                    )
                )
    return sorted(past, key=lambda item: item.starts_at)


def _slots(start: datetime, end: datetime) -> list[datetime]:
    step = timedelta(minutes=15)
    count = int((end - start) / step)
    return [start + index * step for index in range(count)]


def _baseline_kw(event: _PastEvent, full_kw: float) -> list[float]:
    """Charging at full power from plug-in until the need is met, per event slot."""
    if event.kind == GridEvent.Kind.EXPORT_REQUEST:
        return [0.0] * len(_slots(event.starts_at, event.ends_at))  # the plan: no peak charging
    room = event.night.need_kwh
    line = []
    for _ in _slots(event.starts_at, event.ends_at):
        kw = max(0.0, min(full_kw, room / 0.25))
        room -= kw * 0.25
        line.append(round(kw, 3))
    return line


def _charging_readings(
    vehicle: Vehicle, nights: list[_Night], past: list[_PastEvent], *, owner: User
) -> list[VehicleReading]:
    """Telemetry as the car would have reported it: plug-in, a reading every 15 minutes while
    charging (or held, or exporting, in an event), done, unplugged at departure."""
    from programs.services import schedule_for_owner

    schedule = schedule_for_owner(owner)
    cheapest = min([schedule.default_price, *(p.price for p in schedule.periods)])
    full_kw = float(vehicle.max_ac_kw)
    battery = float(vehicle.battery_kwh)
    events = {id(item.night): item for item in past}
    readings: list[VehicleReading] = []

    def read(at: datetime, power_kw: float, *, plugged: bool, soc: float) -> None:
        state = "charging" if power_kw > 0 else "stopped"
        if power_kw < 0:
            state = "discharging"
        readings.append(
            VehicleReading(
                vehicle=vehicle,
                recorded_at=at,
                received_at=at + timedelta(seconds=20),
                source=VehicleReading.Source.POLL,
                soc_pct=round(min(100.0, max(5.0, soc)), 1),
                plugged_in=plugged,
                charging_state=state if plugged else "",
                power_kw=round(power_kw, 3),
            )
        )

    step = timedelta(minutes=15)
    for night in nights:
        soc = max(20.0, 80 - night.need_kwh / battery * 100)
        remaining = night.need_kwh
        read(night.plug_at, 0.0, plugged=True, soc=soc)
        event = events.get(id(night))
        at = night.plug_at.replace(second=0, microsecond=0)
        at -= timedelta(minutes=at.minute % 15)
        at += step
        if event is not None:
            baseline = _baseline_kw(event, full_kw)
            for index, slot in enumerate(_slots(event.starts_at, event.ends_at)):
                if event.kind == GridEvent.Kind.EXPORT_REQUEST:
                    kw = -min(full_kw, 7.0)
                elif event.outcome == "opted_out":
                    kw = min(baseline[index], remaining / 0.25)
                elif event.outcome == "partial":
                    kw = baseline[index] / 2
                else:
                    kw = 0.0
                if event.outcome == "missing" and index in (1, 2):
                    continue  # the car did not report: nothing is recorded for these slots
                read(slot + timedelta(minutes=2), kw, plugged=True, soc=soc)
                remaining = max(0.0, remaining - kw * 0.25)
                soc += kw * 0.25 / battery * 100
            at = event.ends_at
        start = at
        if not night.boost:  # wait for the cheapest band, as the plan does
            while schedule.import_prices(start=start, slots=1, time_zone=owner.time_zone)[
                0
            ] > cheapest + 1e-9 and start < night.depart_at - timedelta(hours=3):
                start += step
        at = start
        while remaining > 1e-6 and at < night.depart_at:
            kw = min(full_kw, remaining / 0.25)
            read(at + timedelta(minutes=2), kw, plugged=True, soc=soc)
            remaining -= kw * 0.25
            soc += kw * 0.25 / battery * 100
            at += step
        read(at + timedelta(minutes=2), 0.0, plugged=True, soc=soc)
        read(night.depart_at, 0.0, plugged=False, soc=soc)
    return readings


def _record_event(item: _PastEvent, *, vehicle: Vehicle, enrollment) -> GridEvent:
    """The past event as it stands after it ran: completed, the car's participation with its
    commitment, any opt-out, and the baseline recorded when it started."""
    full_kw = float(vehicle.max_ac_kw)
    slots = len(_slots(item.starts_at, item.ends_at))
    notice = timedelta(days=1) if item.kind == GridEvent.Kind.IMPORT_CAP else timedelta(hours=4)
    event = GridEvent.objects.create(
        program=item.program,
        kind=item.kind,
        status=GridEvent.Status.COMPLETED,
        starts_at=item.starts_at,
        ends_at=item.ends_at,
        target_kw=150.0,
        notified_at=item.starts_at - notice,
        source=HISTORY_SOURCE,
    )
    export = item.kind == GridEvent.Kind.EXPORT_REQUEST
    EventParticipation.objects.create(
        event=event,
        vehicle=vehicle,
        enrollment=enrollment,
        committed_kw=[min(full_kw, 7.0) if export else 0.0] * slots,
        opted_out_at=(
            item.starts_at - timedelta(minutes=50)
            if item.outcome in ("opted_out", "partial")
            else None
        ),
        keep_soc_pct=60 if item.outcome == "partial" else None,
        baseline_kw=_baseline_kw(item, full_kw),
    )
    return event
