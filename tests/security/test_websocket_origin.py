"""Websocket Origin (issue #11): cross-site websocket hijacking is refused on every websocket
route of the web ASGI app.

A browser sends the owner's session cookie with any websocket upgrade, whichever page opens it,
and CSRF protection does not cover websockets; the Origin header is what tells our pages from
someone else's. Policy of the web app (chargescape.asgi.application, AllowedHostsOriginValidator):
the Origin's host must be one of ALLOWED_HOSTS; a missing or opaque ("null") Origin is refused
(every browser sends one; a page in a sandboxed iframe or a file: URL sends "null"). Then the
session must belong to a signed-in owner.

Program managers have no live socket (the event dashboard polls an HTML fragment), so the web
app's websocket routes are the owner routes alone; the test below fails when one is added
elsewhere without coming through here.

The OCPP process (chargescape.asgi.ocpp_application) checks no Origin, on purpose: its clients
are chargers, not browsers (OCPP-J clients send no Origin, and some firmware sends arbitrary
ones), and its credential is HTTP Basic with the charger's own authorization key, which no
browser page holds and no script can attach to a websocket upgrade. So a hostile page gets 401
before any upgrade, whatever its Origin; the last test shows exactly that, on a real socket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import websockets
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls.resolvers import RoutePattern

from chargescape.asgi import application
from chargescape.routing import owner_websocket_urlpatterns
from tests.factories import UserFactory
from tests.security.test_csrf import _fill_regex, _fill_route
from tests.vehicles.chargers.conftest import ocpp_url, run  # noqa: F401 — fixture and runner

# The site's own origin: where its pages are served from (what a browser sends as Origin).
_site = urlsplit(settings.SITE_URL)
OWN_ORIGIN = f"{_site.scheme}://{_site.netloc}".encode()

REFUSED_ORIGINS = {
    "foreign site": b"https://evil.example",
    "look-alike suffix": b"http://127.0.0.1.evil.example",
    "look-alike prefix": b"http://evil-localhost.example",
    "opaque null": b"null",
    "no host": b"file://",
    "missing": None,
}


def _path(pattern) -> str:
    fill = _fill_route if isinstance(pattern.pattern, RoutePattern) else _fill_regex
    return "/" + fill(pattern.pattern)


WEBSOCKET_PATHS = [_path(pattern) for pattern in owner_websocket_urlpatterns]


def _connect(path: str, origin: bytes | None, cookie: bytes | None = None):
    headers = []
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))

    async def scenario():
        socket = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await socket.connect(timeout=5)
        if connected:
            await socket.disconnect()
        return connected, code

    return async_to_sync(scenario)()


@pytest.fixture
def owner_cookie(client):
    """The session cookie of a signed-in owner, as the browser would send it."""
    client.force_login(UserFactory())
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def test_the_site_origin_is_an_allowed_host():
    """The pages' own origin passes the validator's host list (else no owner could connect)."""
    assert _site.hostname in settings.ALLOWED_HOSTS or "*" in settings.ALLOWED_HOSTS


def test_web_app_serves_only_the_owner_websockets():
    """Every websocket route of the web app is in this module's matrix; the chargers' OCPP
    route is served by the OCPP process only (a browser-facing host cannot reach it)."""
    assert WEBSOCKET_PATHS == ["/ws/live/"]

    async def scenario():
        socket = WebsocketCommunicator(application, "/ocpp/CP-1", headers=[(b"origin", OWN_ORIGIN)])
        with pytest.raises(ValueError, match="No route found"):
            await socket.connect(timeout=1)

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)  # the consumer reads the session in another thread
@pytest.mark.parametrize("path", WEBSOCKET_PATHS)
def test_owner_socket_opens_only_from_the_site_and_only_signed_in(path, owner_cookie):
    """The owner's own cookie sent by a page that is not ours (or by no page at all): refused
    before the consumer. From our pages: accepted when signed in, refused with the "sign in
    first" close code when not."""
    for name, origin in REFUSED_ORIGINS.items():
        connected, _ = _connect(path, origin, owner_cookie)
        assert not connected, name
    connected, _ = _connect(path, OWN_ORIGIN, owner_cookie)
    assert connected
    connected, code = _connect(path, OWN_ORIGIN)
    assert not connected
    assert code == 4401


@pytest.mark.django_db
def test_ocpp_socket_refuses_a_browser_page_without_the_charger_key(ocpp_url):  # noqa: F811
    """A hostile page opening /ocpp/<id> (with its own Origin, or ours, and the user's cookies)
    gets HTTP 401 before any upgrade: the charger's key, not the Origin, guards this socket."""
    session = Client()
    session.force_login(UserFactory())
    cookie = f"sessionid={session.cookies['sessionid'].value}"

    async def attempt(origin: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{ocpp_url}/CP-browser",
                subprotocols=["ocpp1.6"],
                origin=origin,
                additional_headers={"Cookie": cookie},
                open_timeout=5,
            )
        return refused.value.response.status_code

    assert run(attempt("https://evil.example")) == 401
    assert run(attempt(OWN_ORIGIN.decode())) == 401
