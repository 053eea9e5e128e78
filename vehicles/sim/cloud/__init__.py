"""A Smartcar-compatible simulated vehicle cloud for the demo and the tests (issue 3).

Standalone on purpose: no Django and no other app module is imported here, so `make run` can
start it as its own process (`python -m vehicles.sim.cloud`) and tests can run it in a thread
(`SimulatedCloud`). See docs/simulators.md.
"""

from .control import VerifyResult
from .faults import FAULT_KINDS, Fault
from .server import SimulatedCloud
from .webhooks import Delivery, hash_challenge, sign
from .world import CarState, SimEvent

__all__ = [
    "FAULT_KINDS",
    "CarState",
    "Delivery",
    "Fault",
    "SimEvent",
    "SimulatedCloud",
    "VerifyResult",
    "hash_challenge",
    "sign",
]
