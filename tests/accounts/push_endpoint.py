"""A web push service on loopback, for the tests: it speaks the push protocol's receiving side.

Each subscription gets a real browser-side key pair (P-256) and auth secret, as a browser's
PushManager.subscribe() would create. A POST to its endpoint must carry a VAPID token (RFC 8292)
that verifies against the key in the header and claims this endpoint's origin with a near expiry;
its aes128gcm body (RFC 8188/8291) is decrypted with `http_ece` using the subscription's private
key. Anything wrong is answered as a real push service would (401/400), and recorded.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Delivery:
    """One push the service accepted: the verified token's claims, and the decrypted message."""

    token: str
    claims: dict[str, Any]
    server_key: str
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class Client:
    """A subscribed browser: its keys, what it received, and how the service answers for it."""

    token: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    received: list[Delivery] = field(default_factory=list)
    status: int = 201  # set 410 to play a subscription the browser dropped

    def keys(self) -> dict[str, str]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(public), "auth": b64url(self.auth_secret)}


class VapidError(Exception):
    pass


def verify_vapid(authorization: str, *, origin: str, now: float) -> tuple[str, dict, str]:
    """Check `Authorization: vapid t=<JWT>, k=<public key>` as a push service must: ES256 over
    the token with the key it names, `aud` our origin, `exp` within 24 h, a `sub` contact."""
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(f"scheme {scheme!r}")
    parts = dict(item.strip().split("=", 1) for item in params.split(","))
    token, key = parts["t"], parts["k"]
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != "ES256":
        raise VapidError(f"alg {header.get('alg')}")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
    raw = b64url_decode(signature_b64)
    if len(raw) != 64:
        raise VapidError("signature is not raw r||s")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise VapidError("bad signature") from error
    claims = json.loads(b64url_decode(claims_b64))
    if claims.get("aud") != origin:
        raise VapidError(f"aud {claims.get('aud')} is not {origin}")
    if not now < claims.get("exp", 0) <= now + 24 * 3600:
        raise VapidError("exp outside (now, now + 24 h]")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise VapidError("no sub")
    return token, claims, key


class PushService:
    """Start with `with PushService() as service:`; `service.subscribe()` makes a browser."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.refused: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = service.receive(token, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PushService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def subscribe(self) -> Client:
        client = Client(
            token=secrets.token_urlsafe(12),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
        )
        self.clients[client.token] = client
        return client

    def endpoint(self, client: Client) -> str:
        return f"{self.origin}/push/v1/{client.token}"

    def receive(self, token: str, headers: dict[str, str], body: bytes) -> int:
        client = self.clients.get(token)
        if client is None:
            return 404
        if client.status != 201:
            return client.status
        headers = {key.lower(): value for key, value in headers.items()}
        try:
            jwt, claims, server_key = verify_vapid(
                headers.get("authorization", ""), origin=self.origin, now=time.time()
            )
        except (VapidError, KeyError, ValueError) as error:
            self.refused.append(f"vapid: {error}")
            return 401
        if headers.get("content-encoding") != "aes128gcm" or "ttl" not in headers:
            self.refused.append("encoding or ttl")
            return 400
        try:
            plain = http_ece.decrypt(
                body,
                private_key=client.private_key,
                auth_secret=client.auth_secret,
                version="aes128gcm",
            )
        except Exception as error:  # any decryption failure is the sender's fault
            self.refused.append(f"decrypt: {type(error).__name__}")
            return 400
        client.received.append(
            Delivery(jwt, claims, server_key, headers, json.loads(plain.decode("utf-8")))
        )
        return 201
