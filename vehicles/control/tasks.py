"""Celery tasks of command execution: thin wrappers over vehicles.control.services."""

from celery import shared_task


@shared_task(
    bind=True,
    name="control.send_command",
    acks_late=True,  # safe: a terminal or claimed command makes a re-run a no-op (I2)
    reject_on_worker_lost=True,  # a worker killed mid-send re-delivers; the re-run reads first
    max_retries=None,  # the command's own attempt budget decides when to give up
    ignore_result=True,
)
def send_command(self, command_id: int) -> None:  # type: ignore[no-untyped-def]
    from vehicles.control import services  # services enqueue this task

    try:
        services.send_command(command_id=command_id)
    except services.RetryLater as later:
        if self.request.is_eager and later.countdown > 0:
            # In-process `.apply()` cannot wait: it would re-run at once and hit the same wait.
            # The row keeps next_attempt_at; the relay re-drives it if nobody else does.
            return
        # Backoff, jitter and Retry-After were worked out by the service (and stored on the row).
        raise self.retry(countdown=later.countdown) from None


@shared_task(
    bind=True,
    name="control.send_commands",
    acks_late=True,  # safe: each command's claim or terminal state makes a re-run a no-op (I2)
    reject_on_worker_lost=True,  # killed mid-batch: re-delivered, each command read first
    ignore_result=True,
)
def send_commands(self, command_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """A batch of fleet commands (the relay's, on `commands`): claimed together, their device
    calls overlapped, their outcomes stored together. A command that must wait (backoff,
    Retry-After, a live claim, the database) carries on alone as `control.send_command` when
    its time comes; its batch-mates are done with."""
    from vehicles.control import services  # services enqueue this task

    for outcome in services.send_commands(command_ids=command_ids):
        later = outcome.retry
        if later is None:
            continue
        if self.request.is_eager:
            # In-process `.apply()` cannot wait (see send_command); a due retry runs at once.
            if later.countdown <= 0:
                send_command.apply(args=[outcome.command_id])
            continue
        queue = services.queue_for(outcome.command) if outcome.command else "commands"
        send_command.apply_async(args=[outcome.command_id], countdown=later.countdown, queue=queue)


@shared_task(name="control.relay_outbox", ignore_result=True)
def relay_outbox() -> int:
    """Beat, every few seconds: publish what the fast path missed, re-drive lost messages (I1)."""
    from vehicles.control import services

    services.redrive_stalled_commands()
    return services.relay_outbox()


@shared_task(name="control.check_sent_commands", ignore_result=True)
def check_sent_commands() -> dict[str, int]:
    """Beat, every minute: the closed loop. Sent commands are confirmed by the car's telemetry,
    sent once more, or failed with a diagnosis; departure warnings are recorded."""
    from vehicles.control import confirm  # confirm enqueues through services

    counts = confirm.check_sent_commands()
    counts.update({f"departure_{k}": v for k, v in confirm.record_departure_warnings().items()})
    return counts


@shared_task(name="control.release_lapsed_stops", ignore_result=True)
def release_lapsed_stops() -> dict[str, int]:
    """Beat, every minute: the lease watchdog (I8, charging fails open). A car left stopped by
    a cloud stop whose lease lapsed with nothing after it is told to charge again."""
    from vehicles.control import watchdog  # watchdog enqueues through services

    return watchdog.release_lapsed_stops()
