"""The owner's journey in a real browser, at a phone (390×844, touch) and at desktop width:
sign up → verify the emailed link → link a simulated car → set departure 07:00 / 80 % / floor
30 % → tonight's plan chart with its text equivalent → enroll in a program → an event notice
(banner and bell) → opt out → boost → earnings after a settled event → unlink. Each step asserts
what the owner sees; every main page passes axe-core and the keyboard walk, and is screenshotted.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from programs import events, settlement
from programs.models import EventParticipation, GridEvent
from tests.browser.checks import Audit
from tests.browser.conftest import (
    OWNER_PASSWORD,
    OWNER_ZIP,
    PROFILES,
    SCREENSHOTS,
    Profile,
    open_page,
)
from vehicles.models import Vehicle, VehicleReading

pytestmark = pytest.mark.django_db(transaction=True)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _tab(page: Page, profile: Profile, label: str) -> None:
    """Go to a tab the way this profile's owner does: the bottom tab bar on a phone (a tap), the
    top navigation on a desktop (a click)."""
    nav = page.get_by_role("navigation", name="Tabs" if profile.phone else "Main")
    link = nav.get_by_role("link", name=label, exact=True)
    if profile.phone:
        link.tap()
    else:
        link.click()
    expect(nav.get_by_role("link", name=label, exact=True)).to_have_attribute(
        "aria-current", "page"
    )


def _sign_up(page: Page, email: str) -> None:
    page.goto("/accounts/signup/")
    page.locator("#id_email").fill(email)
    page.locator("#id_password1").fill(OWNER_PASSWORD)
    page.locator("#id_password2").fill(OWNER_PASSWORD)
    page.get_by_role("button", name=re.compile("Sign up", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Verify your email", re.I))


def _confirm_email(page: Page, email: str) -> None:
    sent = [message for message in mail.outbox if email in message.to]
    assert len(sent) == 1, [m.subject for m in mail.outbox]
    path = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", sent[0].body)[1]
    page.goto(path)
    page.get_by_role("button", name="Confirm").click()


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_owner_journey(contexts, cloud, lakeshore, eager_celery, axe_source, profile):
    """A new owner goes from sign-up to earnings and back to no car, seeing each step."""
    page = open_page(contexts(profile))
    audit = Audit(profile, axe_source)
    email = f"dana.{profile.name}@example.com"

    # Sign up, then the emailed link signs in.
    _sign_up(page, email)
    if profile.phone:
        audit(page, "verify-email")
    _confirm_email(page, email)
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello")
    expect(page.get_by_role("heading", name="Nothing to manage yet")).to_be_visible()
    audit(page, "home-empty")

    # The profile: ZIP code (programs depend on it) and time zone.
    _tab(page, profile, "Account")
    page.get_by_label(re.compile("ZIP", re.I)).fill(OWNER_ZIP)
    page.get_by_label(re.compile("time zone", re.I)).select_option("America/Chicago")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator(".messages")).to_contain_text(re.compile("saved", re.I))
    audit(page, "account")

    # Link a car through the automaker's consent page.
    _tab(page, profile, "Vehicles")
    expect(page.get_by_role("heading", name="No vehicles linked yet")).to_be_visible()
    page.get_by_role("link", name="Link a car").first.click()
    audit(page, "link-a-car")
    page.get_by_role("button", name="Nissan").click()
    expect(page).to_have_url(re.compile(f"^{re.escape(cloud.url)}"))
    page.locator("input[name=vehicle]").first.check()
    page.locator("button[value=approve], input[value=approve]").first.click()
    expect(page).to_have_url(re.compile(r"/vehicles/$"))
    user = User.objects.get(email=email)
    vehicle = Vehicle.objects.get(owner=user)
    card = page.locator(f'[data-vehicle="{vehicle.pk}"]')
    expect(card.get_by_role("heading", name=vehicle.display_name)).to_be_visible()
    expect(card).to_contain_text("Plugged in")
    expect(card).to_contain_text(f"VIN ••••{vehicle.vin[-4:]}")
    audit(page, "vehicles")

    # Departure 07:00 with 80 % every day, never below 30 %.
    card.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(vehicle.display_name)
    for day in WEEKDAYS:
        page.get_by_label(f"{day.title()} departure").fill("07:00")
        page.get_by_label(f"{day.title()} target (%)").fill("80")
    page.get_by_label("Minimum charge (%)").fill("30")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.locator(".messages")).to_contain_text(re.compile("saved|updated", re.I))
    expect(page.get_by_text(re.compile(r"Next departure:.*07:00 with 80 %"))).to_be_visible()
    preference = vehicle.preference
    preference.refresh_from_db()
    assert preference.min_soc_pct == 30

    # Tonight's plan: the chart, the "why" sentence and the table.
    plan = page.locator("section.plan")
    expect(plan.locator(".why")).to_contain_text(re.compile(r"\w"))
    why = plan.locator(".why").inner_text()
    expect(plan.locator("#plan-chart.js-plotly-plot")).to_be_visible()
    expect(plan.locator("#plan-chart")).to_have_attribute("aria-label", why)
    plan.get_by_text("The plan as a table").click()
    rows = plan.locator("table.data tbody tr")
    expect(rows.first).to_contain_text(re.compile(r"Charge.*kWh"))
    expect(page.locator("#day-chart")).to_have_attribute("role", "img")
    if profile.phone:
        plan.screenshot(path=SCREENSHOTS / "vehicle-plan.png")
    audit(page, "vehicle")

    # Enroll in the utility's program.
    _tab(page, profile, "Programs")
    offer = page.locator(".program-card", has_text="Peak Saver")
    expect(offer).to_contain_text("Lakeshore Electric")
    audit(page, "programs")
    offer.get_by_role("link", name="Join").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Peak Saver")
    page.get_by_label(re.compile("accept", re.I)).check()
    audit(page, "program-join")
    page.get_by_role("button", name="Join Peak Saver").click()
    expect(page.locator(".messages")).to_contain_text(re.compile("Peak Saver"))
    _tab(page, profile, "Programs")
    expect(page.locator(".program-card", has_text="Peak Saver")).to_contain_text("Active")

    # The utility calls an event for this evening: the owner hears of it in the app.
    event = events.schedule_event(
        event=events.create_event(
            program=lakeshore,
            kind=GridEvent.Kind.IMPORT_CAP,
            starts_at=_next_quarter() + timedelta(hours=2),
            ends_at=_next_quarter() + timedelta(hours=3),
            target_kw=5,
            actor=None,
        ),
        actor=None,
    )
    participation = EventParticipation.objects.get(event=event, vehicle=vehicle)
    _tab(page, profile, "Home")
    banner = page.locator(".event-banner")
    expect(banner).to_contain_text("Grid event coming · Lakeshore Electric")
    expect(banner).to_contain_text(f"{vehicle.display_name} pauses or slows charging")
    expect(banner).to_contain_text("Expected earnings about")
    bell = page.locator("a.bell")
    expect(bell).to_have_attribute("aria-label", re.compile(r"Notifications, \d+ unread"))
    audit(page, "home")
    bell.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Notifications"))
    expect(page.locator("main")).to_contain_text("Peak Saver")
    audit(page, "notifications")

    # Opt out of it, from the banner.
    _tab(page, profile, "Home")
    page.locator(".event-banner").get_by_role("link", name="Opt out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Opt out of this event?")
    expect(page.locator("main")).to_contain_text("opt-outs left this month")
    audit(page, "opt-out")
    page.get_by_label("Skip this event: charge as usual").check()
    page.get_by_role("button", name="Opt out", exact=True).click()
    expect(page.locator(".event-banner")).to_contain_text("You opted out of this one.")
    participation.refresh_from_db()
    assert participation.opted_out_at is not None

    # Boost: charge now, whatever the plan says.
    _tab(page, profile, "Vehicles")
    page.locator(f'[data-vehicle="{vehicle.pk}"]').get_by_role("link").first.click()
    page.get_by_role("button", name="⚡ Charge now").click()
    expect(page.locator(".messages")).to_contain_text("Charging now at full power up to 80 %")
    expect(page.locator(".quick-actions")).to_contain_text("Boost on")
    expect(page.get_by_role("button", name="Stop boosting")).to_be_visible()

    # An earlier event the car took part in is settled: the money shows under Earnings.
    earned = _settled_event(lakeshore, vehicle)
    _tab(page, profile, "Earnings")
    main = page.locator("main")
    expect(main).to_contain_text(f"${earned / 100:.2f}")
    expect(main).to_contain_text("Peak Saver")
    audit(page, "earnings")

    # Unlink: the car goes, the history stays.
    _tab(page, profile, "Vehicles")
    page.locator(f'[data-vehicle="{vehicle.pk}"]').get_by_role("link").first.click()
    page.get_by_role("button", name=f"Unlink {vehicle.display_name}").click()
    expect(page.locator(".messages")).to_contain_text(re.compile("unlinked", re.I))
    expect(page.locator(f'[data-vehicle="{vehicle.pk}"]')).to_have_count(0)
    vehicle.refresh_from_db()
    assert vehicle.link_state != Vehicle.LinkState.LINKED

    assert page.errors == [], page.errors  # type: ignore[attr-defined]
    audit.assert_clean()


def _next_quarter():
    now = timezone.now()
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0) + timedelta(
        minutes=15
    )


def _settled_event(program, vehicle) -> int:
    """A one-hour event that ended yesterday, the car metered at 3.6 kW against its 7.2 kW
    baseline, settled as the beat would (programs.settlement). Returns the cents earned:
    $2 + 25 ¢ × 3.6 kWh = $2.90."""
    starts = _next_quarter() - timedelta(days=1, hours=3)
    event = GridEvent.objects.create(
        program=program,
        kind=GridEvent.Kind.IMPORT_CAP,
        status=GridEvent.Status.COMPLETED,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        target_kw=10,
        notified_at=starts - timedelta(hours=2),
    )
    EventParticipation.objects.create(
        event=event,
        vehicle=vehicle,
        enrollment=vehicle.enrollments.get(),
        baseline_kw=[7.2] * 4,
    )
    for slot in range(4):
        VehicleReading.objects.create(
            vehicle=vehicle,
            recorded_at=starts + timedelta(minutes=15 * slot + 5),
            source=VehicleReading.Source.POLL,
            soc_pct=50,
            plugged_in=True,
            power_kw=3.6,
        )
    settlement.settle_event(event_id=event.pk)
    return 290
