"""Demo data for `make run` (idempotent): a utility with three feeders, a time-of-use tariff and
three programs, and a fleet of simulated cars linked through the simulated vehicle cloud's real
OAuth consent flow, enrolled, with a grid event tonight — so a manager sees a living dashboard.

Called by chargescape's seed_demo command (utility and programs) and by runstack once the
simulated cloud answers (the fleet).
"""

from __future__ import annotations

import logging
import re
import secrets
import zoneinfo
from datetime import datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit

import requests
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from programs import enrollments, events
from programs.models import Feeder, GridEvent, Program, ProgramTerms, Tariff, Utility
from vehicles import oem
from vehicles import services as vehicle_services
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

UTILITY_SLUG = "golden-gate"
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
    return utility


def seed_fleet(*, count: int) -> int:
    """Link `count` demo owners' cars through the simulated cloud's consent page (the same OAuth
    flow an owner's browser goes through), set their preferences and enroll them. Idempotent:
    owners who already have a car are skipped. Returns the number of cars linked now."""
    utility = Utility.objects.get(slug=UTILITY_SLUG)
    adapter = oem.get_adapter("smartcar")
    redirect_uri = oem.providers()["smartcar"]["REDIRECT_URI"]
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
        url = adapter.authorize_url(state=secrets.token_urlsafe(16), redirect_uri=redirect_uri)
        page = session.get(url, timeout=10)
        page.raise_for_status()
        consent = re.search(r'name=consent value="([^"]+)"', page.text)[1]
        cars = re.findall(r'name=vehicle value="([^"]+)"', page.text)
        free = [car for car in cars if car not in taken]
        if not free:
            logger.info("demo fleet: the simulated cloud has no unlinked car left")
            break
        answer = session.post(
            url.split("?")[0],
            data={"consent": consent, "action": "approve", "vehicle": free[:1]},
            allow_redirects=False,
            timeout=10,
        )
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        for vehicle in vehicle_services.link_vehicles(
            owner=owner, provider="smartcar", code=code, redirect_uri=redirect_uri
        ):
            taken.add(vehicle.provider_vehicle_id)
            _prefer_and_enroll(vehicle, utility=utility, index=index)
            linked += 1
    return linked


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
