"""The JSON parser of every REST endpoint (settings.REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

DRF's JSONParser lets a RecursionError from deeply nested JSON escape as a 500, and a body over
DATA_UPLOAD_MAX_MEMORY_SIZE reaches Django's RequestDataTooBig, an HTML "Bad Request" page instead
of the API's JSON error. This one answers every case with a 4xx and a message in the API's shape:

- a body longer than DATA_UPLOAD_MAX_MEMORY_SIZE → 413 (Django refuses it from Content-Length,
  before reading it);
- bytes that are not valid text in the declared charset → 400;
- NaN / Infinity (not JSON) → 400 (DRF's strict constants);
- nesting deeper than MAX_DEPTH → 400; no payload of ours nests more than a few levels.

`loads` is the same bounded decoding for other JSON inputs (the owner live websocket).
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http.request import RawPostDataException
from rest_framework import renderers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.utils.json import strict_constant

# Deepest nesting accepted. Our deepest input (a preference's weekly schedule) nests 3 levels;
# 32 leaves room for any sane client while keeping every later recursive walk far from Python's
# recursion limit (1,000).
MAX_DEPTH = 32


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` (parsed JSON) nests lists and objects more than `limit` deep. Iterative, so
    it cannot itself run out of stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity and nesting deeper than MAX_DEPTH with a ValueError
    (never a RecursionError)."""
    try:
        value = json.loads(text, parse_constant=strict_constant)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
    if too_deep(value):
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep.")
    return value


class BoundedJSONParser(BaseParser):
    """JSON with a size bound, a depth bound and strict decoding (module docstring).

    Not a JSONParser subclass: DRF reads `request.body` itself for those, so Django's
    RequestDataTooBig would escape before `parse` could answer it.
    """

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        parser_context = parser_context or {}
        encoding = get_encoding(parser_context)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        too_large = RequestBodyTooLarge(
            f"The request body is larger than {limit} bytes; send less data."
        )
        request = getattr(parser_context.get("request"), "_request", None)
        try:
            # Django's body: checked against the limit, and kept for whoever reads it later.
            if request is not None:
                raw = request.body
            else:
                raw = stream.read() if limit is None else stream.read(limit + 1)
        except RequestDataTooBig:
            raise too_large from None
        except RawPostDataException:  # the stream was read as a stream before: read the rest
            raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise too_large
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"JSON parse error - the body is not valid {encoding}: {exc}."
            ) from None
        try:
            return loads(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
