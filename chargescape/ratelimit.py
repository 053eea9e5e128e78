"""Fixed-window rate limits on atomic Redis counters, for endpoints allauth does not cover.

`allow(...)` increments a counter (INCR is atomic, so parallel requests on any web process are all
counted) and says whether the caller is still within the limit. The client is identified by
REMOTE_ADDR only: uvicorn rewrites it from X-Forwarded-For for trusted proxies alone, so a forged
header cannot reset a limit.
"""

import time

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


def allow(*, scope: str, ident: str, limit: int, window_seconds: int) -> bool:
    """Count one hit for `ident` in `scope`; False once over `limit` hits in the current window."""
    window = int(time.time() // window_seconds)
    key = f"rl:{scope}:{ident}:{window}"
    cache.add(key, 0, timeout=window_seconds + 1)
    return cache.incr(key) <= limit


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def too_many_requests(retry_after_seconds: int) -> HttpResponse:
    response = HttpResponse(
        "Too many requests. Please wait a minute and try again.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(retry_after_seconds)
    return response
