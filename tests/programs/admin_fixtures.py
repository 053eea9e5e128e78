"""Fixtures for the program manager admin tests: two utilities side by side (ours and another
one, to prove isolation), and a program manager of ours signed in through password + TOTP, as
the MFA-gated admin requires. Import explicitly: `from tests.programs.admin_fixtures import …`.
"""

import importlib
import time
from dataclasses import dataclass

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.apps import apps as django_apps
from django.urls import reverse

from accounts.models import User
from accounts.roles import make_program_manager
from programs.models import Enrollment, Feeder, GridEvent, Program, Utility
from tests.conftest import DEFAULT_PASSWORD
from tests.factories import UserFactory, VehicleFactory
from tests.programs.factories import (
    EnrollmentFactory,
    FeederFactory,
    GridEventFactory,
    ProgramFactory,
    TariffFactory,
    UtilityFactory,
)
from tests.totp import totp


@dataclass
class Side:
    """One utility with two feeders in two regions, a DR program, a V2G program, an owner with
    an active and a pending enrollment, and a draft event."""

    utility: Utility
    loop: Feeder
    north: Feeder
    program: Program
    v2g_program: Program
    owner: User
    active: Enrollment
    pending: Enrollment
    event: GridEvent


def build_side(name: str, *, zips: tuple[str, str]) -> Side:
    slug = name.lower().replace(" ", "-")
    utility = UtilityFactory(name=name, slug=slug)
    loop = FeederFactory(utility=utility, code=f"{slug}-loop", region="Loop", zip_codes=[zips[0]])
    north = FeederFactory(
        utility=utility, code=f"{slug}-north", region="North", zip_codes=[zips[1]]
    )
    TariffFactory(utility=utility, name=f"{name} EV TOU")
    program = ProgramFactory(utility=utility, code=f"{slug}-peak", name=f"{name} Peak Saver")
    v2g_program = ProgramFactory(
        utility=utility,
        code=f"{slug}-v2g",
        name=f"{name} Grid Return",
        kind=Program.Kind.V2G,
        requires_v2g=True,
    )
    owner = UserFactory(email=f"owner@{slug}.test", service_zip=zips[0])
    active = EnrollmentFactory(
        program=program, vehicle=VehicleFactory(owner=owner, make="Nissan", model="Leaf")
    )
    pending = EnrollmentFactory(
        program=program,
        vehicle=VehicleFactory(owner=owner, make="Kia", model=f"EV6 {slug}"),
        status=Enrollment.Status.PENDING,
        status_reason="Waiting for the utility's review.",
    )
    event = GridEventFactory(program=program, target_kw=5)
    return Side(utility, loop, north, program, v2g_program, owner, active, pending, event)


FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # hashing is not under test


@pytest.fixture
def ours(db, settings) -> Side:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return build_side("Lakeshore Electric", zips=("60601", "60614"))


@pytest.fixture
def theirs(db, settings) -> Side:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return build_side("Hudson Power", zips=("10001", "10002"))


def grant_manager_permissions() -> None:
    """What migration 0003 gives the Program managers group. A transactional test (live_server)
    flushes every table, data migrations' rows included, so the group is granted again here."""
    migration = importlib.import_module("programs.migrations.0003_program_manager_permissions")
    migration.grant(django_apps, None)


def sign_in_manager(client, utility: Utility, *, email: str = "manager@lakeshore.test") -> User:
    """A program manager of `utility`, signed in with password and authenticator-app code."""
    grant_manager_permissions()
    user = UserFactory(email=email, password=DEFAULT_PASSWORD)
    make_program_manager(user=user)
    utility.managers.add(user)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    response = client.post(
        reverse("account_login"), {"login": user.email, "password": DEFAULT_PASSWORD}
    )
    assert response["Location"] == reverse("mfa_authenticate")
    # Frozen: a code computed just before a 30-s step boundary would be stale when checked.
    with time_machine.travel(time.time(), tick=False):
        response = client.post(reverse("mfa_authenticate"), {"code": totp(secret)})
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert client.get(reverse("admin:index")).status_code == 200
    return user


@pytest.fixture
def manager(client, ours) -> User:
    """Our utility's program manager, signed in on `client`."""
    return sign_in_manager(client, ours.utility)
