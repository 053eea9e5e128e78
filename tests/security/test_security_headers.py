"""Security headers on every response (issue 11): every route the URL resolver knows — a new
route is covered the day it is added — answered by GET as the actor that fits it (anonymous,
owner, program manager), plus the error pages (403, 404, 429, 500), a static file and the OCPP
process's plain responses. 404s count too: a refusal is a response like any other."""

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, path, resolve
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize

from tests.factories import UserFactory, VehicleFactory

pytestmark = pytest.mark.django_db

HSTS_SECONDS = 31536000


def check_headers(response, *, where: str, https: bool = True) -> list[str]:
    """What is missing or wrong on one response (empty: all good)."""
    headers = {k.lower(): v for k, v in response.items()}
    problems = []
    csp = headers.get("content-security-policy", "")
    if not csp:
        problems.append("no Content-Security-Policy")
    if headers.get("x-content-type-options") != "nosniff":
        problems.append("X-Content-Type-Options is not nosniff")
    if not headers.get("referrer-policy"):
        problems.append("no Referrer-Policy")
    if headers.get("cross-origin-opener-policy") != "same-origin":
        problems.append("Cross-Origin-Opener-Policy is not same-origin")
    if headers.get("x-frame-options") != "DENY" and "frame-ancestors 'none'" not in csp:
        problems.append("framing allowed (neither X-Frame-Options DENY nor frame-ancestors)")
    if https:
        hsts = headers.get("strict-transport-security", "")
        if f"max-age={HSTS_SECONDS}" not in hsts:
            problems.append(f"Strict-Transport-Security is {hsts!r}")
    return [f"{where} → {response.status_code}: {p}" for p in problems]


# --- The resolver's routes -----------------------------------------------------------------------


def _walk(patterns, prefix=""):
    for pattern in patterns:
        regex = pattern.pattern.regex.pattern
        regex = regex.removeprefix("^").removeprefix("\\A").removesuffix("\\Z").removesuffix("$")
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + regex)
        elif isinstance(pattern, URLPattern):
            yield prefix + regex, pattern


def every_route() -> list[tuple[str, list[str]]]:
    """(route regex, its parameter names) of every view the URL map reaches."""
    routes = []
    for regex, _pattern in _walk(get_resolver().url_patterns):
        fmt, params = normalize(regex)[0]
        routes.append((regex, fmt, params))
    return routes


@pytest.fixture
def actors(db, settings):
    """An owner with a car, a program manager (staff in the managers group) and a superuser."""
    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner)
    manager = UserFactory(is_staff=True)
    group, _ = Group.objects.get_or_create(name=settings.PROGRAM_MANAGERS_GROUP)
    manager.groups.add(group)
    admin = UserFactory(is_staff=True, is_superuser=True)
    clients = {"anonymous": Client()}
    for name, user in (("owner", owner), ("manager", manager), ("admin", admin)):
        clients[name] = Client()
        clients[name].force_login(user)
    values = {
        "vehicle_id": str(vehicle.pk),
        "app_label": "accounts",
        "model_name": "user",
        "object_id": str(owner.pk),
        "code": "peak-saver",
        "month": "2026-11",
        "provider": "smartcar",
    }
    return clients, values


def _fill(fmt: str, params: list[str], values: dict[str, str]) -> str | None:
    """A concrete path for the route: known objects by parameter name, else candidates that the
    resolver accepts (an int id, a UUID, a word)."""
    for fallback in ("1", str(uuid.uuid4()), "x", "abc-1"):
        candidate = "/" + fmt % {name: values.get(name, fallback) for name in params}
        try:
            resolve(candidate)
        except Resolver404:
            continue
        return candidate
    return None


@override_settings(SECURE_HSTS_SECONDS=HSTS_SECONDS)
def test_every_route_sends_the_security_headers(actors):
    clients, values = actors
    problems, unreachable, seen = [], [], 0
    for regex, fmt, params in every_route():
        url = _fill(fmt, params, values)
        if url is None:
            unreachable.append(regex)
            continue
        who = ["admin", "manager"] if url.startswith("/admin/") else ["anonymous", "owner"]
        for actor in who:
            client = clients[actor]
            client.raise_request_exception = False
            response = client.get(url, secure=True)
            seen += 1
            found = check_headers(response, where=f"GET {url} as {actor}")
            problems += found
            if response.status_code >= 500:
                problems.append(f"GET {url} as {actor} → {response.status_code}")
    assert unreachable == [], "routes this test cannot build a path for: teach _fill"
    assert seen > 250  # the whole map, admin included
    assert problems == []


# --- Error pages, static files, plain responses --------------------------------------------------


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("an unexpected failure")


# A URL map with one failing view next to the real ones, for the 500 page.
from chargescape.urls import urlpatterns as _real  # noqa: E402

urlpatterns = [path("__boom__/", boom), *_real]


@override_settings(SECURE_HSTS_SECONDS=HSTS_SECONDS)
def test_error_pages_send_the_security_headers(owner_client, owner):
    owner_client.raise_request_exception = False
    not_found = owner_client.get("/no-such-page/", secure=True)
    assert not_found.status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    forbidden = strict.post("/account/", {"time_zone": "UTC"}, secure=True)
    assert forbidden.status_code == 403
    for _ in range(10):
        owner_client.post(
            "/vehicles/chargers/claim/",
            {"charge_point_id": "CP-NOPE", "pairing_code": "AAAAA-AAAAA"},
            secure=True,
        )
    limited = owner_client.post(
        "/vehicles/chargers/claim/",
        {"charge_point_id": "CP-NOPE", "pairing_code": "AAAAA-AAAAA"},
        secure=True,
    )
    assert limited.status_code == 429
    with override_settings(ROOT_URLCONF=__name__):
        failed = owner_client.get("/__boom__/", secure=True)
    assert failed.status_code == 500
    problems = []
    for name, response in [
        ("404", not_found),
        ("403", forbidden),
        ("429", limited),
        ("500", failed),
    ]:
        problems += check_headers(response, where=name)
    assert problems == []


@override_settings(SECURE_HSTS_SECONDS=HSTS_SECONDS)
def test_health_check_and_plain_http_send_the_security_headers(client):
    healthz = client.get("/healthz", secure=True)
    assert healthz.status_code in (200, 503)
    plain = client.get("/healthz")  # the load balancer's plain-http probe: no HSTS there
    assert check_headers(healthz, where="/healthz") == []
    assert check_headers(plain, where="http /healthz", https=False) == []
    assert "strict-transport-security" not in {k.lower() for k in plain}


@override_settings(SECURE_HSTS_SECONDS=HSTS_SECONDS)
def test_static_files_send_the_security_headers(client):
    response = client.get("/static/css/app.css", secure=True)
    assert response.status_code == 200
    assert check_headers(response, where="/static/css/app.css") == []


def test_ocpp_process_plain_http_sends_the_security_headers():
    from chargescape.asgi import ocpp_application

    communicator = HttpCommunicator(ocpp_application, "GET", "/ocpp/")
    response = async_to_sync(communicator.get_response)()
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    assert response["status"] == 404
    assert headers.get("x-content-type-options") == "nosniff"
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", "")
    assert headers.get("referrer-policy")
    assert headers.get("cross-origin-opener-policy") == "same-origin"
