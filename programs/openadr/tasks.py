"""Celery tasks of the OpenADR VEN (thin: ids in, one service call; a missing link is a no-op)."""

from celery import shared_task
from django.core.cache import cache

# One poll of a link at a time: a slow VTN must not make two beats act on one event twice.
LOCK_SECONDS = 120


def _each_link(service_name: str) -> int:
    from programs.openadr import ven
    from programs.openadr.models import VtnLink

    service = getattr(ven, service_name)
    done = 0
    for link_id in VtnLink.objects.filter(enabled=True).values_list("pk", flat=True):
        key = f"openadr:{service_name}:{link_id}"
        if not cache.add(key, 1, timeout=LOCK_SECONDS):
            continue
        try:
            done += service(link_id=link_id) is not None
        finally:
            cache.delete(key)
    return done


@shared_task(name="programs.openadr_poll", ignore_result=True)
def openadr_poll() -> int:
    """Beat: poll every VTN link for programs and events (OPENADR_POLL_SECONDS)."""
    return _each_link("poll_link")


@shared_task(name="programs.openadr_report", ignore_result=True)
def openadr_report() -> int:
    """Beat: report usage of every finished interval we acted on."""
    return _each_link("report_link")
