"""Settings pins: deploy checks, Celery reliability settings, database health checks."""

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet
from django.conf import settings

from chargescape.celery import app as celery_app


def _check_deploy(**overrides: str) -> subprocess.CompletedProcess:
    """`check --deploy` in a fresh process with production-like settings (plus `overrides`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env |= {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "app.chargescape.example",
        "EMAIL_URL": "smtp+tls://mailer:secret@smtp.chargescape.example:587",
        "CHARGESCAPE_FIELD_KEYS": Fernet.generate_key().decode(),
        "SMARTCAR_CLIENT_ID": "prod-client",
        "SMARTCAR_CLIENT_SECRET": secrets.token_urlsafe(20),
        "SMARTCAR_MANAGEMENT_TOKEN": secrets.token_urlsafe(20),
        "PAYOUT_WEBHOOK_SECRET": secrets.token_urlsafe(20),
    }
    env |= overrides
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_env():
    """With production-like env (no DEBUG, a real secret), `check --deploy` reports nothing."""
    result = _check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_when_debug_is_on():
    result = _check_deploy(DJANGO_DEBUG="1")
    assert result.returncode != 0
    assert "security.W018" in result.stdout + result.stderr


def test_check_deploy_fails_without_field_encryption_keys():
    result = _check_deploy(CHARGESCAPE_FIELD_KEYS="")
    assert result.returncode != 0
    assert "chargescape.E001" in result.stdout + result.stderr


def test_production_needs_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_celery_reliability_settings_are_pinned():
    conf = celery_app.conf
    assert [queue.name for queue in conf.task_queues] == ["control", "commands", "default", "bulk"]
    assert conf.task_default_queue == "default"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.broker_connection_retry_on_startup is True


def test_database_and_request_limits_are_pinned():
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_NUMBER_FIELDS <= 1000
