"""Keep secrets and personal data out of the logs (issue 11, privacy).

`RedactingFilter` is installed on every handler in settings.LOGGING, so whatever a logger emits —
ours or a library's (httpx and urllib3 print request URLs, celery prints task arguments,
django.request prints paths) — reaches the console or a log shipper with tokens, VINs, email
addresses and precise coordinates replaced by `[redacted:<kind>]`. It is defence in depth: our
own code should not log these values in the first place, and tests/privacy_logs.py fails the test
session when one of our loggers does.

`find_sensitive(text)` is the detector both use: the patterns match the credentials our code and
the simulators really mint (secrets.token_urlsafe / token_hex, django-oauth-toolkit's oauthlib
tokens, JWTs such as VAPID and OpenADR tokens, `whsec_` webhook secrets), 17-character VINs,
email addresses and latitude/longitude given to three or more decimals (~100 m or better).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass

__all__ = ["Finding", "RedactingFilter", "find_sensitive", "redact"]


@dataclass(frozen=True)
class Finding:
    kind: str  # token | vin | email | coordinates
    match: str
    start: int
    end: int


_URLSAFE = r"A-Za-z0-9_\-"  # the base64url alphabet
# A labelled credential: `access_token=…`, `"refresh_token": "…"`, `Authorization: Bearer …`,
# `client_secret=…`, `?code=…` (OAuth authorization codes are single-use bearer credentials).
_LABELLED = re.compile(
    r"""(?ix)
    (?:access_token|refresh_token|id_token|client_secret|secret|password|passwd|api_key|apikey
       |authorization|auth_key|authorization_key|management_token|token|code|pairing_code)
    ["']?\s*[:=]\s*["']?
    (?:bearer\s+|basic\s+)?
    (?P<value>[A-Za-z0-9._~+/=\-]{8,})
    """
)
_BEARER = re.compile(r"(?i)\b(?:bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})")
# JWT (VAPID `Authorization: vapid t=eyJ…`, OpenADR VTN tokens): header.payload[.signature].
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)?")
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9_\-]{16,}")
# secrets.token_urlsafe(n ≥ 22) and oauthlib's 30-character tokens: long runs of mixed-case
# letters and digits. Lowercase hex (UUIDs, hashes, ids we log on purpose) never has capitals.
_RANDOM_TOKEN = re.compile(rf"(?<![{_URLSAFE}])[{_URLSAFE}]{{30,}}(?![{_URLSAFE}])")
# vehicles.chargers.security mints charger authorization keys with secrets.token_hex(20).
_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{40}(?:[0-9a-f]{24})?(?![0-9A-Za-z])")
# ISO 3779: 17 characters, no I, O or Q; a real VIN mixes letters and digits.
_VIN = re.compile(r"(?<![A-Za-z0-9])[A-HJ-NPR-Z0-9]{17}(?![A-Za-z0-9])")
_EMAIL = re.compile(
    r"(?i)(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"
)
_DEGREES = r"[-+]?\d{1,3}\.\d{3,}"
_LABELLED_COORD = re.compile(
    rf"""(?ix)\b(?:lat|latitude|lon|lng|long|longitude|home_lat|home_lon)["']?\s*[:=]\s*["']?
    (?P<value>{_DEGREES})"""
)
_COORD_PAIR = re.compile(rf"(?<![\d.])(?P<lat>{_DEGREES})\s*[,;/ ]\s*(?P<lon>{_DEGREES})(?![\d.])")


def _is_random_token(text: str) -> bool:
    upper, lower = sum(c.isupper() for c in text), sum(c.islower() for c in text)
    if not upper or not lower:
        return False
    if any(c.isdigit() for c in text):
        return True
    # Letters only: about 1 in 200 of oauthlib's 30-character tokens has no digit. Random case
    # puts many capitals among many small letters; a CamelCase name has a capital a word.
    return min(upper, lower) >= len(text) // 4


def _is_coordinate_pair(lat: str, lon: str) -> bool:
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        return False
    # 0.000-ish pairs are power or price figures, not a place.
    return abs(la) <= 90 and abs(lo) <= 180 and max(abs(la), abs(lo)) >= 1


def find_sensitive(text: str) -> list[Finding]:
    """Every token, VIN, email address and precise coordinate in `text`, leftmost first."""
    found: list[Finding] = []

    def add(kind: str, start: int, end: int) -> None:
        if any(f.start <= start < f.end or start <= f.start < end for f in found):
            return  # already covered by a wider match
        found.append(Finding(kind, text[start:end], start, end))

    for pattern in (_JWT, _WEBHOOK_SECRET):
        for m in pattern.finditer(text):
            add("token", m.start(), m.end())
    for pattern in (_BEARER, _LABELLED):
        for m in pattern.finditer(text):
            value = m.group("value")
            if pattern is _LABELLED and not _looks_secret(value):
                continue
            add("token", m.start("value"), m.end("value"))
    for m in _RANDOM_TOKEN.finditer(text):
        if _is_random_token(m.group()):
            add("token", m.start(), m.end())
    for m in _HEX_KEY.finditer(text):
        add("token", m.start(), m.end())
    for m in _EMAIL.finditer(text):
        add("email", m.start(), m.end())
    for m in _VIN.finditer(text):
        value = m.group()
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            add("vin", m.start(), m.end())
    for m in _LABELLED_COORD.finditer(text):
        add("coordinates", m.start("value"), m.end("value"))
    for m in _COORD_PAIR.finditer(text):
        if _is_coordinate_pair(m.group("lat"), m.group("lon")):
            add("coordinates", m.start(), m.end())
    return sorted(found, key=lambda f: f.start)


_PLAIN_WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*|\d+")


def _looks_secret(value: str) -> bool:
    """A labelled value is a credential unless it is plainly words or a number (`code=404`,
    `code=peak-saver`, `token=missing`) or already redacted."""
    if _PLAIN_WORDS.fullmatch(value):
        return False
    return not value.startswith("[redacted")


def redact(text: str) -> str:
    """`text` with every finding replaced by `[redacted:<kind>]`."""
    findings = find_sensitive(text)
    if not findings:
        return text
    out, last = [], 0
    for f in findings:
        out.append(text[last : f.start])
        out.append(f"[redacted:{f.kind}]")
        last = f.end
    out.append(text[last:])
    return "".join(out)


def render(record: logging.LogRecord) -> str:
    """The record as a handler would print it: message with its arguments, exception, stack."""
    try:
        text = record.getMessage()
    except Exception:  # a malformed call must not break logging; show what we have
        text = f"{record.msg!r} {record.args!r}"
    parts = [text]
    if record.exc_info and not record.exc_text:
        parts.append(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


class RedactingFilter(logging.Filter):
    """Hand the handler a redacted copy of each record; other handlers still get the original.

    (Python ≥ 3.12: a filter may return a replacement record, used for this handler only.)
    """

    def filter(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!r} {record.args!r}"
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = logging.Formatter().formatException(record.exc_info)
        clean_message = redact(message)
        clean_exc = redact(exc_text) if exc_text else exc_text
        clean_stack = redact(record.stack_info) if record.stack_info else record.stack_info
        if (clean_message, clean_exc, clean_stack) == (message, exc_text, record.stack_info):
            return True
        clean = copy.copy(record)
        clean.msg, clean.args = clean_message, None
        clean.exc_info, clean.exc_text, clean.stack_info = None, clean_exc, clean_stack
        return clean
