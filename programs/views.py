"""The Programs and Earnings tabs."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def program_list(request: HttpRequest) -> HttpResponse:
    return render(request, "programs/list.html", {"tab": "programs"})


@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    return render(request, "programs/earnings.html", {"tab": "earnings"})
