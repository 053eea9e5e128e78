"""The program manager's flexibility dashboard in the browser, after signing in with a password
and an authenticator-app code (the admin requires MFA): the figures render and the README's
screenshot is taken from it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import reverse
from playwright.sync_api import expect

from accounts.roles import make_program_manager
from programs.models import Enrollment
from tests.browser.checks import screenshot
from tests.browser.conftest import DESKTOP, open_page
from tests.factories import UserFactory, VehicleFactory
from tests.programs.admin_fixtures import build_side, grant_manager_permissions
from tests.programs.factories import EnrollmentFactory
from tests.totp import totp
from vehicles.models import VehicleReading

pytestmark = pytest.mark.django_db(transaction=True)
MANAGER_PASSWORD = "grid-has-room-at-night-7"


def _fleet(side, cars: int = 6) -> None:
    """Plugged-in cars enrolled in the utility's program, some able to send energy back."""
    now = datetime.now(UTC)
    for n in range(cars):
        v2g = n % 3 == 0
        vehicle = VehicleFactory(
            owner__service_zip=side.loop.zip_codes[0] if n % 2 else side.north.zip_codes[0],
            v2g_capable=v2g,
            preference__v2g_consent=v2g,
            preference__override_departure_at=now + timedelta(hours=8 + n),
            preference__override_target_soc_pct=80,
        )
        EnrollmentFactory(program=side.v2g_program if v2g else side.program, vehicle=vehicle)
        VehicleReading.objects.create(
            vehicle=vehicle,
            recorded_at=now - timedelta(minutes=3),
            source=VehicleReading.Source.POLL,
            soc_pct=40 + 5 * n,
            plugged_in=True,
        )


def test_manager_signs_in_with_mfa_and_sees_the_flexibility_dashboard(contexts, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    side = build_side("Lakeshore Electric", zips=("60601", "60614"))
    _fleet(side)
    assert Enrollment.objects.filter(program__utility=side.utility).count() >= 6
    grant_manager_permissions()
    manager = UserFactory(email="manager@lakeshore.test", password=MANAGER_PASSWORD)
    make_program_manager(user=manager)
    side.utility.managers.add(manager)
    secret = generate_totp_secret()
    TOTP.activate(manager, secret)

    page = open_page(contexts(DESKTOP))
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(manager.email)
    page.locator("input[name=password]").fill(MANAGER_PASSWORD)
    page.locator("form button[type=submit]").first.click()
    code = page.locator("input[name=code]")
    expect(code).to_be_visible()
    with time_machine.travel(time.time(), tick=False):  # not across a 30-s step boundary
        value = totp(secret)
    code.fill(value)
    page.locator("form button[type=submit]").first.click()
    page.goto(reverse("admin:programs_flexibility"))
    expect(page.get_by_role("heading", name="Available over the next 48 hours")).to_be_visible()
    expect(page.get_by_role("heading", name="By region and feeder")).to_be_visible()
    expect(page.locator("main, #content").first).to_contain_text("Loop")
    screenshot(page, "manager-flexibility", DESKTOP)
