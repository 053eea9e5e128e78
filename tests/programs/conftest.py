"""A utility with two feeders, a V2G program and a demand-response program, for the programs
tests. Built through the ORM: these are the rows a program manager creates in the admin."""

from datetime import UTC, datetime

import pytest

from programs.models import Feeder, Program, ProgramTerms, Tariff, Utility

# Wednesday 2026-11-25 18:00 in Chicago (the factory owner's zone, ZIP 60601).
EVENING = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


@pytest.fixture
def utility(db):
    utility = Utility.objects.create(name="Lakeshore Electric", slug="lakeshore")
    Feeder.objects.create(utility=utility, code="loop-1", region="Loop", zip_codes=["60601"])
    Feeder.objects.create(utility=utility, code="north-1", region="North", zip_codes=["60614"])
    Tariff.objects.create(
        utility=utility,
        name="EV time of use",
        is_default=True,
        default_price="0.20",
        export_price="0.10",
        periods=[
            {"start": "23:00", "end": "06:00", "price": 0.08},
            {"start": "15:00", "end": "20:00", "price": 0.40, "weekdays": [0, 1, 2, 3, 4]},
        ],
    )
    return utility


def make_program(utility, *, code, kind=Program.Kind.DEMAND_RESPONSE, **rules):
    program = Program.objects.create(
        utility=utility,
        code=code,
        name=rules.pop("name", code.replace("-", " ").title()),
        kind=kind,
        status=rules.pop("status", Program.Status.OPEN),
        summary="Let us shift your charging when the grid is busy.",
        **rules,
    )
    ProgramTerms.objects.create(
        program=program,
        version=1,
        body="You agree that we may shift your charging during grid events.",
        incentives={"per_event_cents": 200, "per_kwh_cents": 25, "enrollment_bonus_cents": 5000},
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return program


@pytest.fixture
def program(utility):
    return make_program(utility, code="peak-saver", opt_outs_per_month=2, opt_out_fee_cents=500)


@pytest.fixture
def v2g_program(utility):
    return make_program(
        utility, code="grid-return", kind=Program.Kind.V2G, requires_v2g=True, notice_minutes=30
    )
