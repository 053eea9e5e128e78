"""An openadr3-client VEN client for one VTN link, on a session of ours that adds what a VEN
running unattended needs: an OAuth 2 client-credentials token fetched when missing, refreshed
before it expires and once more after a 401; 429 turned into `RateLimited` with its Retry-After;
a timeout on every call; and every exchange recorded for the admin's "last messages".

The library's own interfaces (programs, events, reports, VENs) and models do the OpenADR 3.0.1
work; only their HTTP session is replaced.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.utils import timezone
from openadr3_client.oadr301._ven.client import VirtualEndNodeClient
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion

REQUEST_TIMEOUT_SECONDS = 15
# A token is refreshed this long before the VTN said it expires, so a call never races expiry.
REFRESH_MARGIN_SECONDS = 60
BODY_KEPT = 2000


class VtnError(Exception):
    """The VTN could not be used this time (the poll records why and tries again later)."""


class AuthFailed(VtnError):
    """The VTN refused our credentials, or a fresh token."""


class RateLimited(VtnError):
    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"rate limited for {retry_after_seconds:.0f} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class Exchange:
    """One HTTP exchange, kept for the admin (VtnMessage rows)."""

    at: datetime
    method: str
    path: str
    status_code: int | None
    summary: str
    body: str


def _retry_after(response: requests.Response) -> float:
    try:
        return max(1.0, float(response.headers.get("Retry-After", "30")))
    except ValueError:
        return 30.0


class TokenManager:
    """Client-credentials tokens (RFC 6749 §4.4, HTTP Basic client authentication)."""

    def __init__(self, *, token_url: str, client_id: str, client_secret: str, record: Any) -> None:
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.record = record
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                self._fetch()
            assert self._token is not None  # noqa: S101 — _fetch raises or sets it
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        response = requests.post(
            self.token_url,
            data={"grant_type": "client_credentials"},
            auth=(self.client_id, self.client_secret),
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        self.record("POST", self.token_url, response, summary="token")
        if response.status_code == 429:
            raise RateLimited(_retry_after(response))
        if response.status_code in (400, 401, 403):
            raise AuthFailed(f"token refused: {response.status_code} {response.text[:200]}")
        response.raise_for_status()
        payload = response.json()
        self._token = payload["access_token"]
        self._expires_at = time.time() + float(payload.get("expires_in", 3600))


class VtnSession(requests.Session):
    """Bearer-authenticated session: one retry with a new token after a 401, `RateLimited` on a
    429, a timeout on every request, each exchange recorded."""

    def __init__(self, *, tokens: TokenManager, record: Any) -> None:
        super().__init__()
        self.tokens, self.record = tokens, record

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        response = self._send(method, url, *args, **kwargs)
        if response.status_code == 401:
            # Expired or revoked early (a VTN restart): a fresh token, once.
            self.tokens.invalidate()
            response = self._send(method, url, *args, **kwargs)
            if response.status_code == 401:
                raise AuthFailed("the VTN refused a fresh token")
        if response.status_code == 429:
            raise RateLimited(_retry_after(response))
        return response

    def _send(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {self.tokens.get()}"
        response = super().request(method, url, *args, headers=headers, **kwargs)
        sent = kwargs.get("json")
        self.record(method, url, response, sent=sent)
        return response


class Recorder:
    """Collects the exchanges of one poll; the caller stores them."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def __call__(
        self,
        method: str,
        url: str,
        response: requests.Response,
        *,
        summary: str = "",
        sent: Any = None,
    ) -> None:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = response.text if summary != "token" else "(token answer not kept)"
        if sent is not None and response.status_code >= 400:
            body = f"sent: {str(sent)[: BODY_KEPT // 2]}\nanswer: {body}"
        self.exchanges.append(
            Exchange(
                at=timezone.now(),
                method=method.upper(),
                path=path[:300],
                status_code=response.status_code,
                summary=summary or f"{method.upper()} {parts.path.rsplit('/', 1)[-1]}",
                body=body[:BODY_KEPT],
            )
        )


# Tokens outlive a poll: kept per process and credentials, refreshed before expiry or on a 401.
_TOKENS: dict[tuple[str, str, str], TokenManager] = {}
_TOKENS_LOCK = threading.Lock()


def ven_client(
    *, base_url: str, token_url: str, client_id: str, client_secret: str, recorder: Recorder
) -> VirtualEndNodeClient:
    """The library's OpenADR 3.0.1 VEN client, its interfaces sharing one `VtnSession`."""
    client = VirtualEndNodeHttpClientFactory.create_anonymous_http_ven_client(
        vtn_base_url=base_url.rstrip("/"), version=OADRVersion.OADR_301
    )
    key = (token_url, client_id, hashlib.sha256(client_secret.encode()).hexdigest())
    with _TOKENS_LOCK:
        tokens = _TOKENS.get(key)
        if tokens is None:
            tokens = _TOKENS[key] = TokenManager(
                token_url=token_url, client_id=client_id, client_secret=client_secret, record=None
            )
    tokens.record = recorder
    session = VtnSession(tokens=tokens, record=recorder)
    for interface in (
        client.events,
        client.programs,
        client.reports,
        client.vens,
        client.subscriptions,
    ):
        interface.session = session
    return client  # type: ignore[return-value]
