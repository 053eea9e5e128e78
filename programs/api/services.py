"""Writes of the utility API: API clients (credentials), events created and cancelled by a
utility's system, and idempotent replay of POSTs.

Events go through programs.events like the manager's admin: the program's rules are checked
the same way, and the audit trail names the API client that asked (DESIGN.md I7).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model
from rest_framework import exceptions, status
from rest_framework.response import Response

from programs import audit, events
from programs.api.models import ApiClient, IdempotencyKey
from programs.api.webhooks import new_secret
from programs.models import Feeder, GridEvent, Program, Utility

IDEMPOTENCY_HEADER = "Idempotency-Key"


@transaction.atomic
def create_api_client(
    *, utility: Utility, name: str, scopes: list[str], webhook_url: str = ""
) -> tuple[ApiClient, str]:
    """A new client with fresh credentials. Returns it and the client secret, which is stored
    hashed and so shown only now."""
    Application = get_application_model()
    secret = secrets.token_urlsafe(40)
    application = Application.objects.create(
        name=f"{utility.slug}: {name}"[:255],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
        redirect_uris="",
    )
    client = ApiClient.objects.create(
        application=application,
        utility=utility,
        name=name,
        scopes=scopes,
        webhook_url=webhook_url,
        webhook_secret=new_secret() if webhook_url else "",
    )
    return client, secret


def _fingerprint(*, method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def idempotent(
    *,
    client: ApiClient,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    handler: Callable[[], Response],
) -> Response:
    """Run `handler` once per (client, key): a retry with the same key and request gets the
    first answer again (`Idempotent-Replayed: true`), the same key with another request 422.

    The key row is inserted before the work, in the same transaction: a concurrent duplicate
    waits on the unique index until the first commits, then replays its answer. Only successful
    answers are kept — a refused request changed nothing and may be retried with its key."""
    if key is None:
        return handler()
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise exceptions.ValidationError(
            {IDEMPOTENCY_HEADER: ["Use 1 to 255 printable characters."]}
        )
    fingerprint = _fingerprint(method=method, path=path, body=body)
    expiry = timezone.now() - timedelta(hours=settings.UTILITY_API_IDEMPOTENCY_HOURS)
    with transaction.atomic():
        IdempotencyKey.objects.filter(client=client, key=key, created_at__lt=expiry).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    client=client, key=key, fingerprint=fingerprint
                )
        except IntegrityError:
            record = IdempotencyKey.objects.get(client=client, key=key)
            if record.fingerprint != fingerprint:
                raise IdempotencyKeyReused() from None
            replay = Response(record.body, status=record.status_code)
            replay["Idempotent-Replayed"] = "true"
            return replay
        response = handler()
        record.status_code = response.status_code
        record.body = response.data
        record.save(update_fields=["status_code", "body"])
        return response


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request."


def _refusal(error: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(error, "error_dict"):
        return exceptions.ValidationError(error.message_dict)
    return exceptions.ValidationError({"non_field_errors": error.messages})


@transaction.atomic
def create_event(
    *,
    client: ApiClient,
    program: Program,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    target_kw: float,
    feeder: Feeder | None = None,
    region: str = "",
    external_id: str = "",
    dispatch: bool = True,
) -> GridEvent:
    """A utility's event: checked against the program's rules, and dispatched at once (owners
    told) unless `dispatch` is false. Raises a DRF ValidationError with field messages when a
    rule refuses it."""
    try:
        event = events.create_event(
            program=program,
            kind=kind,
            starts_at=starts_at,
            ends_at=ends_at,
            target_kw=target_kw,
            actor=None,
            feeder=feeder,
            region=region,
            source="api",
            external_id=external_id,
        )
        if dispatch:
            event = events.schedule_event(event=event, actor=None)
    except DjangoValidationError as error:
        raise _refusal(error) from None
    audit.record(
        utility=program.utility_id,
        actor=None,
        action="api.event.create",
        target=event,
        client=client.name,
        client_id=client.pk,
        dispatched=dispatch,
    )
    return event


@transaction.atomic
def dispatch_event(*, client: ApiClient, event: GridEvent) -> GridEvent:
    if event.status != GridEvent.Status.DRAFT:
        raise exceptions.ValidationError({"status": [f"The event is {event.status}, not a draft."]})
    try:
        event = events.schedule_event(event=event, actor=None)
    except DjangoValidationError as error:
        raise _refusal(error) from None
    audit.record(
        utility=event.program.utility_id,
        actor=None,
        action="api.event.dispatch",
        target=event,
        client=client.name,
        client_id=client.pk,
    )
    return event


@transaction.atomic
def cancel_event(*, client: ApiClient, event: GridEvent, reason: str) -> GridEvent:
    """Call an event off (idempotent: a finished or cancelled event is answered as it is)."""
    if event.status == GridEvent.Status.COMPLETED:
        raise exceptions.ValidationError({"status": ["The event is over; it cannot be cancelled."]})
    event = events.cancel_event(
        event=event, actor=None, reason=reason or "Cancelled by the utility"
    )
    audit.record(
        utility=event.program.utility_id,
        actor=None,
        action="api.event.cancel",
        target=event,
        client=client.name,
        client_id=client.pk,
    )
    return event
