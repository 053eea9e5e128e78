"""ChargeScape project package: settings, URLs, ASGI apps, the Celery app, the stack runner."""

from .celery import app as celery_app

__all__ = ["celery_app"]
