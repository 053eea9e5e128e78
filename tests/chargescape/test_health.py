"""/healthz: what load balancers and the CI smoke run poll."""

import socket

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_healthz_is_200_when_database_and_redis_answer(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_is_503_when_redis_is_down(client, settings):
    with socket.socket() as probe:  # a port with nothing listening: Redis is down
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port}/0"
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "down"}
