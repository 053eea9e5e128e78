"""The Programs and Earnings tabs, joining and leaving programs, event opt-outs, and each car's
plan (loaded into the vehicle page)."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from chargescape import ratelimit
from programs import charts, enrollments, events, payouts, selectors
from programs.forms import EnrollForm, OptOutForm
from programs.models import Enrollment
from vehicles.models import Vehicle


@login_required
def program_list(request: HttpRequest) -> HttpResponse:
    offers = selectors.program_offers_for(owner=request.user)
    return render(
        request,
        "programs/list.html",
        {"tab": "programs", "offers": offers},
    )


@login_required
def program_detail(request: HttpRequest, code: str) -> HttpResponse:
    """A program's terms and the enroll form. Deep links (/programs/join/<code>/) land here with
    their source recorded, so an enrollment is attributed to the program the link named."""
    program = selectors.get_program_by_code(code=code)
    terms = enrollments.current_terms(program)
    vehicles = Vehicle.objects.filter(owner=request.user, link_state=Vehicle.LinkState.LINKED)
    source = request.GET.get("source", "app")
    form = EnrollForm(
        request.POST or None,
        vehicles=vehicles,
        initial={"terms_version": terms.version if terms else None, "source": source},
    )
    if request.method == "POST" and form.is_valid():
        vehicle = form.cleaned_data["vehicle"]
        try:
            enrollment = enrollments.enroll(
                vehicle=vehicle,
                program=program,
                terms_version=form.cleaned_data["terms_version"],
                actor=request.user,
                source=form.cleaned_data["source"] or "app",
            )
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        else:
            if enrollment.status == Enrollment.Status.ACTIVE:
                messages.success(request, f"{vehicle.display_name} joined {program.name}.")
            else:
                messages.success(
                    request, f"Thanks! {program.utility.name} will review your enrollment."
                )
            return redirect("programs:program-list")
    standings = {
        s.vehicle.pk: s for s in selectors.standings_for(owner=request.user, program=program)
    }
    return render(
        request,
        "programs/detail.html",
        {
            "tab": "programs",
            "program": program,
            "terms": terms,
            "pays": selectors.pays(terms),
            "asks": selectors.asks(program),
            "form": form,
            "standings": standings.values(),
            "can_join": any(not s.reasons and not s.enrollment for s in standings.values()),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
def join(request: HttpRequest, code: str) -> HttpResponse:
    """A program's deep link: sign in first if needed, then its page with the link recorded."""
    program = selectors.get_program_by_code(code=code)
    return redirect(f"/programs/{program.code}/?source=link:{program.code}")


@login_required
@require_POST
def unenroll(request: HttpRequest, enrollment_id: int) -> HttpResponse:
    enrollment = selectors.get_owned_enrollment(owner=request.user, enrollment_id=enrollment_id)
    enrollments.unenroll(enrollment=enrollment, actor=request.user)
    messages.success(request, f"{enrollment.vehicle.display_name} left {enrollment.program.name}.")
    return redirect("programs:program-list")


@login_required
def opt_out(request: HttpRequest, participation_id: int) -> HttpResponse:
    """Opt out of an event, fully or partly, after seeing what it costs."""
    participation = selectors.get_owned_participation(
        owner=request.user, participation_id=participation_id
    )
    # Per owner, after the ownership check (a foreign id stays a plain 404). Generous: the first
    # tries of a safety action always go through; repeats are idempotent anyway.
    if request.method == "POST" and not ratelimit.allow(
        scope="opt-out",
        ident=str(request.user.pk),
        limit=settings.OPT_OUT_RATE_LIMIT_PER_MINUTE,
        window_seconds=60,
    ):
        return ratelimit.too_many_requests(ratelimit.retry_after(60))
    budget = events.opt_out_budget(enrollment=participation.enrollment)
    form = OptOutForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        keep = None
        if form.cleaned_data["choice"] == OptOutForm.Choice.PARTIAL:
            keep = form.cleaned_data["keep_soc_pct"]
        try:
            events.opt_out(participation=participation, actor=request.user, keep_soc_pct=keep)
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        else:
            messages.success(
                request,
                "You're out of this event; your car charges as usual."
                if keep is None
                else f"Your car keeps charging to at least {keep} % during the event.",
            )
            return redirect("home")
    return render(
        request,
        "programs/opt_out.html",
        {
            "participation": participation,
            "event": participation.event,
            "budget": budget,
            "form": form,
            "earnings_cents": selectors.expected_earnings_cents(participation),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
def vehicle_plan(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    """Tonight's plan for one car: chart, why sentence, and the same as a table."""
    vehicle, plan = selectors.current_plan_for(owner=request.user, vehicle_id=vehicle_id)
    context = {"vehicle": vehicle, "plan": plan}
    if plan is not None:
        context["figure"] = charts.plan_figure(plan=plan, time_zone=request.user.time_zone)
        context["blocks"] = charts.plan_table(plan=plan, time_zone=request.user.time_zone)
    return render(request, "programs/_plan.html", context)


@csrf_exempt  # authenticated by the provider's HMAC signature instead
@require_POST
def payout_webhook(request: HttpRequest) -> HttpResponse:
    """The payout provider's word on a transfer (paid, returned); duplicates are harmless."""
    try:
        payouts.ingest_webhook(
            body=request.body, signature=request.headers.get("X-Payout-Signature", "")
        )
    except (ValueError, json.JSONDecodeError):
        return JsonResponse({"error": "invalid signature or body"}, status=401)
    return JsonResponse({"status": "ok"})
