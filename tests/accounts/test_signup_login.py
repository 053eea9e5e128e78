"""Sign-up with mandatory email verification, password login, login by code, and rate limits."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plug-in-at-night-42"
TOO_MANY = "Too many failed login attempts"


def _link_from(mail) -> str:
    match = re.search(r"http://testserver(/accounts/confirm-email/[^/\s]+/)", mail.body)
    assert match, mail.body
    return match.group(1)


def test_signup_sends_verification_mail_and_confirming_signs_in(client, mailoutbox):
    """A new owner must confirm the emailed link before using the app; confirming signs them in."""
    response = client.post(
        reverse("account_signup"),
        {"email": "Dana@Example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get(email="dana@example.com")
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["dana@example.com"]

    # Unverified: the password alone does not get in.
    client.logout()
    response = client.post(
        reverse("account_login"), {"login": "dana@example.com", "password": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert client.get(reverse("home")).status_code == 302

    confirm_url = _link_from(mailoutbox[-1])
    assert client.get(confirm_url).status_code == 200  # a page with a button, never GET-confirms
    assert not EmailAddress.objects.get(user=user).verified
    response = client.post(confirm_url)
    assert response.status_code == 302
    assert EmailAddress.objects.get(user=user).verified
    assert client.get(reverse("home")).status_code == 200

    client.logout()
    response = client.post(
        reverse("account_login"), {"login": "dana@example.com", "password": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_signup_rejects_mismatched_passwords_with_a_message(client, mailoutbox):
    response = client.post(
        reverse("account_signup"),
        {"email": "eli@example.com", "password1": NEW_PASSWORD, "password2": "something-else-7"},
    )
    assert response.status_code == 200
    assert "You must type the same password each time." in response.content.decode()
    assert not User.objects.filter(email="eli@example.com").exists()
    assert mailoutbox == []


def test_login_by_code_signs_in_with_the_mailed_code(client, owner, mailoutbox):
    """An owner who forgot their password signs in with a one-time code sent by email."""
    response = client.post(reverse("account_request_login_code"), {"email": owner.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    code = re.search(r"^([A-Z0-9]{4}-[A-Z0-9]{4})$", mailoutbox[0].body, re.MULTILINE).group(1)

    wrong = client.post(reverse("account_confirm_login_code"), {"code": "ZZZZZZ"})
    assert wrong.status_code == 200
    assert client.get(reverse("home")).status_code == 302

    response = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_eleventh_failed_login_in_a_minute_is_blocked(client, owner, password):
    """Ten wrong passwords a minute from one address get the usual error; the 11th attempt is
    blocked outright, even with the right password."""
    for attempt in range(10):
        response = client.post(
            reverse("account_login"),
            {"login": f"guess{attempt}@example.com", "password": "wrong-password-1"},
        )
        assert response.status_code == 200, attempt
        assert "not correct" in response.content.decode()
    response = client.post(reverse("account_login"), {"login": owner.email, "password": password})
    assert response.status_code == 200
    assert TOO_MANY in response.content.decode()
    assert client.get(reverse("home")).status_code == 302


def test_spoofed_forwarded_for_does_not_reset_the_login_limit(client, owner, password):
    """A client cannot dodge the limit by inventing X-Forwarded-For addresses."""
    for attempt in range(10):
        client.post(
            reverse("account_login"),
            {"login": f"guess{attempt}@example.com", "password": "wrong-password-1"},
            HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}",
        )
    response = client.post(
        reverse("account_login"),
        {"login": owner.email, "password": password},
        HTTP_X_FORWARDED_FOR="198.51.100.77",
    )
    assert TOO_MANY in response.content.decode()
