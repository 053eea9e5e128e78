"""Fixtures of the hardening tests (issue #11): the isolation world, and what a request may leave
behind (table checksums, Celery publishes)."""

from __future__ import annotations

import pytest
from celery.signals import before_task_publish
from django.db import connection

from tests.security.isolation_world import World, build_world

# Sessions are where sign-ins live; a request refreshing its own session is not a side effect
# on anybody's objects.
NOT_OBJECTS = {"django_session"}
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # hashing is not under test


@pytest.fixture
def world(db, settings) -> World:
    """Owners A and B, utilities 1 and 2, their managers (password + TOTP) and API clients."""
    settings.PASSWORD_HASHERS = FAST_HASHERS  # API client secrets are hashed like passwords
    return build_world()


@pytest.fixture
def published():
    """Task names Celery is asked to publish while the test runs (before_task_publish fires
    before anything reaches the broker)."""
    seen: list[str] = []

    def record(sender, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(sender)

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)


def _checksum_sql() -> str:
    tables = sorted(set(connection.introspection.table_names()) - NOT_OBJECTS)
    quote = connection.ops.quote_name
    # Table names come from the database's own catalogue, never from input.
    row = "SELECT '{}', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
    return " UNION ALL ".join(f"{row.format(table)} FROM {quote(table)} t" for table in tables)


@pytest.fixture
def snapshot(db):
    """snapshot() -> {table: (row count, md5 of every row)} for every table but sessions."""
    sql = _checksum_sql()

    def take() -> dict[str, tuple[int, str]]:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return {table: (count, digest) for table, count, digest in cursor.fetchall()}

    return take
