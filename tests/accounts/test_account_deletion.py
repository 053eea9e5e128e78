"""Deleting an account from the Account page (issue 11, privacy): the person is pseudonymised and
signed out everywhere, every car is unlinked at the (simulated) automaker, chargers released,
enrollments ended, unsent payouts returned — and the ledger is kept, balanced, to the cent."""

import subprocess
import sys

import pytest
import requests
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.db.models import Sum
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts import deletion
from accounts.models import Notification, NotificationPreference, PushSubscription, User
from accounts.notifications import services as notifications
from accounts.views import DeleteAccountForm
from programs import enrollments, ledger, payouts, statements
from programs.models import AuditEntry, Enrollment, LedgerEntry, LedgerTransaction, Payout
from tests.conftest import DEFAULT_PASSWORD
from tests.factories import UserFactory, VehicleFactory
from tests.programs.conftest import make_program, utility  # noqa: F401 — fixture
from tests.vehicles.conftest import cloud  # noqa: F401 — the simulated automaker cloud
from tests.vehicles.test_linking import _link
from vehicles.chargers import services as charger_services
from vehicles.models import Vehicle, VehicleLink, VehicleReading

pytestmark = pytest.mark.django_db


@pytest.fixture
def program(utility):  # noqa: F811
    return make_program(utility, code="peak-saver", auto_approve=True)


@pytest.fixture
def rich_owner(owner, owner_client, cloud, program):  # noqa: F811
    """An owner with everything an account can hold: two cars linked at the simulated cloud (one
    with a home geofence and a precise reading), a paired charger, an active enrollment with its
    $50 bonus, a $50 payout not yet handed to the provider and another one already sent, TOTP,
    a push subscription, a notification and a signed-in session."""
    cars = _link(owner_client, pick=2)
    first = cars[0]
    first.home_latitude, first.home_longitude = "37.775", "-122.419"
    first.save()
    VehicleReading.objects.create(
        vehicle=first,
        recorded_at=timezone.now(),
        source=VehicleReading.Source.POLL,
        soc_pct=60,
        latitude="37.774929",
        longitude="-122.419416",
    )
    provisioned = charger_services.provision_charger(charge_point_id="CP-HOME-1")
    charger = charger_services.claim_charger(
        owner=owner, charge_point_id="CP-HOME-1", pairing_code=provisioned.pairing_code
    )
    charger_services.rename_charger(charger=charger, name="Garage at Elm Street")
    charger_services.pair_vehicle(charger=charger, vehicle=first)
    enrollments.enroll(vehicle=first, program=program, terms_version=1, actor=owner)
    sent = payouts.request_payout(owner=owner, key="sent-to-bank")  # the whole $50 bonus
    Payout.objects.filter(pk=sent.pk).update(provider_reference="sim_po_sent")
    enrollments.enroll(vehicle=cars[1], program=program, terms_version=1, actor=owner)
    unsent = payouts.request_payout(owner=owner, key="not-yet-sent")  # the second $50
    Authenticator.objects.create(user=owner, type=Authenticator.Type.TOTP, data={"secret": "x"})
    PushSubscription.objects.create(
        owner=owner, endpoint="https://push.example/abc", p256dh="k", auth="a"
    )
    notifications.notify(
        owner=owner,
        kind="enrollment_approved",
        context={"program": program.name, "vehicle": first.display_name, "reason": ""},
    )
    NotificationPreference.objects.get_or_create(owner=owner)
    assert Notification.objects.filter(owner=owner).exists()
    owner.first_name, owner.last_name = "Sam", "Rivera"
    owner.save()
    return owner, cars, charger, sent, unsent


def _ledger_snapshot():
    return list(
        LedgerEntry.objects.order_by("pk").values_list(
            "pk", "transaction_id", "account_id", "amount_cents"
        )
    )


def test_owner_deletes_their_account_and_only_the_person_goes(
    rich_owner,
    owner_client,
    cloud,  # noqa: F811
):
    owner, _cars, charger, sent, unsent = rich_owner
    email = owner.email
    old_token = VehicleLink.objects.get(owner=owner).access_token
    api = settings.VEHICLE_PROVIDERS["smartcar"]["API_ORIGIN"]
    assert (
        requests.get(
            f"{api}/v2.0/vehicles", headers={"Authorization": f"Bearer {old_token}"}, timeout=5
        ).status_code
        == 200
    )
    entries_before = _ledger_snapshot()
    payable_before = ledger.payable_cents(owner)
    month = timezone.localdate().replace(day=1)
    statement_before = statements.build(owner=owner, month=month)
    bystander = UserFactory()
    their_car = VehicleFactory(owner=bystander, vin="5YJ3E1EA7KF317000", home_latitude="40.712")

    page = owner_client.get(reverse("accounts:account"))
    assert reverse("accounts:account-delete").encode() in page.content
    response = owner_client.post(reverse("accounts:account-delete"), {"confirmation": email})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")

    # The person: pseudonymised, no way back in, nothing left that reaches them.
    owner.refresh_from_db()
    assert owner.email == f"deleted-{owner.pk}@invalid"
    assert (owner.first_name, owner.last_name, owner.service_zip) == ("", "", "")
    assert not owner.has_usable_password()
    assert not owner.is_active
    assert not EmailAddress.objects.filter(user=owner).exists()
    assert not EmailAddress.objects.filter(email__iexact=email).exists()
    assert not Authenticator.objects.filter(user=owner).exists()
    assert not PushSubscription.objects.filter(owner=owner).exists()
    assert not Notification.objects.filter(owner=owner).exists()
    assert not NotificationPreference.objects.filter(owner=owner).exists()
    assert not [
        s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(owner.pk)
    ]
    assert owner_client.get(reverse("accounts:account")).status_code == 302  # signed out

    # The cars: unlinked through the automaker's API, tokens wiped and dead at the cloud.
    assert cloud.request_count("vehicle.disconnect") == 2
    link = VehicleLink.objects.get(owner=owner)
    assert (link.status, link.access_token, link.refresh_token) == ("revoked", "", "")
    assert (
        requests.get(
            f"{api}/v2.0/vehicles", headers={"Authorization": f"Bearer {old_token}"}, timeout=5
        ).status_code
        == 401
    )
    for car in Vehicle.objects.filter(owner=owner):
        assert car.link_state == Vehicle.LinkState.UNLINKED
        assert (car.home_latitude, car.home_longitude, car.vin, car.nickname) == (
            None,
            None,
            "",
            "",
        )
    assert not VehicleReading.objects.filter(vehicle__owner=owner, latitude__isnull=False).exists()

    # The charger is free for the next resident; the enrollments ended, audited per utility.
    charger.refresh_from_db()
    assert (charger.owner, charger.usual_vehicle, charger.name) == (None, None, "")
    assert set(
        Enrollment.objects.filter(vehicle__owner=owner).values_list("status", flat=True)
    ) == {Enrollment.Status.ENDED}
    assert AuditEntry.objects.filter(action="enrollment.ended").count() == 2

    # Money: the unsent payout came back to the balance; the one at the bank goes on; the books
    # keep every entry untouched and still balance to zero.
    unsent.refresh_from_db()
    sent.refresh_from_db()
    assert unsent.status == Payout.Status.RETURNED
    assert sent.status == Payout.Status.PENDING
    assert ledger.payable_cents(owner) == payable_before + unsent.amount_cents
    entries_after = _ledger_snapshot()
    assert entries_after[: len(entries_before)] == entries_before
    assert LedgerEntry.objects.aggregate(total=Sum("amount_cents"))["total"] == 0
    assert ledger.unbalanced_transactions() == []
    assert LedgerTransaction.objects.filter(entries__account__owner=owner).exists()
    statement_after = statements.build(owner=owner, month=month)
    assert statement_after.earned_cents == statement_before.earned_cents
    assert statement_after.paid_out_cents == statement_before.paid_out_cents - unsent.amount_cents

    # Recorded, and nobody else touched.
    entry = LogEntry.objects.get(object_id=str(owner.pk), action_flag=DELETION)
    assert entry.user_id == owner.pk
    assert email not in entry.object_repr
    their_car.refresh_from_db()
    assert (their_car.vin, str(their_car.home_latitude)) == ("5YJ3E1EA7KF317000", "40.712")
    bystander.refresh_from_db()
    assert bystander.is_active
    assert EmailAddress.objects.filter(user=bystander).exists()


def test_deleted_owner_cannot_sign_in_with_old_or_new_address(owner, owner_client):
    email = owner.email
    deletion.delete_account(user=owner)
    for login in (email, f"deleted-{owner.pk}@invalid"):
        fresh = Client()
        response = fresh.post(
            reverse("account_login"), {"login": login, "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 200  # the form again, with an error
        assert "_auth_user_id" not in fresh.session
    assert not User.objects.get(pk=owner.pk).check_password(DEFAULT_PASSWORD)


def test_deleting_twice_changes_nothing_more(rich_owner, cloud):  # noqa: F811
    owner, *_ = rich_owner
    deletion.delete_account(user=owner)
    entries = _ledger_snapshot()
    audits = AuditEntry.objects.count()
    snapshot = User.objects.filter(pk=owner.pk).values().get()
    deletion.delete_account(user=User.objects.get(pk=owner.pk))
    assert cloud.request_count("vehicle.disconnect") == 2
    assert _ledger_snapshot() == entries
    assert AuditEntry.objects.count() == audits
    again = User.objects.filter(pk=owner.pk).values().get()
    assert {k: v for k, v in again.items() if k not in ("updated_at", "password")} == {
        k: v for k, v in snapshot.items() if k not in ("updated_at", "password")
    }
    assert LogEntry.objects.filter(object_id=str(owner.pk), action_flag=DELETION).count() == 1


def test_wrong_confirmation_deletes_nothing(owner, owner_client):
    response = owner_client.post(reverse("accounts:account-delete"), {"confirmation": "oops"})
    assert response.status_code == 400
    assert b"Nothing was deleted" in response.content
    owner.refresh_from_db()
    assert owner.is_active
    assert owner.email.endswith("@example.com")


def test_the_confirmation_is_no_password_oracle(owner, owner_client):
    """Ten wrong guesses, then 429 — even for the right password — and nothing deleted."""
    for attempt in range(10):
        wrong = owner_client.post(
            reverse("accounts:account-delete"), {"confirmation": f"guess-{attempt}"}
        )
        assert wrong.status_code == 400
    limited = owner_client.post(
        reverse("accounts:account-delete"), {"confirmation": DEFAULT_PASSWORD}
    )
    assert limited.status_code == 429
    owner.refresh_from_db()
    assert owner.is_active
    assert not deletion.is_deleted(owner)


def test_password_also_confirms(owner, owner_client, password):
    response = owner_client.post(reverse("accounts:account-delete"), {"confirmation": password})
    assert response.status_code == 302
    owner.refresh_from_db()
    assert deletion.is_deleted(owner)


def test_the_page_never_deletes_on_get_and_needs_the_csrf_token(owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    page = browser.get(reverse("accounts:account-delete"), {"confirmation": owner.email})
    assert page.status_code == 200
    assert b"cannot be undone" in page.content
    forged = browser.post(reverse("accounts:account-delete"), {"confirmation": owner.email})
    assert forged.status_code == 403
    owner.refresh_from_db()
    assert owner.is_active
    assert not deletion.is_deleted(owner)
    assert Client().post(reverse("accounts:account-delete")).status_code == 302  # to sign-in


def test_receivers_are_connected_when_django_starts():
    """The Account page relies on programs.account_deletion being connected at start-up, not on
    a test importing it: a fresh interpreter must see the receiver."""
    code = (
        "import django; django.setup();"
        "from accounts.deletion import account_deleting;"
        "print(sum(1 for r in account_deleting.receivers))"
    )
    out = subprocess.run(  # noqa: S603 — our own interpreter and a literal script
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(out.stdout.strip().splitlines()[-1]) >= 1


FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # these tests hash per example


@override_settings(PASSWORD_HASHERS=FAST_HASHERS)
@hypothesis_settings(max_examples=60, deadline=None)
@given(typed=st.text(max_size=300))
def test_only_the_email_or_the_password_confirms(typed):
    """Whatever is typed — empty, huge, control characters, lookalikes — the form answers with a
    message and only the owner's own email address or password confirm (no database needed)."""
    user = User(email="sam@example.com")
    user.password = make_password("s3cret-Pass phrase ")
    form = DeleteAccountForm({"confirmation": typed}, user=user)
    ok = form.is_valid()
    expected = typed.strip().lower() == "sam@example.com" or typed == "s3cret-Pass phrase "
    assert ok == (expected and len(typed) <= 254)
    if not ok:
        assert form.errors["confirmation"]


@override_settings(PASSWORD_HASHERS=FAST_HASHERS)
def test_email_in_any_case_and_the_exact_password_confirm():
    user = User(email="sam@example.com")
    user.password = make_password("s3cret-Pass phrase ")
    for typed in (" SAM@example.com ", "s3cret-Pass phrase "):
        assert DeleteAccountForm({"confirmation": typed}, user=user).is_valid()
    for typed in ("s3cret-Pass phrase", "sam@example.co", "", "sam@example.com\x00"):
        assert not DeleteAccountForm({"confirmation": typed}, user=user).is_valid()
