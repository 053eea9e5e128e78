"""Offline enough to open: after the owner has used the app once, the service worker serves the
shell and the last-known vehicle state when the network is down, with a clear "offline" badge;
a page never opened shows the offline page instead of the browser's error."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.checks import screenshot
from tests.browser.conftest import PHONE, open_page

pytestmark = pytest.mark.django_db(transaction=True)

CONTROLLED = (
    "() => navigator.serviceWorker.ready.then(() => Boolean(navigator.serviceWorker.controller))"
)


def test_the_app_opens_offline_with_the_last_known_state(contexts, owner_with_car):
    vehicle = owner_with_car.vehicle
    context = contexts(PHONE)
    context.add_cookies([owner_with_car.session_cookie])
    page = open_page(context)
    page.goto("/")
    page.wait_for_function(CONTROLLED)  # installed, activated, claimed this page
    expect(page.locator(".offline-badge")).to_have_count(0)
    page.reload()  # now through the service worker, which keeps a copy
    card = page.locator(f'[data-vehicle="{vehicle.pk}"]')
    expect(card).to_contain_text("Plugged in")
    page.goto(f"/vehicles/{vehicle.pk}/")
    expect(page.locator("section.plan .why")).to_have_text(owner_with_car.plan.why)
    expect(page.locator("#plan-chart.js-plotly-plot")).to_be_visible()
    page.goto("/")

    context.set_offline(True)
    page.reload()
    badge = page.locator(".offline-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_attribute("role", "status")
    expect(badge).to_contain_text("Offline")
    expect(page.get_by_role("navigation", name="Tabs")).to_be_visible()  # the shell
    card = page.locator(f'[data-vehicle="{vehicle.pk}"]')
    expect(card.get_by_role("heading", name="Blue Leaf")).to_be_visible()
    expect(card).to_contain_text("Plugged in")
    expect(card).to_contain_text("45%")
    screenshot(page, "offline-home", PHONE)

    # The car's page as last seen, plan and chart included (htmx fragment and Plotly cached).
    page.goto(f"/vehicles/{vehicle.pk}/")
    expect(page.locator(".offline-badge")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue Leaf")
    expect(page.locator("section.plan .why")).to_have_text(owner_with_car.plan.why)
    expect(page.locator("#plan-chart.js-plotly-plot")).to_be_visible()

    # Never opened: the offline page, not the browser's "no internet" error.
    page.goto("/programs/")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are offline")
    expect(page.locator(".offline-badge")).to_be_visible()

    # Back online: the badge goes without a reload.
    context.set_offline(False)
    expect(page.locator(".offline-badge")).to_have_count(0)
    assert not re.search(r"chrome-error", page.url)
    assert page.errors == [], page.errors  # type: ignore[attr-defined]
