"""The Vehicles tab: cards, a car's page with its 24 h chart and preferences, its activity log,
linking, unlinking.

Views validate, authorize (selectors 404 other owners' cars), call one service, render.
"""

import logging
import secrets
from datetime import datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from vehicles import oem, selectors, services
from vehicles.chargers import selectors as charger_selectors
from vehicles.charts import vehicle_day_chart
from vehicles.forms import PauseForm, PreferenceForm
from vehicles.oem.base import OemError
from vehicles.preferences import next_departure

logger = logging.getLogger(__name__)
LINK_SESSION_KEY = "vehicle_link"


def _departure(vehicle, user):  # type: ignore[no-untyped-def]
    preference = getattr(vehicle, "preference", None)
    if preference is None:
        return None
    return next_departure(
        schedule=preference.weekly_schedule,
        override_at=preference.override_departure_at,
        override_target_soc_pct=preference.override_target_soc_pct,
        time_zone=user.time_zone,
        now=timezone.now(),
    )


@login_required
@require_GET
def vehicle_list(request: HttpRequest) -> HttpResponse:
    vehicles = selectors.list_vehicles_for_owner(owner=request.user)
    for vehicle in vehicles:
        vehicle.next_departure = _departure(vehicle, request.user)
    chargers = charger_selectors.list_charger_cards_for_owner(owner=request.user)
    context = {"tab": "vehicles", "vehicles": vehicles, "chargers": chargers}
    return render(request, "vehicles/list.html", context)


@login_required
def vehicle_detail(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
    preference = selectors.preference_for(vehicle=vehicle)
    form = PreferenceForm(request.POST or None, instance=preference)
    if request.method == "POST" and form.is_valid():
        services.update_preference(vehicle=vehicle, **form.preference_values())
        messages.success(request, "Preferences saved. Your charging plan will follow them.")
        return redirect("vehicles:vehicle-detail", vehicle_id=vehicle.pk)
    now = timezone.now()
    readings = list(selectors.readings_since(vehicle=vehicle, since=now - timedelta(hours=24)))
    outlook = selectors.plan_outlook_for(vehicle=vehicle, now=now)
    context = {
        "tab": "vehicles",
        "vehicle": vehicle,
        "form": form,
        "next_departure": _departure(vehicle, request.user),
        "chart": vehicle_day_chart(readings=readings, time_zone=request.user.time_zone),
        "readings": readings[-12:],
        "preference": preference,
        "now": now,
        "pause_form": PauseForm(initial={"until": timezone.localdate()}),
        "boosting": bool(preference.boost_until and preference.boost_until > now),
        "promise": outlook.promise(now=now, preference=preference) if outlook else None,
        "diagnosis": selectors.charging_diagnosis_for(vehicle=vehicle, outlook=outlook, now=now),
    }
    return render(request, "vehicles/detail.html", context, status=400 if form.errors else 200)


# Commands per page of the activity log: a few nights of plan steps.
ACTIVITY_PAGE_SIZE = 20


@login_required
@require_GET
def vehicle_activity(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    """Every command for this car, newest first: who asked, what the safety check and the car
    said, and whether the car's own data confirmed it."""
    vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
    paginator = Paginator(selectors.list_commands_for_vehicle(vehicle=vehicle), ACTIVITY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "tab": "vehicles",
        "vehicle": vehicle,
        "page": page,
        "entries": selectors.activity_entries(commands=page.object_list),
    }
    return render(request, "vehicles/activity.html", context)


@login_required
@require_POST
def vehicle_unlink(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
    services.unlink_vehicle(vehicle=vehicle)
    messages.success(request, f"{vehicle.display_name} is unlinked; we no longer control it.")
    return redirect("vehicles:vehicle-list")


# A boost ends by itself at the latest after this long (then smart charging resumes).
BOOST_MAX_HOURS = 12


@login_required
@require_POST
def vehicle_quick_action(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    """Charge now / stop boosting / pause smart charging / resume it — one tap each."""
    vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
    preference = selectors.preference_for(vehicle=vehicle)
    action = request.POST.get("action")
    now = timezone.now()
    if action == "boost":
        departure = _departure(vehicle, request.user)
        target = departure.target_soc_pct if departure else preference.max_soc_pct
        services.update_preference(
            vehicle=vehicle,
            boost_until=now + timedelta(hours=BOOST_MAX_HOURS),
            boost_to_soc_pct=min(max(target, preference.min_soc_pct), preference.max_soc_pct),
        )
        messages.success(request, f"Charging now at full power up to {target} %.")
    elif action == "stop_boost":
        services.update_preference(vehicle=vehicle, boost_until=None, boost_to_soc_pct=None)
        messages.success(request, "Boost stopped; smart charging is back.")
    elif action == "pause":
        form = PauseForm(request.POST)
        if not form.is_valid():
            messages.error(request, " ".join(form.errors["until"]))
            return redirect("vehicles:vehicle-detail", vehicle_id=vehicle.pk)
        until = datetime.combine(form.cleaned_data["until"], time.max).replace(
            tzinfo=timezone.get_current_timezone()
        )
        services.update_preference(vehicle=vehicle, pause_until=until)
        messages.success(request, f"Smart charging paused until {until:%A %d %B}, end of day.")
    elif action == "resume":
        services.update_preference(vehicle=vehicle, pause_until=None)
        messages.success(request, "Smart charging resumed.")
    else:
        return HttpResponseBadRequest("Unknown action.")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)  # the home card's Boost button brings the owner back home
    return redirect("vehicles:vehicle-detail", vehicle_id=vehicle.pk)


@login_required
@require_POST
def vehicle_set_home(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
    try:
        services.set_home_location(vehicle=vehicle)
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Home set: we'll know when the car is plugged in at home.")
    return redirect("vehicles:vehicle-detail", vehicle_id=vehicle.pk)


@login_required
@require_GET
def link_brands(request: HttpRequest) -> HttpResponse:
    brands = [
        (provider, brand)
        for provider, config in oem.providers().items()
        for brand in config.get("BRANDS", ())
    ]
    return render(request, "vehicles/link_brands.html", {"tab": "vehicles", "brands": brands})


def start_link(request: HttpRequest, *, provider: str, brand: str | None) -> str:
    """Remember a fresh OAuth `state` in the session and return the cloud's consent URL."""
    adapter = oem.get_adapter(provider)
    state = secrets.token_urlsafe(32)
    request.session[LINK_SESSION_KEY] = {"state": state, "provider": provider}
    return adapter.authorize_url(
        state=state, redirect_uri=oem.providers()[provider]["REDIRECT_URI"], brand=brand
    )


@login_required
@require_POST
def link_start(request: HttpRequest) -> HttpResponse:
    provider = request.POST.get("provider", "")
    if provider not in oem.providers():
        return HttpResponseBadRequest("Unknown vehicle cloud.")
    return redirect(start_link(request, provider=provider, brand=request.POST.get("brand")))


@login_required
@require_GET
def link_callback(request: HttpRequest) -> HttpResponse:
    """Back from the automaker's consent page: check `state`, then link the granted cars."""
    pending = request.session.pop(LINK_SESSION_KEY, None)
    state = request.GET.get("state", "")
    if not pending or not secrets.compare_digest(pending["state"], state):
        messages.error(request, "That link attempt expired or didn't start here. Please try again.")
        return redirect("vehicles:link-brands")
    if request.GET.get("error"):
        messages.info(request, "No car was linked: access wasn't granted.")
        return redirect("vehicles:vehicle-list")
    try:
        vehicles = services.link_vehicles(
            owner=request.user,
            provider=pending["provider"],
            code=request.GET.get("code", ""),
            redirect_uri=oem.providers()[pending["provider"]]["REDIRECT_URI"],
        )
    except OemError as error:
        logger.warning("link failed: %s", type(error).__name__)
        messages.error(request, "The automaker's service didn't answer. Please try again soon.")
        return redirect("vehicles:link-brands")
    names = ", ".join(vehicle.display_name for vehicle in vehicles) or "no car"
    messages.success(request, f"Linked {names}.")
    return redirect(reverse("vehicles:vehicle-list"))


@csrf_exempt  # authenticated by the provider's HMAC signature instead
@require_POST
def provider_webhook(request: HttpRequest, provider: str) -> HttpResponse:
    if provider not in oem.providers():
        return JsonResponse({"error": "unknown provider"}, status=404)
    try:
        message = services.ingest_webhook(
            provider=provider,
            body=request.body,
            signature=request.headers.get("SC-Signature", ""),
        )
    except OemError:
        return JsonResponse({"error": "invalid signature or body"}, status=401)
    return JsonResponse(message.challenge_response or {"status": "ok"})
