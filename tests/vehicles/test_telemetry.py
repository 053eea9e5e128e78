"""Telemetry ingestion: readings as a time series, signals on plug-in/unplug, staleness,
geofence and location retention; tokens encrypted at rest."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from chargescape import crypto
from tests.factories import VehicleFactory, VehicleLinkFactory
from vehicles import services, signals
from vehicles.models import VehicleLink, VehicleReading
from vehicles.oem.base import VehicleState

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    """Signals sent during the test, as (name, kwargs)."""
    seen = []
    handlers = {}
    for name in ("vehicle_plugged_in", "vehicle_unplugged", "vehicle_soc_changed"):

        def handler(sender, name=name, **kwargs):
            seen.append((name, kwargs))

        handlers[name] = handler
        getattr(signals, name).connect(handler, weak=False)
    yield seen
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


def _state(minutes_ago=0, **fields):
    return VehicleState(recorded_at=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_plug_in_is_signalled_once_after_commit(django_capture_on_commit_callbacks, received):
    """A reading that shows the cable going in tells the planner, exactly once."""
    vehicle = VehicleFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.record_reading(
            vehicle=vehicle, state=_state(10, soc_pct=40, plugged_in=False), source="poll"
        )
    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        reading = services.record_reading(
            vehicle=vehicle, state=_state(0, soc_pct=40.2, plugged_in=True), source="webhook"
        )
    assert [name for name, _ in received] == ["vehicle_plugged_in"]
    assert received[0][1]["vehicle_id"] == vehicle.pk
    assert received[0][1]["reading_id"] == reading.pk
    with django_capture_on_commit_callbacks(execute=True):
        services.record_reading(
            vehicle=vehicle, state=_state(0, soc_pct=40.3, plugged_in=True), source="poll"
        )
    assert [name for name, _ in received] == ["vehicle_plugged_in"]  # still plugged: no news
    with django_capture_on_commit_callbacks(execute=True):
        services.record_reading(
            vehicle=vehicle, state=_state(0, soc_pct=47, plugged_in=False), source="poll"
        )
    assert [name for name, _ in received][1:] == ["vehicle_unplugged", "vehicle_soc_changed"]


def test_a_late_old_reading_is_history_not_news(django_capture_on_commit_callbacks, received):
    vehicle = VehicleFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.record_reading(
            vehicle=vehicle, state=_state(0, soc_pct=60, plugged_in=True), source="poll"
        )
    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.record_reading(
            vehicle=vehicle, state=_state(30, soc_pct=20, plugged_in=False), source="webhook"
        )
    assert received == []
    assert VehicleReading.objects.filter(vehicle=vehicle).count() == 2


def test_soc_goes_stale_after_15_minutes():
    vehicle = VehicleFactory()
    fresh = services.record_reading(vehicle=vehicle, state=_state(14, soc_pct=50), source="poll")
    old = services.record_reading(vehicle=vehicle, state=_state(16, soc_pct=50), source="poll")
    assert not fresh.is_stale()
    assert old.is_stale()


def test_geofence_marks_at_home_and_precise_location_expires():
    vehicle = VehicleFactory(home_latitude="37.774", home_longitude="-122.419")
    home = services.record_reading(
        vehicle=vehicle, state=_state(0, latitude=37.7745, longitude=-122.4194), source="poll"
    )
    away = services.record_reading(
        vehicle=vehicle, state=_state(0, latitude=37.80, longitude=-122.27), source="poll"
    )
    assert home.at_home is True
    assert away.at_home is False
    old = services.record_reading(
        vehicle=vehicle,
        state=VehicleState(
            recorded_at=timezone.now() - timedelta(days=31), latitude=37.1, longitude=-122.1
        ),
        source="poll",
    )
    assert services.purge_precise_locations() == 1
    old.refresh_from_db()
    home.refresh_from_db()
    assert (old.latitude, old.longitude) == (None, None)
    assert home.latitude is not None


def test_tokens_are_encrypted_at_rest():
    """A raw SQL read of the link shows ciphertext only, never the token."""
    link = VehicleLinkFactory(access_token="plain-access-XYZ", refresh_token="plain-refresh-ABC")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM vehicles_vehiclelink WHERE id = %s", [link.pk]
        )
        raw_access, raw_refresh = cursor.fetchone()
    assert "plain-access-XYZ" not in raw_access
    assert "plain-refresh-ABC" not in raw_refresh
    assert VehicleLink.objects.get(pk=link.pk).access_token == "plain-access-XYZ"


def test_field_keys_rotate_without_losing_tokens():
    """New key first, old key second, `rotate_field_keys`, then the old key can go."""
    from cryptography.fernet import Fernet

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old_key]):
        link = VehicleLinkFactory(access_token="rotate-me", refresh_token="and-me")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        assert VehicleLink.objects.get(pk=link.pk).access_token == "rotate-me"
        call_command("rotate_field_keys", stdout=StringIO())
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        rotated = VehicleLink.objects.get(pk=link.pk)
        assert (rotated.access_token, rotated.refresh_token) == ("rotate-me", "and-me")
    with override_settings(FIELD_ENCRYPTION_KEYS=[old_key]):
        with connection.cursor() as cursor:
            cursor.execute("SELECT access_token FROM vehicles_vehiclelink WHERE id = %s", [link.pk])
            raw = cursor.fetchone()[0]
        with pytest.raises(crypto.InvalidToken):
            crypto.decrypt(raw)  # no longer readable with the retired key


def test_owner_hears_when_charging_completes_once(owner):
    """CHARGING → FULLY_CHARGED tells the owner once; other changes tell nothing."""
    from datetime import UTC, datetime

    from accounts.notifications.models import Notification
    from vehicles.oem.base import VehicleState

    vehicle = VehicleFactory(owner=owner)
    start = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    for minutes, state, soc in [
        (0, "CHARGING", 70),
        (15, "CHARGING", 85),
        (30, "FULLY_CHARGED", 90),
        (45, "FULLY_CHARGED", 90),
    ]:
        services.record_reading(
            vehicle=vehicle,
            state=VehicleState(
                recorded_at=start + timedelta(minutes=minutes),
                soc_pct=soc,
                plugged_in=True,
                charging_state=state,
            ),
            source="poll",
        )
    told = Notification.objects.filter(owner=owner, kind="charging_complete")
    assert told.count() == 1
    assert "finished charging at 90 %" in told.get().body
