"""The Account tab: profile (time zone, ZIP), security (MFA, passkeys, email) and sign-out."""

from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import services
from accounts.forms import ProfileForm


@login_required
def account(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        services.update_profile(user=request.user, **form.cleaned_data)
        messages.success(request, "Profile saved.")
        return redirect("accounts:account")
    context = {"tab": "account", "form": form, "mfa_enabled": is_mfa_enabled(request.user)}
    return render(request, "accounts/account.html", context, status=400 if form.errors else 200)
