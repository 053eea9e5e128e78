"""The ledger (I5): balanced, append-only in PostgreSQL itself, once per key, never a negative
owner balance — checked by a Hypothesis state machine over accruals, fees, reversals, payouts
and duplicate or out-of-order provider webhooks; and twenty concurrent settlements of one event
make one transaction."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.urls import reverse
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from programs import enrollments, events, ledger, payouts, settlement
from programs.ledger import LedgerError, Line
from programs.models import (
    EventParticipation,
    GridEvent,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    Utility,
)
from tests.factories import UserFactory, VehicleFactory
from tests.programs.conftest import EVENING, make_program
from vehicles.models import VehicleReading

pytestmark = pytest.mark.django_db


def _accrue(owner, utility, cents, key=None):
    return ledger.post(
        key=key or f"test:{uuid.uuid4()}",
        kind=LedgerTransaction.Kind.EVENT_SETTLEMENT,
        memo="test accrual",
        lines=[
            Line(ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner), -cents),
            Line(ledger.account(ledger.Kind.UTILITY_RECEIVABLE, utility=utility), cents),
        ],
    )


def _check_deferred_constraints():
    """Run the deferred balance triggers now (they normally fire at COMMIT, which a test's
    rolled-back transaction never reaches), then defer again."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def test_raw_update_and_delete_on_ledger_tables_fail(utility):
    owner = UserFactory()
    _accrue(owner, utility, 500)
    for statement in (
        "UPDATE programs_ledgerentry SET amount_cents = amount_cents * 2",
        "DELETE FROM programs_ledgerentry",
        "UPDATE programs_ledgertransaction SET memo = 'edited'",
        "DELETE FROM programs_ledgertransaction",
    ):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert ledger.payable_cents(owner) == 500


def test_an_unbalanced_transaction_cannot_commit(utility):
    owner = UserFactory()
    account = ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner)
    with transaction.atomic():
        posted = LedgerTransaction.objects.create(key="raw", kind="reversal", memo="raw")
        LedgerEntry.objects.create(transaction=posted, account=account, amount_cents=-700)
        LedgerEntry.objects.create(transaction=posted, account=account, amount_cents=600)
        with pytest.raises(DatabaseError, match="does not balance"):
            _check_deferred_constraints()
        transaction.set_rollback(True)
    with transaction.atomic():
        LedgerTransaction.objects.create(key="empty", kind="reversal", memo="no entries")
        with pytest.raises(DatabaseError, match="at least two entries"):
            _check_deferred_constraints()
        transaction.set_rollback(True)
    with pytest.raises(LedgerError, match="do not balance"):
        ledger.post(key="k", kind="reversal", memo="m", lines=[Line(account, 5)])


class LedgerMachine(RuleBasedStateMachine):
    """A shadow model of every owner's balance and payout against the real ledger."""

    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.utility = Utility.objects.create(name=f"U {uuid.uuid4()}", slug=str(uuid.uuid4()))
        self.owners = [UserFactory() for _ in range(2)]
        self.expected = {owner.pk: 0 for owner in self.owners}
        self.reversible = []  # (transaction, {owner pk: cents credited})
        self.payouts = {}  # key -> Payout

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @rule(who=st.integers(0, 1), cents=st.integers(1, 4000), repeat=st.booleans())
    def accrue(self, who, cents, repeat):
        owner = self.owners[who]
        key = f"accrual:{uuid.uuid4()}"
        posted, created = _accrue(owner, self.utility, cents, key=key)
        assert created
        if repeat:  # the same request again: nothing more
            again, created = _accrue(owner, self.utility, cents * 2, key=key)
            assert again == posted
            assert not created
        self.expected[owner.pk] += cents
        self.reversible.append((posted, {owner.pk: cents}))

    @rule(who=st.integers(0, 1), cents=st.integers(1, 3000))
    def fee(self, who, cents):
        owner = self.owners[who]
        lines = [
            Line(ledger.account(ledger.Kind.OWNER_PAYABLE, owner=owner), cents),
            Line(ledger.account(ledger.Kind.FEES), -cents),
        ]
        if cents > self.expected[owner.pk]:
            with pytest.raises(LedgerError):
                ledger.post(key=str(uuid.uuid4()), kind="reversal", memo="fee", lines=lines)
            return
        posted, _ = ledger.post(key=str(uuid.uuid4()), kind="reversal", memo="fee", lines=lines)
        self.expected[owner.pk] -= cents
        self.reversible.append((posted, {owner.pk: -cents}))

    @precondition(lambda self: self.reversible)
    @rule(pick=st.integers(0, 1000))
    def reverse(self, pick):
        original, effect = self.reversible[pick % len(self.reversible)]
        already = LedgerTransaction.objects.filter(reverses=original).exists()
        overdraws = any(self.expected[pk] - cents < 0 for pk, cents in effect.items())
        if overdraws and not already:
            with pytest.raises(LedgerError):
                ledger.reverse(original=original, memo="correction")
            return
        ledger.reverse(original=original, memo="correction")
        if not already:
            for pk, cents in effect.items():
                self.expected[pk] -= cents

    @rule(who=st.integers(0, 1), key=st.sampled_from(["p1", "p2", "p3", "p4"]))
    def payout(self, who, key):
        owner = self.owners[who]
        key = f"{owner.pk}:{key}"
        if key in self.payouts:
            assert payouts.request_payout(owner=owner, key=key) == self.payouts[key]
            return
        amount = self.expected[owner.pk]
        if amount < 1000:
            with pytest.raises(LedgerError, match="Payouts start at"):
                payouts.request_payout(owner=owner, key=key)
            return
        payout = payouts.request_payout(owner=owner, key=key)
        assert payout.amount_cents == amount
        self.expected[owner.pk] = 0
        self.payouts[key] = payout

    @precondition(lambda self: self.payouts)
    @rule(
        pick=st.integers(0, 100),
        kind=st.sampled_from(["payout.paid", "payout.returned"]),
        times=st.integers(1, 2),
    )
    def webhook(self, pick, kind, times):
        key = sorted(self.payouts)[pick % len(self.payouts)]
        payout = Payout.objects.get(key=key)
        before = payout.status
        for _ in range(times):
            payouts.apply_webhook(kind=kind, payout_key=key)
        payout.refresh_from_db()
        target = payouts.WEBHOOK_TYPES[kind]
        if (before, target) in payouts.TRANSITIONS:
            assert payout.status == target
            if target == Payout.Status.RETURNED:
                self.expected[payout.owner_id] += payout.amount_cents
        else:
            assert payout.status == before  # duplicate or out of order: no change

    @invariant()
    def balanced_and_reconciled(self):
        _check_deferred_constraints()
        assert ledger.unbalanced_transactions() == []
        for owner in self.owners:
            balance = ledger.payable_cents(owner)
            assert balance == self.expected[owner.pk]
            assert balance >= 0
        keys = list(Payout.objects.values_list("key", flat=True))
        assert len(keys) == len(set(keys))


def test_ledger_state_machine(db):
    runner = LedgerMachine.TestCase
    runner.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    runner().runTest()


# --- Settlement ----------------------------------------------------------------------------------


def _completed_event(utility, owners_kw, *, per_kwh=25, per_event=200, fee=0):
    """A completed 1-hour import-cap event: each car's baseline 7.2 kW and metered kW per slot
    (None: no reading in that slot)."""
    program = make_program(utility, code=f"p{uuid.uuid4().hex[:8]}", opt_out_fee_cents=fee)
    terms = program.terms.get()
    terms.incentives = {"per_event_cents": per_event, "per_kwh_cents": per_kwh}
    terms.save()
    event = GridEvent.objects.create(
        program=program,
        kind="import_cap",
        status=GridEvent.Status.COMPLETED,
        starts_at=EVENING,
        ends_at=EVENING + timedelta(hours=1),
        target_kw=10,
    )
    participations = []
    for owner, metered in owners_kw:
        vehicle = VehicleFactory(owner=owner)
        enrollment = enrollments.enroll(
            vehicle=vehicle, program=program, terms_version=1, actor=owner
        )
        participations.append(
            EventParticipation.objects.create(
                event=event, vehicle=vehicle, enrollment=enrollment, baseline_kw=[7.2] * 4
            )
        )
        for slot, kw in enumerate(metered):
            if kw is not None:
                VehicleReading.objects.create(
                    vehicle=vehicle,
                    recorded_at=EVENING + timedelta(minutes=15 * slot + 5),
                    source="poll",
                    soc_pct=50,
                    power_kw=kw,
                )
    return event, participations


def test_settlement_pays_delivered_kwh_flags_missing_data_and_collects_fees(utility):
    paused, partial, opted = UserFactory(), UserFactory(), UserFactory()
    event, (a, b, c) = _completed_event(
        utility,
        [(paused, [0, 0, 0, None]), (partial, [7.2, 3.6, 3.6, 3.6]), (opted, [7.2] * 4)],
        fee=300,
    )
    _accrue(opted, utility, 150)  # what the opted-out owner holds before
    c.opted_out_at, c.opt_out_fee_cents = EVENING, 300
    c.save()
    posted = settlement.settle_event(event_id=event.pk)
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.delivered_kwh == pytest.approx(5.4)  # 3 slots × 7.2 kW × ¼ h; the 4th is missing
    assert a.missing_slots == 1
    assert a.metered_kw == [0, 0, 0, None]
    assert b.delivered_kwh == pytest.approx(2.7)
    # $2 + 25 ¢ × 5.4 kWh = 335 ¢; $2 + 25 ¢ × 2.7 = 267.5 → 268 ¢ (half up).
    assert ledger.payable_cents(paused) == 335
    assert ledger.payable_cents(partial) == 268
    assert ledger.payable_cents(opted) == 0  # the $3 fee took only the $1.50 it held
    assert posted.entries.count() == 6
    assert ledger.unbalanced_transactions() == []
    assert settlement.settle_event(event_id=event.pk) == posted  # once
    assert ledger.payable_cents(paused) == 335


def test_the_annual_cap_limits_incentives(utility):
    owner = UserFactory()
    event, _ = _completed_event(utility, [(owner, [0, 0, 0, 0])])
    terms = event.program.terms.get()
    terms.incentives |= {"annual_cap_cents": 250}
    terms.save()
    settlement.settle_event(event_id=event.pk)
    assert ledger.payable_cents(owner) == 250


def test_only_completed_events_settle(utility):
    event, _ = _completed_event(utility, [(UserFactory(), [0] * 4)])
    event.status = GridEvent.Status.ACTIVE
    event.save()
    with pytest.raises(ValueError, match="only completed events settle"):
        settlement.settle_event(event_id=event.pk)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_settlements_make_one_transaction():
    utility = Utility.objects.create(name="Concurrent Power", slug="concurrent")
    from programs.models import Feeder

    Feeder.objects.create(utility=utility, code="f", region="R", zip_codes=["60601"])
    owners = [UserFactory() for _ in range(3)]
    event, _ = _completed_event(utility, [(owner, [0, 0, 0, 0]) for owner in owners])
    barrier = threading.Barrier(20)
    errors = []

    def settle():
        try:
            barrier.wait()
            settlement.settle_event(event_id=event.pk)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert LedgerTransaction.objects.filter(kind="event_settlement").count() == 1
    # $2 + 25 ¢ × 7.2 kWh (four slots at 0 kW against 7.2 kW) = 380 ¢ each, once.
    assert [ledger.payable_cents(owner) for owner in owners] == [380] * 3


def test_the_enrollment_bonus_is_credited_once(owner, program):
    vehicle = VehicleFactory(owner=owner)
    enrollment = enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=owner)
    assert ledger.payable_cents(owner) == 5000
    enrollments.set_status(enrollment=enrollment, status="suspended", reason="Test", actor=None)
    enrollments.set_status(enrollment=enrollment, status="active", reason="Back", actor=None)
    assert ledger.payable_cents(owner) == 5000


def test_payout_webhooks_over_http_twice_and_out_of_order(client, owner, utility):
    _accrue(owner, utility, 2500)
    payout = payouts.request_payout(owner=owner, key="tap-1")
    assert payouts.request_payout(owner=owner, key="tap-1") == payout  # a double tap
    assert ledger.payable_cents(owner) == 0
    url = reverse("programs:payout-webhook")

    def deliver(kind, signature=None):
        body = json.dumps({"id": str(uuid.uuid4()), "type": kind, "payout": "tap-1"}).encode()
        return client.post(
            url,
            body,
            content_type="application/json",
            headers={"X-Payout-Signature": signature or payouts.sign(body)},
        )

    assert deliver("payout.paid", signature="forged").status_code == 401
    assert deliver("payout.paid").status_code == 200
    assert deliver("payout.paid").status_code == 200  # twice
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    assert deliver("payout.returned").status_code == 200  # the bank sent it back later
    assert deliver("payout.paid").status_code == 200  # a stale "paid": ignored
    payout.refresh_from_db()
    assert payout.status == Payout.Status.RETURNED
    assert ledger.payable_cents(owner) == 2500
    assert ledger.unbalanced_transactions() == []


def test_an_event_records_each_cars_baseline_when_it_starts(owner, program):
    """The plan in force before the event is the baseline (settlement measures against it)."""
    import time_machine

    from tests.programs.test_events import NOW, START, _car, _event

    with time_machine.travel(NOW, tick=False):
        vehicle = _car(owner, program, soc=40)
        from programs import services

        before = services.replan_vehicle(vehicle_id=vehicle.pk, trigger="plugged_in", now=NOW)
        event = events.schedule_event(event=_event(program, kw=1.0), actor=None)
    with time_machine.travel(START, tick=False):
        events.advance_events()
    participation = EventParticipation.objects.get(event=event)
    offset = int((START - before.start) / timedelta(minutes=15))
    assert participation.baseline_kw == before.power_kw[offset : offset + 8]
