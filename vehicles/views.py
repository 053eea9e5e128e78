"""The Vehicles tab. Linking cars and chargers arrives with the vehicle-cloud and OCPP issues."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def vehicle_list(request: HttpRequest) -> HttpResponse:
    return render(request, "vehicles/list.html", {"tab": "vehicles"})
