"""Smartcar's error bodies, so the SDK's `exception_factory` maps them to the same exceptions.

v2 API errors: `{type, code, description, docURL, statusCode, requestId, resolution, ...}` with
`Content-Type: application/json` (the SDK falls back to a bare message otherwise) and, for 429,
a `Retry-After` header (the only place the SDK reads `retry_after` from). OAuth errors from the
token endpoint use `{error, error_description}`.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCS = "https://smartcar.com/docs/errors/api-errors"


@dataclass(eq=False)  # not frozen: raising sets __traceback__ and friends
class ApiError(Exception):
    """A Smartcar v2 API error; `world` and `app` turn it into a JSON response."""

    status: int
    type: str
    code: str | None
    description: str
    resolution: str | None = None
    retry_after_s: int | None = None
    suggested_user_message: str | None = None

    def body(self, request_id: str) -> dict:
        anchor = f"#{self.code.lower().replace('_', '-')}" if self.code else ""
        body = {
            "type": self.type,
            "code": self.code,
            "description": self.description,
            "docURL": f"{DOCS}/{self.type.lower().replace('_', '-')}-errors{anchor}",
            "statusCode": self.status,
            "requestId": request_id,
            "resolution": {"type": self.resolution},
        }
        if self.suggested_user_message:
            body["suggestedUserMessage"] = self.suggested_user_message
        return body

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)} if self.retry_after_s is not None else {}


def authentication() -> ApiError:
    return ApiError(
        401,
        "AUTHENTICATION",
        None,
        "The authorization header is missing or malformed, or it contains invalid or expired "
        "authentication credentials. Please check for missing parameters, spelling and casing "
        "mistakes, and other syntax issues.",
        resolution="REAUTHENTICATE",
    )


def permission(needed: str) -> ApiError:
    return ApiError(
        403,
        "PERMISSION",
        None,
        f"Your application has insufficient permissions to access the requested resource. "
        f"Please prompt the user to re-authenticate using Smartcar Connect ({needed}).",
        resolution="REAUTHENTICATE",
    )


def not_found(code: str = "PATH", what: str = "the requested path") -> ApiError:
    return ApiError(
        404, "RESOURCE_NOT_FOUND", code, f"The requested resource does not exist: {what}."
    )


def validation(description: str) -> ApiError:
    return ApiError(400, "VALIDATION", "PARAMETER", description)


def vehicle_state(code: str, description: str) -> ApiError:
    return ApiError(409, "VEHICLE_STATE", code, description, resolution="RETRY_LATER")


def rate_limit(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "RATE_LIMIT",
        "VEHICLE",
        "You have reached the throttling rate limit for this vehicle. Please see the "
        "retry-after header for when to retry the request.",
        resolution="RETRY_LATER",
        retry_after_s=retry_after_s,
        suggested_user_message="Your vehicle is temporarily unable to connect. Please be "
        "patient while we're working to resolve this issue.",
    )


def server(status: int = 500) -> ApiError:
    if status == 500:
        return ApiError(
            500,
            "SERVER",
            "INTERNAL",
            "Smartcar ran into an unexpected issue and was unable to process the request.",
            resolution="RETRY_LATER",
        )
    return ApiError(
        status,
        "UPSTREAM",
        "NO_RESPONSE",
        "The vehicle or the automaker's servers did not respond in time.",
        resolution="RETRY_LATER",
    )


@dataclass(eq=False)
class OAuthError(Exception):
    """An RFC 6749 token-endpoint error (`{error, error_description}`)."""

    status: int
    error: str
    description: str

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}
