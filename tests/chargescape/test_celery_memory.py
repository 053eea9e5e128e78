"""A failed or retried task must not keep its locals alive until the next full collection
(celery#8882): the worker's memory grew with every transient error (issue 11's soak)."""

import gc
import logging
import weakref

import pytest
from celery.exceptions import Retry

from chargescape.celery import app

held: list[weakref.ref] = []


class Payload:
    """Stands for what a task holds: a device reply, a batch of rows."""


@app.task(name="tests.fails_holding_a_payload")
def fails_holding_a_payload() -> None:
    payload = Payload()
    held.append(weakref.ref(payload))
    raise RuntimeError("transient")


@app.task(name="tests.retries_holding_a_payload", bind=True, max_retries=1)
def retries_holding_a_payload(self) -> None:  # type: ignore[no-untyped-def]
    payload = Payload()
    held.append(weakref.ref(payload))
    raise self.retry(countdown=60, exc=RuntimeError("transient"))


@pytest.fixture
def collector_off():
    """Only our signal handlers may collect: automatic collections would hide a leak. Celery's
    failure log record carries the traceback, and pytest keeps every record of a test: silenced
    here, or the capture itself would hold the task's locals."""
    trace_logger = logging.getLogger("celery.app.trace")
    held.clear()
    gc.collect()
    gc.disable()
    trace_logger.disabled = True
    yield
    trace_logger.disabled = False
    gc.enable()


@pytest.mark.parametrize("task", [fails_holding_a_payload, retries_holding_a_payload])
def test_a_failed_or_retried_task_frees_what_it_held(collector_off, task):
    # The handler runs while the failure is still being handled, so the cycle it frees is the
    # previous one: what a task held outlives it by one failure, never more.
    for _ in range(3):
        before_last = len(held)
        result = task.apply()
        assert result.state in ("FAILURE", "RETRY")
        if result.state == "RETRY":
            assert isinstance(result.result, Retry)
        del result

    # (an eager retry runs again at once: the retrying task runs twice an apply)
    assert before_last >= 2, "the task ran each time"
    alive = [ref() is not None for ref in held]
    assert not any(alive[:before_last]), f"a task's locals outlived the next failure: {alive}"
