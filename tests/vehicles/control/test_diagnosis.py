"""The diagnosis picks the one most likely reason a car isn't doing what we asked, in plain words
with the action the owner can take (table-driven, no database), and reads its facts from what
the car's commands actually went through (database)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from vehicles.control import diagnosis, services
from vehicles.control.diagnosis import Facts, Reading, Trouble, Want, diagnose
from vehicles.control.models import Command
from vehicles.models import Vehicle

NOW = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
FRESH = NOW - timedelta(minutes=2)
PLUGGED_IDLE = Reading(
    recorded_at=FRESH,
    plugged_in=True,
    at_home=True,
    charging_state="NOT_CHARGING",
    power_kw=0.0,
    soc_pct=55,
    charge_limit_pct=90,
)


def _reading(**changes):
    return Reading(**{**PLUGGED_IDLE.__dict__, **changes})


CASES = [
    # (name, facts, want, expected code, expected owner button, re-send helps)
    (
        "link revoked beats everything",
        Facts(now=NOW, make="Nissan", linked=False, reading=_reading(plugged_in=False)),
        Want.CHARGE,
        "link_revoked",
        "relink",
        False,
    ),
    (
        "a revoked-link failure even while the vehicle still looks linked",
        Facts(now=NOW, reading=PLUGGED_IDLE, troubles=((Trouble.LINK_REVOKED, FRESH),)),
        Want.CHARGE,
        "link_revoked",
        "relink",
        False,
    ),
    (
        "owner paused smart charging",
        Facts(now=NOW, reading=PLUGGED_IDLE, paused_until=NOW + timedelta(days=1)),
        Want.CHARGE,
        "owner_paused",
        "resume",
        False,
    ),
    (
        "a pause that has ended is no reason",
        Facts(now=NOW, reading=PLUGGED_IDLE, paused_until=NOW - timedelta(minutes=1)),
        Want.CHARGE,
        "no_effect",
        "boost",
        True,
    ),
    (
        "charger rejected the profile",
        Facts(now=NOW, reading=PLUGGED_IDLE, troubles=((Trouble.CHARGER_REJECTED, FRESH),)),
        Want.CHARGE,
        "charger_rejected",
        "",
        False,
    ),
    (
        "fresh reading: no cable",
        Facts(now=NOW, reading=_reading(plugged_in=False)),
        Want.CHARGE,
        "not_plugged_in",
        "",
        False,
    ),
    (
        "the car refused: plug not connected, newer than the last reading",
        Facts(
            now=NOW,
            reading=_reading(recorded_at=NOW - timedelta(hours=2)),
            troubles=((Trouble.NOT_PLUGGED_IN, NOW - timedelta(minutes=5)),),
        ),
        Want.CHARGE,
        "not_plugged_in",
        "",
        False,
    ),
    (
        "a plug refusal older than a fresh plugged-in reading is over",
        Facts(
            now=NOW,
            reading=PLUGGED_IDLE,
            troubles=((Trouble.NOT_PLUGGED_IN, NOW - timedelta(minutes=30)),),
        ),
        Want.CHARGE,
        "no_effect",
        "boost",
        True,
    ),
    (
        "plugged in away from home",
        Facts(now=NOW, reading=_reading(at_home=False)),
        Want.CHARGE,
        "not_at_home",
        "",
        False,
    ),
    (
        "cloud rate-limited us",
        Facts(now=NOW, reading=PLUGGED_IDLE, troubles=((Trouble.RATE_LIMITED, FRESH),)),
        Want.CHARGE,
        "rate_limited",
        "",
        True,
    ),
    (
        "no reading at all: asleep",
        Facts(now=NOW, reading=None),
        Want.CHARGE,
        "car_asleep",
        "",
        True,
    ),
    (
        "stale reading: asleep",
        Facts(now=NOW, reading=_reading(recorded_at=NOW - timedelta(minutes=40))),
        Want.CHARGE,
        "car_asleep",
        "",
        True,
    ),
    (
        "the car's own limit is below the target and reached",
        Facts(
            now=NOW,
            reading=_reading(soc_pct=60, charge_limit_pct=60, charging_state="FULLY_CHARGED"),
            target_soc_pct=80,
        ),
        Want.CHARGE,
        "charge_limit_below_target",
        "",
        False,
    ),
    (
        "a limit below target not yet reached is not the reason",
        Facts(now=NOW, reading=_reading(soc_pct=40, charge_limit_pct=60), target_soc_pct=80),
        Want.CHARGE,
        "no_effect",
        "boost",
        True,
    ),
    (
        "nothing explains it: accepted but no power",
        Facts(now=NOW, reading=PLUGGED_IDLE, target_soc_pct=80),
        Want.CHARGE,
        "no_effect",
        "boost",
        True,
    ),
    (
        "a stop the car ignored",
        Facts(now=NOW, reading=_reading(charging_state="CHARGING", power_kw=7.0)),
        Want.STOP,
        "no_effect",
        "",
        True,
    ),
    (
        "an unplugged car is no reason for a stop to fail",
        Facts(now=NOW, reading=_reading(plugged_in=False, charging_state="CHARGING")),
        Want.STOP,
        "no_effect",
        "",
        True,
    ),
]


@pytest.mark.parametrize(
    ("facts", "want", "code", "owner_action", "resend_helps"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_diagnosis_table(facts, want, code, owner_action, resend_helps):
    found = diagnose(facts, want=want)
    assert found.code == code
    assert found.owner_action == owner_action
    assert found.resend_helps is resend_helps
    # One sentence each, in plain words: no codes, no exception names.
    for sentence in (found.explanation, found.action):
        assert sentence.endswith(".")
        assert sentence.count(". ") == 0
        assert "_" not in sentence
        assert "Error" not in sentence


def test_the_diagnosis_names_the_numbers_it_relies_on():
    limit = diagnose(
        Facts(now=NOW, reading=_reading(soc_pct=70, charge_limit_pct=70), target_soc_pct=85)
    )
    assert "70 %" in limit.explanation
    assert "85 %" in limit.action
    asleep = diagnose(Facts(now=NOW, reading=_reading(recorded_at=NOW - timedelta(hours=3))))
    assert "3 hours" in asleep.explanation
    rate = diagnose(
        Facts(now=NOW, make="Ford", troubles=((Trouble.RATE_LIMITED, FRESH),), reading=None)
    )
    assert rate.title.startswith("Ford's service")


@pytest.mark.parametrize(
    ("kind", "detail", "data", "trouble"),
    [
        ("failed", "LinkRevokedError: access revoked", {}, Trouble.LINK_REVOKED),
        ("failed", "AuthExpiredError: 401", {}, Trouble.LINK_REVOKED),
        ("failed", "The charger refused the profile: Rejected", {}, Trouble.CHARGER_REJECTED),
        ("failed", "The charger answered Rejected to the profile.", {}, Trouble.CHARGER_REJECTED),
        ("failed", "The car is not plugged in.", {}, Trouble.NOT_PLUGGED_IN),
        ("failed", "Gave up after 8 attempts: RATE_LIMIT", {}, Trouble.RATE_LIMITED),
        ("failed", "Gave up after 8 attempts: server error", {}, None),
        ("retry", "busy — next attempt in 120 s", {"retry_after_s": 120}, Trouble.RATE_LIMITED),
        ("retry", "timeout — next attempt in 30 s", {"retry_after_s": None}, None),
        ("refused", "The owner paused smart charging.", {"code": "owner_pause"}, None),
    ],
)
def test_command_troubles_are_classified(kind, detail, data, trouble):
    assert diagnosis.classify_trouble(kind=kind, detail=detail, data=data) == trouble


@pytest.mark.django_db
def test_facts_come_from_the_cars_commands_since_their_last_success(car, cloud):
    """The car's 409 "plug not connected" makes the diagnosis "not plugged in"; once a later
    command is confirmed by the car, that old failure no longer counts; a revoked link wins."""
    car.report(soc_pct=50, minutes_ago=60, plugged_in=True)
    cloud.set_state(car.vin, plugged=False)
    start = _command(car, Command.Action.START_CHARGE, "start-1")
    assert services.send_command(command_id=start.pk).state == Command.State.FAILED
    now = timezone.now()
    facts = diagnosis.facts_for(vehicle=car.vehicle, now=now)
    assert [trouble for trouble, _ in facts.troubles] == [Trouble.NOT_PLUGGED_IN]
    assert diagnose(facts).code == "not_plugged_in"

    cloud.set_state(car.vin, plugged=True, charging=False)
    stop = _command(
        car, Command.Action.STOP_CHARGE, "stop-1", lease_end=now + timedelta(minutes=10)
    )
    assert services.send_command(command_id=stop.pk).state == Command.State.CONFIRMED  # 409
    facts = diagnosis.facts_for(vehicle=car.vehicle, now=timezone.now())
    assert facts.troubles == ()
    assert diagnose(facts).code == "car_asleep"  # the newest reading is an hour old

    Vehicle.objects.filter(pk=car.vehicle.pk).update(link_state=Vehicle.LinkState.NEEDS_REAUTH)
    car.vehicle.refresh_from_db()
    facts = diagnosis.facts_for(vehicle=car.vehicle, now=timezone.now())
    assert diagnose(facts).code == "link_revoked"


def _command(car, action, key, **fields):
    command, _ = services.create_command(
        vehicle=car.vehicle, action=action, idempotency_key=key, actor="test", **fields
    )
    return command


# --- "Why isn't my car charging?" on the vehicle page -------------------------------------------

PAGE_NOW = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)  # 02:00 in Chicago


def _page_vehicle(owner, *, plan_started_min_ago=15, charging=False, **vehicle_fields):
    from programs.services import store_plan
    from tests.factories import VehicleFactory
    from vehicles import services as vehicle_services
    from vehicles.oem.base import VehicleState

    vehicle = VehicleFactory(owner=owner, **vehicle_fields)
    vehicle_services.record_reading(
        vehicle=vehicle,
        state=VehicleState(
            recorded_at=PAGE_NOW - timedelta(minutes=1),
            soc_pct=50,
            plugged_in=True,
            charging_state="CHARGING" if charging else "NOT_CHARGING",
            power_kw=7.2 if charging else 0.0,
        ),
        source="webhook",
    )
    start = PAGE_NOW - timedelta(minutes=plan_started_min_ago)
    store_plan(
        vehicle=vehicle,
        trigger="plugged_in",
        start=start,
        power_kw=[7.2] * 8,
        soc=[0.5 + 0.02 * i for i in range(9)],
        reasons=[0] * 8,
        import_price=[0.1] * 8,
        departure_at=start + timedelta(hours=2),
        departure_slot=8,
        target_soc_pct=66,
        min_soc_pct=30,
        cost=1.0,
        why="Charging now: cheapest hours.",
    )
    return vehicle


PAGE_CASES = [
    # (name, vehicle setup, preference changes, expected card text or None, expected button)
    ("accepted but not charging", {}, {}, "Your car hasn&#x27;t started charging.", "boost"),
    ("charging as planned: no card", {"charging": True}, {}, None, None),
    ("the plan only just started: give it time", {"plan_started_min_ago": 1}, {}, None, None),
    (
        "paused by the owner",
        {},
        {"pause_until": PAGE_NOW + timedelta(days=1)},
        "Smart charging is paused.",
        "resume",
    ),
    (
        "link revoked",
        {"link_state": "needs_reauth"},
        {},
        "We lost access to your car.",
        "relink",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "preference", "text", "button"),
    [case[1:] for case in PAGE_CASES],
    ids=[case[0] for case in PAGE_CASES],
)
def test_the_vehicle_page_says_why_the_car_is_not_charging(
    owner_client, owner, setup, preference, text, button
):
    import time_machine
    from django.urls import reverse

    with time_machine.travel(PAGE_NOW, tick=False):
        vehicle = _page_vehicle(owner, **setup)
        for name, value in preference.items():
            setattr(vehicle.preference, name, value)
        vehicle.preference.save()
        page = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk])).text
    if text is None:
        assert "Why isn't my car charging?" not in page
        return
    card = page[page.index("Why isn't my car charging?") :]
    card = card[: card.index("</section>")]
    assert f"<strong>{text}</strong>" in card
    assert reverse("vehicles:vehicle-activity", args=[vehicle.pk]) in card
    if button == "relink":
        assert reverse("vehicles:link-brands") in card
    else:
        assert f'name="action" value="{button}"' in card


@pytest.mark.django_db
def test_a_failed_start_explains_itself_even_without_a_plan(owner_client, car, cloud):
    """The car refused to start (no cable) while its last reading still said plugged in."""
    from django.urls import reverse

    car.report(soc_pct=50, plugged_in=True)
    cloud.set_state(car.vin, plugged=False)
    start = _command(car, Command.Action.START_CHARGE, "start")
    services.send_command(command_id=start.pk)
    page = owner_client.get(reverse("vehicles:vehicle-detail", args=[car.vehicle.pk])).text
    assert "<strong>Your car isn&#x27;t plugged in.</strong>" in page
    assert "Plug it in at home; we&#x27;ll start charging within a few minutes." in page
