"""OAuth state of the simulated cloud: consents, authorization codes, grants and tokens.

A mixin of `World` (world.py), which supplies `lock`, `now()`, `car()`, `user_id` and
`access_ttl_s`. Every method runs under the world lock (the callers hold it or take it here).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import errors

ACCESS_TTL_S = 2 * 3600  # Smartcar access tokens live two hours
REFRESH_TTL = timedelta(days=60)  # and refresh tokens sixty days
CODE_TTL = timedelta(minutes=10)
CONSENT_TTL = timedelta(minutes=30)
ALL_SCOPES = (
    "read_vehicle_info",
    "read_vin",
    "read_battery",
    "read_charge",
    "control_charge",
    "read_location",
    "read_odometer",
)


@dataclass
class Grant:
    """What an owner approved on the consent page: these cars, these scopes, for this client."""

    id: str
    client_id: str
    user_id: str
    vehicle_ids: list[str]
    scopes: list[str]
    connected_at: datetime
    revoked: bool = False
    _held: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def holds(self, vehicle_id: str) -> bool:
        """Whether this grant holds the car (a set built once: a fleet's grant holds thousands)."""
        if self._held is None:
            self._held = frozenset(self.vehicle_ids)
        return vehicle_id in self._held


@dataclass
class Token:
    value: str
    grant_id: str
    expires_at: datetime
    used: bool = False  # refresh tokens and codes are single use
    revoked: bool = False
    redirect_uri: str | None = None  # codes only


class Grants:
    """Consent → code → tokens → refresh (rotating) → revoke, as Smartcar's auth server does."""

    def _init_grants(self) -> None:
        self.pending_consents: dict[str, dict] = {}
        self._codes: dict[str, Token] = {}
        self.grants: dict[str, Grant] = {}
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, Token] = {}

    def new_consent(self, params: dict) -> str:
        consent_id = secrets.token_urlsafe(18)
        self.pending_consents[consent_id] = {**params, "expires_at": self.now() + CONSENT_TTL}
        return consent_id

    def take_consent(self, consent_id: str) -> dict | None:
        consent = self.pending_consents.pop(consent_id, None)
        if consent is None or consent["expires_at"] < self.now():
            return None
        return consent

    def peek_consent(self, consent_id: str) -> dict | None:
        consent = self.pending_consents.get(consent_id)
        if consent is None or consent["expires_at"] < self.now():
            return None
        return consent

    def issue_code(
        self, *, client_id: str, vehicle_ids: list[str], scopes: list[str], redirect_uri: str
    ) -> str:
        grant = Grant(
            id=uuid.uuid4().hex,
            client_id=client_id,
            user_id=self.user_id,
            vehicle_ids=vehicle_ids,
            scopes=scopes,
            connected_at=self.now(),
        )
        self.grants[grant.id] = grant
        code = secrets.token_urlsafe(24)
        self._codes[code] = Token(code, grant.id, self.now() + CODE_TTL, redirect_uri=redirect_uri)
        return code

    def exchange_code(self, code: str, redirect_uri: str | None) -> dict:
        token = self._codes.get(code)
        if token is None or token.used or token.expires_at < self.now():
            raise errors.OAuthError(400, "invalid_grant", "Invalid or expired code parameter.")
        if redirect_uri is not None and redirect_uri != token.redirect_uri:
            raise errors.OAuthError(400, "invalid_grant", "redirect_uri does not match.")
        token.used = True
        return self._issue_tokens(token.grant_id)

    def refresh(self, refresh_token: str) -> dict:
        token = self._refresh.get(refresh_token)
        grant = self.grants.get(token.grant_id) if token else None
        if (
            token is None
            or grant is None
            or grant.revoked
            or token.used
            or token.revoked
            or token.expires_at < self.now()
        ):
            raise errors.OAuthError(400, "invalid_grant", "Invalid or expired refresh token.")
        token.used = True  # rotation: each refresh token works exactly once
        return self._issue_tokens(token.grant_id)

    def _issue_tokens(self, grant_id: str) -> dict:
        now = self.now()
        access = Token(
            secrets.token_urlsafe(32), grant_id, now + timedelta(seconds=self.access_ttl_s)
        )
        refresh = Token(secrets.token_urlsafe(32), grant_id, now + REFRESH_TTL)
        self._access[access.value] = access
        self._refresh[refresh.value] = refresh
        return {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": self.access_ttl_s,
            "refresh_token": refresh.value,
        }

    def authenticate(self, authorization: str | None) -> Grant:
        """The grant behind a `Bearer` access token, or the Smartcar AUTHENTICATION error."""
        if not authorization or not authorization.startswith("Bearer "):
            raise errors.authentication()
        token = self._access.get(authorization.removeprefix("Bearer ").strip())
        grant = self.grants.get(token.grant_id) if token else None
        if token is None or grant is None or token.revoked or grant.revoked:
            raise errors.authentication()
        if token.expires_at <= self.now():
            raise errors.authentication()
        return grant

    def revoke_tokens(self, key: str | None = None) -> int:
        """Revoke every grant (or those holding one car): their tokens answer 401 from now on."""
        with self.lock:
            vehicle_id = self.car(key).vehicle_id if key else None
            revoked = 0
            for grant in self.grants.values():
                if not grant.revoked and (vehicle_id is None or grant.holds(vehicle_id)):
                    grant.revoked = True
                    revoked += 1
            return revoked

    def expire_access_tokens(self) -> int:
        """Make every live access token expired, as if two hours had passed for tokens only."""
        with self.lock:
            now = self.now()
            live = [t for t in self._access.values() if t.expires_at > now]
            for token in live:
                token.expires_at = now
            return len(live)

    def disconnect(self, grant: Grant, vehicle_id: str) -> None:
        grant.vehicle_ids = [v for v in grant.vehicle_ids if v != vehicle_id]
        grant._held = None
        if not grant.vehicle_ids:
            grant.revoked = True  # no car left: the SDK documents the token as invalidated

    def connections(self, vehicle_id: str | None = None) -> list[dict]:
        return [
            {
                "vehicleId": v,
                "userId": g.user_id,
                "connectedAt": g.connected_at.isoformat().replace("+00:00", "Z"),
            }
            for g in self.grants.values()
            if not g.revoked
            for v in g.vehicle_ids
            if vehicle_id in (None, v)
        ]
