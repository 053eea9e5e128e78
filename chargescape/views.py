"""Project-level pages: the Home tab, health check, and the PWA manifest and service worker."""

import logging

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView

from vehicles import selectors as vehicle_selectors

logger = logging.getLogger(__name__)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    vehicles = vehicle_selectors.list_vehicles_for_owner(owner=request.user)
    return render(request, "home.html", {"tab": "home", "vehicles": vehicles})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL and Redis both answer, else 503 naming what is down (load balancers)."""
    checks = {}
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        try:
            check()
        except Exception as exc:  # any failure of a dependency is "down", whatever its type
            logger.warning("healthz: %s is down: %s", name, type(exc).__name__)
            checks[name] = "down"
        else:
            checks[name] = "ok"
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


@require_GET
@cache_control(max_age=3600)
def manifest(request: HttpRequest) -> JsonResponse:
    """The web app manifest, so owners can add ChargeScape to their home screen."""
    data = {
        "name": "ChargeScape",
        "short_name": "ChargeScape",
        "description": "Charge your EV when the grid has room, and get paid for it.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f8f7",
        "theme_color": "#0b6e4f",
        "icons": [
            {
                "src": static(f"icons/icon-{size}.png"),
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any",
            }
            for size in (192, 512)
        ]
        + [
            {
                "src": static("icons/icon-maskable-512.png"),
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }
    return JsonResponse(data, content_type="application/manifest+json")


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """The service worker, served from the root so its scope covers every page."""
    response = render(
        request,
        "sw.js",
        {"shell": [static("css/app.css"), static("js/app.js"), "/offline/"]},
        content_type="application/javascript",
    )
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = "/"
    return response


@require_GET
@cache_control(max_age=86400)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico where a page has no icon link (the admin): the app icon."""
    return HttpResponseRedirect(static("icons/icon-192.png"))


@require_GET
def offline(request: HttpRequest) -> HttpResponse:
    return render(request, "offline.html")


# Rate-limited pages (allauth's login, login-by-code, reset and MFA limits call this handler).
RATE_LIMIT_RETRY_AFTER_S = 60


def too_many_requests(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    response = render(request, "429.html", status=429)
    response["Retry-After"] = str(RATE_LIMIT_RETRY_AFTER_S)
    return response


class SwaggerView(SpectacularSwaggerView):
    """API docs page with the site's Cross-Origin-Opener-Policy: drf-spectacular relaxes it to
    unsafe-none for an OAuth pop-up our APIs (session, client credentials) never use."""

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().get(request, *args, **kwargs)
        del response.headers["Cross-Origin-Opener-Policy"]  # SecurityMiddleware sets same-origin
        return response
