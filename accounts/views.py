"""The Account tab: profile (time zone, ZIP), notifications (push on this device, what to hear
about and how, quiet hours), security (MFA, passkeys, email), sign-out and account deletion."""

from allauth.mfa.utils import is_mfa_enabled
from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import deletion, services
from accounts.forms import ProfileForm
from accounts.notifications import push
from accounts.notifications import selectors as notification_selectors
from accounts.notifications.forms import PreferenceForm
from chargescape import ratelimit

# The confirmation accepts the password, so it must not become a password-guessing oracle for
# whoever holds a session: ten tries per ten minutes per account.
DELETE_TRIES_LIMIT, DELETE_TRIES_WINDOW_S = 10, 600


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


class DeleteAccountForm(forms.Form):
    """The owner retypes their email address or password: a stray tap deletes nothing."""

    confirmation = forms.CharField(
        label="Your email address or password",
        max_length=254,
        strip=False,  # a password may start or end with a space
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Type it to confirm that you want to delete your account.",
    )

    def __init__(self, *args: object, user: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_confirmation(self) -> str:
        value = self.cleaned_data["confirmation"]
        typed_email = value.strip().lower() == self.user.email.lower()
        if not typed_email and not self.user.check_password(value):
            raise forms.ValidationError(
                "That is neither your email address nor your password. Nothing was deleted."
            )
        return value


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request: HttpRequest) -> HttpResponse:
    """What deletion means, then — on a POST with the retyped email or password — do it."""
    form = DeleteAccountForm(request.POST or None, user=request.user)
    if request.method == "POST" and not ratelimit.allow(
        scope="account-delete",
        ident=str(request.user.pk),
        limit=DELETE_TRIES_LIMIT,
        window_seconds=DELETE_TRIES_WINDOW_S,
    ):
        return ratelimit.too_many_requests(DELETE_TRIES_WINDOW_S)
    if request.method == "POST" and form.is_valid():
        deletion.delete_account(user=request.user, actor=request.user)
        logout(request)
        messages.success(request, "Your account is deleted. Thank you for charging smarter.")
        return redirect("home")
    context = {"tab": "account", "form": form}
    return render(
        request, "accounts/delete_account.html", context, status=400 if form.errors else 200
    )
