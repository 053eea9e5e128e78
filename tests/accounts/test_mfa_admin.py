"""MFA (TOTP, recovery codes, passkeys) and the MFA-gated admin for program managers."""

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from accounts.roles import make_program_manager
from chargescape.management.commands.seed_demo import (
    MANAGER_EMAIL,
    MANAGER_PASSWORD,
    seed_demo_accounts,
)
from tests.totp import totp

pytestmark = pytest.mark.django_db


def _password_login(client, email: str, password: str):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def _enrol_totp(client, password: str) -> str:
    """Set up an authenticator app; allauth first asks for the password again (reauthentication)."""
    response = client.get(reverse("mfa_activate_totp"))
    assert response["Location"].startswith(reverse("account_reauthenticate"))
    client.post(reverse("account_reauthenticate"), {"password": password})
    response = client.get(reverse("mfa_activate_totp"))
    assert response.status_code == 200
    secret = response.context["form"].secret
    response = client.post(reverse("mfa_activate_totp"), {"code": totp(secret)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return secret


def test_totp_enrolment_then_login_asks_for_the_code(client, owner, password):
    """After enrolling an authenticator app, a password is no longer enough to sign in."""
    with time_machine.travel("2026-11-26 10:00:00Z", tick=False):
        assert _password_login(client, owner.email, password).status_code == 302
        secret = _enrol_totp(client, password)
    assert Authenticator.objects.filter(user=owner, type=Authenticator.Type.TOTP).exists()
    client.logout()

    with time_machine.travel("2026-11-26 10:05:00Z", tick=False):
        response = _password_login(client, owner.email, password)
        assert response.status_code == 302
        assert response["Location"] == reverse("mfa_authenticate")
        assert client.get(reverse("home")).status_code == 302  # not signed in yet

        wrong = client.post(reverse("mfa_authenticate"), {"code": "000000"})
        assert wrong.status_code == 200
        assert "Incorrect code" in wrong.content.decode()

        response = client.post(reverse("mfa_authenticate"), {"code": totp(secret)})
        assert response.status_code == 302
        assert client.get(reverse("home")).status_code == 200


def test_recovery_code_signs_in_once(client, password):
    """A recovery code works instead of the app, and only once."""
    accounts = seed_demo_accounts()
    code = accounts.recovery_codes[0]
    _password_login(client, MANAGER_EMAIL, MANAGER_PASSWORD)
    assert client.post(reverse("mfa_authenticate"), {"code": code}).status_code == 302
    client.logout()
    _password_login(client, MANAGER_EMAIL, MANAGER_PASSWORD)
    assert client.post(reverse("mfa_authenticate"), {"code": code}).status_code == 200


def test_passkey_pages_are_offered(client, owner, password):
    """Passkeys (WebAuthn) can be added from the security page and used to sign in."""
    _password_login(client, owner.email, password)
    client.post(reverse("account_reauthenticate"), {"password": password})
    add_page = client.get(reverse("mfa_add_webauthn"))
    assert add_page.status_code == 200
    assert "mfa/js/webauthn.js" in add_page.content.decode()
    client.logout()
    login_page = client.get(reverse("account_login")).content.decode()
    assert "passkey" in login_page.lower()


def test_staff_without_mfa_is_refused_by_admin(client, owner, password):
    """A program manager who has not set up MFA cannot open the admin, even when signed in."""
    make_program_manager(user=owner)
    _password_login(client, owner.email, password)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert response.status_code == 403
    assert "two-factor authentication" in response.content.decode()
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 302


def test_staff_with_mfa_but_password_only_session_is_asked_for_a_code(client, owner, password):
    """An MFA-enrolled manager whose session skipped MFA (e.g. login by code) must re-check."""
    with time_machine.travel("2026-11-26 10:00:00Z", tick=False):
        _password_login(client, owner.email, password)
        secret = _enrol_totp(client, password)
        make_program_manager(user=owner)
    client.logout()
    client.force_login(owner)  # a session without any MFA record
    with time_machine.travel("2026-11-26 10:05:00Z", tick=False):
        response = client.get(reverse("admin:login"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("mfa_reauthenticate"))
        response = client.post(reverse("mfa_reauthenticate"), {"code": totp(secret)})
        assert response.status_code == 302
        assert client.get(reverse("admin:index")).status_code == 200


def test_manager_with_totp_session_reaches_admin(client):
    """The seeded demo manager signs in with password + TOTP and sees the admin."""
    accounts = seed_demo_accounts()
    assert Group.objects.get(name="Program managers").user_set.filter(pk=accounts.manager.pk)
    with time_machine.travel("2026-11-26 10:00:00Z", tick=False):
        response = client.get(reverse("admin:index"))
        login = client.get(response["Location"])
        assert login["Location"].startswith(reverse("account_login"))
        _password_login(client, MANAGER_EMAIL, MANAGER_PASSWORD)
        client.post(reverse("mfa_authenticate"), {"code": totp(accounts.totp_secret)})
        response = client.get(reverse("admin:index"))
        assert response.status_code == 200
        assert "ChargeScape program management" in response.content.decode()


def test_owner_is_refused_by_admin(owner_client):
    response = owner_client.get(reverse("admin:login"))
    assert response.status_code == 403


def test_seed_demo_is_idempotent(settings, capsys):
    settings.DEBUG = True
    call_command("seed_demo")
    first = seed_demo_accounts()
    call_command("seed_demo")
    second = seed_demo_accounts()
    assert first.owner.pk == second.owner.pk
    assert first.manager.pk == second.manager.pk
    assert first.totp_secret == second.totp_secret
    assert Authenticator.objects.filter(user=second.manager).count() == 2  # TOTP + recovery codes
    assert MANAGER_EMAIL in capsys.readouterr().out


def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(Exception, match="public passwords"):
        call_command("seed_demo")


def test_admin_login_is_rate_limited(client):
    """The admin's sign-in entry point answers 429 after 30 hits a minute from one address."""
    statuses = [client.get(reverse("admin:login")).status_code for _ in range(31)]
    assert set(statuses[:30]) == {302}
    assert statuses[30] == 429
