"""Who is calling the utility API and what they may do.

- `UtilityOAuth2Authentication`: a django-oauth-toolkit bearer token of an active `ApiClient`'s
  application; `request.user` becomes a `UtilityCaller` (the client and its utility).
- `ClientScopes`: a client can only ever get the scopes it was granted (read, dispatch).
- `HasScope`: reads need `read`, writes `dispatch`; 403 without it.
- `ClientRateThrottle`: per-client requests per minute, per scope, on Redis counters.
- `TokenApi`: the token endpoint, rate limited per IP address.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.models import AccessToken
from oauth2_provider.scopes import SettingsScopes
from oauth2_provider.views import TokenView
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from chargescape import ratelimit
from programs.api.models import ApiClient
from programs.models import Utility

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class UtilityCaller:
    """`request.user` of the utility API: a machine, never a person."""

    client: ApiClient

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def utility(self) -> Utility:
        return self.client.utility

    @property
    def pk(self) -> str:
        return f"api-client-{self.client.pk}"

    def __str__(self) -> str:
        return f"API client {self.client.name}"


class UtilityOAuth2Authentication(OAuth2Authentication):
    """Bearer tokens of active utility API clients only (a token of any other OAuth application,
    or of a disabled client, authenticates nobody)."""

    www_authenticate_realm = "utility-api"

    def authenticate(self, request: Request) -> tuple[UtilityCaller, AccessToken] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        token = result[1]
        client = (
            ApiClient.objects.select_related("utility")
            .filter(application_id=token.application_id, is_active=True)
            .first()
        )
        if client is None:
            return None
        return UtilityCaller(client=client), token


class ClientScopes(SettingsScopes):
    """A client is offered exactly the scopes it was granted; asking for none gives them all."""

    def _granted(self, application: Any) -> list[str]:
        client = ApiClient.objects.filter(application=application, is_active=True).first()
        if client is None:
            return []
        return [scope for scope in client.scopes if scope in self.get_all_scopes()]

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self._granted(application)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self._granted(application)


def caller(request: Request) -> UtilityCaller:
    user = request.user
    assert isinstance(user, UtilityCaller)  # noqa: S101 — HasScope let only callers through
    return user


def required_scope(request: Request) -> str:
    """Reads need `read`; every write (create, dispatch, cancel an event) needs `dispatch`."""
    return "read" if request.method in SAFE_METHODS else "dispatch"


class HasScope(BasePermission):
    """The token carries the scope the request's method needs."""

    message = "This token lacks the scope this operation needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, UtilityCaller) or not isinstance(request.auth, AccessToken):
            return False
        return request.auth.allow_scopes([required_scope(request)])


class ClientRateThrottle(BaseThrottle):
    """UTILITY_API_RATE_LIMITS[scope] requests a minute per client (fixed window); 429 with
    Retry-After beyond it."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, UtilityCaller):
            return True  # unauthenticated: refused by the permission check anyway
        scope = required_scope(request)
        return ratelimit.allow(
            scope=f"utility-api:{scope}",
            ident=str(request.user.client.pk),
            limit=settings.UTILITY_API_RATE_LIMITS[scope],
            window_seconds=WINDOW_SECONDS,
        )

    def wait(self) -> float:
        return WINDOW_SECONDS - time.time() % WINDOW_SECONDS


@method_decorator(csrf_exempt, name="dispatch")
class TokenApi(TokenView):
    """`POST /api/utility/v1/oauth/token`: client credentials in, bearer token out (RFC 6749
    §4.4), at most UTILITY_API_RATE_LIMITS["token"] requests a minute per IP address."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not ratelimit.allow(
            scope="utility-api:token",
            ident=ratelimit.client_ip(request),
            limit=settings.UTILITY_API_RATE_LIMITS["token"],
            window_seconds=WINDOW_SECONDS,
        ):
            return ratelimit.too_many_requests(int(WINDOW_SECONDS - time.time() % WINDOW_SECONDS))
        return super().post(request, *args, **kwargs)
