"""The Programs and Earnings tabs, and each car's plan (loaded into the vehicle page)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from programs import charts, selectors


@login_required
def program_list(request: HttpRequest) -> HttpResponse:
    return render(request, "programs/list.html", {"tab": "programs"})


@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    return render(request, "programs/earnings.html", {"tab": "earnings"})


@login_required
def vehicle_plan(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    """Tonight's plan for one car: chart, why sentence, and the same as a table."""
    vehicle, plan = selectors.current_plan_for(owner=request.user, vehicle_id=vehicle_id)
    context = {"vehicle": vehicle, "plan": plan}
    if plan is not None:
        context["figure"] = charts.plan_figure(plan=plan, time_zone=request.user.time_zone)
        context["blocks"] = charts.plan_table(plan=plan, time_zone=request.user.time_zone)
    return render(request, "programs/_plan.html", context)
