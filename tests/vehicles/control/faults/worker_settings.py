"""Settings for the Celery worker and beat processes the fault tests start.

Production settings, plus the command timings scaled down so a fault scenario that takes minutes
in production takes seconds here. Each value comes from a FAULTS_* environment variable that
only the fault tests set; unset, the production value stands.
"""

import os

from chargescape.settings import *  # noqa: F403 — the production settings, then the overrides
from chargescape.settings import (
    CONTROL_AMBIGUOUS_SETTLE_SECONDS,
    CONTROL_CLAIM_TIMEOUT_SECONDS,
    CONTROL_MAX_ATTEMPTS,
    CONTROL_OEM_TIMEOUT_SECONDS,
    CONTROL_RETRY_BASE_SECONDS,
    CONTROL_STALL_AFTER_SECONDS,
)


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(f"FAULTS_{name}")
    return float(value) if value else default


CONTROL_OEM_TIMEOUT_SECONDS = _seconds("CONTROL_OEM_TIMEOUT_SECONDS", CONTROL_OEM_TIMEOUT_SECONDS)
CONTROL_RETRY_BASE_SECONDS = _seconds("CONTROL_RETRY_BASE_SECONDS", CONTROL_RETRY_BASE_SECONDS)
CONTROL_AMBIGUOUS_SETTLE_SECONDS = _seconds(
    "CONTROL_AMBIGUOUS_SETTLE_SECONDS", CONTROL_AMBIGUOUS_SETTLE_SECONDS
)
CONTROL_MAX_ATTEMPTS = int(_seconds("CONTROL_MAX_ATTEMPTS", CONTROL_MAX_ATTEMPTS))
CONTROL_CLAIM_TIMEOUT_SECONDS = _seconds(
    "CONTROL_CLAIM_TIMEOUT_SECONDS", CONTROL_CLAIM_TIMEOUT_SECONDS
)
CONTROL_STALL_AFTER_SECONDS = _seconds("CONTROL_STALL_AFTER_SECONDS", CONTROL_STALL_AFTER_SECONDS)
