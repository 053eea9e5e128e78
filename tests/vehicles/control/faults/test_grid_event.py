"""A grid event end to end with a real worker and the simulated cloud (issue 7): dispatch → at
its start the fleet plan holds the cap and the first slot fans out in batches on `bulk` → the
cars hear their commands once → an owner opts out on `control` and hears "charge" within 30 s →
the event is cancelled and the cars go back to their own plans."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from programs import enrollments, events
from programs.models import (
    ChargingPlan,
    Enrollment,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Utility,
)
from tests.vehicles.control.faults.conftest import wait_until_settled
from tests.vehicles.control.faults.invariants import assert_invariants
from tests.vehicles.control.faults.processes import wait_for
from vehicles.control.diagnosis import IDLE_KW
from vehicles.control.models import Command

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

CAP_KW = 24.0  # for 24 cars of 7.2 kW: a real curtailment


def _program() -> Program:
    utility = Utility.objects.create(name="Lakeshore Electric", slug="lakeshore")
    Feeder.objects.create(utility=utility, code="loop-1", region="Loop", zip_codes=["60601"])
    program = Program.objects.create(
        utility=utility,
        code="peak-saver",
        name="Peak Saver",
        kind=Program.Kind.DEMAND_RESPONSE,
        status=Program.Status.OPEN,
        summary="Pause charging at peaks.",
        notice_minutes=0,
    )
    ProgramTerms.objects.create(program=program, version=1, body="Terms.", incentives={})
    return program


def test_an_event_reaches_the_cars_once_and_an_opt_out_within_30_s(fleet, processes, cloud):
    program = _program()
    # Up to 44 kWh to add (a 131 kWh pickup at 7.2 kW: 6 h) in 12 h: room to shift.
    leave = timezone.now() + timedelta(hours=12)
    for vehicle in fleet.vehicles:
        vehicle.preference.override_departure_at = leave
        vehicle.preference.override_target_soc_pct = 80
        vehicle.preference.save()
        cloud.set_state(vehicle.vin, charging=True)  # drawing power when the event starts
        enrollments.enroll(vehicle=vehicle, program=program, terms_version=1, actor=vehicle.owner)
    now = timezone.now()
    event = events.create_event(
        program=program,
        kind=GridEvent.Kind.IMPORT_CAP,
        starts_at=now + timedelta(seconds=1),
        ends_at=now + timedelta(minutes=45),
        target_kw=CAP_KW,
        actor=None,
    )
    event = events.schedule_event(event=event, actor=None)
    assert event.participations.count() == len(fleet.vehicles)

    processes.worker(concurrency=2)
    wait_for(lambda: timezone.now() >= event.starts_at, timeout_s=5, what="the event's start")
    with transaction.atomic():  # what the beat's advance_events does, committed
        assert events.advance_events() == {"activated": 1, "completed": 0}
    plans = list(ChargingPlan.objects.filter(trigger="event"))
    assert len(plans) == len(fleet.vehicles)
    first = int((slot_of(event.starts_at) - plans[0].start) / timedelta(minutes=15))
    # The solver holds the cap exactly; stored plans are rounded to the watt (≤ 0.5 W a car).
    assert sum(plan.power_kw[first] for plan in plans) <= CAP_KW + 0.0005 * len(plans)
    assert all(plan.shortfall_kwh < 1e-6 for plan in plans)  # every departure kept

    wait_for(
        lambda: Command.objects.count() >= len(fleet.vehicles),
        timeout_s=60,
        what="the batches on `bulk` to turn the first slot into commands",
    )
    wait_until_settled(timeout_s=60)
    # Cloud-only cars are on or off: the plan's partial slots are pauses, so the cap holds.
    started = Command.objects.filter(action=Command.Action.START_CHARGE)
    assert started.count() * 7.2 <= CAP_KW
    assert Command.objects.filter(action=Command.Action.STOP_CHARGE).count() == 24 - started.count()

    # An owner opts out: the replan runs on `control` and, within 30 s, the car is told what its
    # own plan says for now. That is "charge" when now is a cheap slot, "stay paused" when the
    # tariff's cheaper hours come later (the test runs at any time of day; it used to expect a
    # start and failed whenever now was dear).
    chosen = Command.objects.filter(action=Command.Action.STOP_CHARGE).first().vehicle
    participation = EventParticipation.objects.get(event=event, vehicle=chosen)
    tapped = timezone.now()
    with transaction.atomic():
        events.opt_out(participation=participation, actor=chosen.owner)
    own = wait_for(
        lambda: ChargingPlan.objects.filter(vehicle=chosen, trigger="opt_out").first(),
        timeout_s=30,
        what="the opted-out car's own plan",
    )
    now_index = int((slot_of(timezone.now()) - own.start) / timedelta(minutes=15))
    expected = (
        Command.Action.START_CHARGE
        if own.power_kw[now_index] > IDLE_KW
        else Command.Action.STOP_CHARGE
    )
    wait_for(
        lambda: Command.objects.filter(
            vehicle=chosen, plan_version=own.version, created_at__gte=tapped
        ).exists(),
        timeout_s=30,
        what="the opted-out car's command",
    )
    wait_until_settled(timeout_s=30)
    told = Command.objects.get(vehicle=chosen, plan_version=own.version, created_at__gte=tapped)
    assert told.action == expected
    assert told.source == Command.Source.OWNER  # on `control`, never behind the fan-out (I4)
    assert told.state in (Command.State.SENT, Command.State.CONFIRMED)
    assert (told.updated_at - tapped) < timedelta(seconds=30)

    with transaction.atomic():
        events.cancel_event(event=event, actor=None, reason="Grid recovered")
    wait_for(
        lambda: ChargingPlan.objects.filter(trigger="event_end").count() >= len(fleet.vehicles) - 1,
        timeout_s=60,
        what="the cars' own plans after the event",
    )
    assert Enrollment.objects.filter(status=Enrollment.Status.ACTIVE).count() == 24
    assert_invariants(cloud)


def slot_of(moment):
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)
