"""Owner pages: claim a charger, see one. The Vehicles tab lists chargers through
`templates/chargers/_charger_cards.html` with `selectors.list_charger_cards_for_owner`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from chargescape import ratelimit
from vehicles.chargers import selectors, services
from vehicles.chargers.forms import ClaimChargerForm, PairVehicleForm

# Pairing codes carry 50 bits; ten tries per ten minutes per owner makes guessing hopeless.
CLAIM_LIMIT, CLAIM_WINDOW_S = 10, 600


@login_required
def charger_claim(request: HttpRequest) -> HttpResponse:
    form = ClaimChargerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not ratelimit.allow(
            scope="charger-claim",
            ident=str(request.user.pk),
            limit=CLAIM_LIMIT,
            window_seconds=CLAIM_WINDOW_S,
        ):
            return ratelimit.too_many_requests(CLAIM_WINDOW_S)
        try:
            charger = services.claim_charger(owner=request.user, **form.cleaned_data)
        except services.ChargerError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{charger} is linked to your account.")
            return redirect("vehicles:chargers:charger-detail", charger_id=charger.pk)
    return render(request, "chargers/claim.html", {"form": form, "tab": "vehicles"})


@login_required
def charger_detail(request: HttpRequest, charger_id: int) -> HttpResponse:
    card = selectors.get_owned_charger_card(owner=request.user, charger_id=charger_id)
    form = PairVehicleForm(
        request.POST or None,
        owner=request.user,
        initial={"vehicle": card.charger.usual_vehicle_id},
    )
    if request.method == "POST" and form.is_valid():
        services.pair_vehicle(charger=card.charger, vehicle=form.cleaned_data["vehicle"])
        messages.success(request, "Saved: we'll plan that car's charging through this charger.")
        return redirect("vehicles:chargers:charger-detail", charger_id=card.charger.pk)
    sessions = selectors.list_recent_sessions(charger=card.charger)
    context = {"card": card, "sessions": sessions, "pair_form": form, "tab": "vehicles"}
    return render(request, "chargers/detail.html", context, status=400 if form.errors else 200)
