"""factory_boy factories for utilities, programs, enrollments and grid events (issue 7).

Rows as a program manager or an owner would leave them; services are not called here, so tests
can build any state (a pending enrollment, a running event) directly.
"""

from datetime import UTC, datetime, timedelta

import factory
from django.utils import timezone

from programs.models import (
    Enrollment,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Tariff,
    Utility,
)
from tests.factories import UserFactory, VehicleFactory
from vehicles.models import VehicleReading


class UtilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Utility

    name = factory.Sequence(lambda n: f"Utility {n}")
    slug = factory.Sequence(lambda n: f"utility-{n}")
    time_zone = "America/Chicago"


class FeederFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feeder

    utility = factory.SubFactory(UtilityFactory)
    code = factory.Sequence(lambda n: f"feeder-{n}")
    region = "Central"
    zip_codes = factory.LazyFunction(lambda: ["60601"])


class TariffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tariff

    utility = factory.SubFactory(UtilityFactory)
    name = factory.Sequence(lambda n: f"EV time of use {n}")
    is_default = True
    default_price = "0.20"
    export_price = "0.10"
    periods = factory.LazyFunction(
        lambda: [
            {"start": "23:00", "end": "06:00", "price": 0.08},
            {"start": "15:00", "end": "20:00", "price": 0.40},
        ]
    )


class ProgramFactory(factory.django.DjangoModelFactory):
    """An open program with terms v1 already published."""

    class Meta:
        model = Program
        skip_postgeneration_save = True

    utility = factory.SubFactory(UtilityFactory)
    code = factory.Sequence(lambda n: f"program-{n}")
    name = factory.Sequence(lambda n: f"Program {n}")
    kind = Program.Kind.DEMAND_RESPONSE
    status = Program.Status.OPEN
    summary = "Let us shift your charging when the grid is busy."
    terms = factory.RelatedFactory(
        "tests.programs.factories.ProgramTermsFactory", factory_related_name="program"
    )


class ProgramTermsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProgramTerms

    program = factory.SubFactory(ProgramFactory, terms=None)
    version = 1
    body = "You agree that we may shift your charging during grid events."
    incentives = factory.LazyFunction(lambda: {"per_event_cents": 200, "per_kwh_cents": 25})
    published_at = datetime(2026, 1, 1, tzinfo=UTC)


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    program = factory.SubFactory(ProgramFactory)
    vehicle = factory.SubFactory(VehicleFactory)
    terms = factory.LazyAttribute(lambda o: o.program.terms.order_by("-version").first())
    accepted_at = factory.LazyFunction(timezone.now)
    status = Enrollment.Status.ACTIVE
    source = "app"


class GridEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GridEvent

    program = factory.SubFactory(ProgramFactory)
    kind = GridEvent.Kind.IMPORT_CAP
    status = GridEvent.Status.DRAFT
    starts_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=3))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(hours=1))
    target_kw = 50.0


class EventParticipationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventParticipation

    event = factory.SubFactory(GridEventFactory)
    enrollment = factory.SubFactory(
        EnrollmentFactory, program=factory.SelfAttribute("..event.program")
    )
    vehicle = factory.SelfAttribute("enrollment.vehicle")


class VehicleReadingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VehicleReading

    vehicle = factory.SubFactory(VehicleFactory)
    recorded_at = factory.LazyFunction(timezone.now)
    source = VehicleReading.Source.POLL
    soc_pct = 50.0
    plugged_in = True
    power_kw = 0.0


def owner_in(zip_code: str, **fields):  # type: ignore[no-untyped-def]
    """An owner whose service address is in `zip_code`."""
    return UserFactory(service_zip=zip_code, **fields)
