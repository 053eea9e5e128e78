"""CSRF on every route (issue #11), generated from the URL resolver: a new route is covered the
moment it exists, and a new route that takes an unsafe request without a CSRF token fails here
until it is listed in EXEMPT with the credential that protects it instead.

For each route and each unsafe method (POST, PUT, PATCH, DELETE), with a client that enforces CSRF
like a browser and sends no token:
- signed in (an owner; for admin routes a program manager who passed MFA): 403 from Django's
  CsrfViewMiddleware or from DRF's SessionAuthentication ("CSRF Failed"), unless EXEMPT;
- anonymous: 403 from the middleware; a DRF or exempt route answers 4xx without a session;
- either way nothing is written: no INSERT/UPDATE/DELETE reaches PostgreSQL and no task is
  queued for after the commit.
Positive controls show the same requests go through with the token, and EXEMPT routes are shown
to refuse a request without their own credential.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.resolvers import RegexPattern, RoutePattern

from programs.models import GridEvent
from tests.factories import UserFactory
from tests.programs.admin_fixtures import sign_in_manager
from tests.programs.factories import EventParticipationFactory, GridEventFactory, UtilityFactory

pytestmark = pytest.mark.django_db

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE|TRUNCATE)\b", re.IGNORECASE)
SAMPLE_UUID = str(uuid.UUID(int=1))

# Routes that take unsafe requests without a CSRF token, each with the credential that protects
# it instead. CSRF rides on the browser's cookies; none of these accept a cookie as a credential.
EXEMPT = {
    # Signed webhooks from servers: an HMAC of the body (SC-Signature), no session.
    "vehicles:provider-webhook": "HMAC signature of the vehicle cloud",
    # The payout provider's webhook: an HMAC of the body (X-Payout-Signature).
    "programs:payout-webhook": "HMAC signature of the payout provider",
    # OAuth 2 token endpoint (client credentials grant): HTTP Basic client id and secret.
    "utility-api:token": "OAuth client credentials",
    # The utility API authenticates bearer tokens only (UtilityOAuth2Authentication); a browser
    # never attaches a bearer token on its own, so there is nothing for CSRF to ride on.
    "utility-api:program-list": "bearer token",
    "utility-api:program-detail": "bearer token",
    "utility-api:feeder-list": "bearer token",
    "utility-api:flexibility": "bearer token",
    "utility-api:event-list": "bearer token",
    "utility-api:event-detail": "bearer token",
    "utility-api:event-dispatch": "bearer token",
    "utility-api:event-cancel": "bearer token",
    "utility-api:event-delivery": "bearer token",
    "utility-api:event-report": "bearer token",
    "utility-api:report-list": "bearer token",
}


# --- Routes from the resolver ------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    path: str  # a concrete path that resolves to this route
    name: str  # namespace:name, or the template when the route has no name
    callback: object

    @property
    def is_admin(self) -> bool:
        return self.path.startswith("/admin/")


_CONVERTER_SAMPLES = {"int": "1", "uuid": SAMPLE_UUID, "slug": "sample", "str": "1", "path": "1"}
_CANDIDATES = ("1", "sample", SAMPLE_UUID, "2026-01", "a-b")


def _fill_route(pattern: RoutePattern) -> str:
    def sample(match: re.Match) -> str:
        converter = match.group(1) or "str"
        return _CONVERTER_SAMPLES.get(converter, "1")

    return re.sub(r"<(?:([^>:]+):)?[^>]+>", sample, str(pattern))


def _fill_regex(pattern: RegexPattern) -> str:
    """The regex with every named group replaced by a sample its sub-pattern matches."""
    regex = pattern.regex.pattern.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    out, i = [], 0
    while (start := regex.find("(?P<", i)) != -1:
        out.append(regex[i:start])
        depth, j = 0, start
        while True:  # find the group's closing parenthesis
            if regex[j] == "\\":
                j += 2
                continue
            depth += {"(": 1, ")": -1}.get(regex[j], 0)
            if depth == 0:
                break
            j += 1
        body = regex[regex.index(">", start) + 1 : j]
        choices = [*_CANDIDATES, *body.split("|")]
        out.append(next(c for c in choices if re.fullmatch(body, c)))
        i = j + 1
    out.append(regex[i:])
    return "".join(out).replace("\\", "")


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry.pattern, RoutePattern):
            part = _fill_route(entry.pattern)
        else:
            part = _fill_regex(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = ":".join(p for p in (namespace, entry.namespace) if p)
            yield from _walk(entry.url_patterns, prefix + part, inner)
        else:
            assert isinstance(entry, URLPattern)
            path = "/" + prefix + part
            name = ":".join(p for p in (namespace, entry.name) if p) if entry.name else path
            yield Route(path=path, name=name, callback=entry.callback)


def all_routes() -> list[Route]:
    routes = list(_walk(get_resolver().url_patterns))
    for route in routes:  # the sample path really reaches this route, not a neighbour
        assert resolve(route.path).func == route.callback, route
    return routes


ROUTES = all_routes()


def test_the_route_list_covers_the_url_map():
    """Sanity of the generator: pages, admin, owner API and utility API are all in it."""
    names = {route.name for route in ROUTES}
    assert {"account_login", "programs:participation-opt-out", "api:vehicle-preferences"} <= names
    assert {"admin:programs_gridevent_cancel", "utility-api:event-dispatch"} <= names
    assert len(ROUTES) > 200


def test_every_exempt_entry_is_a_real_route():
    """No stale entries: an exemption outliving its route would silently cover a new one."""
    assert set(EXEMPT) <= {route.name for route in ROUTES}


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Passwords hash quickly: hashing is not under test here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def is_csrf_refusal(response) -> bool:
    """403 from Django's CsrfViewMiddleware or from DRF's SessionAuthentication."""
    if response.status_code != 403:
        return False
    body = response.content.decode(errors="replace")
    # DRF's message is in the response data whatever the renderer (the docs page renders HTML).
    drf_message = str(getattr(response, "data", ""))
    return "CSRF verification failed" in body or "CSRF Failed" in drf_message


def send(client: Client, method: str, path: str, **extra):
    return client.generic(method, path, data=b"{}", content_type="application/json", **extra)


@pytest.fixture
def no_writes(django_capture_on_commit_callbacks):
    """Asserts a block wrote nothing: no write SQL, no task queued for after the commit."""

    class Guard:
        def __call__(self, what: str):
            return _Watch(what, django_capture_on_commit_callbacks)

    return Guard()


class _Watch:
    def __init__(self, what: str, capture_on_commit) -> None:
        self.what, self.capture_on_commit = what, capture_on_commit

    def __enter__(self):
        self.queries = CaptureQueriesContext(connection)
        self.queries.__enter__()
        self.callbacks_cm = self.capture_on_commit(execute=False)
        self.callbacks = self.callbacks_cm.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.callbacks_cm.__exit__(*exc_info)
        self.queries.__exit__(*exc_info)
        if exc_info[0] is None:
            writes = [q["sql"] for q in self.queries.captured_queries if WRITE_SQL.match(q["sql"])]
            assert writes == [], f"{self.what} wrote: {writes}"
            assert self.callbacks == [], f"{self.what} queued work after commit"


def signed_in_client(route: Route) -> Client:
    """A CSRF-enforcing client with a session: an owner, or a program manager past MFA."""
    browser = Client(enforce_csrf_checks=True)
    if route.is_admin:
        login_client = Client()
        sign_in_manager(
            login_client, UtilityFactory(), email=f"manager-{uuid.uuid4().hex[:8]}@x.test"
        )
        browser.cookies = login_client.cookies
    else:
        browser.force_login(UserFactory())
    return browser


# --- The matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_signed_in_unsafe_requests_without_token_are_refused(route, no_writes):
    browser = signed_in_client(route)
    for method in UNSAFE:
        with no_writes(f"{method} {route.path}"):
            response = send(browser, method, route.path)
        if route.name in EXEMPT:
            assert 400 <= response.status_code < 500, (method, route, response.status_code)
        else:
            assert is_csrf_refusal(response), (method, route, response.status_code)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_anonymous_unsafe_requests_without_token_are_refused(route, no_writes):
    """Anonymous forms (sign-in, sign-up, password reset, codes) are CSRF-protected too (login
    CSRF); a route Django exempts (DRF, webhooks) has no session to ride on and answers 4xx."""
    browser = Client(enforce_csrf_checks=True)
    django_exempt = getattr(route.callback, "csrf_exempt", False)
    for method in UNSAFE:
        with no_writes(f"anonymous {method} {route.path}"):
            response = send(browser, method, route.path)
        if django_exempt:
            assert 400 <= response.status_code < 500, (method, route, response.status_code)
        else:
            assert is_csrf_refusal(response), (method, route, response.status_code)


# --- Exempt routes need their own credential -------------------------------------------------


def _exempt_routes() -> list[Route]:
    return [route for route in ROUTES if route.name in EXEMPT]


@pytest.mark.parametrize("route", _exempt_routes(), ids=lambda r: r.name)
def test_exempt_routes_refuse_a_session_without_their_own_credential(route, no_writes):
    """With an owner's session cookie and even a valid CSRF token, but without the route's own
    credential (signature, client secret, bearer token): 401/403, nothing written."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory())
    browser.get(reverse("account_email"))
    token = browser.cookies["csrftoken"].value
    headers = {
        "HTTP_X_CSRFTOKEN": token,
        "HTTP_SC_SIGNATURE": "forged",
        "HTTP_X_PAYOUT_SIGNATURE": "forged",
    }
    body = json.dumps({"type": "paid", "payout": "p-1", "eventType": "VERIFY"}).encode()
    for method in UNSAFE:
        with no_writes(f"{method} {route.path}"):
            response = browser.generic(
                method, route.path, data=body, content_type="application/json", **headers
            )
        assert response.status_code in (400, 401, 403, 404, 405), (method, route, response)
    with no_writes(f"POST {route.path}"):
        response = browser.post(route.path, body, content_type="application/json", **headers)
    # The token endpoint says 400 (no client credentials), the others 401/403; 404 is a utility
    # object that the (absent) client cannot see.
    assert response.status_code in (400, 401, 403, 404), (route, response.status_code)
    assert "access_token" not in response.content.decode()


# --- Positive controls ------------------------------------------------------------------------


def _token(client: Client, page: str) -> str:
    assert client.get(page).status_code == 200
    return client.cookies["csrftoken"].value


def test_owner_form_goes_through_with_the_token_only(owner):
    """An owner's opt-out: 403 without the token and nothing changes; accepted with it."""
    participation = EventParticipationFactory(
        enrollment__vehicle__owner=owner, event__status=GridEvent.Status.SCHEDULED
    )
    url = reverse("programs:participation-opt-out", args=[participation.pk])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    refused = browser.post(url, {"choice": "full"})
    assert is_csrf_refusal(refused)
    participation.refresh_from_db()
    assert participation.opted_out_at is None
    token = _token(browser, url)
    accepted = browser.post(url, {"choice": "full", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    participation.refresh_from_db()
    assert participation.opted_out_at is not None


def test_owner_api_enforces_csrf_through_drf_session_authentication(owner):
    """DRF views are csrf_exempt for Django; SessionAuthentication checks the token itself."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    body = {"time_zone": "America/Denver", "service_zip": "80202"}
    refused = browser.put(reverse("api:profile"), body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"].startswith("CSRF Failed")
    owner.refresh_from_db()
    assert owner.time_zone == "America/Chicago"
    token = _token(browser, reverse("account_email"))
    accepted = browser.put(
        reverse("api:profile"), body, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 200
    owner.refresh_from_db()
    assert (owner.time_zone, owner.service_zip) == ("America/Denver", "80202")


def test_manager_admin_action_goes_through_with_the_token_only():
    """A program manager cancelling an event in the admin: refused without the token."""
    utility = UtilityFactory()
    login_client = Client()
    sign_in_manager(login_client, utility)
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = login_client.cookies
    event = GridEventFactory(program__utility=utility, target_kw=5)
    url = reverse("admin:programs_gridevent_cancel", args=[event.pk])
    assert is_csrf_refusal(browser.post(url, {"reason": "Peak passed early."}))
    event.refresh_from_db()
    assert event.status == GridEvent.Status.DRAFT
    token = _token(browser, reverse("admin:index"))
    response = browser.post(url, {"reason": "Peak passed early.", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == GridEvent.Status.CANCELLED


def test_a_valid_token_from_a_foreign_origin_is_refused(owner):
    """Django also checks Origin: a cross-site page cannot post even with a leaked token."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    token = _token(browser, reverse("account_email"))
    response = browser.put(
        reverse("api:profile"),
        {"time_zone": "America/Denver", "service_zip": "80202"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
        HTTP_ORIGIN="https://evil.example",
    )
    assert is_csrf_refusal(response)
    owner.refresh_from_db()
    assert owner.time_zone == "America/Chicago"
