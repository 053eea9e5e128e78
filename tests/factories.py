"""factory_boy factories for the domain, shared by every test package."""

import factory
from allauth.account.models import EmailAddress

from accounts.models import User


class UserFactory(factory.django.DjangoModelFactory):
    """An owner with a verified primary email (as after the confirmation mail)."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"owner{n}@example.com")
    first_name = "Sam"
    time_zone = "America/Chicago"
    service_zip = "60601"
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery-9")

    @factory.post_generation
    def verified_email(self, create, extracted, **kwargs):
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


class VehicleLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "vehicles.VehicleLink"

    owner = factory.SubFactory(UserFactory)
    provider = "smartcar"
    access_token = factory.Sequence(lambda n: f"access-token-{n}")
    refresh_token = factory.Sequence(lambda n: f"refresh-token-{n}")


class VehicleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "vehicles.Vehicle"
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    link = factory.SubFactory(VehicleLinkFactory, owner=factory.SelfAttribute("..owner"))
    provider = "smartcar"
    provider_vehicle_id = factory.Sequence(lambda n: f"veh-{n:04d}")
    make = "Nissan"
    model = "Leaf"
    year = 2024
    vin = factory.Sequence(lambda n: f"1N4AZ1CP0JC{n:06d}")
    battery_kwh = 60
    max_ac_kw = 7.2
    preference = factory.RelatedFactory(
        "tests.factories.ChargingPreferenceFactory", factory_related_name="vehicle"
    )


class ChargingPreferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "vehicles.ChargingPreference"

    weekly_schedule = factory.LazyFunction(
        lambda: {str(d): {"departure": "07:00", "target_soc_pct": 80} for d in range(7)}
    )
    min_soc_pct = 30
