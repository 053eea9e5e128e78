"""Abuse limits (issue #11): each limit is hit and answers 429 (or allauth's "too many" message),
is kept per key (another address, account or client is not blocked), cannot be reset with a forged
X-Forwarded-For (or Host port), and counts atomically under parallel requests on real Redis.

Fixed-window counters (chargescape.ratelimit) are tested at a frozen instant five seconds into a
minute, so no window rolls over mid-test; allauth's sliding logs do not care about the clock.
Every test counts in its own cache key space (tests/conftest.py `isolated_cache`); threads are
given the same prefix, since each thread has its own cache connection.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from chargescape import ratelimit
from programs.api import services as api_services
from programs.models import AuditEntry, EventParticipation, GridEvent
from tests.conftest import DEFAULT_PASSWORD
from tests.factories import UserFactory
from tests.programs.factories import EventParticipationFactory, UtilityFactory
from tests.totp import totp

pytestmark = pytest.mark.django_db

TOO_MANY_LOGINS = "Too many failed login attempts"
WRONG_PASSWORD = "The email address and/or password you specified are not correct."
# 18:00:05 UTC: 55 s left in the minute window.
STEADY = datetime(2026, 11, 26, 18, 0, 5, tzinfo=UTC)
UTILITY_API = "/api/utility/v1"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Passwords and API client secrets hash quickly: hashing is not under test here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def steady_clock():
    with time_machine.travel(STEADY, tick=False):
        yield


def addr(n: int) -> str:
    """A distinct client address per n (TEST-NET-3)."""
    return f"203.0.113.{n % 250 + 1}"


def login(client: Client, email: str, password: str, **extra: str):
    return client.post(reverse("account_login"), {"login": email, "password": password}, **extra)


def parallel(n: int, attempt: Callable[[int], object]) -> list[object]:
    """Run `attempt(i)` for i in 0..n-1 on n threads released together; their results in order.
    Each thread counts in the test's cache key space and closes its own database connection."""
    prefix = cache.key_prefix
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        cache.key_prefix = prefix
        try:
            barrier.wait()
            results[i] = attempt(i)
        except BaseException as error:
            results[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


# --- The counter itself ------------------------------------------------------------------------


def test_counter_is_atomic_under_parallel_hits(steady_clock):
    """40 threads hit a limit of 10 at once on real Redis: exactly 10 are let through."""
    scope = f"parallel-{uuid.uuid4().hex}"
    allowed = parallel(
        40, lambda i: ratelimit.allow(scope=scope, ident="one", limit=10, window_seconds=60)
    )
    assert allowed.count(True) == 10


def test_counter_expires_with_its_window_and_keys_are_independent():
    """A window's counter carries a TTL (it can never lock a key out for good); a new window
    starts from zero, and another ident has its own count."""
    scope = f"window-{uuid.uuid4().hex}"
    with time_machine.travel(STEADY, tick=False):
        assert [
            ratelimit.allow(scope=scope, ident="a", limit=2, window_seconds=60) for _ in "xyz"
        ] == [
            True,
            True,
            False,
        ]
        assert ratelimit.allow(scope=scope, ident="b", limit=2, window_seconds=60)
        assert ratelimit.retry_after(60) == 55
        key = cache.make_and_validate_key(f"rl:{scope}:a:{int(STEADY.timestamp() // 60)}")
        ttl = cache._cache.get_client(key).ttl(key)
        assert 0 < ttl <= 61
    with time_machine.travel(STEADY.replace(minute=1), tick=False):
        assert ratelimit.allow(scope=scope, ident="a", limit=2, window_seconds=60)


# --- Password login (allauth, ACCOUNT_RATE_LIMITS["login_failed"]) ----------------------------


def test_failed_logins_are_limited_per_account_from_any_address(client, owner):
    """Five wrong passwords for one account, each from a different address, lock that account's
    password login for five minutes (even the right password is refused); another account is
    not affected."""
    for n in range(5):
        response = login(client, owner.email, "wrong-password-1", REMOTE_ADDR=addr(n))
        assert WRONG_PASSWORD in response.content.decode(), n
    response = login(client, owner.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(10))
    assert TOO_MANY_LOGINS in response.content.decode()
    assert client.get(reverse("home")).status_code == 302  # not signed in
    other = UserFactory()
    response = login(client, other.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(11))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_host_header_port_does_not_reset_the_account_limit(client, owner):
    """allauth keys the per-account count on the site's domain, which without django.contrib.sites
    is the Host header; ALLOWED_HOSTS ignores the port, so `Host: testserver:<n>` used to give
    every attempt a fresh count. The account key is the address alone (accounts.adapter)."""
    for n in range(5):
        login(
            client,
            owner.email,
            "wrong-password-1",
            REMOTE_ADDR=addr(n),
            HTTP_HOST=f"testserver:{1000 + n}",
        )
    response = login(
        client, owner.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(9), HTTP_HOST="testserver:2000"
    )
    assert TOO_MANY_LOGINS in response.content.decode()
    response = login(
        client,
        owner.email.upper(),
        DEFAULT_PASSWORD,
        REMOTE_ADDR=addr(9),
        HTTP_HOST="testserver:2001",
    )
    assert TOO_MANY_LOGINS in response.content.decode()


def test_login_posts_are_limited_per_address_and_forwarded_for_is_ignored(client, owner):
    """ACCOUNT_RATE_LIMITS["login"]: 30 sign-in posts a minute per address, whatever
    X-Forwarded-For says; then 429. Another address still gets the form."""
    for n in range(30):
        response = client.post(reverse("account_login"), {}, HTTP_X_FORWARDED_FOR=addr(n))
        assert response.status_code == 200, n
    response = client.post(
        reverse("account_login"),
        {"login": owner.email, "password": DEFAULT_PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert response.status_code == 429
    # Our page (chargescape.urls.handler429), in plain words, with when to try again.
    assert response["Retry-After"] == "60"
    assert "Too many attempts" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302
    response = login(client, owner.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(1))
    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_parallel_failed_logins_are_counted_atomically():
    """Twenty wrong passwords for one account fired at once from twenty addresses: exactly five
    reach the password check, the rest are told to wait (allauth's cache lock + our Redis)."""
    owner = UserFactory(email=f"racer-{uuid.uuid4().hex[:8]}@example.com")

    def attempt(i: int) -> str:
        body = login(Client(), owner.email, "wrong-password-1", REMOTE_ADDR=addr(i)).content
        return "wrong" if WRONG_PASSWORD in body.decode() else "limited"

    outcomes = parallel(20, attempt)
    assert outcomes.count("wrong") == 5
    assert outcomes.count("limited") == 15


def test_admin_login_page_is_limited_per_address(client, steady_clock):
    """The admin's own login page (it only routes to allauth) answers 30 hits a minute per
    REMOTE_ADDR, whatever X-Forwarded-For says; then 429 with Retry-After."""
    url = reverse("admin:login")
    codes = [client.get(url, HTTP_X_FORWARDED_FOR=addr(n)).status_code for n in range(31)]
    assert codes[:30] == [302] * 30
    assert codes[30] == 429
    assert client.get(url, REMOTE_ADDR=addr(1)).status_code == 302


# --- Login by code -------------------------------------------------------------------------------


def _mailed_code(mail) -> str:
    return re.search(r"^([A-Z0-9]{4}-[A-Z0-9]{4})$", mail.body, re.MULTILINE).group(1)


def test_login_code_requests_are_limited_per_email_and_per_address(client, owner, mailoutbox):
    """Three codes a minute per email address (whatever X-Forwarded-For claims), twenty per
    client address; the fourth request for the same email sends nothing."""
    for n in range(3):
        response = Client().post(
            reverse("account_request_login_code"),
            {"email": owner.email},
            REMOTE_ADDR=addr(n),
            HTTP_X_FORWARDED_FOR=addr(n + 100),
        )
        assert response.status_code == 302, n
    response = Client().post(
        reverse("account_request_login_code"), {"email": owner.email}, REMOTE_ADDR=addr(50)
    )
    assert response.status_code == 200
    assert TOO_MANY_LOGINS in response.content.decode()
    assert len(mailoutbox) == 3
    # Another owner is not blocked by that.
    other = UserFactory()
    response = Client().post(
        reverse("account_request_login_code"), {"email": other.email}, REMOTE_ADDR=addr(50)
    )
    assert response.status_code == 302
    # Per address: twenty requests a minute, for any emails, from fresh sessions (a session with
    # a code pending is only sent on to the confirm page).
    answers = [
        Client().post(
            reverse("account_request_login_code"),
            {"email": f"nobody{n}@example.com"},
            REMOTE_ADDR="198.51.100.9",
            HTTP_X_FORWARDED_FOR=addr(n),
        )
        for n in range(21)
    ]
    assert [a.status_code for a in answers[:20]] == [302] * 20
    assert answers[20].status_code == 200
    assert TOO_MANY_LOGINS in answers[20].content.decode()


def test_three_wrong_login_codes_void_the_code(client, owner, mailoutbox):
    """ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS: after three wrong codes the mailed code is dead, even
    typed correctly; the owner must ask for a new one."""
    client.post(reverse("account_request_login_code"), {"email": owner.email})
    code = _mailed_code(mailoutbox[-1])
    for _ in range(2):
        response = client.post(reverse("account_confirm_login_code"), {"code": "WRONG-CODE"})
        assert response.status_code == 200
        assert "Incorrect code." in response.content.decode()
    response = client.post(reverse("account_confirm_login_code"), {"code": "WRONG-CODE"})
    assert response.status_code == 302  # back to the start
    response = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert response.status_code == 302
    assert response["Location"] == reverse("account_request_login_code")
    assert client.get(reverse("home")).status_code == 302


# --- MFA codes at sign-in --------------------------------------------------------------------


def test_totp_codes_at_sign_in_are_limited_per_account(client):
    """allauth.mfa counts wrong authenticator codes as failed logins of the account (five per five
    minutes): the sixth try is refused even with the right code, from any address; another
    account's second step is not affected."""
    user = UserFactory()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    # Frozen: a code computed just before a 30-s step boundary would be stale when checked.
    with time_machine.travel(time.time(), tick=False):
        response = login(client, user.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(0))
        assert response["Location"] == reverse("mfa_authenticate")
        for n in range(5):
            response = client.post(
                reverse("mfa_authenticate"), {"code": "000000"}, REMOTE_ADDR=addr(n + 1)
            )
            assert "Incorrect code." in response.content.decode(), n
        response = client.post(
            reverse("mfa_authenticate"), {"code": totp(secret)}, REMOTE_ADDR=addr(20)
        )
        assert response.status_code == 200
        assert TOO_MANY_LOGINS in response.content.decode()
        assert client.get(reverse("home")).status_code == 302

        other, other_secret = UserFactory(), generate_totp_secret()
        TOTP.activate(other, other_secret)
        fresh = Client()
        login(fresh, other.email, DEFAULT_PASSWORD, REMOTE_ADDR=addr(30))
        response = fresh.post(
            reverse("mfa_authenticate"), {"code": totp(other_secret)}, REMOTE_ADDR=addr(30)
        )
        assert response.status_code == 302
        assert fresh.get(reverse("home")).status_code == 200


# --- Password reset ----------------------------------------------------------------------------


def test_password_reset_is_limited_per_email_and_per_address(client, owner, mailoutbox):
    """Five reset mails a minute per address, then 429 and no mail; twenty requests a minute per
    client address, whatever X-Forwarded-For says."""
    for n in range(5):
        response = Client().post(
            reverse("account_reset_password"), {"email": owner.email}, REMOTE_ADDR=addr(n)
        )
        assert response.status_code == 302, n
    response = Client().post(
        reverse("account_reset_password"), {"email": owner.email}, REMOTE_ADDR=addr(9)
    )
    assert response.status_code == 429
    assert len(mailoutbox) == 5
    other = UserFactory()
    response = Client().post(
        reverse("account_reset_password"), {"email": other.email}, REMOTE_ADDR=addr(9)
    )
    assert response.status_code == 302
    assert len(mailoutbox) == 6

    spray = Client()
    codes = [
        spray.post(
            reverse("account_reset_password"),
            {"email": f"nobody{n}@example.com"},
            REMOTE_ADDR="198.51.100.10",
            HTTP_X_FORWARDED_FOR=addr(n),
        ).status_code
        for n in range(21)
    ]
    assert codes[:20] == [302] * 20
    assert codes[20] == 429


# --- Event opt-out -----------------------------------------------------------------------------


def test_opt_out_spam_is_limited_per_owner_but_the_first_tries_always_go_through(
    client, owner, settings, steady_clock
):
    """The first opt-out goes through; repeats are idempotent (one opt-out, one audit entry) and
    twenty posts a minute are all answered; the 21st gets 429 with Retry-After. Another owner's
    opt-out is not blocked by it."""
    assert settings.OPT_OUT_RATE_LIMIT_PER_MINUTE == 20
    mine = EventParticipationFactory(
        enrollment__vehicle__owner=owner, event__status=GridEvent.Status.SCHEDULED
    )
    url = reverse("programs:participation-opt-out", args=[mine.pk])
    client.force_login(owner)
    first = client.post(url, {"choice": "full"})
    assert first.status_code == 302
    mine.refresh_from_db()
    opted_out_at = mine.opted_out_at
    assert opted_out_at is not None
    for n in range(19):
        assert client.post(url, {"choice": "full"}).status_code == 302, n
    limited = client.post(url, {"choice": "full"}, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert limited.status_code == 429
    assert limited["Retry-After"] == "55"
    assert client.get(url).status_code == 200  # reading the page is not counted
    mine.refresh_from_db()
    assert mine.opted_out_at == opted_out_at
    assert AuditEntry.objects.filter(action="event.opt_out").count() == 1

    other_owner = UserFactory()
    theirs = EventParticipationFactory(
        enrollment__vehicle__owner=other_owner, event__status=GridEvent.Status.SCHEDULED
    )
    other = Client()
    other.force_login(other_owner)
    url = reverse("programs:participation-opt-out", args=[theirs.pk])
    assert other.post(url, {"choice": "full"}).status_code == 302
    assert EventParticipation.objects.get(pk=theirs.pk).opted_out_at is not None


# --- Owner REST API (chargescape.throttling) --------------------------------------------------


def test_owner_api_is_throttled_per_owner_with_retry_after(client, owner, settings, steady_clock):
    """OWNER_API_RATE_LIMITS: reads and writes counted apart per owner; beyond the limit 429 in
    the API's error envelope with Retry-After; a forged X-Forwarded-For changes nothing; another
    owner is not blocked."""
    settings.OWNER_API_RATE_LIMITS = {"read": 3, "write": 2}
    client.force_login(owner)
    me = reverse("api:profile")
    codes = [client.get(me, HTTP_X_FORWARDED_FOR=addr(n)).status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get(me)
    assert limited.json()["error"]["code"] == "throttled"
    assert limited["Retry-After"] == "55"
    body = {"time_zone": "America/Denver", "service_zip": "80202"}
    writes = [client.put(me, body, content_type="application/json").status_code for _ in range(3)]
    assert writes == [200, 200, 429]
    other = Client()
    other.force_login(UserFactory())
    assert other.get(me).status_code == 200


def test_owner_api_without_a_session_is_throttled_per_address(client, settings, steady_clock):
    """The schema page is public: counted per REMOTE_ADDR, never per X-Forwarded-For."""
    settings.OWNER_API_RATE_LIMITS = {"read": 2, "write": 2}
    schema = reverse("api-schema")
    codes = [
        client.get(schema, HTTP_X_FORWARDED_FOR=addr(n), REMOTE_ADDR="198.51.100.20").status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]
    assert client.get(schema, REMOTE_ADDR="198.51.100.21").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_owner_api_throttle_is_atomic_under_parallel_requests(settings, steady_clock):
    """Twenty requests of one owner at once against a limit of eight: exactly eight answered."""
    settings.OWNER_API_RATE_LIMITS = {"read": 8, "write": 8}
    owner = UserFactory(email=f"burst-{uuid.uuid4().hex[:8]}@example.com")
    session = Client()
    session.force_login(owner)
    cookie = session.cookies["sessionid"].value

    def attempt(i: int) -> int:
        http = Client()
        http.cookies["sessionid"] = cookie
        return http.get(reverse("api:profile")).status_code

    codes = parallel(20, attempt)
    assert sorted(codes) == [200] * 8 + [429] * 12


# --- Utility API clients (programs.api.auth) ----------------------------------------------------


def _token(http: Client, client_id: str, secret: str, **extra: str):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return http.post(
        f"{UTILITY_API}/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
        **extra,
    )


def test_utility_api_clients_are_limited_per_client(settings, steady_clock):
    """UTILITY_API_RATE_LIMITS["read"] per client: the fourth read of client 1 is 429 with
    Retry-After, whatever address it claims; client 2 of another utility reads on."""
    settings.UTILITY_API_RATE_LIMITS = {**settings.UTILITY_API_RATE_LIMITS, "read": 3}
    bearer = {}
    for name in ("one", "two"):
        api_client, secret = api_services.create_api_client(
            utility=UtilityFactory(), name=f"Grid ops {name}", scopes=["read"]
        )
        token = _token(Client(), api_client.application.client_id, secret).json()["access_token"]
        bearer[name] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    http = Client()
    codes = [
        http.get(
            f"{UTILITY_API}/programs", **bearer["one"], HTTP_X_FORWARDED_FOR=addr(n)
        ).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    limited = http.get(f"{UTILITY_API}/programs", **bearer["one"], REMOTE_ADDR=addr(99))
    assert limited.status_code == 429
    assert limited["Retry-After"] == "55"
    assert http.get(f"{UTILITY_API}/programs", **bearer["two"]).status_code == 200


def test_utility_token_endpoint_is_limited_per_address(settings, steady_clock):
    """UTILITY_API_RATE_LIMITS["token"] token requests a minute per REMOTE_ADDR, even with bad
    credentials and a different X-Forwarded-For each time; then 429 with Retry-After."""
    settings.UTILITY_API_RATE_LIMITS = {**settings.UTILITY_API_RATE_LIMITS, "token": 3}
    http = Client()
    codes = [
        _token(http, "guess", f"secret-{n}", HTTP_X_FORWARDED_FOR=addr(n)).status_code
        for n in range(4)
    ]
    assert codes[:3] == [401] * 3
    assert codes[3] == 429
    limited = _token(http, "guess", "secret", HTTP_X_FORWARDED_FOR="198.51.100.3")
    assert limited["Retry-After"] == "55"
    assert _token(Client(), "guess", "secret", REMOTE_ADDR=addr(7)).status_code == 401
