"""Fixed-window rate limits on atomic Redis counters, for endpoints allauth does not cover.

Callers: the utility API (programs.api.auth), the owner REST API (chargescape.throttling), event
opt-outs (programs.views), charger claims and the admin's login page. allauth's own limits (login,
login by code, MFA codes, password reset) live in settings.ACCOUNT_RATE_LIMITS and count in the
same Redis cache.

`allow(...)` counts one hit and says whether the caller is still within the limit. The count is a
single MULTI/EXEC of SET NX EX and INCR: Redis runs it atomically, so parallel requests on any
number of web processes are each counted exactly once, and a counter can never lose its expiry
(which would lock its key out for good). The client is identified by REMOTE_ADDR only: uvicorn
rewrites it from X-Forwarded-For for trusted proxies alone, so a forged header cannot reset a limit.
"""

import math
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse


def _window(window_seconds: int) -> int:
    return int(time.time() // window_seconds)


def hit(*, scope: str, ident: str, window_seconds: int) -> int:
    """Count one hit for `ident` in `scope` and return the hits in the current window so far."""
    key = f"rl:{scope}:{ident}:{_window(window_seconds)}"
    # A second of slack: a request that read the clock just before the window's end still finds
    # its counter alive.
    ttl = window_seconds + 1
    backend = caches["default"]
    if not isinstance(backend, RedisCache):  # a developer's LocMem cache: one process, no race
        backend.add(key, 0, timeout=ttl)
        return backend.incr(key)
    redis_key = backend.make_and_validate_key(key)  # with KEY_PREFIX, like every cache key
    # Django's cache API has no pipeline (and its incr() is EXISTS then INCR, which raised
    # ValueError when the key expired in between): use its redis-py client directly.
    client = backend._cache.get_client(redis_key, write=True)
    with client.pipeline(transaction=True) as pipe:
        pipe.set(redis_key, 0, ex=ttl, nx=True)  # a new window's counter, born with its expiry
        pipe.incr(redis_key)
        _, count = pipe.execute()
    return int(count)


def allow(*, scope: str, ident: str, limit: int, window_seconds: int) -> bool:
    """Count one hit for `ident` in `scope`; False once over `limit` hits in the current window."""
    return hit(scope=scope, ident=ident, window_seconds=window_seconds) <= limit


def retry_after(window_seconds: int) -> int:
    """Whole seconds until the current window ends and every counter of it starts afresh."""
    return max(1, math.ceil(window_seconds - time.time() % window_seconds))


def client_ip(request: HttpRequest) -> str:
    """The address limits are keyed on: REMOTE_ADDR, never a client-supplied header."""
    return request.META.get("REMOTE_ADDR", "")


def too_many_requests(retry_after_seconds: int) -> HttpResponse:
    response = HttpResponse(
        "Too many requests. Please wait a minute and try again.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(retry_after_seconds)
    return response
