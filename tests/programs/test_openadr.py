"""OpenADR 3 round trip over loopback HTTP: the utility's business logic (the official
openadr3-client BL client) writes an event into the simulated VTN, our VEN (openadr3-client VEN
client) turns it into a grid event, dispatches it, and after the interval a USAGE/DEMAND report
appears in the VTN. Also: token refresh after a 401, back-off on 429, withdrawal, prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr301.models.event.event import NewEvent
from openadr3_client.oadr301.models.event.event_payload import (
    EventPayload,
    EventPayloadDescriptor,
    EventPayloadType,
)
from openadr3_client.oadr301.models.program.program import NewProgram
from openadr3_client.oadr301.models.unit import Unit
from openadr3_client.version import OADRVersion

from programs import events
from programs.models import GridEvent, TariffPrice
from programs.openadr import ven
from programs.openadr.models import VtnEvent, VtnLink, VtnMessage
from programs.sim.vtn import SimulatedVtn, seed_demo
from tests.programs.factories import TariffFactory, UtilityFactory, VehicleReadingFactory
from tests.programs.test_utility_api import territory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
START = NOW + timedelta(hours=2)


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Owners' passwords are hashed slowly on purpose; these tests sign nobody in."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def vtn():
    with SimulatedVtn(
        clients={"chargescape-ven": ("ven-secret", "ven"), "utility-bl": ("bl-secret", "bl")}
    ) as server:
        yield server


@pytest.fixture
def bl(vtn, monkeypatch):
    """The utility's own business logic, with the library's BL client. requests-oauthlib wants
    HTTPS for token requests; the simulator speaks plain HTTP on loopback."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=vtn.url,
        client_id="utility-bl",
        client_secret="bl-secret",
        token_url=vtn.token_url,
        version=OADRVersion.OADR_301,
    )


@pytest.fixture
def link(vtn, clock):
    utility = UtilityFactory(slug="lakeshore")
    program = territory(utility)
    for enrollment in program.enrollments.all():  # plugged in, charging: something to shed
        VehicleReadingFactory(vehicle=enrollment.vehicle, soc_pct=40, power_kw=7.2)
    return VtnLink.objects.create(
        utility=utility,
        name="Lakeshore VTN",
        base_url=vtn.url,
        token_url=vtn.token_url,
        client_id="chargescape-ven",
        client_secret="ven-secret",
        program=program,
        tariff=TariffFactory(utility=utility, kind="feed", is_default=False),
    )


def publish(bl, *, payload=EventPayloadType.IMPORT_CAPACITY_LIMIT, value=5.0, minutes=60):
    program = bl.programs.create_program(NewProgram(program_name="evening-peak"))
    return bl.events.create_event(
        NewEvent(
            program_id=program.id,
            event_name="evening-limit",
            payload_descriptors=(EventPayloadDescriptor(payload_type=payload, units=Unit.KW),),
            intervals=(
                Interval(
                    id=0,
                    interval_period=IntervalPeriod(
                        start=START, duration=timedelta(minutes=minutes)
                    ),
                    payloads=(EventPayload(type=payload, values=(value,)),),
                ),
            ),
        )
    )


def test_round_trip_event_to_grid_event_to_report(vtn, bl, link, clock):
    """BL writes an event → our VEN makes it a dispatched grid event → it runs → our report of
    the interval is in the VTN, readable by the utility's BL client."""
    vtn_event = publish(bl, value=5.0)

    assert ven.poll_link(link_id=link.pk) == {"events": 1, "changed": 1}
    link.refresh_from_db()
    assert link.health == VtnLink.Health.OK
    assert link.ven_id  # registered as a VEN at the VTN
    assert [v["venName"] for v in vtn.list("vens")] == ["chargescape"]
    row = VtnEvent.objects.get(link=link)
    assert row.outcome == VtnEvent.Outcome.GRID_EVENT
    grid_event = row.grid_event
    assert grid_event.status == GridEvent.Status.SCHEDULED  # dispatched: owners told
    assert (grid_event.source, grid_event.external_id) == ("openadr", vtn_event.id)
    assert (grid_event.kind, grid_event.target_kw) == (GridEvent.Kind.IMPORT_CAP, 5.0)
    assert (grid_event.starts_at, grid_event.ends_at) == (START, START + timedelta(hours=1))
    assert grid_event.participations.count() == 2
    assert ven.poll_link(link_id=link.pk) == {"events": 1, "changed": 0}  # nothing new

    clock.move_to(START + timedelta(minutes=1))
    events.advance_events()
    grid_event.refresh_from_db()
    assert grid_event.status == GridEvent.Status.ACTIVE
    assert ven.report_link(link_id=link.pk) == 0  # the interval has not ended
    for participation in grid_event.participations.all():
        for minutes in (5, 20, 35, 50):
            VehicleReadingFactory(
                vehicle=participation.vehicle,
                recorded_at=START + timedelta(minutes=minutes),
                power_kw=2.5,
            )
    clock.move_to(START + timedelta(hours=1, minutes=1))
    events.advance_events()
    assert ven.report_link(link_id=link.pk) == 1
    assert ven.report_link(link_id=link.pk) == 0  # once per interval

    reports = bl.reports.get_reports(
        pagination=None, program_id=vtn_event.program_id, event_id=vtn_event.id, client_name=None
    )
    assert len(reports) == 1
    report = reports[0]
    assert report.client_name == "chargescape"
    payloads = {str(p.type): p.values[0] for p in report.resources[0].intervals[0].payloads}
    # Two cars at 2.5 kW for an hour.
    assert payloads == {"USAGE": pytest.approx(5.0), "DEMAND": pytest.approx(5.0)}
    assert VtnMessage.objects.filter(link=link, method="POST", path="/reports").exists()


def test_expired_token_is_refreshed_once(vtn, bl, link):
    publish(bl)
    ven.poll_link(link_id=link.pk)
    tokens_before = len(vtn.requests("/auth/token"))
    vtn.expire_tokens()
    assert ven.poll_link(link_id=link.pk) is not None
    link.refresh_from_db()
    assert link.health == VtnLink.Health.OK
    assert len(vtn.requests("/auth/token")) == tokens_before + 1
    assert any(r["status"] == 401 for r in vtn.requests("/programs"))


def test_wrong_secret_marks_link_auth_failed(vtn, link):
    link.client_secret = "wrong"
    link.save()
    assert ven.poll_link(link_id=link.pk) is None
    link.refresh_from_db()
    assert link.health == VtnLink.Health.AUTH_FAILED
    assert link.backoff_until is not None


def test_rate_limit_backs_off_for_retry_after(vtn, bl, link, clock):
    publish(bl)
    vtn.rate_limit(count=1, retry_after_s=120)
    ven.poll_link(link_id=link.pk)
    link.refresh_from_db()
    assert link.health == VtnLink.Health.RATE_LIMITED
    assert link.backoff_until == NOW + timedelta(seconds=120)
    assert ven.poll_link(link_id=link.pk) is None  # still backing off: the VTN is left alone
    clock.move_to(NOW + timedelta(seconds=121))
    assert ven.poll_link(link_id=link.pk) == {"events": 1, "changed": 1}


def test_withdrawn_event_cancels_the_grid_event(vtn, bl, link):
    vtn_event = publish(bl)
    ven.poll_link(link_id=link.pk)
    grid_event = VtnEvent.objects.get(link=link).grid_event
    bl.events.delete_event_by_id(vtn_event.id)
    ven.poll_link(link_id=link.pk)
    grid_event.refresh_from_db()
    assert grid_event.status == GridEvent.Status.CANCELLED
    assert VtnEvent.objects.get(link=link).outcome == VtnEvent.Outcome.CANCELLED


def test_refused_event_is_recorded_with_the_reason(vtn, bl, link):
    """A limit longer than the program allows is not dispatched; the reason is kept."""
    publish(bl, minutes=600)
    ven.poll_link(link_id=link.pk)
    row = VtnEvent.objects.get(link=link)
    assert row.outcome == VtnEvent.Outcome.REFUSED
    assert "Longer than the program allows" in row.reason
    assert not GridEvent.objects.exists()


def test_price_event_becomes_tariff_prices(vtn, bl, link):
    publish(bl, payload=EventPayloadType.PRICE, value=0.42)
    ven.poll_link(link_id=link.pk)
    price = TariffPrice.objects.get(tariff=link.tariff)
    assert (price.start, float(price.price), price.source) == (START, 0.42, "openadr")


def test_demo_event_is_a_capacity_limit_our_ven_reads(vtn, link):
    """The simulator's demo (make run) publishes a program and an evening event in two
    intervals that the VEN understands."""
    seed_demo(vtn, now=NOW)
    counts = ven.poll_link(link_id=link.pk)
    assert counts == {"events": 1, "changed": 2}
    rows = VtnEvent.objects.filter(link=link).order_by("interval_id")
    assert [row.payload_type for row in rows] == ["IMPORT_CAPACITY_LIMIT"] * 2
    assert rows[1].starts_at == rows[0].ends_at
