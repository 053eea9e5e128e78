"""API error handling shared by every REST endpoint (settings.REST_FRAMEWORK["EXCEPTION_HANDLER"]).

Every error answers one JSON shape, so clients handle one format:
`{"error": {"code": "...", "message": "...", "fields": {"field": ["..."]}}}` (`fields` on 400 only).
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with one envelope; status codes unchanged, unknown errors still raise (500)."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    assert isinstance(exc, exceptions.APIException)  # noqa: S101 — DRF answers nothing else
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        body = {"code": "invalid", "message": "Some fields are not valid.", "fields": fields}
    else:
        body = {"code": exc.default_code, "message": str(exc.detail)}
    response.data = {"error": body}
    return response
