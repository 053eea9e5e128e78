"""The world of the isolation matrix (DESIGN.md I6): two owners, two utilities, their program
managers and their utility API clients, each side holding one object of every kind.

Owner A lives in utility 1's territory, owner B in utility 2's. Every object of a side carries a
marker (`ALPHA` / `BRAVO` in names, distinct VINs and amounts) so a test can say "B's page never
shows anything of A's" by searching the body. Built through the services where one exists (an
enrollment through `enrollments.enroll`, so its joining bonus lands in the ledger), otherwise as the
rows a service would leave.
"""

from __future__ import annotations

import base64
import importlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.apps import apps as django_apps
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.notifications import push
from accounts.notifications.kinds import Kind
from accounts.notifications.models import Notification
from programs import audit, enrollments
from programs.api import services as api_services
from programs.api.models import ApiClient
from programs.models import (
    ChargingPlan,
    Enrollment,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    Tariff,
    Utility,
)
from programs.openadr.models import VtnLink
from tests.conftest import DEFAULT_PASSWORD
from tests.factories import UserFactory, VehicleFactory
from tests.programs.admin_fixtures import sign_in_manager
from tests.programs.conftest import make_program
from tests.programs.factories import (
    FeederFactory,
    GridEventFactory,
    TariffFactory,
    VehicleReadingFactory,
)
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import Charger
from vehicles.models import Vehicle

UTILITY_API = "/api/utility/v1"


def http_client() -> Client:
    """A test client that answers a server error as a 500 (so a matrix can list it) instead of
    raising it into the test."""
    return Client(raise_request_exception=False)


@dataclass
class Side:
    """One owner and the utility whose territory they live in, with one object of every kind."""

    tag: str  # "ALPHA" or "BRAVO": appears in this side's names
    utility: Utility
    feeder: Feeder
    tariff: Tariff
    program: Program
    owner: User
    vehicle: Vehicle
    charger: Charger
    pairing_code: str
    enrollment: Enrollment
    event: GridEvent
    participation: EventParticipation
    notification: Notification
    plan: ChargingPlan
    audit_entry: Any
    vtn_link: VtnLink
    bonus_cents: int
    api_client: ApiClient | None = None
    api_token: str = ""
    manager: User | None = None
    owner_http: Client = field(default_factory=lambda: http_client())
    manager_http: Client = field(default_factory=lambda: http_client())
    api_http: Client = field(default_factory=lambda: http_client())

    def owner_markers(self) -> list[str]:
        """Strings only this side's owner's private rows put on a page or in a JSON body."""
        return [
            str(self.vehicle.pk),
            self.vehicle.vin,
            self.owner.email,
            f"Ioniq {self.tag}",
            self.charger.charge_point_id,
            f"Grid event {self.tag}",  # the notification's title
            f"{self.bonus_cents / 100:.2f}",  # the joining bonus in the ledger CSV
            f">${self.bonus_cents // 100}<",  # and on the earnings pages
        ]

    def own_markers(self) -> list[str]:
        """What the owner's own pages show (positive control): private rows and their money."""
        return [*self.owner_markers(), f"Program {self.tag}"]

    def utility_markers(self) -> list[str]:
        """Strings only this side's utility's rows put on an admin page or an API body."""
        return [
            self.utility.name,
            self.feeder.code,
            self.feeder.region,
            self.program.code,
            self.tariff.name,
            self.audit_entry.action,
            f"VTN {self.tag}",
        ]


def build_side(tag: str, *, zip_code: str, bonus_cents: int) -> Side:
    slug = tag.lower()
    utility = Utility.objects.create(name=f"Utility {tag}", slug=f"utility-{slug}")
    feeder = FeederFactory(
        utility=utility, code=f"feeder-{slug}", region=f"Region {tag}", zip_codes=[zip_code]
    )
    tariff = TariffFactory(utility=utility, name=f"Tariff {tag}")
    program = make_program(utility, code=f"program-{slug}", name=f"Program {tag}")
    incentives = {"per_event_cents": 200, "per_kwh_cents": 25}
    program.terms.update(incentives={**incentives, "enrollment_bonus_cents": bonus_cents})
    owner = UserFactory(email=f"owner-{slug}@example.com", service_zip=zip_code)
    vehicle = VehicleFactory(owner=owner, make="Hyundai", model=f"Ioniq {tag}")
    VehicleReadingFactory(vehicle=vehicle, soc_pct=41.0, plugged_in=True)
    enrollment = enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    assert enrollment.status == Enrollment.Status.ACTIVE, enrollment.status_reason
    event = GridEventFactory(
        program=program, feeder=feeder, status=GridEvent.Status.SCHEDULED, target_kw=5
    )
    participation = EventParticipation.objects.create(
        event=event, enrollment=enrollment, vehicle=vehicle
    )
    provisioned = charger_services.provision_charger(
        charge_point_id=f"CP-{tag}-{uuid.uuid4().hex[:8]}", name=f"Garage {tag}"
    )
    pairing_code = provisioned.pairing_code  # what the installer hands the owner
    charger = charger_services.claim_charger(
        owner=owner, charge_point_id=provisioned.charger.charge_point_id, pairing_code=pairing_code
    )
    charger_services.pair_vehicle(charger=charger, vehicle=vehicle)
    now = timezone.now()
    notification = Notification.objects.create(
        owner=owner,
        kind=Kind.EVENT_ANNOUNCED,
        title=f"Grid event {tag}",
        body=f"Program {tag} asks your car to pause.",
        url=f"/vehicles/{vehicle.pk}/",
        created_at=now,
    )
    plan = ChargingPlan.objects.create(
        vehicle=vehicle,
        version=1,
        trigger="plug_in",
        start=now.replace(minute=0, second=0, microsecond=0),
        power_kw=[7.2, 7.2, 0.0, 0.0],
        soc=[0.41, 0.44, 0.47, 0.47, 0.47],
        reasons=["cheap", "cheap", "target_met", "target_met"],
        import_price=[0.08, 0.08, 0.2, 0.2],
        departure_at=now + timedelta(hours=1),
        departure_slot=4,
        target_soc_pct=47,
        min_soc_pct=30,
        cost=0.23,
        why=f"Plan {tag}: charging while power is cheap.",
    )
    audit_entry = audit.record(
        utility=utility, actor=None, action=f"event.create.{slug}", target=event
    )
    vtn_link = VtnLink.objects.create(
        utility=utility,
        name=f"VTN {tag}",
        base_url=f"https://vtn-{slug}.example/openadr3",
        token_url=f"https://vtn-{slug}.example/token",
        client_id=f"ven-{slug}",
        client_secret="s3cret",
        program=program,
    )
    return Side(
        tag=tag,
        utility=utility,
        feeder=feeder,
        tariff=tariff,
        program=program,
        owner=owner,
        vehicle=vehicle,
        charger=charger,
        pairing_code=pairing_code,
        enrollment=enrollment,
        event=event,
        participation=participation,
        notification=notification,
        plan=plan,
        audit_entry=audit_entry,
        vtn_link=vtn_link,
        bonus_cents=bonus_cents,
    )


def _api_token(http: Client, api_client: ApiClient, secret: str) -> str:
    """Client credentials at the real token endpoint (RFC 6749 §4.4)."""
    basic = base64.b64encode(f"{api_client.application.client_id}:{secret}".encode()).decode()
    response = http.post(
        f"{UTILITY_API}/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def reauthenticate(http: Client) -> None:
    """Confirm the password again, as allauth asks before security pages (passkey edit/remove):
    such pages then really look their object up instead of asking for the password first."""
    response = http.post(reverse("account_reauthenticate"), {"password": DEFAULT_PASSWORD})
    assert response.status_code == 302, response.content.decode()[-2000:]


def sign_in(side: Side) -> None:
    """Sign the side's owner in (session), its program manager in (password + TOTP, as the
    MFA-gated admin requires) and fetch its API client's bearer token."""
    side.owner_http.force_login(side.owner)
    side.manager = sign_in_manager(
        side.manager_http, side.utility, email=f"manager-{side.tag.lower()}@example.com"
    )
    reauthenticate(side.owner_http)
    reauthenticate(side.manager_http)
    side.api_client, secret = api_services.create_api_client(
        utility=side.utility, name=f"Grid ops {side.tag}", scopes=["read", "dispatch"]
    )
    side.api_token = _api_token(side.api_http, side.api_client, secret)
    side.api_http.defaults["HTTP_AUTHORIZATION"] = f"Bearer {side.api_token}"


@dataclass
class World:
    a: Side  # owner A, utility 1, manager 1, API client 1
    b: Side  # owner B, utility 2, manager 2, API client 2
    operator: Client  # a superuser (password + TOTP): positive control of operator-only pages

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a


def grant_settlement_permissions() -> None:
    """What migration 0005 gives the Program managers group (a transactional test elsewhere in
    the run flushes data migrations' rows; admin_fixtures re-grants 0003's only)."""
    migration = importlib.import_module("programs.migrations.0005_settlement_report_permissions")
    migration.grant(django_apps, None)


def build_world() -> World:
    world = World(
        a=build_side("ALPHA", zip_code="60601", bonus_cents=5100),
        b=build_side("BRAVO", zip_code="10001", bonus_cents=7300),
        operator=http_client(),
    )
    grant_settlement_permissions()
    push.vapid()  # the server's own push key, made on first use: not a side effect of a request
    sign_in(world.a)
    sign_in(world.b)
    operator = sign_in_manager(world.operator, world.a.utility, email="operator@example.com")
    world.a.utility.managers.remove(operator)
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    return world
