"""The phone profile's front-end budgets (docs/benchmarks.md, "Front end"): no layout shift from
late content (the htmx plan fragment, the Plotly charts), and the JavaScript and CSS each main
page loads stay within their byte budgets. Timings are benchmarks (bench/browser.py), never
asserted here."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, open_page

pytestmark = pytest.mark.django_db(transaction=True)

KB = 1024
# Uncompressed bytes (what the phone parses), per page. Plotly is the vehicle page's bulk.
BUDGETS = {
    "home": {"js": 80 * KB, "css": 32 * KB},
    "vehicle": {"js": 5_000 * KB, "css": 40 * KB},
    "programs": {"js": 80 * KB, "css": 32 * KB},
}

# Sums every layout shift not caused by input (the CLS definition, one session window is enough
# for a page this short), from the first paint on.
_OBSERVE_SHIFTS = """
window.__layoutShifts = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (!entry.hadRecentInput) window.__layoutShifts.push({value: entry.value,
      sources: (entry.sources || [])
        .map((s) => s.node ? (s.node.id || s.node.className || s.node.nodeName) : "?")});
  }
}).observe({type: "layout-shift", buffered: true});
"""

_BYTES = """() => {
  const sizes = {js: 0, css: 0, files: []};
  for (const entry of performance.getEntriesByType("resource")) {
    const path = new URL(entry.name).pathname;
    const kind = path.endsWith(".js") ? "js" : path.endsWith(".css") ? "css" : null;
    if (!kind) continue;
    sizes[kind] += entry.decodedBodySize;
    sizes.files.push(path + " " + entry.decodedBodySize);
  }
  return sizes;
}"""


def _settled(page: Page) -> None:
    """Wait until late content is in: the plan fragment swapped in and every chart drawn, then
    two animation frames for any shift to be recorded."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[aria-busy=true]') && "
        "[...document.querySelectorAll('.chart[data-figure]')]"
        ".every((c) => c.classList.contains('js-plotly-plot'))"
    )
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


@pytest.fixture
def phone(contexts, owner_with_car):
    # No service worker: the numbers are the network's, not a cache's.
    context = contexts(PHONE, service_workers="block")
    context.add_cookies([owner_with_car.session_cookie])
    context.add_init_script(_OBSERVE_SHIFTS)
    return open_page(context)


@pytest.mark.parametrize("name", BUDGETS)
def test_no_layout_shift_and_bytes_within_budget(phone, owner_with_car, name):
    url = {
        "home": "/",
        "vehicle": f"/vehicles/{owner_with_car.vehicle.pk}/",
        "programs": "/programs/",
    }[name]
    phone.goto(url)
    _settled(phone)
    if name == "vehicle":
        expect(phone.locator("#plan-chart.js-plotly-plot")).to_be_visible()
        expect(phone.locator("#day-chart.js-plotly-plot")).to_be_visible()
    shifts = phone.evaluate("() => window.__layoutShifts")
    assert shifts == [], f"{name}: layout shifts after first paint: {shifts}"
    sizes = phone.evaluate(_BYTES)
    budget = BUDGETS[name]
    assert sizes["js"] <= budget["js"], f"{name}: {sizes['js']} B of JavaScript: {sizes['files']}"
    assert sizes["css"] <= budget["css"], f"{name}: {sizes['css']} B of CSS: {sizes['files']}"
    assert sizes["js"] > 0, "no JavaScript measured"
    assert sizes["css"] > 0, "no CSS measured"


def test_the_shift_observer_sees_late_content_push_the_page(phone, owner_with_car):
    """The measurement is not vacuous: a banner inserted above the cards after first paint is a
    layout shift the observer records."""
    phone.goto("/")
    _settled(phone)
    phone.evaluate(
        "() => { const late = document.createElement('p'); late.style.height = '120px';"
        " late.textContent = 'late'; document.getElementById('main').prepend(late); }"
    )
    phone.wait_for_function("() => window.__layoutShifts.length > 0")
    assert sum(shift["value"] for shift in phone.evaluate("() => window.__layoutShifts")) > 0
