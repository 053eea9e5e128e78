"""An owner opting out at the very moment the beat starts the event: whichever commits first,
the opt-out wins. Real transactions on two connections (the beat in a thread of its own)."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction

from programs import events
from programs.models import ChargingPlan, EventParticipation, GridEvent
from tests.factories import UserFactory
from tests.programs.test_events import NOW, START, _car, _event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def beat_in_a_thread(result: dict) -> threading.Thread:
    def run() -> None:
        try:
            with transaction.atomic():
                result["counts"] = events.advance_events()
        except Exception as error:  # reported by the test, not lost in the thread
            result["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def newest_trigger(vehicle) -> str | None:
    plan = ChargingPlan.objects.filter(vehicle=vehicle).order_by("-version").first()
    return plan.trigger if plan else None


def test_an_opt_out_in_flight_when_the_event_starts_is_never_overridden(owner, program):
    """The opt-out holds its rows (the participation, and through it the event and the car)
    while the beat tries to start the event: the beat leaves the event for its next run instead
    of planning the car into it from a read that missed the opt-out."""
    vehicle = _car(owner, program, soc=40)
    other = _car(UserFactory(), program, soc=40)
    event = events.schedule_event(event=_event(program, kw=2.0), actor=None)
    participation = EventParticipation.objects.get(event=event, vehicle=vehicle)
    result: dict = {}
    with time_machine.travel(START, tick=False):
        with transaction.atomic():
            events.opt_out(participation=participation, actor=owner)
            beat = beat_in_a_thread(result)
            beat.join(timeout=2)  # the beat runs meanwhile, against the uncommitted opt-out
        beat.join(timeout=30)
        assert "error" not in result
        assert result["counts"]["activated"] == 0  # the event's row was the opt-out's
        assert newest_trigger(vehicle) != "event"

        with time_machine.travel(START + timedelta(seconds=30), tick=False):
            events.advance_events()  # the next beat starts it, without the opted-out car
    event.refresh_from_db()
    assert event.status == GridEvent.Status.ACTIVE
    assert newest_trigger(vehicle) != "event"
    assert EventParticipation.objects.get(pk=participation.pk).committed_kw == []
    assert newest_trigger(other) == "event"


def test_an_opt_out_during_the_start_waits_for_it_then_replans(owner, program, published):
    """The other order: the beat holds the event while it starts it; the owner's opt-out waits
    for that commit, then finds the event running and replans the car on `control` (I4)."""
    vehicle = _car(owner, program, soc=40)
    _car(UserFactory(), program, soc=40)
    event = events.schedule_event(event=_event(program, kw=2.0), actor=None)
    participation = EventParticipation.objects.get(event=event, vehicle=vehicle)
    with time_machine.travel(START, tick=False):
        started = threading.Event()
        release = threading.Event()
        result: dict = {}

        def beat() -> None:
            try:
                with transaction.atomic():
                    result["counts"] = events.advance_events()
                    started.set()
                    release.wait(timeout=10)  # the beat's transaction still open
            finally:
                connection.close()

        thread = threading.Thread(target=beat)
        thread.start()
        assert started.wait(timeout=30)
        opting = threading.Thread(target=opt_out_committed, args=(participation, owner, result))
        opting.start()
        opting.join(timeout=1)
        assert opting.is_alive()  # waiting on the beat's rows
        release.set()
        thread.join(timeout=30)
        opting.join(timeout=30)
    assert result["counts"]["activated"] == 1
    assert result["opted_out"] is True
    assert ("control", "programs.replan_vehicle", [str(vehicle.pk), "opt_out"]) in published
    assert event.participations.get(pk=participation.pk).opted_out_at is not None


def opt_out_committed(participation, owner, result: dict) -> None:
    """The owner's opt-out in a thread of its own (its own connection), committed."""
    try:
        with transaction.atomic():
            events.opt_out(participation=participation, actor=owner)
        result["opted_out"] = True
    finally:
        connection.close()
