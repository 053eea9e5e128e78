"""The browser suite's world: Debian's headless Chromium driven by Playwright (sync API) against
pytest-django's `live_server`, at a phone profile (390×844, touch) and a desktop one; the simulated
vehicle cloud in-process with the Smartcar provider pointed at it; Celery tasks run eagerly inside
the server (the real worker and its queues are tested in tests/vehicles/control/faults); a
utility whose demand-response program is open to the owner's ZIP code.

Nothing is downloaded: Chromium is /usr/bin/chromium (`.ci/run` installs it), axe-core comes from
npm into .local/npm (the Makefile's install step). Screenshots go to .local/screenshots/.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from chargescape.celery import app as celery_app
from programs.models import Feeder, Program, Tariff, Utility
from tests.programs.conftest import make_program
from vehicles.sim.cloud import SimulatedCloud

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".local" / "screenshots"
AXE_JS = ROOT / ".local" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

OWNER_ZIP = "60601"  # Lakeshore Electric's Loop feeder
OWNER_PASSWORD = "plug-in-at-night-42"


@dataclass(frozen=True)
class Profile:
    name: str
    options: dict

    @property
    def phone(self) -> bool:
        return self.name == "phone"


PHONE = Profile(
    "phone",
    {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
        "user_agent": (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Mobile Safari/537.36"
        ),
    },
)
DESKTOP = Profile("desktop", {"viewport": {"width": 1280, "height": 800}})
PROFILES = {"phone": PHONE, "desktop": DESKTOP}


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(
            f"axe-core is missing ({AXE_JS.relative_to(ROOT)}). Install it with "
            "`npm install --no-save --prefix .local/npm axe-core@4.10.3` (the Makefile's install "
            "step does this when npm is on PATH; `.ci/run` installs node and npm from Debian).",
            pytrace=False,
        )
    return AXE_JS.read_text()


@pytest.fixture(scope="package")
def browser() -> Browser:
    """One Chromium for the package (package scope: set up after the session's test database,
    torn down before any other package's tests run in this process).

    Playwright's sync API keeps an asyncio loop registered on the main thread while it runs,
    which Django would take for async code and refuse ORM calls from; the test thread is
    synchronous, so the check is off exactly while the browser is up."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: install Debian's (`apt-get install -y chromium`, as "
            "`.ci/run` does) or point CHROMIUM at one. Playwright's own downloads are not used.",
            pytrace=False,
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage"],  # CI runs as root in a container
        )
        yield browser
        browser.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session", autouse=True)
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def new_context(browser: Browser, live_server, profile: Profile, **extra) -> BrowserContext:
    context = browser.new_context(
        base_url=live_server.url,
        locale="en-US",
        timezone_id="America/New_York",
        reduced_motion="reduce",
        **profile.options,
        **extra,
    )
    context.set_default_timeout(15_000)
    return context


@pytest.fixture(autouse=True)
def server_cache(settings):
    """A key prefix of the test's own for every thread, the live server's included: rate limits
    (one confirmation mail per address per 3 minutes) never carry over from an earlier run.
    Changing CACHES makes Django drop its per-thread cache connections, so each request thread
    builds its own with this prefix (tests/conftest.py's `isolated_cache` reaches only the test
    thread)."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"browser-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def eager_celery():
    """Tasks run inside the request that enqueues them (on commit), in the server's thread."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def cloud(settings, live_server):
    """Three simulated cars at real time (the pages show "now"), redirecting back to the live
    server after consent; the CSP lets the link form's redirect reach the consent page."""
    redirect_uri = f"{live_server.url}/vehicles/link/callback/"
    start = datetime.now(UTC).replace(microsecond=0)
    with SimulatedCloud(cars=3, seed=7, start=start, redirect_uris=(redirect_uri,)) as sim:
        providers = copy.deepcopy(settings.VEHICLE_PROVIDERS)
        providers["smartcar"].update(
            CLIENT_ID=sim.client_id,
            CLIENT_SECRET=sim.client_secret,
            MANAGEMENT_TOKEN=sim.management_token,
            API_ORIGIN=sim.sdk_config["API_ORIGIN"],
            AUTH_ORIGIN=sim.sdk_config["AUTH_ORIGIN"],
            CONNECT_ORIGIN=sim.sdk_config["CONNECT_ORIGIN"],
            MANAGEMENT_API_ORIGIN=sim.sdk_config["MANAGEMENT_API_ORIGIN"],
            REDIRECT_URI=redirect_uri,
        )
        settings.VEHICLE_PROVIDERS = providers
        csp = copy.deepcopy(settings.SECURE_CSP)
        csp["form-action"] = [*csp["form-action"], sim.sdk_config["CONNECT_ORIGIN"]]
        settings.SECURE_CSP = csp
        for car in sim.cars:  # at home, plugged in, half full: tonight's plan has work to do
            sim.set_state(car.vin, soc_pct=45.0, plugged=True, at_home=True, follows_routine=False)
        yield sim


@pytest.fixture
def lakeshore(db) -> Program:
    """Lakeshore Electric (ZIP 60601) and its open Peak Saver program: $2 an event and 25 ¢ a
    kWh shifted, two free opt-outs a month."""
    utility = Utility.objects.create(name="Lakeshore Electric", slug="lakeshore")
    Feeder.objects.create(utility=utility, code="loop-1", region="Loop", zip_codes=[OWNER_ZIP])
    Tariff.objects.create(
        utility=utility,
        name="EV time of use",
        is_default=True,
        default_price="0.20",
        export_price="0.10",
        periods=[
            {"start": "23:00", "end": "06:00", "price": 0.08},
            {"start": "15:00", "end": "20:00", "price": 0.40, "weekdays": [0, 1, 2, 3, 4]},
        ],
    )
    return make_program(
        utility, code="peak-saver", name="Peak Saver", opt_outs_per_month=2, opt_out_fee_cents=500
    )


def open_page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    return page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.browser_failed = True
    return report


@pytest.fixture
def contexts(request, browser, live_server):
    """Opens browser contexts at a profile (`contexts(PHONE)`); closes them after the test. On a
    failure, each open page's HTML and screenshot go first to .local/screenshots/failed/ (CI
    keeps them as artifacts with the rest)."""
    opened: list[BrowserContext] = []

    def open_context(profile: Profile, **extra) -> BrowserContext:
        context = new_context(browser, live_server, profile, **extra)
        opened.append(context)
        return context

    yield open_context
    if getattr(request.node, "browser_failed", False):
        folder = SCREENSHOTS / "failed"
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
        for c, context in enumerate(opened):
            for p, page in enumerate(context.pages):
                stem = folder / f"{name}-{c}-{p}"
                try:
                    stem.with_suffix(".html").write_text(page.content())
                    page.screenshot(path=stem.with_suffix(".png"), full_page=True)
                except Exception as error:  # a closed or crashed page: keep going
                    stem.with_suffix(".txt").write_text(repr(error))
    for context in opened:
        context.close()


@dataclass
class OwnerWithCar:
    owner: object
    vehicle: object
    plan: object
    session_cookie: dict


@pytest.fixture
def owner_with_car(live_server) -> OwnerWithCar:
    """A signed-in owner (a session cookie for the browser) with a plugged-in Nissan Leaf at
    45 % and tonight's plan, made by the planner as after a plug-in."""
    from django.conf import settings as django_settings
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
        charging_state="NOT_CHARGING",
        charge_limit_pct=100,
    )
    plan = replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in")
    assert plan is not None
    client = Client()
    client.force_login(owner)
    cookie = {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
        "url": live_server.url,
    }
    return OwnerWithCar(owner, vehicle, plan, cookie)
