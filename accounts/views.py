"""The Account tab: profile (time zone, ZIP), notifications (push on this device, what to hear
about and how, quiet hours), security (MFA, passkeys, email) and sign-out."""

from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import services
from accounts.forms import ProfileForm
from accounts.notifications import push
from accounts.notifications import selectors as notification_selectors
from accounts.notifications.forms import PreferenceForm


@login_required
def account(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        services.update_profile(user=request.user, **form.cleaned_data)
        messages.success(request, "Profile saved.")
        return redirect("accounts:account")
    preference = notification_selectors.preference_for(owner=request.user)
    context = {
        "tab": "account",
        "form": form,
        "mfa_enabled": is_mfa_enabled(request.user),
        "notification_form": PreferenceForm(preference=preference),
        "vapid_public_key": push.application_server_key(),
        "push_devices": request.user.push_subscriptions.count(),
    }
    return render(request, "accounts/account.html", context, status=400 if form.errors else 200)
