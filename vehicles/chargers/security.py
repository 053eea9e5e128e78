"""Charger credentials: authorization keys (OCPP security profiles 1 and 2) and pairing codes.

The authorization key is what an installer types into the charger as the HTTP Basic password
(1.6 `AuthorizationKey`, 2.x `BasicAuthPassword`). We generate it: 20 random bytes as 40 hex
characters, inside the 16–40 character range both specs allow. A 160-bit random secret cannot be
guessed offline, so a single SHA-256 is as safe as a slow KDF here, and it keeps a reconnect storm
of thousands of chargers from burning seconds of CPU per handshake. The pairing code is short
enough to type from a label, so it gets Django's slow password hash instead.
"""

import base64
import binascii
import hashlib
import hmac
import secrets

from django.contrib.auth.hashers import check_password, make_password

MIN_KEY_BYTES = 16  # OCPP 1.6 security whitepaper / 2.0.1 BasicAuthPassword minimum
MAX_KEY_BYTES = 40
# Crockford base32 without I, L, O, U: nothing to confuse on a printed label.
PAIRING_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PAIRING_CODE_LENGTH = 10  # 50 bits; claims are also rate-limited


def new_authorization_key() -> str:
    return secrets.token_hex(20)


def hash_authorization_key(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode()).hexdigest()


# Compared against when the charger is unknown, so a wrong id costs the same time as a wrong key.
_DUMMY_HASH = hash_authorization_key(new_authorization_key())


def check_authorization_key(key: str, stored_hash: str | None) -> bool:
    if not MIN_KEY_BYTES <= len(key.encode()) <= MAX_KEY_BYTES:
        return False
    candidate = hash_authorization_key(key)
    return hmac.compare_digest(candidate, stored_hash or _DUMMY_HASH) and stored_hash is not None


def new_pairing_code() -> str:
    return "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))


def normalize_pairing_code(code: str) -> str:
    """Accept what people type: lower case, spaces and dashes, O for 0, I/L for 1."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def hash_pairing_code(code: str) -> str:
    return make_password(normalize_pairing_code(code))


def check_pairing_code(code: str, stored_hash: str) -> bool:
    return check_password(normalize_pairing_code(code), stored_hash)


def format_pairing_code(code: str) -> str:
    """XXXXX-XXXXX, as printed on the label."""
    return f"{code[:5]}-{code[5:]}"


def parse_basic_auth(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(user, password) from an ASGI scope's Authorization header, or None."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None
    return None
