"""Linking through the real `smartcar` SDK against the simulated cloud over HTTP, polling,
webhooks (signature, replay), one token refresh under concurrent 401s, and unlinking."""

import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from vehicles import services
from vehicles.models import Vehicle, VehicleLink, VehicleReading
from vehicles.oem.base import TransientOemError, VehicleState


def _consent(authorize_url: str, pick: int) -> str:
    """Open the automaker's consent page like a browser, pick `pick` cars, return the redirect."""
    session = requests.Session()
    page = session.get(authorize_url, timeout=5)
    assert page.status_code == 200
    consent = re.search(r'name=consent value="([^"]+)"', page.text)[1]
    cars = re.findall(r'name=vehicle value="([^"]+)"', page.text)
    response = session.post(
        authorize_url.split("?")[0],
        data={"consent": consent, "action": "approve", "vehicle": cars[:pick]},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code in (302, 303)
    return response.headers["location"]


def _link(client, pick=2) -> list[Vehicle]:
    start = client.post(reverse("vehicles:link-start"), {"provider": "smartcar", "brand": "Nissan"})
    assert start.status_code == 302
    back = _consent(start["Location"], pick)
    parts = urlsplit(back)
    assert parts.path == reverse("vehicles:link-callback")
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 302
    return list(Vehicle.objects.order_by("created_at"))


@pytest.mark.django_db
def test_owner_links_two_cars_and_sees_them_listed(owner_client, owner, cloud):
    """Pick a brand → consent on the automaker's page → back with the chosen cars listed."""
    start = owner_client.post(
        reverse("vehicles:link-start"), {"provider": "smartcar", "brand": "Nissan"}
    )
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["make"] == ["NISSAN"]
    state = query["state"][0]
    assert len(state) >= 32

    vehicles = _link(owner_client, pick=2)
    assert len(vehicles) == 2
    sim_cars = {car.vehicle_id: car for car in cloud.cars}
    for vehicle in vehicles:
        car = sim_cars[vehicle.provider_vehicle_id]
        assert vehicle.owner == owner
        assert (vehicle.make, vehicle.model, vehicle.year) == (car.make, car.model, car.year)
        assert vehicle.vin == car.vin
        assert float(vehicle.battery_kwh) == pytest.approx(car.battery_kwh)
        assert vehicle.preference.weekly_schedule["0"] == {
            "departure": "07:00",
            "target_soc_pct": 80,
        }
    page = owner_client.get(reverse("vehicles:vehicle-list")).content.decode()
    for vehicle in vehicles:
        assert vehicle.display_name in page
        assert f"{vehicle.battery_kwh:.0f} kWh · VIN ••••{vehicle.vin[-4:]}" in page
        assert vehicle.vin not in page
    home = owner_client.get(reverse("home")).content.decode()
    assert all(vehicle.display_name in home for vehicle in vehicles)
    assert "Nothing to manage yet" not in home
    detail = owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicles[0].pk]))
    text = detail.content.decode()
    assert vehicles[0].vin[-4:] in text
    assert vehicles[0].vin not in text  # VIN masked


@pytest.mark.django_db
def test_callback_with_a_foreign_state_links_nothing(owner_client, cloud):
    start = owner_client.post(reverse("vehicles:link-start"), {"provider": "smartcar"})
    back = _consent(start["Location"], 1)
    forged = re.sub(r"state=[^&]+", "state=forged", back)
    parts = urlsplit(forged)
    response = owner_client.get(f"{parts.path}?{parts.query}", follow=True)
    assert "That link attempt expired or didn&#x27;t start here" in response.content.decode()
    assert not Vehicle.objects.exists()
    assert cloud.request_count("auth.exchange_code") == 0


@pytest.mark.django_db
def test_poll_records_the_cars_state(owner_client, cloud):
    vehicle = _link(owner_client, pick=1)[0]
    car = next(c for c in cloud.cars if c.vehicle_id == vehicle.provider_vehicle_id)
    cloud.set_state(car.vin, soc_pct=42.0, plugged=True)
    reading = services.poll_vehicle(vehicle_id=vehicle.pk)
    assert reading.soc_pct == pytest.approx(42.0)
    assert reading.plugged_in is True
    vehicle.refresh_from_db()
    assert vehicle.next_poll_at > reading.received_at  # polled again later, not in a loop


@pytest.mark.django_db
def test_rate_limited_poll_backs_off_until_retry_after(owner_client, cloud):
    vehicle = _link(owner_client, pick=1)[0]
    cloud.inject_fault("rate_limit", count=1, retry_after_s=120)
    with pytest.raises(TransientOemError) as raised:
        services.poll_vehicle(vehicle_id=vehicle.pk)
    assert raised.value.retry_after_seconds == 120
    vehicle.refresh_from_db()
    assert vehicle.poll_backoff_until is not None
    assert services.poll_vehicle(vehicle_id=vehicle.pk) is None  # still backing off: no call


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_401s_cause_one_refresh(client, cloud):
    """Ten workers hit an expired token at once; the link's row lock lets one refresh."""
    from tests.factories import UserFactory

    owner = UserFactory()
    client.force_login(owner)
    vehicle = _link(client, pick=1)[0]
    cloud.expire_access_tokens()
    cloud.reset_request_counts()
    errors, barrier = [], threading.Barrier(10)

    def poll():
        try:
            barrier.wait(timeout=10)
            services.poll_vehicle(vehicle_id=vehicle.pk)
        except Exception as error:  # collected and asserted below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert cloud.request_count("auth.exchange_refresh_token") == 1
    assert VehicleLink.objects.get(pk=vehicle.link_id).refreshed_count == 1
    assert VehicleReading.objects.filter(vehicle=vehicle).count() == 10


@pytest.mark.django_db
def test_unlink_revokes_at_the_automaker_and_wipes_tokens(owner_client, cloud):
    vehicle = _link(owner_client, pick=1)[0]
    response = owner_client.post(reverse("vehicles:vehicle-unlink", args=[vehicle.pk]))
    assert response.status_code == 302
    vehicle.refresh_from_db()
    assert vehicle.link_state == Vehicle.LinkState.UNLINKED
    link = VehicleLink.objects.get()
    assert (link.status, link.access_token, link.refresh_token) == ("revoked", "", "")
    assert cloud.request_count("vehicle.disconnect") == 1
    assert (
        owner_client.get(reverse("vehicles:vehicle-detail", args=[vehicle.pk])).status_code == 404
    )


@pytest.mark.django_db(transaction=True)
def test_signed_webhook_is_ingested_once_and_forgeries_refused(live_server, client, cloud):
    """The cloud's signed VEHICLE_STATE webhook over HTTP becomes a reading; the same delivery
    replayed changes nothing; a body with a wrong signature is refused."""
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    vehicle = _link(client, pick=1)[0]
    car = next(c for c in cloud.cars if c.vehicle_id == vehicle.provider_vehicle_id)
    cloud.webhook_url = (
        f"{live_server.url}{reverse('vehicles:provider-webhook', args=['smartcar'])}"
    )
    verify = cloud.verify_webhook()
    assert verify.ok, verify.summary()
    cloud.set_state(car.vin, soc_pct=63.0, plugged=True)
    delivery = cloud.trigger_webhook(car.vin)
    assert delivery.ok, delivery.summary()
    readings = VehicleReading.objects.filter(vehicle=vehicle, source="webhook")
    assert readings.count() == 1
    assert readings.get().soc_pct == pytest.approx(63.0)
    assert readings.get().plugged_in is True

    replay = cloud.replay_webhook(delivery)
    assert replay.ok
    assert readings.count() == 1

    forged = requests.post(
        cloud.webhook_url,
        data=delivery.body.replace(b"63", b"99"),
        headers={"SC-Signature": delivery.signature, "Content-Type": "application/json"},
        timeout=5,
    )
    assert forged.status_code == 401
    assert readings.count() == 1


@pytest.mark.django_db
def test_no_poll_while_webhooks_keep_us_current(owner_client, cloud):
    """A fresh webhook reading makes the next poll a no-op: the car is not woken for nothing;
    a `fresh` poll (its charger says it was just plugged in) still reads it."""
    vehicle = _link(owner_client, pick=1)[0]
    services.record_reading(
        vehicle=vehicle,
        state=VehicleState(recorded_at=timezone.now(), soc_pct=50, plugged_in=True),
        source=VehicleReading.Source.WEBHOOK,
    )
    cloud.reset_request_counts()
    assert services.poll_vehicle(vehicle_id=vehicle.pk) is None
    assert cloud.request_count("vehicle.battery") == 0
    vehicle.refresh_from_db()
    assert vehicle.next_poll_at > timezone.now()

    # Unless news from elsewhere (its charger opened a session) says the car just changed.
    reading = services.poll_vehicle(vehicle_id=vehicle.pk, fresh=True)
    assert reading is not None
    assert reading.source == VehicleReading.Source.POLL
    assert cloud.request_count("vehicle.battery") == 1


@pytest.mark.django_db
def test_csp_lets_the_link_form_redirect_to_the_automaker(owner_client, settings):
    """Browsers apply form-action to the redirect after POST; the consent origin must be in it."""
    response = owner_client.get(reverse("vehicles:link-brands"))
    origin = settings.VEHICLE_PROVIDERS["smartcar"]["CONNECT_ORIGIN"]
    directive = next(
        part for part in response["Content-Security-Policy"].split(";") if "form-action" in part
    )
    assert origin in directive
