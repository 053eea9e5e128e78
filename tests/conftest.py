"""Shared fixtures: real PostgreSQL (pytest-django), real Redis cache, factories."""

import uuid

import pytest
from celery.signals import after_task_publish
from django.core.cache import cache

from tests.factories import UserFactory

DEFAULT_PASSWORD = "correct-horse-battery-9"

# Every log record of the session is scanned for tokens, VINs, emails and coordinates (issue 11).
pytest_plugins = ["tests.privacy_logs", "pytester"]


@pytest.fixture(autouse=True)
def isolated_cache():
    """Give each test its own key space in the shared Redis, so rate-limit counters of parallel
    test workers (same 127.0.0.1 client address) never add up. Nothing is flushed.

    The prefix is set on this thread's cache connection only: code the test runs in other threads
    (channels' database_sync_to_async, a uvicorn server thread, worker threads) sees the default
    `cs` prefix unless the test hands its prefix over (see tests/security/test_abuse_limits.py)."""
    previous = cache.key_prefix
    cache.key_prefix = f"test-{uuid.uuid4().hex}"
    yield
    cache.key_prefix = previous


@pytest.fixture
def password() -> str:
    return DEFAULT_PASSWORD


@pytest.fixture
def owner(db):
    return UserFactory(password=DEFAULT_PASSWORD)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def published():
    """Celery messages published during the test (Celery's own after_task_publish hook), as
    (queue, task name, args)."""
    seen = []

    def record(sender, headers, routing_key, body, **kwargs):
        seen.append((routing_key, headers["task"], body[0]))

    after_task_publish.connect(record, weak=False)
    yield seen
    after_task_publish.disconnect(record)
