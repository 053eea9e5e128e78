"""`make run`'s demo owner gets a car through the simulated cloud's consent flow and a few months
of earnings made by the real settlement code: settled events, bonuses, closed statements — and
the numbers add up."""

import itertools
import zoneinfo

import pytest
from django.utils import timezone

from chargescape.management.commands.seed_demo import seed_demo_accounts
from programs import demo, earnings, ledger, statements
from programs.models import EventParticipation, GridEvent, LedgerTransaction, Payout, Statement
from tests.vehicles.conftest import simulated_cloud
from vehicles.models import Vehicle, VehicleReading

pytestmark = pytest.mark.django_db


def test_demo_owner_gets_a_car_and_months_of_settled_earnings(settings):
    accounts = seed_demo_accounts()
    owner = accounts.owner
    with simulated_cloud(settings, cars=demo.OWNER_CARS + 1):
        demo.seed_fleet(count=1)
        created = demo.seed_demo_earnings(owner=owner)
        assert demo.seed_demo_earnings(owner=owner) == 0  # idempotent
    car = Vehicle.objects.get(owner=owner)
    assert car.link_state == Vehicle.LinkState.LINKED
    assert car.provider_vehicle_id not in set(
        Vehicle.objects.exclude(owner=owner).values_list("provider_vehicle_id", flat=True)
    )
    events = GridEvent.objects.filter(source=demo.HISTORY_SOURCE)
    assert created == events.count() >= 6
    assert not events.filter(settled_at=None).exists()
    assert events.filter(participations__missing_slots__gt=0).exists()
    assert events.filter(participations__opted_out_at__isnull=False).exists()
    assert VehicleReading.objects.filter(vehicle=car).count() > 500
    if car.v2g_capable:  # the second simulated car is a bidirectional LEAF: Grid Return too
        exports = EventParticipation.objects.filter(event__in=events, event__kind="export_request")
        assert exports.exists()
        assert all(p.delivered_kwh > 0 for p in exports)

    # Postings fall in the months they belong to, not all on the day the demo was seeded.
    lines = earnings.owner_lines(owner)
    months = earnings.by_month(lines)
    assert len(months) >= 3
    assert ledger.unbalanced_transactions() == []
    summary = earnings.summary(owner, lines, now=timezone.now())
    assert summary.reconciles
    assert summary.all_time.earned_cents > 5000  # more than the welcome bonuses alone
    # One settlement per event; a free opt-out moves no money, so it posts nothing.
    paying = events.exclude(
        participations__opted_out_at__isnull=False,
        participations__keep_soc_pct=None,
        participations__opt_out_fee_cents=0,
    )
    assert LedgerTransaction.objects.filter(kind="event_settlement", event__in=events).count() == (
        paying.count()
    )

    closed = list(Statement.objects.filter(owner=owner).order_by("month"))
    assert len(closed) >= 2
    for earlier, later in itertools.pairwise(closed):
        assert later.opening_cents == earlier.closing_cents  # statements chain
    for statement in closed:  # a closed statement is what the ledger says of that month
        rebuilt = statements.build(owner=owner, month=statement.month)
        assert rebuilt.closing_cents == statement.closing_cents
        assert statement.earned_cents > 0
    zone = zoneinfo.ZoneInfo(owner.time_zone)
    this_month = timezone.now().astimezone(zone).date().replace(day=1)
    assert all(statement.month < this_month for statement in closed)
    for payout in Payout.objects.filter(owner=owner):
        assert payout.status == Payout.Status.PAID
