"""Owners claim a charger with its id and pairing code and only ever see their own (I6);
operators provision chargers with secrets shown once."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string
from django.urls import reverse

from tests.factories import UserFactory
from vehicles.chargers import selectors, services
from vehicles.chargers.models import Charger

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.vehicles.chargers.urls")]


@pytest.fixture
def label():
    """A provisioned, unclaimed charger and the pairing code printed on its label."""
    provisioned = services.provision_charger(charge_point_id="CS-LABEL-1", v2g_capable=True)
    return provisioned.charger, provisioned.pairing_code


def test_owner_claims_a_charger_with_the_code_on_its_label(owner_client, owner, label):
    """The right id and code link the charger and lead to its page; typing the code in lower
    case without the dash works too."""
    charger, code = label
    response = owner_client.post(
        reverse("vehicles:chargers:charger-claim"),
        {"charge_point_id": charger.charge_point_id, "pairing_code": code.lower().replace("-", "")},
    )
    assert response.status_code == 302
    charger.refresh_from_db()
    assert charger.owner == owner
    page = owner_client.get(response["Location"])
    assert page.status_code == 200
    assert charger.charge_point_id in page.content.decode()


def test_wrong_code_or_someone_elses_charger_gives_the_same_answer(owner_client, label):
    """A wrong code, an unknown id and a charger claimed by someone else all read the same, and
    nothing changes hands."""
    charger, code = label
    neighbour = UserFactory()
    services.claim_charger(
        owner=neighbour, charge_point_id=charger.charge_point_id, pairing_code=code
    )
    url = reverse("vehicles:chargers:charger-claim")
    answers = []
    for cp_id, attempt in [
        (charger.charge_point_id, "AAAAA-AAAAA"),
        ("CS-NOPE", code),
        (charger.charge_point_id, code),
    ]:
        response = owner_client.post(url, {"charge_point_id": cp_id, "pairing_code": attempt})
        assert response.status_code == 200
        answers.append(response.context["form"].non_field_errors())
    assert answers[0] == answers[1] == answers[2]
    assert "No charger with that id and pairing code." in answers[0]
    charger.refresh_from_db()
    assert charger.owner == neighbour


def test_owners_never_see_other_owners_chargers(owner_client, owner, label):
    """Another owner's charger is 404 on its page and in the API, and absent from lists."""
    charger, code = label
    services.claim_charger(
        owner=UserFactory(), charge_point_id=charger.charge_point_id, pairing_code=code
    )
    mine = services.provision_charger(charge_point_id="CS-MINE-1")
    services.claim_charger(owner=owner, charge_point_id="CS-MINE-1", pairing_code=mine.pairing_code)
    detail = reverse("vehicles:chargers:charger-detail", kwargs={"charger_id": charger.pk})
    assert owner_client.get(detail).status_code == 404
    api_detail = reverse("api:charger-detail", kwargs={"charger_id": charger.pk})
    assert owner_client.get(api_detail).status_code == 404
    listed = owner_client.get(reverse("api:charger-list")).json()
    assert [c["charge_point_id"] for c in listed] == ["CS-MINE-1"]


def test_claim_api_links_the_charger(owner_client, owner, label):
    """POST /api/v1/chargers/claim links the charger and returns it (201); a wrong code is 400."""
    charger, code = label
    url = reverse("api:charger-claim")
    wrong = owner_client.post(
        url,
        {"charge_point_id": charger.charge_point_id, "pairing_code": "x"},
        content_type="application/json",
    )
    assert wrong.status_code == 400
    response = owner_client.post(
        url,
        {"charge_point_id": charger.charge_point_id, "pairing_code": code},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert response.json()["charge_point_id"] == charger.charge_point_id
    assert response.json()["status"] == "Offline"


def test_charger_cards_show_status_power_and_session_energy(owner, label):
    """The Vehicles tab partial shows each charger's status, power now and session energy."""
    charger, code = label
    services.claim_charger(owner=owner, charge_point_id=charger.charge_point_id, pairing_code=code)
    services.mark_charger_connected(charger_id=charger.pk, protocol="2.1", channel_name="c1")
    from django.utils import timezone

    from vehicles.chargers.payloads import Reading

    services.start_session(
        charger_id=charger.pk, evse_id=1, started_at=timezone.now(), transaction_id="tx-1"
    )
    services.record_meter_values(
        charger_id=charger.pk,
        evse_id=1,
        transaction_id="tx-1",
        readings=[Reading(sampled_at=timezone.now(), energy_import_wh=4200, power_kw=-3.5)],
    )
    cards = selectors.list_charger_cards_for_owner(owner=owner)
    html = render_to_string("chargers/_charger_cards.html", {"chargers": cards})
    assert "Discharging" in html
    assert "-3.5 kW" in html
    assert "4.2 kWh" in html


def test_provision_command_shows_the_secrets_once_and_stores_hashes():
    """provision_charger prints a ≥16-byte key and a pairing code; the row holds neither."""
    out = StringIO()
    call_command("provision_charger", "CS-CMD-1", "--v2g", stdout=out)
    lines = dict(line.split(":", 1) for line in out.getvalue().splitlines() if ":" in line)
    key, code = lines["authorization key"].strip(), lines["pairing code"].strip()
    assert len(key) >= 16
    charger = Charger.objects.get(charge_point_id="CS-CMD-1")
    assert charger.v2g_capable
    assert key not in charger.authorization_key_hash
    assert code.replace("-", "") not in charger.pairing_code_hash
    assert services.security.check_authorization_key(key, charger.authorization_key_hash)
