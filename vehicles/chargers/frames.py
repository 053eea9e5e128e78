"""OCPP-J RPC framing: check an incoming frame before the `ocpp` library routes it.

The library logs and drops a frame it cannot parse (no CALLERROR at all), uses 2.0.1 error codes
for 1.6 and swaps NotImplemented / NotSupported, so the consumer checks every frame here first and
answers with the CALLERROR each version's spec names (OCPP-J 1.6 §4.2.3, OCPP 2.0.1 part 4 §4.3):

- not JSON, not an array, no readable message id: 1.6 FormationViolation, 2.x RpcFrameworkError,
  both with message id "-1";
- a CALL with missing elements: 1.6 ProtocolError, 2.x RpcFrameworkError;
- an unknown message type id: 1.6 ProtocolError, 2.x MessageTypeNotSupported (2.1 SEND is ignored);
- an action the protocol does not have: NotImplemented; one it has but we do not handle:
  NotSupported;
- payload errors: wrong JSON type → TypeConstraintViolation; missing or too many items →
  OccurenceConstraintViolation (1.6 spelling) / OccurrenceConstraintViolation; unexpected property
  → FormationViolation (1.6) / FormatViolation; bad value (enum, length…) →
  PropertyConstraintViolation.

Pure functions (JSON in, JSON out); the consumer sends what `check_frame` returns.
"""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaValidationError
from ocpp.messages import MessageType, get_validator
from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

_KNOWN_ACTIONS = {
    "1.6": {action.value for action in Action16},
    "2.0.1": {action.value for action in Action201},
    "2.1": {action.value for action in Action21},
}
SEND = 6  # OCPP 2.1 SEND: an unconfirmed message, never answered


@dataclass(frozen=True)
class FrameCheck:
    """`error` is a CALLERROR frame to send back; `kind` is the message type when the frame is
    fine to route (CALL, CALLRESULT, CALLERROR); `ignore` is set for frames left unanswered."""

    kind: int | None = None
    unique_id: str = ""
    action: str = ""
    payload: Any = None
    error: str | None = None
    ignore: bool = False


def call_error(unique_id: str, code: str, description: str, details: dict | None = None) -> str:
    return json.dumps([MessageType.CallError, unique_id, code, description, details or {}])


def _framework_error(version: str, unique_id: str, description: str) -> FrameCheck:
    code = "FormationViolation" if version == "1.6" else "RpcFrameworkError"
    return FrameCheck(error=call_error(unique_id, code, description))


def check_frame(raw: str | bytes | None, version: str, handled: AbstractSet[str]) -> FrameCheck:
    """Classify one websocket frame from a charger speaking `version`; `handled` are the actions
    the CSMS answers. CALL payloads are validated against the version's JSON schema."""
    if not isinstance(raw, str):
        return _framework_error(version, "-1", "OCPP-J frames are text frames.")
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # a frame nested deeper than Python's stack
        return _framework_error(version, "-1", "The frame is not valid JSON.")
    if not isinstance(message, list) or len(message) < 2 or not isinstance(message[1], str):
        return _framework_error(version, "-1", "Expected [MessageTypeId, MessageId, …].")
    kind, unique_id = message[0], message[1]
    if kind in (MessageType.CallResult, MessageType.CallError):
        # Replies are never answered, even when malformed (that could ping-pong forever).
        return FrameCheck(kind=kind, unique_id=unique_id)
    if kind == SEND and version == "2.1":
        return FrameCheck(unique_id=unique_id, ignore=True)
    if kind != MessageType.Call:
        code = "ProtocolError" if version == "1.6" else "MessageTypeNotSupported"
        return FrameCheck(error=call_error(unique_id, code, f"Unknown MessageTypeId {kind!r}."))
    if len(message) != 4 or not isinstance(message[2], str):
        code = "ProtocolError" if version == "1.6" else "RpcFrameworkError"
        return FrameCheck(
            error=call_error(unique_id, code, "A CALL is [2, MessageId, Action, Payload].")
        )
    action, payload = message[2], message[3]
    if action not in handled:
        if action in _KNOWN_ACTIONS[version]:
            code, text = "NotSupported", f"{action} is not supported by this central system."
        else:
            code, text = "NotImplemented", f"{action} is not an OCPP {version} action."
        return FrameCheck(error=call_error(unique_id, code, text))
    problem = _schema_problem(version, action, payload)
    if problem is not None:
        code, text = problem
        return FrameCheck(error=call_error(unique_id, code, text))
    return FrameCheck(kind=kind, unique_id=unique_id, action=action, payload=payload)


def _schema_problem(version: str, action: str, payload: Any) -> tuple[str, str] | None:
    if not isinstance(payload, dict):
        return "TypeConstraintViolation", "The payload must be a JSON object."
    validator = get_validator(MessageType.Call, action, version)
    error = next(iter(validator.iter_errors(payload)), None)
    if error is None:
        return None
    return _error_code(error, version), error.message[:200]


def _error_code(error: SchemaValidationError, version: str) -> str:
    if error.validator == "type":
        return "TypeConstraintViolation"
    if error.validator in ("required", "minItems", "maxItems"):
        return (
            "OccurenceConstraintViolation"
            if version == "1.6"
            else ("OccurrenceConstraintViolation")
        )
    if error.validator == "additionalProperties":
        return "FormationViolation" if version == "1.6" else "FormatViolation"
    return "PropertyConstraintViolation"
