"""The Celery application shared by every worker and beat.

Queues (DESIGN.md §2): `control` carries owner opt-outs and boosts and gets its own worker so it
never waits behind fleet work; `commands` carries device I/O; `default` everything else; `bulk`
fleet planning and settlement batches. Tasks declare their queue through CELERY_TASK_ROUTES or
`.apply_async(queue=…)`.
"""

import gc
import os

from celery import Celery
from celery.signals import task_failure, task_retry, worker_process_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargescape.settings")

QUEUES = ("control", "commands", "default", "bulk")

app = Celery("chargescape")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    # A task is acknowledged only after it ran, and re-queued if its worker dies mid-way; every
    # task is idempotent (commands carry idempotency keys), so a second run is harmless (I1, I2).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message in hand per worker process: a long bulk batch never hides a waiting control task.
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_track_started=True,
    result_expires=24 * 3600,
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
    # Redis redelivers an unacknowledged message after the visibility timeout. It must outlast the
    # longest task (the hard time limit) or a slow batch would run twice at once.
    # "priority": a worker takes from its queues in the order of its -Q list (one Redis BRPOP
    # over the keys in that order), so `-Q commands,default,bulk` sends waiting device commands
    # before it plans and plans before bulk work. A lower queue waits only while a higher one
    # has messages; commands come from plans and fan-out batches, so they drain. (Within the
    # queues, an event's notice batches carry a low message priority: FANOUT_PRIORITY.)
    broker_transport_options={"visibility_timeout": 3600, "queue_order_strategy": "priority"},
    result_backend_transport_options={"visibility_timeout": 3600},
    worker_cancel_long_running_tasks_on_connection_loss=True,
    beat_schedule={
        "poll-due-vehicles": {"task": "vehicles.poll_due_vehicles", "schedule": 60.0},
        "purge-precise-locations": {
            "task": "vehicles.purge_precise_locations",
            "schedule": 24 * 3600.0,
        },
        # I1: what the on-commit fast path missed is published within seconds.
        "relay-command-outbox": {"task": "control.relay_outbox", "schedule": 5.0},
        "execute-due-plan-slots": {"task": "programs.execute_due_slots", "schedule": 60.0},
        # Closed loop: sent commands confirmed by telemetry (or re-sent, or failed with a
        # diagnosis) a few minutes after sending; departure warnings recorded.
        "check-sent-commands": {"task": "control.check_sent_commands", "schedule": 60.0},
        # I8 for cloud-only cars: a stop whose lease lapsed with nothing after it is undone.
        "release-lapsed-stops": {"task": "control.release_lapsed_stops", "schedule": 60.0},
        # Grid events start and end within 30 s of their window (two beats: SKIP LOCKED claims).
        "advance-grid-events": {"task": "programs.advance_events", "schedule": 30.0},
        # Completed events settle within minutes; months close (bonuses, statements) daily.
        "settle-grid-events": {"task": "programs.settle_events", "schedule": 120.0},
        "close-months": {"task": "programs.close_months", "schedule": 6 * 3600.0},
        # I1 for notifications: stored ones whose delivery task was lost, and held pushes whose
        # quiet hours ended, go out within a minute.
        "relay-notifications": {"task": "accounts.relay_notifications", "schedule": 60.0},
        # Utility API webhooks whose retry is due, or that an on-commit send missed (I1).
        "redrive-webhooks": {"task": "programs.redrive_webhooks", "schedule": 30.0},
        # OpenADR VEN: poll each VTN link for events; report finished intervals.
        "openadr-poll": {"task": "programs.openadr_poll", "schedule": 30.0},
        "openadr-report": {"task": "programs.openadr_report", "schedule": 60.0},
    },
)
app.autodiscover_tasks()
app.autodiscover_tasks(["programs.api", "programs.openadr"])  # their tasks.py beside their code


@worker_process_init.connect
def freeze_startup_objects(**kwargs: object) -> None:
    """Django, the task modules and the SDKs are loaded when a pool process starts: move them
    out of the collector's sight, so the collections below only walk what tasks made."""
    gc.freeze()


@task_failure.connect
@task_retry.connect
def collect_exception_cycles(**kwargs: object) -> None:
    """A failed or retried task leaves a reference cycle (its ExceptionInfo → traceback → the
    tracer's frame → the ExceptionInfo, celery#8882) that holds the task's locals until a full
    collection, which a busy worker rarely reaches: its memory grows with every transient OEM
    error. Collect at once (~0.1 ms with the startup objects frozen; failures are rare)."""
    gc.collect()
