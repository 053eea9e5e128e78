"""Request limits of the owner REST API (/api/v1/), REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"].

A signed-in owner gets OWNER_API_RATE_LIMITS["read"] safe requests and ["write"] unsafe ones a
minute, counted per user on the shared Redis counters (chargescape.ratelimit), so every web process
and every device of the owner adds to one count; beyond it DRF answers 429 with Retry-After. A
caller without a session (the schema and docs pages) is counted per REMOTE_ADDR: DRF's own
SimpleRateThrottle would trust X-Forwarded-For, which any client can forge.

The utility API sets its own throttle (programs.api.auth.ClientRateThrottle), so it is not
counted here.
"""

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from chargescape import ratelimit

WINDOW_SECONDS = 60


class OwnerRateThrottle(BaseThrottle):
    """Fixed one-minute windows per owner (or per address when signed out), reads and writes
    counted apart so a burst of page loads never blocks saving a preference."""

    def allow_request(self, request: Request, view: Any) -> bool:
        kind = "read" if request.method in SAFE_METHODS else "write"
        user = request.user
        if user is not None and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"ip:{ratelimit.client_ip(request)}"
        return ratelimit.allow(
            scope=f"owner-api:{kind}",
            ident=ident,
            limit=settings.OWNER_API_RATE_LIMITS[kind],
            window_seconds=WINDOW_SECONDS,
        )

    def wait(self) -> float:
        return ratelimit.retry_after(WINDOW_SECONDS)
