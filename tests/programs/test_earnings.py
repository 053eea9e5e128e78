"""The Earnings tab: balance, month and all-time totals, monthly chart and table, per-event rows
with the missing-data flag, savings and CO₂ from measured charging, cash-out, payouts, the CSV
and monthly statements — every figure from the ledger, adding up to the payable balance, and
nobody ever seeing another owner's money."""

import csv
import io
import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from programs import carbon, earnings, enrollments, ledger, payouts, settlement, statements
from programs.models import EventParticipation, GridEvent, Payout, Statement
from programs.services import schedule_for_owner
from tests.factories import UserFactory, VehicleFactory
from tests.programs.conftest import EVENING
from vehicles.models import VehicleReading

pytestmark = pytest.mark.django_db


def _reading(vehicle, at, power_kw, *, plugged=True):
    return VehicleReading.objects.create(
        vehicle=vehicle,
        recorded_at=at,
        source=VehicleReading.Source.POLL,
        soc_pct=50,
        plugged_in=plugged,
        power_kw=power_kw,
    )


def _event(program, vehicle, enrollment, *, metered, starts=EVENING, opted_out=False, fee=0):
    """A completed one-hour import-cap event: the car's baseline 7.2 kW in each of the four
    slots, its metered kW (None: no reading in that slot)."""
    event = GridEvent.objects.create(
        program=program,
        kind=GridEvent.Kind.IMPORT_CAP,
        status=GridEvent.Status.COMPLETED,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        target_kw=10,
        notified_at=starts - timedelta(hours=2),
    )
    EventParticipation.objects.create(
        event=event,
        vehicle=vehicle,
        enrollment=enrollment,
        baseline_kw=[7.2] * 4,
        opted_out_at=starts - timedelta(minutes=30) if opted_out else None,
        opt_out_fee_cents=fee,
    )
    for slot, kw in enumerate(metered):
        if kw is not None:
            _reading(vehicle, starts + timedelta(minutes=15 * slot + 5), kw)
    return event


@pytest.fixture
def earner(program):
    """An owner with a $50 welcome bonus and an event with one slot of missing data
    ($2 + 25 ¢ × 5.4 kWh = $3.35), all of it cashed out; then an event taken part in
    ($2 + 25 ¢ × 3.6 kWh = $2.90) and an opted-out one whose $5 fee can take only that $2.90."""
    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner, nickname="Blue Leaf")
    enrollment = enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    first = _event(program, vehicle, enrollment, metered=[0, 0, 0, None])
    settlement.settle_event(event_id=first.pk)
    payouts.request_payout(owner=owner, key="earner-payout-1")
    second = _event(
        program,
        vehicle,
        enrollment,
        metered=[7.2] * 4,
        starts=EVENING + timedelta(days=1),
        opted_out=True,
        fee=500,
    )
    third = _event(program, vehicle, enrollment, metered=[3.6] * 4, starts=EVENING + timedelta(2))
    settlement.settle_event(event_id=third.pk)  # $2 + 25 ¢ × 3.6 = $2.90
    settlement.settle_event(event_id=second.pk)  # the $5 fee, capped at the $2.90 held
    return owner


def test_the_numbers_shown_add_up_to_the_ledger_balance(earner, client):
    """Balance = earned − fees − paid out; event rows and bonuses sum to what was earned; the
    monthly table's net adds up to the balance too."""
    lines = earnings.owner_lines(earner)
    summary = earnings.summary(earner, lines, now=timezone.now())
    balance = ledger.payable_cents(earner)
    assert summary.balance_cents == balance
    assert summary.all_time.net_cents == balance
    assert summary.reconciles
    rows = earnings.event_rows(earner, lines)
    bonuses = earnings.bonus_lines(lines)
    assert sum(r.earned_cents for r in rows) + sum(b.cents for b in bonuses) == (
        summary.all_time.earned_cents
    )
    assert sum(r.fee_cents for r in rows) == summary.all_time.fees_cents
    months = earnings.by_month(lines)
    assert sum(m.totals.net_cents for m in months) == balance
    assert sum(sum(m.by_program.values()) for m in months) == summary.all_time.earned_cents
    # The hand-worked figures: $50 bonus + $3.35 + $2.90 earned; the $53.35 held then was paid
    # out; the fee could take only the $2.90 left.
    assert summary.all_time.earned_cents == 5000 + 335 + 290
    assert summary.all_time.paid_out_cents == 5335
    assert summary.all_time.fees_cents == 290
    assert balance == 0

    client.force_login(earner)
    page = client.get(reverse("programs:earnings")).content.decode()
    table = re.search(
        r'<section class="card" aria-labelledby="adds-up-heading">.*?</section>', page, re.S
    )[0]
    assert "$56.25" in table  # earned all time
    assert "−$2.90" in table  # fees
    assert "−$53.35" in table  # cashed out
    assert re.search(r"Balance now</th><td class=\"num\">\$0</td>", table)


def test_event_rows_show_notice_participation_kwh_money_and_missing_data(earner, client):
    client.force_login(earner)
    page = client.get(reverse("programs:earnings")).content.decode()
    rows = re.findall(
        r'<li class="event-row">(.*?)</li>\s*(?=<li class="event-row">|</ul>)', page, re.S
    )
    assert len(rows) == 3
    newest, opted, first = rows  # newest first
    assert "Took part" in first
    assert "5.4 kWh" in first
    assert "$3.35" in first
    assert "2 h" in first  # notice
    assert "Data missing for 1 slot" in first
    assert "Opted out" in opted
    assert "−$2.90 fee" in opted
    assert "$2 missed" in opted  # the per-event reward given up
    assert "Data missing" not in opted
    assert "3.6 kWh" in newest
    assert "$2.90" in newest
    # Local time (Chicago): the first event started Wed 25 Nov 18:00.
    assert "Wed 25 Nov 2026, 18:00–19:00" in first
    assert "Peak Saver · Blue Leaf" in first


def test_an_unsettled_event_is_shown_as_being_measured(program, client):
    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner)
    enrollment = enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    _event(program, vehicle, enrollment, metered=[0] * 4)
    client.force_login(owner)
    page = client.get(reverse("programs:earnings")).content.decode()
    assert "being measured" in page


def test_monthly_chart_has_a_text_equivalent_with_the_same_numbers(earner, client):
    client.force_login(earner)
    response = client.get(reverse("programs:earnings"))
    figure = response.context["figure"]
    months = response.context["months"]
    bars = {trace["name"]: trace["y"] for trace in figure["data"]}
    assert bars["Peak Saver"][-1] == pytest.approx(months[0].by_program["Peak Saver"] / 100)
    assert bars["Opt-out fees"][-1] == pytest.approx(-months[0].totals.fees_cents / 100)
    page = response.content.decode()
    assert 'data-figure="earnings-figure"' in page
    assert '<script id="earnings-figure" type="application/json">' in page
    assert "<script>" not in page  # the strict CSP: no inline script
    assert "style=" not in page  # nor inline style
    table = re.search(r'<table class="data money-table month-table">.*?</table>', page, re.S)[0]
    assert "Peak Saver" in table
    assert "$56.25" in table  # earned this month by the program
    assert "Net for" in table


def test_an_owner_without_earnings_is_told_how_to_earn(client):
    owner = UserFactory()
    client.force_login(owner)
    page = client.get(reverse("programs:earnings")).content.decode()
    assert "No earnings yet" in page
    assert "Join a program" in page
    assert "No payouts yet" in page
    assert "Plug in at home" in page


# --- Cash-out --------------------------------------------------------------------------------


def test_cash_out_twice_with_one_key_pays_once(program, client):
    owner = UserFactory()
    vehicle = VehicleFactory(owner=owner)
    enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    client.force_login(owner)
    page = client.get(reverse("programs:earnings")).content.decode()
    key = re.search(r'name="key" value="([^"]+)"', page)[1]
    url = reverse("programs:earnings-cash-out")
    first = client.post(url, {"key": key}, follow=True)
    second = client.post(url, {"key": key}, follow=True)  # a double tap
    assert Payout.objects.filter(owner=owner).count() == 1
    assert Payout.objects.get(owner=owner).amount_cents == 5000
    assert ledger.payable_cents(owner) == 0
    assert "$50.00 is on its way" in first.content.decode()
    assert "$50.00 is on its way" in second.content.decode()
    listing = second.content.decode()
    assert "On its way" in listing  # the payout's status
    fresh = client.get(reverse("programs:earnings")).content.decode()
    assert re.search(r'name="key" value="([^"]+)"', fresh)[1] != key  # a new tap, a new key


def test_cash_out_below_the_minimum_explains(client, settings):
    owner = UserFactory()
    client.force_login(owner)
    response = client.post(
        reverse("programs:earnings-cash-out"), {"key": "abcdef123456"}, follow=True
    )
    assert "Payouts start at $10.00; you have $0.00." in response.content.decode()
    assert not Payout.objects.filter(owner=owner).exists()


def test_cash_out_keys_of_two_owners_never_collide(program, client):
    """The form key is namespaced per owner: the same key from two owners makes two payouts."""
    a, b = UserFactory(), UserFactory()
    for owner in (a, b):
        enrollments.enroll(
            vehicle=VehicleFactory(owner=owner), program=program, terms_version=1, actor=owner
        )
        client.force_login(owner)
        client.post(reverse("programs:earnings-cash-out"), {"key": "same-key-123"})
    assert Payout.objects.filter(owner=a).count() == Payout.objects.filter(owner=b).count() == 1


# --- CSV and statements ------------------------------------------------------------------------


def test_csv_lists_every_line_with_a_running_balance(earner, client):
    client.force_login(earner)
    response = client.get(reverse("programs:earnings-csv"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 5  # bonus, event, payout, event, fee
    assert sum(int(row["amount_cents"]) for row in rows) == ledger.payable_cents(earner)
    assert rows[-1]["balance_cents"] == str(ledger.payable_cents(earner))
    assert [row["line"] for row in rows] == [
        "enrollment_bonus",
        "incentive",
        "payout",
        "incentive",
        "opt_out_fee",
    ]
    assert rows[0]["amount"] == "50.00"


def test_statement_of_this_month_is_live_then_closed(earner, client):
    client.force_login(earner)
    month = timezone.now().astimezone(zoneinfo.ZoneInfo(earner.time_zone)).strftime("%Y-%m")
    url = reverse("programs:statement-detail", args=[month])
    page = client.get(url).content.decode()
    assert "Month in progress" in page
    assert "Welcome bonus, Peak Saver" in page
    assert "Peak Saver event, Wed 25 Nov 2026 18:00" in page  # the owner's time, not UTC
    assert " UTC" not in page
    built = statements.build(owner=earner, month=datetime.strptime(month, "%Y-%m").date())
    assert built.closing_cents == ledger.payable_cents(earner)
    assert built.opening_cents + built.earned_cents - built.fees_cents - built.paid_out_cents == (
        built.closing_cents
    )
    statements.close_month(owner=earner, month=built.month)
    page = client.get(url).content.decode()
    assert "Closed on" in page
    assert "Payout to your bank account" in page
    listing = client.get(reverse("programs:earnings")).content.decode()
    assert url in listing


def test_statements_of_months_without_money_or_malformed_are_404(earner, client):
    client.force_login(earner)
    assert client.get(reverse("programs:statement-detail", args=["2019-01"])).status_code == 404
    assert client.get(reverse("programs:statement-detail", args=["2026-13"])).status_code == 404
    assert client.get(reverse("programs:statement-detail", args=["soon"])).status_code == 404
    future = (timezone.now() + timedelta(days=70)).strftime("%Y-%m")
    assert client.get(reverse("programs:statement-detail", args=[future])).status_code == 404


def test_another_owner_never_sees_my_money(earner, client):
    """Owner B: 404 on A's statement months, and none of A's rows anywhere."""
    month = timezone.now().astimezone(zoneinfo.ZoneInfo(earner.time_zone)).date().replace(day=1)
    statements.close_month(owner=earner, month=month)
    other = UserFactory()
    client.force_login(other)
    assert (
        client.get(reverse("programs:statement-detail", args=[f"{month:%Y-%m}"])).status_code == 404
    )
    page = client.get(reverse("programs:earnings")).content.decode()
    assert "Blue Leaf" not in page
    assert "$56.25" not in page
    assert "$3.35" not in page
    assert "No earnings yet" in page
    rows = list(
        csv.reader(io.StringIO(client.get(reverse("programs:earnings-csv")).content.decode()))
    )
    assert len(rows) == 1  # the header only
    assert Statement.objects.filter(owner=other).count() == 0


# --- Savings and CO₂ from measured charging ------------------------------------------------------

# Chicago, Wednesday 25 Nov 2026: plugged in at 18:00 (peak, $0.40) and smart-charged from 23:00
# ($0.08): 7.2, 7.2 and 3.6 kW for a quarter hour each = 4.5 kWh. Thursday 18:00: charged at once
# (a boost), 7.2 kW for 15 min = 1.8 kWh at $0.40.
CHI = zoneinfo.ZoneInfo("America/Chicago")


def _local(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=CHI)


@pytest.fixture
def charger(utility):
    owner = UserFactory()  # ZIP 60601: the Lakeshore tariff (conftest)
    vehicle = VehicleFactory(owner=owner, max_ac_kw=7.2)
    _reading(vehicle, _local(25, 18), 0.0)  # plugged in, waiting for cheap hours
    _reading(vehicle, _local(25, 23), 7.2)
    _reading(vehicle, _local(25, 23, 15), 7.2)
    _reading(vehicle, _local(25, 23, 30), 3.6)
    _reading(vehicle, _local(25, 23, 45), 0.0)
    _reading(vehicle, _local(26, 7), 0.0, plugged=False)
    _reading(vehicle, _local(26, 18), 7.2)  # boost: charging at once
    _reading(vehicle, _local(26, 18, 15), 0.0)
    _reading(vehicle, _local(26, 19), 0.0, plugged=False)
    return owner, vehicle


def test_savings_and_co2_from_readings_match_a_hand_computation(charger):
    owner, vehicle = charger
    profile = [100.0] * 24
    profile[18], profile[23] = 500.0, 200.0
    found = earnings.savings_by_month(
        owner,
        since=_local(1, 0),
        until=_local(30, 0),
        schedule=schedule_for_owner(owner),
        profile=profile,
    )
    month = found[datetime(2026, 11, 1).date()]
    assert month.sessions == 2
    assert month.energy_kwh == pytest.approx(4.5 + 1.8)
    # Actual: 4.5 kWh × $0.08 + 1.8 × $0.40 = $0.36 + $0.72.
    assert month.actual_cost_cents == 36 + 72
    # At once from plug-in: 1.8 + 1.8 + 0.9 kWh from 18:00 Wednesday at $0.40, and the boost.
    assert month.immediate_cost_cents == 180 + 72
    assert month.saved_cents == 144
    assert month.offpeak_pct == pytest.approx(100 * 4.5 / 6.3)
    # CO₂: actual 4.5 × 200 + 1.8 × 500 g; at once (4.5 + 1.8) × 500 g.
    assert month.actual_co2_g == pytest.approx(900 + 900)
    assert month.immediate_co2_g == pytest.approx(3150)
    assert month.co2_avoided_kg == pytest.approx(1.35)
    # The share is the monthly bonus's own measure.
    share = settlement.offpeak_share(
        vehicle=vehicle, since=_local(1, 0).astimezone(UTC), until=_local(30, 0).astimezone(UTC)
    )
    assert month.offpeak_pct == pytest.approx(share * 100)


def test_savings_use_the_documented_carbon_profile_by_default(charger):
    owner, _ = charger
    month = earnings.savings_by_month(
        owner, since=_local(1, 0), until=_local(30, 0), schedule=schedule_for_owner(owner)
    )[datetime(2026, 11, 1).date()]
    hourly = carbon.HOURLY_G_PER_KWH
    assert month.co2_avoided_kg == pytest.approx(4.5 * (hourly[18] - hourly[23]) / 1000)


def test_the_page_shows_savings_with_the_estimate_label(charger, client):
    owner, _ = charger
    client.force_login(owner)
    with time_machine.travel(_local(28, 12), tick=False):
        page = client.get(reverse("programs:earnings")).content.decode()
    assert "$1.44" in page  # saved
    assert "71 %" in page  # off-peak share (4.5 of 6.3 kWh)
    assert escape(carbon.LABEL) in page
    assert "charging at full power as soon as you plugged in would have cost $2.52" in page
