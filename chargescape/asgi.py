"""ASGI entry points (DESIGN.md §2).

`application` is the web process: pages, admin, REST APIs and the owners' live-update websockets.
`ocpp_application` is the OCPP process: the same code base, serving only charger websockets at
/ocpp/<charge_point_id> (and /healthz for the load balancer), so it scales apart from the web.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")
django_asgi = get_asgi_application()  # sets Django up before consumers are imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chargescape.routing import ocpp_websocket_urlpatterns, owner_websocket_urlpatterns  # noqa: E402

# The OCPP process's own plain answer carries the headers Django's middleware gives every page.
PLAIN_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


async def ocpp_http(scope, receive, send):  # type: ignore[no-untyped-def]
    """The OCPP process answers only the health check over plain HTTP."""
    if scope["path"] == "/healthz":
        await django_asgi(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": PLAIN_HEADERS,
        }
    )
    await send({"type": "http.response.body", "body": b"OCPP endpoint: connect to /ocpp/<id>\n"})


application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        # Browsers only: Origin must be in ALLOWED_HOSTS; the session identifies the owner.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(owner_websocket_urlpatterns))
        ),
    }
)

ocpp_application = ProtocolTypeRouter(
    {
        "http": ocpp_http,
        # Chargers send no browser Origin; they authenticate with HTTP Basic on the upgrade.
        "websocket": URLRouter(ocpp_websocket_urlpatterns),
    }
)
