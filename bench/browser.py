"""B-F1: the owner's dashboard renders within 1 s on the phone profile, on loopback (issue 12).

    python bench/browser.py [--loads 20] [--quick]

Creates a throw-away database (Django's test-database machinery, nothing touches real data) with
an owner, a plugged-in car at 45 % and tonight's plan; serves the app from Django's live-server
thread (static files included) and loads the pages in Debian's headless Chromium (Playwright,
/usr/bin/chromium) at 390×844 with touch, signed in by session cookie, the service worker
blocked so every load goes to the server. Each load is a fresh browser context (cold cache).

Measured in the browser (Performance API): first contentful paint and the load event of the
dashboard (/), and of the vehicle page (the plan fragment and two Plotly charts; reported, no
target). Baseline in the same run: the offline page (/offline/, the same shell with no query),
so the ratio says what the dashboard's own work adds. Target: dashboard first contentful paint
p95 ≤ 1,000 ms. Layout shift and byte budgets are asserted by tests/browser (docs/benchmarks.md).

Without DATABASE_URL / REDIS_URL run it through `python -m chargescape.embedded -- …` (as
`make bench` does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
# Playwright's sync API keeps an asyncio loop on this thread; the script itself is synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

import django

django.setup()

from django.db import connection  # noqa: E402

TARGET_FCP_MS = 1000.0
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
_TIMINGS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {fcp: fcp ? fcp.startTime : null, load: nav.loadEventEnd, ttfb: nav.responseStart};
}"""


def populate() -> str:
    """An owner with a car and its plan; returns the session id."""
    from django.test import Client

    from programs.services import replan_vehicle
    from tests.factories import UserFactory, VehicleFactory
    from vehicles.models import VehicleReading

    owner = UserFactory(first_name="Dana")
    vehicle = VehicleFactory(owner=owner, nickname="Blue Leaf")
    VehicleReading.objects.create(
        vehicle=vehicle,
        recorded_at=datetime.now(UTC),
        source=VehicleReading.Source.POLL,
        soc_pct=45,
        range_km=160,
        plugged_in=True,
        charge_limit_pct=100,
    )
    assert replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in") is not None
    client = Client()
    client.force_login(owner)
    return client.cookies["sessionid"].value, str(vehicle.pk)


def measure(browser, base_url: str, session: str, path: str, loads: int, wait: str | None):
    rows = []
    for _ in range(loads):
        context = browser.new_context(base_url=base_url, service_workers="block", **PHONE)
        context.add_cookies([{"name": "sessionid", "value": session, "url": base_url}])
        page = context.new_page()
        page.goto(path, wait_until="load")
        if wait:
            page.wait_for_selector(wait)
        page.wait_for_function(
            "() => performance.getEntriesByName('first-contentful-paint').length"
        )
        rows.append(page.evaluate(_TIMINGS))
        context.close()
    return rows


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summary(name: str, rows: list[dict]) -> tuple[float, float]:
    fcp = [row["fcp"] for row in rows]
    load = [row["load"] for row in rows]
    print(
        f"{name:<28} FCP median {statistics.median(fcp):6.0f} ms  p95 {p95(fcp):6.0f} ms   "
        f"load median {statistics.median(load):6.0f} ms  p95 {p95(load):6.0f} ms   "
        f"TTFB median {statistics.median(row['ttfb'] for row in rows):5.0f} ms"
    )
    return statistics.median(fcp), p95(fcp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 loads per page")
    args = parser.parse_args()
    loads = 5 if args.quick else args.loads

    import logging

    from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler
    from django.test.utils import setup_test_environment
    from playwright.sync_api import sync_playwright

    logging.getLogger("django.request").setLevel(logging.ERROR)  # /ws/live/ 404s: no ASGI here
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"test_{old_name}_bench_browser"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    class Server(LiveServerThread):
        def _create_server(self, connections_override=None):
            return self.server_class(
                (self.host, self.port),
                QuietWSGIRequestHandler,
                allow_reuse_address=False,
                connections_override=connections_override,
            )

    server = Server("127.0.0.1", StaticFilesHandler)
    server.daemon = True
    try:
        session, vehicle_id = populate()
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        base_url = f"http://127.0.0.1:{server.port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            measure(browser, base_url, session, "/", 2, None)  # warm the server and the OS
            print(f"phone 390×844, {loads} cold loads each, loopback")
            _, shell_p95 = summary(
                "baseline: offline shell",
                measure(browser, base_url, session, "/offline/", loads, None),
            )
            _, dashboard_p95 = summary(
                "dashboard /", measure(browser, base_url, session, "/", loads, None)
            )
            summary(
                "vehicle page (plan, charts)",
                measure(
                    browser,
                    base_url,
                    session,
                    f"/vehicles/{vehicle_id}/",
                    loads,
                    "#plan-chart.js-plotly-plot",
                ),
            )
            browser.close()
    finally:
        server.terminate()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    ok = dashboard_p95 <= TARGET_FCP_MS
    print(
        f"B-F1 dashboard first contentful paint p95 {dashboard_p95:.0f} ms "
        f"(target ≤ {TARGET_FCP_MS:.0f} ms), {dashboard_p95 / shell_p95:.2f}x the offline shell: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
