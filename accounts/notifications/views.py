"""Notification pages and endpoints: the centre (bell), mark-read, push (un)subscribe, and the
Account page's notification settings. Thin: validate, authorize, one service or selector call."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.notifications import push, selectors, services
from accounts.notifications.forms import PreferenceForm
from accounts.notifications.models import Notification
from chargescape import parsers

MAX_ENDPOINT = 1000


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    items = selectors.list_for_owner(owner=request.user)
    context = {
        "tab": "account",
        "notifications": items,
        "unread": sum(1 for n in items if n.read_at is None),
    }
    return render(request, "notifications/list.html", context)


@login_required
@require_GET
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """A tap in the centre, a push or an email: mark it read and go to its page."""
    notification = get_object_or_404(Notification, pk=notification_id, owner=request.user)
    services.mark_read(owner=request.user, notification_id=notification.pk)
    allowed = url_has_allowed_host_and_scheme(
        notification.url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(notification.url if allowed else "accounts:notification-list")


@login_required
@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    # Another owner's id is a 404 like a missing one (I6), not a silent redirect.
    notification = get_object_or_404(Notification, pk=notification_id, owner=request.user)
    services.mark_read(owner=request.user, notification_id=notification.pk)
    if request.htmx:
        notification.refresh_from_db()
        return render(request, "notifications/_item.html", {"notification": notification})
    return redirect("accounts:notification-list")


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    services.mark_all_read(owner=request.user)
    return redirect("accounts:notification-list")


@login_required
@require_POST
def preferences(request: HttpRequest) -> HttpResponse:
    form = PreferenceForm(request.POST, preference=selectors.preference_for(owner=request.user))
    if form.is_valid():
        services.update_preferences(
            owner=request.user,
            channels=form.channels(),
            quiet_hours=form.cleaned_data["quiet_hours"],
            quiet_start=form.cleaned_data["quiet_start"],
            quiet_end=form.cleaned_data["quiet_end"],
        )
        messages.success(request, "Notification settings saved.")
    else:
        messages.error(request, "Check the quiet hours: give a start and an end time.")
    return redirect("/account/#notifications")


@login_required
@require_GET
def push_key(request: HttpRequest) -> JsonResponse:
    """The VAPID public key, for a service worker renewing its subscription."""
    return JsonResponse({"key": push.application_server_key()})


def _json(request: HttpRequest) -> dict:
    try:
        body = parsers.loads(request.body or b"{}")
    except ValueError:  # also nesting beyond parsers.MAX_DEPTH and NaN/Infinity
        return {}
    return body if isinstance(body, dict) else {}


@login_required
@require_POST
def push_subscribe(request: HttpRequest) -> JsonResponse:
    """Keep the PushSubscription this browser just made (PushSubscription.toJSON())."""
    body = _json(request)
    endpoint = body.get("endpoint")
    keys = body.get("keys") if isinstance(body.get("keys"), dict) else {}
    # Browsers' push services are always https: anything else is not a subscription.
    if (
        not isinstance(endpoint, str)
        or not endpoint.startswith("https://")
        or len(endpoint) > MAX_ENDPOINT
        or not isinstance(keys.get("p256dh"), str)
        or not isinstance(keys.get("auth"), str)
    ):
        return JsonResponse({"error": "Not a push subscription."}, status=400)
    subscription = services.subscribe_push(
        owner=request.user,
        endpoint=endpoint,
        p256dh=keys["p256dh"][:200],
        auth=keys["auth"][:100],
        user_agent=request.headers.get("User-Agent", ""),
    )
    return JsonResponse({"id": subscription.pk}, status=201)


@login_required
@require_POST
def push_unsubscribe(request: HttpRequest) -> JsonResponse:
    endpoint = _json(request).get("endpoint")
    if not isinstance(endpoint, str):
        return JsonResponse({"error": "Give the endpoint."}, status=400)
    return JsonResponse(
        {"removed": services.unsubscribe_push(owner=request.user, endpoint=endpoint)}
    )
