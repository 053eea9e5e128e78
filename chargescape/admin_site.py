"""The admin site program managers use: only for staff who passed MFA in this session.

Sign-in happens in allauth (rate limits, login by code, passkeys, MFA); the admin's own login page
only routes people there. A staff member without an authenticator is sent to set one up; one whose
session has no recent MFA step is asked for a code again (allauth's reauthentication).
"""

import time
from functools import update_wrapper
from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.contenttypes import views as contenttype_views
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from chargescape import ratelimit

ADMIN_LOGIN_LIMIT_PER_MINUTE = 30  # generous for a person, low enough to stop a script


def has_recent_mfa(request: HttpRequest) -> bool:
    """True when this session completed an MFA step (TOTP, recovery code or passkey) recently."""
    oldest = time.time() - settings.ADMIN_MFA_MAX_AGE_SECONDS
    return any(
        record.get("method") == "mfa" and record.get("at", 0) >= oldest
        for record in get_authentication_records(request, request.user)
    )


class ChargeScapeAdminSite(admin.AdminSite):
    site_header = "ChargeScape program management"
    site_title = "ChargeScape admin"
    index_title = "Programs, events and settlement"

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and has_recent_mfa(request))

    def admin_view(self, view, cacheable=False):  # type: ignore[no-untyped-def]
        """Django's "view on site" shortcut checks no model permission, and a ModelAdmin's
        history page looks the row up before checking the permission: both would tell a manager
        that a row they may not see exists (I6). No page of ours links to the shortcut, so it
        answers 404; history checks the permission first."""
        if view is contenttype_views.shortcut:
            view = _not_found
        elif getattr(view, "__name__", "") == "history_view" and isinstance(
            getattr(view, "__self__", None), admin.ModelAdmin
        ):
            view = _permission_first(view)
        return super().admin_view(view, cacheable)

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """Route to allauth's sign-in, MFA setup or MFA re-check; never a password form here."""
        if not ratelimit.allow(
            scope="admin-login",
            ident=ratelimit.client_ip(request),
            limit=ADMIN_LOGIN_LIMIT_PER_MINUTE,
            window_seconds=60,
        ):
            return ratelimit.too_many_requests(retry_after_seconds=60)
        next_url = request.GET.get(REDIRECT_FIELD_NAME) or resolve_url("admin:index")
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            next_url = resolve_url("admin:index")
        user = request.user
        if not user.is_authenticated:
            return _redirect("account_login", next_url)
        if not (user.is_active and user.is_staff):
            return render(request, "admin/refused.html", {"reason": "not_staff"}, status=403)
        if not is_mfa_enabled(user):
            return render(request, "admin/refused.html", {"reason": "no_mfa"}, status=403)
        if not has_recent_mfa(request):
            return _redirect("mfa_reauthenticate", next_url)
        return HttpResponseRedirect(next_url)


def _redirect(url_name: str, next_url: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(
        f"{resolve_url(url_name)}?{urlencode({REDIRECT_FIELD_NAME: next_url})}"
    )


def _not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404


def _permission_first(view):  # type: ignore[no-untyped-def]
    model_admin = view.__self__

    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return update_wrapper(guarded, view)
